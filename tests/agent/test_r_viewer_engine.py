"""The R data viewer's engine (``src/rsparkhub/agent/r/viewer_engine.R``, data.table in
``viewer.R``) on frames above ``ENGINE_MIN_ROWS``: searches through digit windows and range
tables, ``between`` / ``in`` / ``contains`` filters and sorts, on a data.frame, a tibble and
a data.table. Each answer is compared with what plain R computes in the same script: the
text every cell shows (``as.character``, ``format(, "%Y-%m-%d")``, factor labels, integers
for whole numbers) matched with ``grepl(fixed = TRUE)``, ``which()`` of comparisons and
``order(method = "radix", na.last = TRUE)``. Loaded as the agent loads it
(``introspect.r_tools``: its byte code when compiled at install, into an attached
``tools:rsparkhub``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from rsparkhub.agent.introspect import r_tools

R_FILE = Path(__file__).resolve().parents[2] / "src" / "rsparkhub" / "agent" / "r" / "rsparkhub.R"

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")

NEEDLES = ["00042", "42", "-4", "-", "0", "0.5", "-0", "inf", "2000-0", "APPLE", "é", "e+",
           "1", "qqq", "NA", "true"]  # fmt: skip

SCRIPT = r"""
LOAD_TOOLS
set.seed(3); n <- 120000L
df <- data.frame(
  i = sample(c(-2000000:2000000, NA), n, TRUE), k = sample.int(1000L, n, TRUE),
  wd = as.double(sample(-500:500, n, TRUE)), big = sample(c(1e5, 3e9, 12, -7), n, TRUE),
  dec = round(runif(n, -1000, 1000), 2), x = runif(n),
  y = rnorm(n) * 10^sample(-6:16, n, TRUE),
  d = as.Date("1999-12-20") + sample.int(4000L, n, TRUE),
  s = sample(c("Apple pie", "banana", "\u00c9CLAIR", NA), n, TRUE),
  u = sprintf("id%06d", seq_len(n)),
  f = factor(sample(c("lo", "mid", "hi", NA), n, TRUE)),
  l = sample(c(TRUE, FALSE, NA), n, TRUE), stringsAsFactors = FALSE)
df$dec[1:5] <- c(NA, Inf, -Inf, NaN, 0.5); df$wd[1:3] <- c(Inf, NA, NaN); df$d[7:9] <- NA
txt_of <- function(col) {
  if (is.factor(col)) return(as.character(col))
  if (inherits(col, "Date")) return(format(col, "%Y-%m-%d"))
  if (is.logical(col)) return(ifelse(col, "true", "false"))
  if (is.double(col) && all(!is.finite(col) | (col == trunc(col) & abs(col) < 2^31))) {
    t <- suppressWarnings(as.character(as.integer(col)))
    t[col %in% Inf] <- "Inf"; t[col %in% -Inf] <- "-Inf"
    return(t)
  }
  as.character(col)
}
texts <- lapply(df, txt_of)
found <- function(s) {
  s <- tolower(s)
  which(Reduce(`|`, Map(function(col, t) !is.na(col) & !is.na(t) &
                          grepl(s, tolower(t), fixed = TRUE), df, texts)))
}
frames <- list(df = df, tb = tibble::as_tibble(df), dt = data.table::as.data.table(df))
copies <- lapply(frames, function(x)
  if (data.table::is.data.table(x)) data.table::copy(x) else unserialize(serialize(x, NULL)))
