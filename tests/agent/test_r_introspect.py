"""The R side of session introspection (``src/rsparkhub/agent/r/rsparkhub.R``), driven the
way the agent drives it: the file is loaded as the agent loads it (``introspect.r_tools``)
and every question is ``.rsparkhub$call(METHOD, ARGS_JSON, OUT_PATH)``.

Most tests run one ``Rscript`` per test: it loads the file, builds objects, makes calls and
the test reads the JSON documents the calls wrote; values to compare with (what R computes
directly: ``order()``, ``subset()``, ``object.size()``…) are written next to them by the
same script. One test starts a real IRkernel (``ir``) through jupyter_client for the kernel
hooks (help pager payloads, plot mimetype, silent calls leaving ``.Last.value`` alone).

Timings are not asserted here; ``python tests/agent/test_r_introspect.py`` prints them."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from rsparkhub.agent.introspect import r_tools

R_FILE = Path(__file__).resolve().parents[2] / "src" / "rsparkhub" / "agent" / "r" / "rsparkhub.R"

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed")


def r_str(s: str) -> str:
    """An R raw string literal holding ``s``."""
    assert ']---"' not in s
    return f'r"---[{s}]---"'


def call(key: str, method: str, args: dict[str, Any] | None = None) -> str:
    """R code making one call whose JSON document is stored under ``key``."""
    return f"rsh({r_str(key)}, {r_str(method)}, {r_str(json.dumps(args or {}))})\n"


def prelude(outdir: Path) -> str:
    # the agent's load line, then test helpers in their own attached environment so that
    # the global environment holds only what the test creates
    return f"""
{r_tools(R_FILE)}
local({{
  t <- attach(NULL, name = "tools:test")
  t$OUT <- {r_str(str(outdir))}
  t$rsh <- function(key, method, args) .rsparkhub$call(method, args, file.path(OUT, paste0(key, ".json")))
  t$put <- function(key, value) writeLines(
    jsonlite::toJSON(value, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
    file.path(OUT, paste0(key, ".json")))
}})
"""


def run_r(code: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``code`` after the prelude (``@OUT@`` in it: the output directory); returns every
    stored document by key, and the script's standard output as ``_stdout``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        script = out / "driver.R"
        script.write_text(prelude(out) + code.replace("@OUT@", str(out)))
        proc = subprocess.run(
            ["Rscript", "--vanilla", str(script)], capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stderr
        docs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
        assert not list(out.glob("*.tmp")), "a call left its .tmp file behind"
        docs["_stdout"] = proc.stdout
        return docs


def ok(doc: dict[str, Any]) -> Any:
    assert doc["ok"] is True, doc
    return doc["result"]


def err(doc: dict[str, Any]) -> str:
    assert doc["ok"] is False, doc
    assert doc["error"]["message"]
    return str(doc["error"]["code"])


def by_name(variables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in variables}


# ---------------------------------------------------------------------------------------
# loading


def test_load_adds_only_the_attached_environment() -> None:
    docs = run_r(
        """
put("state", list(
  globals = ls(globalenv(), all.names = TRUE),
  attached = ls("tools:rsparkhub", all.names = TRUE),
  search2 = search()[2:3],
  call_is_base = identical(get("call", envir = globalenv()), base::call),
  hooks = isNamespaceLoaded("IRkernel")))
"""
        + call("list", "env_list")
        + 'put("after", ls(globalenv(), all.names = TRUE))\n'
    )
    st = docs["state"]
    assert st["globals"] == []
    assert st["attached"] == ".rsparkhub"  # one name; nothing masks base/utils functions
    assert st["search2"] == ["tools:test", "tools:rsparkhub"]
    assert st["call_is_base"] is True
    assert st["hooks"] is False  # plain Rscript: the kernel hooks are skipped
    assert ok(docs["list"])["variables"] == []
    assert docs["after"] == []


# ---------------------------------------------------------------------------------------
# environment listing


ENV_OBJECTS = """
x <- c(0.1, 0.2, 0.3, 0.4)
n1 <- 42
i1 <- 5L
s1 <- "hello"
lg <- c(TRUE, NA, FALSE)
chr <- c("a", "b", NA)
named <- c(a = 1.5, b = 2)
f <- factor(c("a", "b", "c", "a"))
of <- factor(c("L", "H"), levels = c("L", "M", "H"), ordered = TRUE)
d <- as.Date("2024-01-01") + 0:2
tm <- as.POSIXct("2024-01-01 10:00:00", tz = "UTC") + 0:1
df <- data.frame(a = 1:100, b = seq(0.5, 50, by = 0.5), c = rep(c("u", "v"), 50))
tb <- tibble::tibble(a = 1:3, b = c("x", "y", "z"))
dt <- data.table::data.table(a = 1:5)
m <- matrix(1:30, 10)
arr <- array(1:24, 2:4)
lst <- list(a = 1, 2, b = list(c = "x"))
fn <- function(x, y = 2) x + y
en <- new.env(); assign("a", 1, envir = en); assign("b", 2, envir = en)
nul <- NULL
setClass("Trk", representation(x = "numeric", y = "numeric"))
s4 <- new("Trk", x = 1, y = 2)
Person <- R6::R6Class("Person", public = list(name = NULL, greet = function() "hi"))
p6 <- Person$new()
fo <- y ~ x
delayedAssign("lazy", stop("a promise must not be forced"))
makeActiveBinding("act", function() stop("an active binding must not be called"), globalenv())
.hid <- 1
"""


def test_env_list_types_kinds_previews_sizes() -> None:
    docs = run_r(
        ENV_OBJECTS
        + call("list", "env_list")
        + call("hidden", "env_list", {"hidden": True})
        + """
sizes <- list()
for (nm in c("x", "n1", "i1", "s1", "lg", "chr", "named", "f", "of", "d", "tm", "df", "tb",
             "dt", "m", "arr", "lst"))
  sizes[[nm]] <- as.numeric(object.size(get(nm)))
put("sizes", sizes)
"""
    )
    res = ok(docs["list"])
    assert res["version"] >= 1
    names = [v["name"] for v in res["variables"]]
    assert names == sorted(names)
    assert ".hid" not in names and "Trk" not in names
    assert ".hid" in [v["name"] for v in ok(docs["hidden"])["variables"]]
    v = by_name(res["variables"])

    def check(name: str, type_: str, kind: str, length: Any, dims: Any, preview: str) -> None:
        got = v[name]
        assert (got["type"], got["kind"], got["length"], got["dims"], got["preview"]) == (
            type_,
            kind,
            length,
            dims,
            preview,
        ), got
        assert got["key"] == name
        assert got["preview_truncated"] is False

    check("x", "numeric", "vector", 4, None, "num [1:4] 0.1 0.2 0.3 0.4")
    check("n1", "numeric", "value", 1, None, "42")
    check("i1", "integer", "value", 1, None, "5L")
    check("s1", "character", "value", 1, None, '"hello"')
    check("lg", "logical", "vector", 3, None, "logi [1:3] TRUE NA FALSE")
    check("chr", "character", "vector", 3, None, 'chr [1:3] "a" "b" NA')
    check("named", "numeric", "vector", 2, None, "Named num [1:2] 1.5 2")
    check("f", "factor", "factor", 4, None, 'Factor w/ 3 levels "a","b","c": 1 2 3 1')
    check("of", "ordered", "factor", 2, None, 'Ord.factor w/ 3 levels "L"<"M"<"H": 1 3')
    check(
        "d", "Date", "vector", 3, None, 'Date[1:3], format: "2024-01-01" "2024-01-02" "2024-01-03"'
    )
    check(
        "tm",
        "POSIXct",
        "vector",
        2,
        None,
        'POSIXct[1:2], format: "2024-01-01 10:00:00" "2024-01-01 10:00:01"',
    )
    check("df", "data.frame", "table", 3, [100, 3], "100 obs. of 3 variables")
    check("tb", "tbl_df", "table", 2, [3, 2], "3 obs. of 2 variables")
    check("dt", "data.table", "table", 1, [5, 1], "5 obs. of 1 variable")
    check("m", "matrix", "matrix", 30, [10, 3], "int [1:10, 1:3] 1 2 3 4 5 6 7 8 9 10 \u2026")
    check(
        "arr", "array", "matrix", 24, [2, 3, 4], "int [1:2, 1:3, 1:4] 1 2 3 4 5 6 7 8 9 10 \u2026"
    )
    check("lst", "list", "list", 3, None, "List of 3")
    check("fn", "function", "function", 1, None, "function (x, y = 2)")
    check("en", "environment", "environment", 2, None, "<environment> with 2 objects")
    check("nul", "NULL", "null", 0, None, "NULL")
    assert v["s4"]["type"] == "Trk" and v["s4"]["kind"] == "object"
    assert v["s4"]["preview"] == "Formal class 'Trk' [package \".GlobalEnv\"] with 2 slots"
    assert v["p6"]["type"] == "Person" and v["p6"]["kind"] == "object"
    assert v["p6"]["preview"].startswith("R6 object of class Person")
    assert v["Person"]["kind"] == "class"
    assert v["fo"]["type"] == "formula" and v["fo"]["preview"] == "y ~ x"
    # promises and active bindings are reported, never evaluated
    assert (v["lazy"]["type"], v["lazy"]["preview"], v["lazy"]["size"]) == (
        "promise",
        "<promise>",
        None,
    )
    assert v["act"]["type"] == "active binding"
    # tabular / children
    assert {n for n, x in v.items() if x["tabular"]} == {"df", "tb", "dt", "m"}
    assert {n for n, x in v.items() if x["has_children"]} == {
        "df", "tb", "dt", "lst", "en", "s4", "p6", "Person",
    }  # fmt: skip
    # sizes are object.size()'s for vectors, factors, data frames (computed without walking)
    for name, size in docs["sizes"].items():
        assert v[name]["size"] == size, name
        assert v[name]["size_estimated"] is False
    assert v["en"]["size"] is None
    assert all(isinstance(x["fingerprint"], str) and x["fingerprint"] for x in v.values())


def test_env_list_large_objects_are_summarised_without_walking_them() -> None:
    docs = run_r(
        """
big <- rnorm(2e6)
strs <- rep(c("alpha", "beta", "gamma"), 1e6)
uniq <- as.character(seq_len(1e6))
lst <- as.list(seq_len(1e5))
frame <- data.frame(a = seq_len(5e6), s = rep_len(c("x", "y"), 5e6))
long_str <- paste(rep("word", 200), collapse = " ")
put("exact", list(big = as.numeric(object.size(big)), strs = as.numeric(object.size(strs)),
                  uniq = as.numeric(object.size(uniq)), lst = as.numeric(object.size(lst))))
"""
        + call("list", "env_list")
    )
    v = by_name(ok(docs["list"])["variables"])
    exact = docs["exact"]
    assert v["big"]["size"] == exact["big"] and v["big"]["size_estimated"] is False
    assert v["big"]["preview"].startswith("num [1:2000000] ")
    for name in ("strs", "uniq", "lst"):
        assert v[name]["size_estimated"] is True, name
        assert abs(v[name]["size"] - exact[name]) / exact[name] < 0.1, (name, v[name]["size"])
    assert v["frame"]["dims"] == [5000000, 2] and v["frame"]["size_estimated"] is True
    assert v["frame"]["size"] > 5e6 * (4 + 8)
    assert v["long_str"]["preview_truncated"] is True
    assert len(v["long_str"]["preview"]) <= 200 and "\u2026" in v["long_str"]["preview"]


def test_env_diff_reports_exactly_what_changed() -> None:
    docs = run_r(
        """
x <- 1; y <- 1; keep <- "same"; v <- 1:10; m <- matrix(1:6, 2); k <- 1:3; gone <- 1
big <- rnorm(1e5)
"""
        + call("list", "env_list")
        + call("d0", "env_diff")
        + "y <- 2\n"
        + call("d1", "env_diff")
        + "x <- 2; v[11] <- 11L; dim(m) <- c(3, 2); class(k) <- 'myclass'; rm(gone); newvar <- TRUE\n"
        + call("d2", "env_diff")
        # reassigned with a same-shaped value after the old one was freed (address reuse)
        + "big <- NULL; invisible(gc()); big <- rnorm(1e5)\n"
        + call("d3", "env_diff")
        + "x <- 2\n"  # same value, new object: reassigned
        + call("d4", "env_diff")
        + call("d5", "env_diff")
        + ".h <- 1\n"
        + call("d6", "env_diff")
        + call("d7", "env_diff", {"hidden": True})
    )
    v0 = ok(docs["list"])["version"]
    d0 = ok(docs["d0"])
    assert (d0["version"], d0["assigned"], d0["removed"]) == (v0, [], [])
    d1 = ok(docs["d1"])
    assert [a["name"] for a in d1["assigned"]] == ["y"] and d1["removed"] == []
    assert d1["assigned"][0]["preview"] == "2" and d1["version"] == v0 + 1
    d2 = ok(docs["d2"])
    assert [a["name"] for a in d2["assigned"]] == ["k", "m", "newvar", "v", "x"]
    assert d2["removed"] == ["gone"]
    changed = by_name(d2["assigned"])
    assert changed["m"]["dims"] == [3, 2] and changed["k"]["type"] == "myclass"
    assert changed["v"]["length"] == 11
    assert [a["name"] for a in ok(docs["d3"])["assigned"]] == ["big"]
    assert [a["name"] for a in ok(docs["d4"])["assigned"]] == ["x"]
    d5 = ok(docs["d5"])
    assert (d5["assigned"], d5["removed"], d5["version"]) == ([], [], ok(docs["d4"])["version"])
    assert ok(docs["d6"])["assigned"] == []  # hidden names are out of scope...
    # ...until asked for (.Random.seed: created by rnorm() before the first listing)
    assert [a["name"] for a in ok(docs["d7"])["assigned"]] == [".Random.seed", ".h"]


def test_listing_does_not_keep_big_values_alive() -> None:
    docs = run_r(
        """
mb <- function() { invisible(gc()); sum(gc()[, 2]) }
"""
        + call("warm", "env_list")  # loads lobstr and rlang, compiles
        + """
base <- mb()
vec <- rnorm(5e6); frame <- data.frame(a = rnorm(5e6)); lst <- list(rnorm(5e6))
"""
        + call("list", "env_list")
        + call("view", "view_open", {"name": "frame"})
        + call("close", "view_close", {"view_id": "v1"})
        + """
held <- mb() - base
rm(vec, frame, lst)
put("mb", list(held = held, after_rm = mb() - base))
"""
    )
    ok(docs["list"])
    assert docs["mb"]["held"] > 100  # 3 x 40 MB
    assert docs["mb"]["after_rm"] < 5  # freed at once, not at the next listing


def test_methods_leave_user_state_alone() -> None:
    docs = run_r(
        """
set.seed(7)
df <- data.frame(a = c(3, 1, 2), b = c("x", "y", "z"))
png(tempfile()); plot(1:3)
invisible(.rsparkhub$plot_repr(recordPlot()))
snap <- function() list(opts = options(), seed = .Random.seed, globals = ls(globalenv(), all.names = TRUE),
                        dev = dev.cur(), devs = dev.list(),
                        warn = exists("last.warning", envir = baseenv()))
before <- snap()
"""
        + call("list", "env_list")
        + call("diff", "env_diff")
        + call("kids", "env_children", {"path": ["df"]})
        + call(
            "view",
            "view_open",
            {"expr": "x <- sample(100); warning('w'); message('m'); print(x); df"},
        )
        + call("rows", "view_rows", {"view_id": "v1", "search": "x", "sort": [{"column": "a"}]})
        + call("help", "help_html", {"topic": "mean"})
        + call("search", "help_search", {"query": "mean"})
        + call(
            "plot",
            "plot_render",
            {
                "key": "p1",
                "format": "png",
                "width": 300,
                "height": 200,
                "res": 72,
                "out": "@OUT@/p.png",
            },
        )
        + call(
            "plot_svg",
            "plot_render",
            {"key": "p1", "format": "svg", "width": 300, "height": 200, "out": "@OUT@/p.svg"},
        )
        + """
after <- snap()
put("state", list(
  opts_same = identical(after$opts, before$opts),
  seed_same = identical(after$seed, before$seed),
  new_globals = as.list(setdiff(after$globals, before$globals)),
  dev_same = identical(after$dev, before$dev) && identical(after$devs, before$devs),
  warn = after$warn))
"""
    )
    for key in ("list", "diff", "kids", "view", "rows", "help", "search"):
        ok(docs[key])
    assert ok(docs["view"])["nrow"] == 3
    assert ok(docs["plot"])["mime"] == "image/png"
    assert ok(docs["plot_svg"])["mime"] == "image/svg+xml"
    assert docs["_stdout"] == ""  # the calls printed nothing (the expression's print() included)
    assert docs["state"] == {
        "opts_same": True,
        "seed_same": True,
        "new_globals": ["before"],
        "dev_same": True,
        "warn": False,
    }


def test_user_variables_named_like_functions_do_not_break_calls() -> None:
    docs = run_r(
        """
object.size <- function(...) stop("user's")
head <- function(...) stop("user's")
png <- function(...) stop("user's")
help <- function(...) stop("user's")
setNames <- function(...) stop("user's")
df <- data.frame(a = 1:3)
.rsparkhub$plot_repr({ pdf(NULL); plot(1); p <- recordPlot(); dev.off(); p })
"""
        + call("list", "env_list")
        + call("view", "view_open", {"name": "df"})
        + call("rows", "view_rows", {"view_id": "v1"})
        + call("help", "help_html", {"topic": "lm"})
        + call(
            "plot",
            "plot_render",
            {
                "key": "p1",
                "format": "pdf",
                "width": 144,
                "height": 144,
                "res": 72,
                "out": "@OUT@/p.pdf",
            },
        )
        + 'put("pdf", readChar(file.path(OUT, "p.pdf"), 4L, useBytes = TRUE))\n'
    )
    assert "df" in by_name(ok(docs["list"])["variables"])
    assert ok(docs["rows"])["rows"] == [[1], [2], [3]]
    assert ok(docs["help"])["package"] == "stats"
    assert ok(docs["plot"])["mime"] == "application/pdf" and docs["pdf"] == "%PDF"


def test_env_children_delete_clear() -> None:
    docs = run_r(
        ENV_OBJECTS
        + call("lst", "env_children", {"path": ["lst"]})
        + call("nested", "env_children", {"path": ["lst", "b"]})
        + call("nested_int", "env_children", {"path": ["lst", 3]})
        + call("df", "env_children", {"path": ["df"], "offset": 1, "limit": 1})
        + call("en", "env_children", {"path": ["en"]})
        + call("s4", "env_children", {"path": ["s4"]})
        + call("vec", "env_children", {"path": ["x"]})
        + call("bad_key", "env_children", {"path": ["lst", 7]})
        + call("no_var", "env_children", {"path": ["nope"]})
        + call("del_missing", "env_delete", {"names": ["x", "nope"]})
        + 'put("x_after_failed_delete", exists("x"))\n'
        + call("del", "env_delete", {"names": ["x", "n1"]})
        + 'put("x_after_delete", exists("x"))\n'
        + call("clear", "env_clear")
        + 'put("left", as.list(sort(ls(globalenv(), all.names = TRUE))))\n'
    )
    lst = ok(docs["lst"])
    assert lst["total"] == 3
    assert [(c["name"], c["key"], c["preview"]) for c in lst["children"]] == [
        ("$a", 1, "1"),
        ("[[2]]", 2, "2"),
        ("$b", 3, "List of 1"),
    ]
    assert ok(docs["nested"])["children"][0]["preview"] == '"x"'
    assert ok(docs["nested_int"]) == ok(docs["nested"])
    df = ok(docs["df"])
    assert (df["total"], df["offset"], [c["name"] for c in df["children"]]) == (3, 1, ["$b"])
    assert df["children"][0]["key"] == 2 and df["children"][0]["length"] == 100
    assert [(c["name"], c["key"]) for c in ok(docs["en"])["children"]] == [("a", "a"), ("b", "b")]
    assert [c["name"] for c in ok(docs["s4"])["children"]] == ["@x", "@y"]
    assert ok(docs["vec"]) == {"total": 0, "offset": 0, "children": []}
    assert err(docs["bad_key"]) == "not_found"
    assert err(docs["no_var"]) == "not_found"
    assert err(docs["del_missing"]) == "not_found"
    assert docs["x_after_failed_delete"] is True  # nothing removed when one name is missing
    assert ok(docs["del"]) == {"removed": ["x", "n1"]}
    assert docs["x_after_delete"] is False
    removed = ok(docs["clear"])["removed"]
    assert "df" in removed and ".hid" not in removed
    assert ".hid" in docs["left"] and all(n.startswith(".") for n in docs["left"])


# ---------------------------------------------------------------------------------------
# data viewer

VIEW_DATA = """
set.seed(11)
n <- 200
df <- data.frame(
  a = sample(c(1:5, NA), n, TRUE),
  b = round(rnorm(n), 2),
  c = sample(c("apple", "Banana", "cherry", NA), n, TRUE),
  f = factor(sample(c("lo", "mid", "hi"), n, TRUE), levels = c("lo", "mid", "hi")),
  d = as.Date("2024-01-01") + sample(0:60, n, TRUE),
  t = as.POSIXct("2024-01-01 00:00:00", tz = "UTC") + sample(0:200000, n),
  l = sample(c(TRUE, FALSE, NA), n, TRUE),
  stringsAsFactors = FALSE)
df$b[c(3, 9)] <- NA
rownames(df) <- paste0("r", seq_len(n))
rm(n)
rows_of <- function(idx) rownames(df)[idx]
"""


def test_view_sorts_filters_search_match_r() -> None:
    queries: dict[str, tuple[dict[str, Any], str]] = {
        "sort_a_bdesc": (
            {"sort": [{"column": "a"}, {"column": "b", "descending": True}]},
            "order(df$a, -df$b, na.last = TRUE)",
        ),
        "sort_f_desc_c": (
            {"sort": [{"column": "f", "descending": True}, {"column": "c"}]},
            "order(df$f, df$c, decreasing = c(TRUE, FALSE), method = 'radix', na.last = TRUE)",
        ),
        "sort_date": ({"sort": [{"column": "d"}]}, "order(df$d)"),
        "filter_gt_in": (
            {
                "filters": [
                    {"column": "b", "op": "gt", "value": 0},
                    {"column": "c", "op": "in", "values": ["apple", "cherry"]},
                ]
            },
            "which(with(df, b > 0 & c %in% c('apple', 'cherry')))",
        ),
        "filter_between_dates": (
            {
                "filters": [
                    {"column": "d", "op": "between", "min": "2024-01-10", "max": "2024-01-20"}
                ]
            },
            "which(df$d >= as.Date('2024-01-10') & df$d <= as.Date('2024-01-20'))",
        ),
        "filter_time_lt": (
            {"filters": [{"column": "t", "op": "lt", "value": "2024-01-01T12:00:00Z"}]},
            "which(df$t < as.POSIXct('2024-01-01 12:00:00', tz = 'UTC'))",
        ),
        "filter_factor_ne": (
            {"filters": [{"column": "f", "op": "ne", "value": "mid"}]},
            "which(df$f != 'mid')",
        ),
        "filter_factor_ge_label": (
            {"filters": [{"column": "f", "op": "ge", "value": "lo"}]},
            "which(as.character(df$f) >= 'lo')",
        ),
        "filter_missing": (
            {
                "filters": [
                    {"column": "a", "op": "is_missing"},
                    {"column": "l", "op": "not_missing"},
                ]
            },
            "which(is.na(df$a) & !is.na(df$l))",
        ),
        "filter_logical": (
            {"filters": [{"column": "l", "op": "eq", "value": True}]},
            "which(df$l)",
        ),
        "filter_contains": (
            {"filters": [{"column": "c", "op": "contains", "value": "AN"}]},
            "which(grepl('an', tolower(df$c), fixed = TRUE))",
        ),
        "filter_regex": (
            {"filters": [{"column": "c", "op": "regex", "pattern": "^[ab]"}]},
            "which(grepl('^[ab]', df$c))",
        ),
        "filter_in_with_null": (
            {"filters": [{"column": "a", "op": "in", "values": [1, None]}]},
            "which(df$a %in% 1 | is.na(df$a))",
        ),
        "search": (
            {"search": "ANA"},
            "which(grepl('ana', tolower(df$c), fixed = TRUE))",
        ),
        "search_number": (
            {"search": "0.5"},
            "which(grepl('0.5', as.character(df$b), fixed = TRUE))",
        ),
        "filter_sort": (
            {
                "filters": [{"column": "a", "op": "ge", "value": 3}],
                "sort": [{"column": "b", "descending": True}],
            },
            "(function(i) i[order(-df$b[i])])(which(df$a >= 3))",
        ),
    }
    code = VIEW_DATA + call("open", "view_open", {"name": "df"})
    for key, (q, expected) in queries.items():
        code += call(key, "view_rows", {"view_id": "v1", "offset": 0, "limit": 1000, **q})
        code += f'put("exp_{key}", as.list(rows_of({expected})))\n'
    docs = run_r(code)
    opened = ok(docs["open"])
    assert (opened["source"], opened["nrow"], opened["ncol"]) == ("df", 200, 7)
    assert [(c["name"], c["type"], c["index"]) for c in opened["columns"]] == [
        ("a", "integer", 0),
        ("b", "numeric", 1),
        ("c", "character", 2),
        ("f", "factor", 3),
        ("d", "Date", 4),
        ("t", "POSIXct", 5),
        ("l", "logical", 6),
    ]
    for key in queries:
        res = ok(docs[key])
        expected = docs[f"exp_{key}"]
        assert res["row_labels"] == expected, key
        assert res["total"] == len(expected) and len(res["rows"]) == len(expected), key
        assert res["recomputed"] is True
        assert len(expected) > 0, key  # every query selects something


def test_view_pages_cache_and_cells() -> None:
    docs = run_r(
        """
df <- data.frame(num = c(1.5, NaN, Inf, -Inf, NA, 1/3), int = c(1L, NA, 3L, 4L, 5L, 6L),
                 lgl = c(TRUE, FALSE, NA, TRUE, TRUE, TRUE),
                 fac = factor(c("a", NA, "b", "a", "a", "a")),
                 date = as.Date(c("2024-02-29", NA, "2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04")),
                 time = as.POSIXct(c("2024-01-01 10:00:00", NA, "2024-01-01 10:00:00.5", NA, NA, NA), tz = "UTC"),
                 chr = c("x\\"y", NA, "", "z", "\\u00e9", "w"))
df$lst <- list(1:3, NULL, "a", list(1), 2.5, data.frame(x = 1))
big <- data.frame(i = seq_len(5000), j = rev(seq_len(5000)))
"""
        + call("open", "view_open", {"name": "df"})
        + call("all", "view_rows", {"view_id": "v1", "offset": 0, "limit": 10})
        + call("open_big", "view_open", {"name": "big"})
        + call("p1", "view_rows", {"view_id": "v2", "offset": 0, "limit": 3})
        + call("p2", "view_rows", {"view_id": "v2", "offset": 3, "limit": 3})
        + call("idx_identity", "view_rows", {"view_id": "v2", "offset": 4998, "limit": 5})
        + 'put("identity_not_materialised", is.null(get("v2", envir = .rsparkhub$state$views)$idx))\n'
        + call(
            "s1", "view_rows", {"view_id": "v2", "offset": 0, "limit": 2, "sort": [{"column": "j"}]}
        )
        + call(
            "s2", "view_rows", {"view_id": "v2", "offset": 2, "limit": 2, "sort": [{"column": "j"}]}
        )
        + call("max", "view_rows", {"view_id": "v2", "offset": 0, "limit": 5000})
        + call("past_end", "view_rows", {"view_id": "v2", "offset": 9000, "limit": 10})
        + call("close", "view_close", {"view_id": "v2"})
        + call("closed", "view_rows", {"view_id": "v2"})
        + call("close_again", "view_close", {"view_id": "v2"})
    )
    rows = ok(docs["all"])["rows"]
    assert [r[0] for r in rows] == [1.5, "NaN", "Inf", "-Inf", None, 1 / 3]
    assert [r[1] for r in rows] == [1, None, 3, 4, 5, 6]
    assert [r[2] for r in rows] == [True, False, None, True, True, True]
    assert [r[3] for r in rows] == ["a", None, "b", "a", "a", "a"]
    assert [r[4] for r in rows] == [
        "2024-02-29",
        None,
        "2024-03-01",
        "2024-03-02",
        "2024-03-03",
        "2024-03-04",
    ]
    assert [r[5] for r in rows][:3] == [
        "2024-01-01T10:00:00+00:00",
        None,
        "2024-01-01T10:00:00.5+00:00",
    ]
    assert [r[6] for r in rows] == ['x"y', None, "", "z", "\u00e9", "w"]
    assert [r[7] for r in rows] == [
        "<int [3]>",
        None,
        "a",
        "<list [1]>",
        "2.5",
        "<df [1 \u00d7 1]>",
    ]
    assert ok(docs["all"])["row_labels"] == ["1", "2", "3", "4", "5", "6"]
    p1, p2 = ok(docs["p1"]), ok(docs["p2"])
    assert p1["rows"] == [[1, 5000], [2, 4999], [3, 4998]] and p1["recomputed"] is True
    assert p2["rows"] == [[4, 4997], [5, 4996], [6, 4995]] and p2["recomputed"] is False
    assert ok(docs["idx_identity"])["rows"] == [[4999, 2], [5000, 1]]
    assert docs["identity_not_materialised"] is True
    s1, s2 = ok(docs["s1"]), ok(docs["s2"])
    assert s1["rows"] == [[5000, 1], [4999, 2]] and s1["recomputed"] is True
    assert s2["rows"] == [[4998, 3], [4997, 4]] and s2["recomputed"] is False
    assert len(ok(docs["max"])["rows"]) == 1000  # limit is capped
    past = ok(docs["past_end"])
    assert (past["total"], past["rows"], past["row_labels"]) == (5000, [], [])
    assert ok(docs["close"]) == {"closed": True}
    assert err(docs["closed"]) == "view_not_found"
    assert err(docs["close_again"]) == "view_not_found"


def test_view_errors_and_sources() -> None:
    docs = run_r(
        """
df <- data.frame(a = 1:3, b = c("x", "y", "z"))
fn <- function() 1
vec <- 1:3
m <- matrix(c(3, 1, 2, 6, 5, 4), 3, dimnames = list(c("r1", "r2", "r3"), NULL))
cm <- matrix(letters[1:6], 2, dimnames = list(NULL, c("x", "y", "z")))
"""
        + call("not_found", "view_open", {"name": "nope"})
        + call("not_tabular_fn", "view_open", {"name": "fn"})
        + call("not_tabular_vec", "view_open", {"name": "vec"})
        + call("parse_error", "view_open", {"expr": "head(mtcars"})
        + call("eval_error", "view_open", {"expr": "stop('boom')"})
        + call("no_args", "view_open", {})
        + call("expr", "view_open", {"expr": "zz <- head(mtcars, 3); zz"})
        + 'put("zz_leaked", exists("zz"))\n'
        + call("expr_rows", "view_rows", {"view_id": "v1"})
        + call("open_df", "view_open", {"name": "df"})
        + call(
            "unknown_column",
            "view_rows",
            {"view_id": "v2", "filters": [{"column": "zz", "op": "eq", "value": 1}]},
        )
        + call("unknown_sort_column", "view_rows", {"view_id": "v2", "sort": [{"column": "zz"}]})
        + call(
            "bad_op",
            "view_rows",
            {"view_id": "v2", "filters": [{"column": "a", "op": "near", "value": 1}]},
        )
        + call(
            "bad_value",
            "view_rows",
            {"view_id": "v2", "filters": [{"column": "a", "op": "eq", "value": "x"}]},
        )
        + call(
            "missing_value",
            "view_rows",
            {"view_id": "v2", "filters": [{"column": "a", "op": "between", "min": 1}]},
        )
        + call(
            "bad_regex",
            "view_rows",
            {"view_id": "v2", "filters": [{"column": "b", "op": "regex", "pattern": "("}]},
        )
        + call("no_view", "view_rows", {"view_id": "v99"})
        + call("m", "view_open", {"name": "m"})
        + call(
            "m_rows", "view_rows", {"view_id": "v3", "sort": [{"column": "V2", "descending": True}]}
        )
        + call("cm", "view_open", {"name": "cm"})
        + call(
            "cm_rows",
            "view_rows",
            {"view_id": "v4", "filters": [{"column": "y", "op": "in", "values": ["d"]}]},
        )
    )
    assert err(docs["not_found"]) == "not_found"
    assert err(docs["not_tabular_fn"]) == "not_tabular"
    assert err(docs["not_tabular_vec"]) == "not_tabular"
    assert err(docs["parse_error"]) == "invalid_expression"
    assert err(docs["eval_error"]) == "invalid_expression"
    assert "boom" in docs["eval_error"]["error"]["message"]
    assert err(docs["no_args"]) == "invalid_argument"
    expr = ok(docs["expr"])
    assert (expr["source"], expr["nrow"], expr["ncol"]) == ("zz <- head(mtcars, 3); zz", 3, 11)
    assert docs["zz_leaked"] is False
    er = ok(docs["expr_rows"])
    assert er["row_labels"] == ["Mazda RX4", "Mazda RX4 Wag", "Datsun 710"]
    assert er["rows"][0][:2] == [21, 6]
    assert err(docs["unknown_column"]) == "unknown_column"
    assert err(docs["unknown_sort_column"]) == "unknown_column"
    for key in ("bad_op", "bad_value", "missing_value", "bad_regex"):
        assert err(docs[key]) == "invalid_filter", key
    assert err(docs["no_view"]) == "view_not_found"
    assert [c["name"] for c in ok(docs["m"])["columns"]] == ["V1", "V2"]
    mr = ok(docs["m_rows"])
    assert (mr["rows"], mr["row_labels"]) == ([[3, 6], [1, 5], [2, 4]], ["r1", "r2", "r3"])
    cr = ok(docs["cm_rows"])
    assert (cr["rows"], cr["row_labels"], cr["columns"]) == (
        [["b", "d", "f"]],
        ["2"],
        ["x", "y", "z"],
    )


def test_views_never_modify_data_table_or_tibble_and_are_released_on_change() -> None:
    docs = run_r(
        """
dt <- data.table::data.table(a = c(3, 1, 2), b = c("x", "y", "z"))
tb <- tibble::tibble(a = c(3, 1, 2))
dt_copy <- data.table::copy(dt); tb_copy <- tb
addr <- lobstr::obj_addr(dt)
"""
        + call("list", "env_list")
        + call("o1", "view_open", {"name": "dt"})
        + call(
            "r1",
            "view_rows",
            {
                "view_id": "v1",
                "sort": [{"column": "a"}],
                "filters": [{"column": "b", "op": "ne", "value": "z"}],
            },
        )
        + call("o2", "view_open", {"name": "tb"})
        + call("r2", "view_rows", {"view_id": "v2", "sort": [{"column": "a", "descending": True}]})
        + call("o3", "view_open", {"expr": "dt"})
        + """
put("untouched", list(dt = identical(dt, dt_copy), key = is.null(data.table::key(dt)),
                      indices = is.null(data.table::indices(dt)), addr = addr == lobstr::obj_addr(dt),
                      tb = identical(tb, tb_copy)))
"""
        + call("d0", "env_diff")
        + "tb <- tb[1, ]\n"
        + call("d1", "env_diff")
        + call("r_released", "view_rows", {"view_id": "v2"})
        + "dt[, c := 1]\n"
        + call("d2", "env_diff")
        + call("r_expr", "view_rows", {"view_id": "v3"})
    )
    assert ok(docs["r1"])["rows"] == [[1, "y"], [3, "x"]]
    assert ok(docs["r2"])["rows"] == [[3], [2], [1]]
    assert docs["untouched"] == {"dt": True, "key": True, "indices": True, "addr": True, "tb": True}
    assert ok(docs["d0"])["released_views"] == []
    d1 = ok(docs["d1"])
    assert d1["released_views"] == ["v2"] and [a["name"] for a in d1["assigned"]] == ["tb"]
    assert err(docs["r_released"]) == "view_not_found"
    d2 = ok(docs["d2"])
    assert d2["released_views"] == ["v1"]  # a column added in place by data.table
    assert [a["name"] for a in d2["assigned"]] == ["dt"]
    ok(docs["r_expr"])  # views of expressions are not tied to a name


# ---------------------------------------------------------------------------------------
# help


def test_help_html_and_search() -> None:
    docs = run_r(
        call("lm", "help_html", {"topic": "lm", "package": None})
        + call("in_pkg", "help_html", {"topic": "filter", "package": "stats"})
        + call("fallback", "help_html", {"topic": "options", "package": "stats"})
        + call("special", "help_html", {"topic": "[.data.frame"})
        + call("not_loaded", "help_html", {"topic": "data.table"})
        + 'put("dt_loaded", "data.table" %in% loadedNamespaces())\n'
        + call("unknown", "help_html", {"topic": "no_such_topic_xyz"})
        + call("search", "help_search", {"query": "linear model", "limit": 20})
        + call("mean", "help_search", {"query": "mean", "limit": 5})
        + call("none", "help_search", {"query": "qqqzzzxxx"})
    )
    lm = ok(docs["lm"])
    assert (lm["topic"], lm["package"], lm["title"]) == ("lm", "stats", "Fitting Linear Models")
    html = lm["html"]
    low = html.lower()
    for bad in ("<html", "<head", "<body", "<script", "<link", "javascript:", "onload"):
        assert bad not in low, bad
    assert "<h2>Fitting Linear Models</h2>" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert 'href="rsparkhub-help:r/stats/glm"' in html
    assert hrefs and all(
        h.startswith(("rsparkhub-help:r/", "https://", "http://", "#")) for h in hrefs
    )
    assert "../" not in html.replace("&quot;", "")
    assert ok(docs["in_pkg"])["package"] == "stats"
    assert ok(docs["fallback"])["package"] == "base"  # a link's package may be the linking one
    assert ok(docs["special"])["package"] == "base"
    assert ok(docs["not_loaded"])["package"] == "data.table"
    assert docs["dt_loaded"] is False
    assert err(docs["unknown"]) == "help_not_found"
    assert "no_such_topic_xyz" in docs["unknown"]["error"]["message"]

    results = ok(docs["search"])["results"]
    assert 0 < len(results) <= 20
    assert all(r["matched"] and r["package"] and r["topic"] for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert ("stats", "lm") in [(r["package"], r["topic"]) for r in results]
    first = ok(docs["mean"])["results"][0]
    assert (first["package"], first["topic"]) == ("base", "mean")
    assert "topic" in first["matched"] and "title" in first["matched"]
    assert ok(docs["none"])["results"] == []


def test_help_finds_packages_installed_after_start() -> None:
    docs = run_r(
        r"""
make_pkg <- function(title) {
  dir <- file.path(tempdir(), "rshfresh")
  unlink(dir, recursive = TRUE)
  dir.create(file.path(dir, "man"), recursive = TRUE)
  dir.create(file.path(dir, "R"))
  writeLines(c("Package: rshfresh", "Version: 0.1", "Title: Fresh", "Description: Fresh.",
               "License: MIT", "Author: A", "Maintainer: A <a@b.c>"), file.path(dir, "DESCRIPTION"))
  writeLines("export(freshfun)", file.path(dir, "NAMESPACE"))
  writeLines("freshfun <- function() 1", file.path(dir, "R", "f.R"))
  writeLines(c("\\name{freshfun}", "\\alias{freshfun}", paste0("\\title{", title, "}"),
               "\\description{Quokka. See \\code{\\link{mean}}.}", "\\usage{freshfun()}"),
             file.path(dir, "man", "freshfun.Rd"))
  lib <- file.path(tempdir(), "lib")
  dir.create(lib, showWarnings = FALSE)
  out <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "--no-test-load", "-l",
                 shQuote(lib), shQuote(dir)), stdout = TRUE, stderr = TRUE)
  if (!dir.exists(file.path(lib, "rshfresh"))) stop(paste(out, collapse = "\n"))
  lib
}
"""
        + call("before", "help_html", {"topic": "freshfun"})
        + call("search_before", "help_search", {"query": "quokka mean"})
        + 'lib <- make_pkg("First Title"); .libPaths(c(lib, .libPaths()))\n'
        + call("after", "help_html", {"topic": "freshfun"})
        + call("search_after", "help_search", {"query": "freshfun"})
        + 'invisible(make_pkg("Second Title"))\n'
        + call("reinstalled", "help_html", {"topic": "freshfun", "package": "rshfresh"})
    )
    assert err(docs["before"]) == "help_not_found"
    after = ok(docs["after"])
    assert (after["package"], after["title"]) == ("rshfresh", "First Title")
    assert "Quokka" in after["html"] and 'href="rsparkhub-help:r/' in after["html"]
    first = ok(docs["search_after"])["results"][0]
    assert (first["package"], first["topic"]) == ("rshfresh", "freshfun")
    assert ok(docs["reinstalled"])["title"] == "Second Title"  # no stale cache


# ---------------------------------------------------------------------------------------
# workspace image, protocol


def test_image_save_and_load() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ws.RData")
        saved = run_r(
            """
dt <- data.table::data.table(a = 1:3)
con <- file(tempfile(), "w")
lst <- list(con = con, b = 1)
x <- 1
.h <- 2
set.seed(5)
"""
            + call("save", "image_save", {"path": path})
            + 'put("files", as.list(list.files(dirname('
            + r_str(path)
            + "))))\n"
        )
        res = ok(saved["save"])
        assert res["saved"] == [".Random.seed", ".h", "con", "dt", "lst", "x"]
        assert res["unsaveable"] == ["con", "lst"]
        assert saved["files"] == ["ws.RData"]
        loaded = run_r(
            call("load", "image_load", {"path": path})
            + 'put("dt", list(n = nrow(dt), ok = data.table::is.data.table(dt[, b := 2])))\n'
            + call("missing", "image_load", {"path": path + ".nope"})
            + call("corrupt", "image_load", {"path": str(R_FILE)})
        )
        assert ok(loaded["load"])["loaded"] == [".Random.seed", ".h", "con", "dt", "lst", "x"]
        assert loaded["dt"] == {"n": 3, "ok": True}
        assert err(loaded["missing"]) == "not_found"
        assert err(loaded["corrupt"]) == "io_error"


def test_unknown_method_bad_json_never_raise() -> None:
    docs = run_r(
        call("unknown", "no_such_method")
        + 'rsh("bad_json", "env_list", "{not json")\n'
        + call("bad_arg", "env_children", {"path": []})
        + call("plot_missing", "plot_render", {"key": "p404", "format": "png", "out": "/tmp/x.png"})
        + 'put("still_running", TRUE)\n'
    )
    assert err(docs["unknown"]) == "unknown_method"
    assert err(docs["bad_json"]) == "internal_error"
    assert err(docs["bad_arg"]) == "invalid_argument"
    assert err(docs["plot_missing"]) == "plot_not_found"
    assert docs["still_running"] is True


# ---------------------------------------------------------------------------------------
# a real IRkernel: the hooks and silent calls


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def has_irkernel() -> bool:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        return False
    return "ir" in KernelSpecManager().find_kernel_specs()


@pytest.mark.skipif(not has_irkernel(), reason="no IRkernel (kernel spec 'ir')")
def test_irkernel_hooks_and_silent_calls(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="ir", startup_timeout=60)
    try:

        def run(code: str, silent: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            msgs: list[dict[str, Any]] = []
            reply = kc.execute_interactive(
                code, silent=silent, store_history=not silent, timeout=60, output_hook=msgs.append
            )
            assert reply["content"]["status"] == "ok", reply["content"]
            return reply, [m for m in msgs if m["msg_type"] not in ("status", "execute_input")]

        def rcall(method: str, args: dict[str, Any]) -> dict[str, Any]:
            out = tmp_path / f"{method}-{time.monotonic_ns()}.json"
            _, msgs = run(
                f".rsparkhub$call({r_str(method)}, {r_str(json.dumps(args))}, {r_str(str(out))})",
                silent=True,
            )
            assert msgs == []  # silent: nothing published
            return dict(json.loads(out.read_text()))

        _, msgs = run(
            'options(jupyter.plot_mimetypes = c("image/png"))\n' + r_tools(R_FILE),
            silent=True,
        )
        assert msgs == []
        _, msgs = run("before <- ls(globalenv(), all.names = TRUE)\nx <- 1:10\nx")
        assert [m["msg_type"] for m in msgs] == ["display_data"]
        listing = ok(rcall("env_list", {}))
        assert by_name(listing["variables"])["x"]["preview"] == "int [1:10] 1 2 3 4 5 6 7 8 9 10"
        _, msgs = run(
            "cat(identical(.Last.value, 1:10), setequal(ls(globalenv(), all.names = TRUE), c(before, 'before', 'x')), getOption('jupyter.plot_mimetypes'))"
        )
        assert (
            msgs[0]["content"]["text"] == "TRUE TRUE image/png application/vnd.rsparkhub.plot+json"
        )

        help_mime = "application/vnd.rsparkhub.help+json"
        reply, _ = run("?mean")
        pages = reply["content"]["payload"]
        assert [p["source"] for p in pages] == ["page"]
        assert pages[0]["data"][help_mime] == {"topic": "mean", "package": "base", "language": "r"}
        assert "text/plain" in pages[0]["data"]
        reply, _ = run('help("filter", package = "stats")')
        assert reply["content"]["payload"][0]["data"][help_mime]["package"] == "stats"
        reply, _ = run('??"linear model"')
        pages = reply["content"]["payload"]
        assert len(pages) == 1 and pages[0]["data"][help_mime] == {
            "query": "linear model",
            "language": "r",
            "kind": "search",
        }
        assert "lm" in pages[0]["data"]["text/plain"]
        reply, msgs = run("mean")  # ordinary values carry no help entry
        assert reply["content"]["payload"] == [] and help_mime not in msgs[0]["content"]["data"]

        plot_mime = "application/vnd.rsparkhub.plot+json"
        _, msgs = run("plot(1:10)")
        data = [m for m in msgs if m["msg_type"] == "display_data"][0]["content"]["data"]
        assert "image/png" in data
        key = data[plot_mime]["key"]
        assert key.startswith("p")
        for fmt, check in (
            ("png", lambda b: png_size(b) == (640, 480)),
            ("svg", lambda b: b"<svg" in b[:400]),
            ("pdf", lambda b: b.startswith(b"%PDF")),
        ):
            out = tmp_path / f"plot.{fmt}"
            res = ok(
                rcall(
                    "plot_render",
                    {
                        "key": key,
                        "format": fmt,
                        "width": 640,
                        "height": 480,
                        "res": 96,
                        "out": str(out),
                    },
                )
            )
            assert res["path"] == str(out)
            assert check(out.read_bytes()), fmt
        assert (
            err(rcall("plot_render", {"key": "p999", "format": "png", "out": str(out)}))
            == "plot_not_found"
        )
        _, msgs = run("cat(length(dev.list()))")
        assert msgs[0]["content"]["text"] == "1"  # only the device of this execution is open
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------------------
# timings (printed, not asserted): python tests/agent/test_r_introspect.py

TIMING_SCRIPT = """
best <- function(expr, k = 5) { e <- substitute(expr); pf <- parent.frame()
  min(replicate(k, system.time(eval(e, pf))[["elapsed"]])) * 1000 }
f <- tempfile()
.rsparkhub$call("env_list", "{}", f)  # first call loads lobstr/rlang
for (i in 1:10000) assign(sprintf("v%05d", i), if (i %% 2) i * 1.5 else c(i, i + 1), envir = globalenv())
t_10k_list <- best(.rsparkhub$call("env_list", "{}", f))
t_10k_diff <- best(.rsparkhub$call("env_diff", "{}", f))
rm(list = ls(pattern = "^v[0-9]"))
t_small <- best(.rsparkhub$call("env_diff", "{}", f))
frame5m <- data.frame(a = seq_len(5e6), b = rnorm(5e6), s = rep_len(c("x", "y", "z"), 5e6))
t_5m <- best(.rsparkhub$call("env_diff", "{}", f)) - t_small
rm(frame5m)
n <- 1e7
big <- data.frame(a = seq_len(n), b = (seq_len(n) * 7919) %% 1000 / 10, c = rep_len(c("x","y","z","w"), n),
  d = rep_len(1:97, n) + 0.5, e = rep_len(c(TRUE, FALSE, NA), n), f = factor(rep_len(c("lo","hi"), n)),
  g = as.Date("2020-01-01") + rep_len(0:999, n), h = rep_len(1:13, n), i = rep_len(c(0.1, 0.2), n), j = seq_len(n) * 2)
rm(n)
one <- function(args) system.time(.rsparkhub$call("view_rows", args, f))[["elapsed"]] * 1000
.rsparkhub$call("view_open", '{"name":"big"}', f)
t_first <- one('{"view_id":"v1","offset":0,"limit":100}')
t_sorted <- one('{"view_id":"v1","offset":0,"limit":100,"sort":[{"column":"b","descending":true}]}')
t_sorted2 <- one('{"view_id":"v1","offset":100,"limit":100,"sort":[{"column":"b","descending":true}]}')
t_filtered <- one('{"view_id":"v1","offset":0,"limit":100,"filters":[{"column":"b","op":"gt","value":50}]}')
t_search <- one('{"view_id":"v1","offset":0,"limit":100,"search":"x"}')
cat(sprintf("env_list, 10,000 small variables: %.0f ms\\n", t_10k_list))
cat(sprintf("env_diff, 10,000 small variables, nothing changed: %.0f ms\\n", t_10k_diff))
cat(sprintf("env_diff, added cost of a 5,000,000-row data frame: %.1f ms\\n", t_5m))
cat(sprintf("10,000,000 x 10 data frame: first page %.0f ms, sorted page %.0f ms, next sorted page %.0f ms, filtered page %.0f ms, search %.0f ms\\n",
            t_first, t_sorted, t_sorted2, t_filtered, t_search))
"""


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "timings.R"
        script.write_text(prelude(Path(tmp)) + TIMING_SCRIPT)
        proc = subprocess.run(["Rscript", "--vanilla", str(script)], text=True, capture_output=True)
        sys.stdout.write(proc.stdout + proc.stderr)


def test_a_package_the_viewer_loads_keeps_its_options() -> None:
    """data.table, loaded by the viewer inside a call (not by the user), keeps the options
    its .onLoad set: removing them with the call's other new options left it unusable
    ("verbose must be TRUE or FALSE") for the viewer and for the user's own code."""
    docs = run_r(
        """
stopifnot(!isNamespaceLoaded("data.table"))
set.seed(1)
big <- data.frame(s = sprintf("name %05d", sample.int(5000L, 200000L, TRUE)), n = runif(200000))
"""
        + call("open", "view_open", {"name": "big"})
        + call("rows", "view_rows", {"view_id": "v1", "search": "0042"})
        + call("again", "view_rows", {"view_id": "v1", "search": "name 0"})
        + """
put("after", list(loaded = isNamespaceLoaded("data.table"),
                  verbose = getOption("datatable.verbose"),
                  user = nrow(unique(data.table::as.data.table(big)[, .(s)]))))
"""
    )
    ok(docs["open"])
    assert ok(docs["rows"])["total"] > 0  # "name 00420".."name 00429", "name 04200"..
    assert ok(docs["again"])["total"] == 200000
    # e^-40 that one of the 5000 names is not drawn
    assert docs["after"] == {"loaded": True, "verbose": False, "user": 5000}
