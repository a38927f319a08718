"""R documents: R Markdown through rmarkdown and Sweave (``.Rnw``) through knitr + LaTeX, in a
clean ``Rscript`` process; ``r_in_session_code`` renders R Markdown in the user's R kernel
instead. Both report a failing chunk or inline expression from the same status file
(``failure_from_r``), which Quarto's R chunks use too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from pathlib import Path

from rsparkhub.agent.documents.katex import katex_dir, write_pandoc_filter
from rsparkhub.agent.documents.process import Job, python3_interpreter, run
from rsparkhub.agent.documents.results import RenderError
from rsparkhub.agent.documents.source import find_chunks
from rsparkhub.agent.modes import r_string
from rsparkhub.agent.workdir import TMP_PREFIX

# Shared by the separate process and the in-session code. ``.rsh_format(input, katex)`` is the
# document's first HTML output format (an output format object, the document's options kept)
# with self_contained = TRUE and, when ``katex`` is a list(dir, filter) and the document's math
# would load a script from the web (rmarkdown's default MathJax, math_method katex or webtex),
# pandoc's --katex plus katex.py's filter instead of it; mathml, gladtex, r-katex and "no math"
# (mathjax or math_method null/false) stay as the document says, and so does a format that
# accepts nothing but MathJax (ioslides_presentation). ``.rsh_failure(e, status)``
# (a calling handler) writes what failed to ``status``: kind, chunk label, knitr's line range
# of the block, the failing inline code, the message.
R_COMMON = r"""
.rsh_web_math <- function(input, fmt) {
    out <- tryCatch(rmarkdown::yaml_front_matter(input)$output, error = function(e) NULL)
    opts <- if (is.list(out) && is.list(out[[fmt]])) out[[fmt]] else list()
    off <- function(key) key %in% names(opts) && (is.null(opts[[key]]) || isFALSE(opts[[key]]))
    if (off("mathjax") || off("math_method")) return(FALSE)
    m <- opts$math_method
    engine <- if (is.list(m)) m$engine else m
    !(is.character(engine) && length(engine) == 1L && engine %in% c("mathml", "gladtex", "r-katex"))
}
.rsh_format <- function(input, katex = NULL) {
    fmts <- tryCatch(rmarkdown::all_output_formats(input), error = function(e) NULL)
    fmt <- "html_document"
    for (f in fmts) {
        to <- tryCatch(rmarkdown::resolve_output_format(input, output_format = f)$pandoc$to,
                       error = function(e) "")
        if (is.character(to) && length(to) == 1L &&
            sub("[+-].*$", "", to) %in% c("html", "html4", "html5", "revealjs", "slidy",
                                         "s5", "slideous", "dzslides")) {
            fmt <- f
            break
        }
    }
    fun <- tryCatch(eval(parse(text = if (grepl("::", fmt, fixed = TRUE)) fmt
                                      else paste0("rmarkdown::", fmt))),
                    error = function(e) NULL)
    formal <- if (is.function(fun)) names(formals(fun)) else character()
    options <- if (any(c("self_contained", "...") %in% formal)) list(self_contained = TRUE)
               else list()
    args <- character()
    if (!is.null(katex) && any(c("mathjax", "...") %in% formal) && .rsh_web_math(input, fmt)) {
        options$mathjax <- FALSE  # no math support from rmarkdown: pandoc's --katex below
        args <- c(paste0("--katex=", katex[["dir"]], "/"), "--lua-filter", katex[["filter"]])
    }
    resolve <- function(options) rmarkdown::resolve_output_format(input, output_format = fmt,
                                                                   output_options = options)
    format <- if (length(args)) tryCatch(resolve(options), error = function(e) NULL)
    if (is.null(format)) {  # a format that insists on MathJax (ioslides): as it asks
        options$mathjax <- NULL
        args <- character()
        format <- resolve(options)
    }
    format$pandoc$args <- c(format$pandoc$args, args)
    format
}
.rsh_failure <- function(e, status) {
    calls <- sys.calls()
    heads <- vapply(calls, function(cl) paste(deparse(cl[[1L]]), collapse = ""), "")
    kind <- if ("inline_exec" %in% heads) "inline"
            else if ("process_group" %in% heads) "chunk" else "error"
    label <- ""
    if (kind == "chunk")
        label <- tryCatch(as.character(knitr::opts_current$get("label"))[1L],
                          error = function(e) "")
    lines <- ""
    k <- match("process_file", heads)
    if (!is.na(k)) lines <- tryCatch({
        r <- knitr:::current_lines(get("i", envir = sys.frame(k)))
        paste(r, collapse = "-")
    }, error = function(e) "")
    inline <- ""
    k <- match("inline_exec", heads)
    if (!is.na(k)) inline <- tryCatch({
        f <- sys.frame(k)
        paste(get("code", envir = f)[[get("i", envir = f)]], collapse = " ")
    }, error = function(e) "")
    call <- conditionCall(e)
    head <- if (is.call(call)) paste(deparse(call[[1L]]), collapse = "") else ""
    msg <- conditionMessage(e)
    if (nzchar(head) && !head %in% c("eval", "withVisible", "doTryCatch", "eval_with_user_handlers"))
        msg <- paste0("Error in ", paste(deparse(call), collapse = " "), ": ", msg)
    else msg <- paste0("Error: ", msg)
    writeLines(enc2utf8(c(kind, if (is.na(label)) "" else label, lines,
                          gsub("[\r\n]+", " ", inline), msg)),
               status, useBytes = TRUE)
}
"""

# The separate process: Rscript driver.R MODE INPUT OUTPUT TMPDIR STATUS [KATEX_DIR KATEX_FILTER]
# (cwd: input's dir).
R_DRIVER = (
    "local({\n"
    + R_COMMON
    + r"""
    args <- commandArgs(trailingOnly = TRUE)
    mode <- args[[1L]]; input <- args[[2L]]; output <- args[[3L]]; tmp <- args[[4L]]
    status <- args[[5L]]
    katex <- if (length(args) >= 7L) list(dir = args[[6L]], filter = args[[7L]])
    need <- function(pkg) if (!requireNamespace(pkg, quietly = TRUE)) {
        writeLines(paste0(pkg, "_not_installed"), status)
        quit(save = "no", status = 3L)
    }
    if (mode != "rnw") need("rmarkdown")
    need("knitr")
    knitr::opts_knit$set(progress = FALSE)
    knitr::opts_hooks$set(eval = function(options) {
        message("running chunk ", options$label)
        options
    })
    envir <- new.env(parent = globalenv())
    withCallingHandlers({
        if (mode == "rnw") {
            tex <- file.path(tmp, sub("\\.[^.]*$", ".tex", basename(input)))
            knitr::opts_knit$set(base.dir = tmp)
            knitr::knit(input, output = tex, envir = envir, quiet = FALSE)
            owd <- setwd(tmp)
            tools::texi2pdf(basename(tex), clean = TRUE, texinputs = dirname(input))
            setwd(owd)
            file.copy(sub("\\.tex$", ".pdf", tex), output, overwrite = TRUE)
        } else {
            if (!rmarkdown::pandoc_available()) {
                writeLines("pandoc_not_installed", status)
                quit(save = "no", status = 3L)
            }
            rmarkdown::render(input, output_format = .rsh_format(input, katex),
                              output_file = output, intermediates_dir = tmp,
                              knit_root_dir = dirname(input), envir = envir, quiet = FALSE)
        }
    }, error = function(e) .rsh_failure(e, status))
    invisible(NULL)
})
"""
)

QUITTING_RE = re.compile(r"Quitting from lines (\d+)-(\d+)(?P<rest>.*)")
BRACKET_LABEL_RE = re.compile(r"\[([^\]]+)\]")


def _missing(what: str) -> RenderError:
    messages = {
        "r_not_installed": "R is not installed in this session's environment, so R documents "
        "cannot be rendered.",
        "knitr_not_installed": "The R package knitr is not installed; install it "
        '(install.packages("knitr")) to render R documents.',
        "rmarkdown_not_installed": "The R package rmarkdown is not installed; install it "
        '(install.packages("rmarkdown")) to render R Markdown documents.',
        "pandoc_not_installed": "pandoc is not installed, and rmarkdown needs it to write HTML; "
        "install pandoc.",
        "latex_not_installed": "Rendering a Sweave (.Rnw) document to PDF needs LaTeX, which is "
        "not installed; install a LaTeX distribution (e.g. texlive, or "
        "tinytex::install_tinytex() in R).",
    }
    return RenderError(what, messages[what])


async def _run_r(job: Job, mode: str, produced: Path, source_text: str) -> Path:
    rscript = shutil.which("Rscript", path=job.env.get("PATH"))
    if rscript is None:
        raise _missing("r_not_installed")
    driver = job.tmp / "driver.R"
    driver.write_text(R_DRIVER, encoding="utf-8")
    status = job.tmp / "status"
    work = job.tmp / "work"
    rtmp = job.tmp / "rtmp"
    work.mkdir()
    rtmp.mkdir()
    env = dict(job.env)
    env["TMPDIR"] = str(rtmp)
    if "RETICULATE_PYTHON" not in env and any(
        c.engine == "python" for c in find_chunks(source_text)
    ):
        env["RETICULATE_PYTHON"] = await asyncio.to_thread(python3_interpreter)
    job.out.hidden = f"Output created: {job.tmp}"  # rmarkdown's, naming the private copy
    argv = [rscript, str(driver), mode, str(job.source), str(produced), str(work), str(status)]
    if mode == "rmarkdown":
        argv += await asyncio.to_thread(katex_arguments, job.tmp)
    rc = await run(argv, cwd=job.source.parent, env=env, out=job.out)
    if rc == 0 and produced.is_file():
        return produced
    raise _r_failure(job.source, source_text, status, job.out.text(), rc)


def _r_failure(
    source: Path, source_text: str, status: Path, log_text: str, rc: int | None
) -> RenderError:
    fields: list[str] = []
    with contextlib.suppress(OSError):
        fields = status.read_text(encoding="utf-8", errors="replace").split("\n")
    kind = fields[0] if fields else ""
    if kind.endswith("_not_installed"):
        err = _missing(kind)
        err.log = log_text
        return err
    return failure_from_r(source, source_text, fields, log_text, rc)


def failure_from_r(
    source: Path, source_text: str, fields: list[str], log_text: str, rc: int | None = None
) -> RenderError:
    """The ``RenderError`` for a failed knitr/rmarkdown run: ``fields`` are the lines of the
    status file ``.rsh_failure`` wrote (empty if none), ``log_text`` its output."""
    kind, label, lines, inline = (fields + ["", "", "", ""])[:4]
    message = "\n".join(fields[4:]).strip()
    start: int | None = None
    span: tuple[int, int] | None = None
    if re.fullmatch(r"\d+-\d+", lines):
        a, b = lines.split("-")
        span = (int(a), int(b))
    quitting = [m for m in (QUITTING_RE.search(ln) for ln in log_text.splitlines()) if m]
    if quitting:
        q = quitting[-1]
        span = span or (int(q[1]), int(q[2]))
        if not label and kind in ("", "chunk"):
            bm = BRACKET_LABEL_RE.search(q["rest"])
            if bm:
                label, kind = bm[1], "chunk"
        if kind == "":
            kind = "chunk"
    src_lines = source_text.splitlines()
    if kind == "inline":
        if span:
            start = span[0]
            needle = f"`r {inline.strip()}`" if inline else None
            for n in range(span[0], min(span[1], len(src_lines)) + 1):
                if needle and needle in src_lines[n - 1]:
                    start = n
                    break
        code = f"`r {inline.strip()}`" if inline else "Inline R code"
        where = f" at line {start}" if start else ""
        return RenderError(
            "chunk_failed",
            f"{code}{where} of {source.name} failed: {message or 'see the log'}",
            line=start,
            log=log_text,
        )
    if kind == "chunk":
        chunks = find_chunks(source_text)
        by_label = {c.label: c for c in chunks if c.label}
        if label in by_label:
            start = by_label[label].line
        elif span:
            # knitr's range covers the chunk's code and closing fence: the header is above it
            above = [c for c in chunks if c.line <= span[0]]
            start = above[-1].line if above else span[0]
        name = f'"{label}"' if label else "A chunk"
        where = f" (line {start})" if start else ""
        return RenderError(
            "chunk_failed",
            f"Chunk {name}{where} of {source.name} failed: {message or 'see the log'}",
            chunk=label or None,
            line=start,
            log=log_text,
        )
    if not message:
        tail = [ln for ln in log_text.splitlines() if ln.strip()][-3:]
        message = " ".join(tail) or f"R exited with status {rc}"
    return RenderError("render_failed", f"Rendering {source.name} failed: {message}", log=log_text)


async def render_rmarkdown(job: Job, text: str) -> Path:
    return await _run_r(job, "rmarkdown", job.tmp / (job.source.stem + ".html"), text)


async def render_rnw(job: Job) -> Path:
    if shutil.which("pdflatex", path=job.env.get("PATH")) is None:
        raise _missing("latex_not_installed")
    text = job.source.read_text(encoding="utf-8", errors="replace")
    return await _run_r(job, "rnw", job.tmp / (job.source.stem + ".pdf"), text)


def katex_arguments(directory: Path) -> list[str]:
    """``[KATEX_DIR, FILTER]`` for ``.rsh_format`` (the filter and its HTML written into
    ``directory``), or ``[]`` when KaTeX is not installed."""
    kdir = katex_dir()
    lua = write_pandoc_filter(directory) if kdir is not None else None
    return [str(kdir), str(lua)] if kdir is not None and lua is not None else []


def r_in_session_code(
    abs_path: str,
    abs_output: str,
    status_file: str | None = None,
    katex: list[str] | None = None,
) -> str:
    """R code rendering ``abs_path`` (R Markdown) to ``abs_output`` in the calling R session:
    the document's code runs in ``globalenv()``, so it sees and changes the session's objects.

    Like the separate process: intermediates in a temporary directory, the result copied next
    to ``abs_output`` under a temporary name and renamed over it (nothing written on failure).
    The R error propagates to the caller (knitr prints ``Quitting from lines …``); with
    ``status_file`` the failure is also written there for ``session_failure``. ``katex`` is
    ``katex_arguments(a directory the R kernel can read)``: math typeset offline, as in the
    separate process. Evaluates to the output path, invisibly.
    """
    status = r_string(status_file) if status_file else "NULL"
    katex_r = (
        f"list(dir = {r_string(katex[0])}, filter = {r_string(katex[1])})" if katex else "NULL"
    )
    return (
        "local({\n"
        + R_COMMON
        + f"""
    input <- {r_string(abs_path)}
    output <- {r_string(abs_output)}
    status <- {status}
    if (!is.null(status)) unlink(status)
    tmp <- tempfile("rsparkhub-render-")
    dir.create(tmp)
    progress <- knitr::opts_knit$get("progress")
    on.exit({{
        knitr::opts_knit$set(progress = progress)
        unlink(tmp, recursive = TRUE)
    }}, add = TRUE)
    knitr::opts_knit$set(progress = FALSE)
    produced <- withCallingHandlers(
        rmarkdown::render(input, output_format = .rsh_format(input, {katex_r}),
                          output_file = file.path(tmp, "output.html"),
                          intermediates_dir = tmp, knit_root_dir = dirname(input),
                          envir = globalenv(), quiet = TRUE),
        error = function(e) if (!is.null(status)) .rsh_failure(e, status))
    dir.create(dirname(output), recursive = TRUE, showWarnings = FALSE)
    part <- tempfile({r_string(TMP_PREFIX)}, tmpdir = dirname(output))
    if (!file.copy(produced, part, overwrite = TRUE) || !file.rename(part, output)) {{
        unlink(part)
        stop("could not write ", output)
    }}
    Sys.chmod(output, "644")
    message("Output created: ", output)
    invisible(output)
}})
"""
    )


def session_failure(abs_path: str, status_file: str, log_text: str = "") -> RenderError | None:
    """The ``RenderError`` for a failed ``r_in_session_code`` run (None if its status file is
    missing, i.e. the render did not fail in R)."""
    try:
        fields = Path(status_file).read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return None
    source = Path(abs_path)
    text = source.read_text(encoding="utf-8", errors="replace") if source.is_file() else ""
    return failure_from_r(source, text, fields, log_text)