for (nm in names(frames)) assign(nm, frames[[nm]], envir = globalenv())
out <- tempfile()
call1 <- function(m, a) {
  .rsparkhub$call(m, jsonlite::toJSON(a, auto_unbox = TRUE, null = "null", digits = NA), out)
  jsonlite::fromJSON(out, simplifyVector = FALSE)
}
res <- list()
for (nm in names(frames)) {
  vid <- call1("view_open", list(name = nm))$result$view_id
  ask <- function(...) {
    r <- call1("view_rows", c(list(view_id = vid, limit = 1000L), list(...)))
    if (!isTRUE(r$ok)) return(r$error)
    list(total = r$result$total, rows = as.integer(unlist(r$result$row_labels)))
  }
  want <- function(idx) list(total = length(idx), rows = head(as.integer(idx), 1000L))
  for (s in if (nm == "df") NEEDLES else c("42", "an", "2000-0")) res[[paste(nm, "search", s)]] <- list(ask(search = s), want(found(s)))
  for (col in c("s", "u", "dec", "i")) for (s in c("an", "00", "4"))
    res[[paste(nm, "contains", col, s)]] <- list(
      ask(filters = list(list(column = col, op = "contains", value = s))),
      want(which(!is.na(df[[col]]) & grepl(s, tolower(texts[[col]]), fixed = TRUE))))
  res[[paste(nm, "between x")]] <- list(
    ask(filters = list(list(column = "x", op = "between", min = 0.25, max = 0.5))),
    want(which(df$x >= 0.25 & df$x <= 0.5)))
  res[[paste(nm, "between d")]] <- list(
    ask(filters = list(list(column = "d", op = "between", min = "2001-01-01", max = "2002-06-30"))),
    want(which(df$d >= as.Date("2001-01-01") & df$d <= as.Date("2002-06-30"))))
  res[[paste(nm, "between dec with NA")]] <- list(
    ask(filters = list(list(column = "dec", op = "between", min = -10, max = 10))),
    want(which(df$dec >= -10 & df$dec <= 10)))
  res[[paste(nm, "in s")]] <- list(
    ask(filters = list(list(column = "s", op = "in", values = list("banana", NULL)))),
    want(which(df$s %in% "banana" | is.na(df$s))))
  res[[paste(nm, "sort f desc, dec")]] <- list(
    ask(sort = list(list(column = "f", descending = TRUE), list(column = "dec"))),
    want(order(df$f, df$dec, decreasing = c(TRUE, FALSE), method = "radix", na.last = TRUE)))
  res[[paste(nm, "sort s, i desc")]] <- list(
    ask(sort = list(list(column = "s"), list(column = "i", descending = TRUE))),
    want(order(df$s, df$i, decreasing = c(FALSE, TRUE), method = "radix", na.last = TRUE)))
  res[[paste(nm, "filter + search + sort")]] <- list(
    ask(filters = list(list(column = "k", op = "lt", value = 500)), search = "an",
        sort = list(list(column = "d", descending = TRUE))),
    want((function(i) i[order(df$d[i], decreasing = TRUE, method = "radix", na.last = TRUE)])(
      intersect(which(df$k < 500), found("an")))))
}
unchanged <- vapply(names(frames), function(nm) {
  x <- get(nm, envir = globalenv())
  identical(x, copies[[nm]]) && is.null(attr(x, "index")) && is.null(attr(x, "sorted"))
}, NA)
cat("RESULT ", jsonlite::toJSON(list(res = res, unchanged = as.list(unchanged)),
    auto_unbox = TRUE, null = "null", digits = NA), "\n", sep = "")
"""


def run_script(code: str, timeout: float) -> tuple[dict[str, Any], str]:
    """Run an R script (``LOAD_TOOLS`` in it: rsparkhub.R loaded as the agent loads it;
    ``R_FILE``: its path) that ends by printing one
    ``RESULT {json}`` line; that document, and what the script wrote to stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "engine.R"
        code = code.replace("LOAD_TOOLS", r_tools(R_FILE))  # as the agent loads it
        script.write_text(code.replace("R_FILE", json.dumps(str(R_FILE))), encoding="utf-8")
        proc = subprocess.run(
            ["Rscript", "--vanilla", str(script)], capture_output=True, text=True, timeout=timeout
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    doc: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return doc, proc.stderr


@pytest.mark.slow
def test_engine_answers_are_what_r_computes() -> None:
    code = SCRIPT.replace("NEEDLES", "c(" + ", ".join(json.dumps(s) for s in NEEDLES) + ")")
    doc, stderr = run_script(code, timeout=600)
    assert doc["unchanged"] == {"df": True, "tb": True, "dt": True}
    assert len(doc["res"]) == len(NEEDLES) + 2 * 3 + 3 * (12 + 7)
    for key, (got, want) in doc["res"].items():
        assert isinstance(got, dict) and "total" in got, (key, got)
        assert got["total"] == want["total"], key
        assert (got["rows"] or []) == (want["rows"] or []), key
    assert "Warning" not in stderr, stderr[-2000:]


DIGITS_SCRIPT = r"""
# no byte-compiling: compiled code calls base's as.character() even where the stand-in below
# shadows it
invisible(compiler::enableJIT(0))
options(rsparkhub.bytecode = FALSE)  # the sources, not the byte code compiled at install
LOAD_TOOLS
e <- get(".rsparkhub", envir = as.environment("tools:rsparkhub"))
e$DIGITS_CHUNK <- 4096L  # many chunks, and chunk edges inside the tricky values
set.seed(11)
x <- c(runif(30000), -runif(5000), rnorm(30000) * 10^sample(-6:16, 30000, TRUE),
       round(runif(5000, -1e4, 1e4), 3) + 1e-9, 1/3, 2/3, 0.1, 0.3, 0.30000000000000004,
       5.1, 2.6, 500.1, 12500.1, 123456.7, 0.001, 0.0012345, 0.00099999999999999,
       99999.999999999999, 0.99999999999999994, 1e15 - 0.5, 1e15 - 0.0625, 999999999999999.9,
       1234567890123.45, 12345678901234.5, 12440864890419.986328, NA, NaN, Inf, -Inf, 0, -0,
       1e5, 3e9, -7, 5e-324, 1e300, -1e-20)
x <- sample(x)
text <- as.character(x)
res <- list()
for (s in c("0", "1", "9", "00", "10", "42", "00042", "123", "999", "0001", "3333",
            "12345678", "30000000")) {
  got <- e$digits_contains(x, s)
  want <- !is.na(x) & grepl(s, text, fixed = TRUE)
  res[[s]] <- list(wrong = sum(got != want), found = sum(want))
}
refused <- vapply(c("4.2", "-4", "e+", "123456789", "inf"), function(s)
  is.null(e$digits_contains(x, s)), NA)
# an R whose as.character() writes numbers otherwise (a stand-in: no other R is installed)
e$as.character <- function(x, ...) paste0(base::as.character(x, ...), "5")
other_r <- is.null(e$digits_contains(x, "42"))
rm("as.character", envir = e)
cat("RESULT ", jsonlite::toJSON(list(res = res, refused = as.list(refused), other_r = other_r),
    auto_unbox = TRUE), "\n", sep = "")
"""


def test_digits_of_doubles_are_the_digits_r_writes() -> None:
    """``digits_contains`` (a search of digits in doubles that are not whole) finds exactly
    the rows whose ``as.character()`` text contains the digits, on random doubles of every
    magnitude, values next to a tie or to 1e15 and those R writes in scientific notation,
    across chunk edges; it declines what is not digits, and an R that formats numbers
    otherwise (a stand-in ``as.character`` — the fault cannot be produced with the one R
    installed) falls back to the plain way."""
    doc, stderr = run_script(DIGITS_SCRIPT, timeout=300)
    for s, r in doc["res"].items():
        assert r["wrong"] == 0, (s, r)
    assert all(doc["res"][s]["found"] > 0 for s in ("0", "42", "00042", "999")), doc["res"]
    assert doc["refused"] == {s: True for s in ("4.2", "-4", "e+", "123456789", "inf")}
    assert doc["other_r"] is True
    assert "Warning" not in stderr, stderr[-2000:]
