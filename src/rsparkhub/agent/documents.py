"""Rendering a document of the working directory to one self-contained file next to it.

``await render(workdir, "reports/q3.Rmd")`` writes ``reports/q3.html`` and returns a
``RenderResult``; a failure raises ``RenderError`` whose ``code`` says what to do about it
(``chunk_failed`` names the chunk and its line in the source). Which engine renders a file:

* ``.Rmd``/``.md``/``.qmd`` with R chunks (or inline R, or no chunks at all): rmarkdown, in a
  clean ``Rscript`` process like RStudio's Knit: a new environment, the working directory of
  the code is the source file's directory, the document's own HTML output format (its YAML
  options kept) with ``self_contained = TRUE`` forced, ``html_document`` if it declares none.
  Python chunks mixed with R chunks run through knitr's python engine (reticulate), with
  ``RETICULATE_PYTHON`` set to the ``python3`` kernel's interpreter unless the caller set it.
* ``.Rmd``/``.md``/``.qmd`` whose chunks are all ```` ```{python} ````, and ``.ipynb``:
  jupytext reads the document as a notebook, nbclient runs it in a fresh ``python3`` kernel
  (working directory: the file's directory), nbconvert writes one HTML with the images
  embedded. Chunk options jupytext understands apply (``echo=FALSE`` hides the code,
  ``include=FALSE`` the cell, ``results='hide'`` the output, ``eval=FALSE`` skips the cell),
  and so do Quarto's ``#| echo: false``, ``#| include: false``, ``#| output: false``,
  ``#| eval: false`` lines.
* ``.qmd`` when ``quarto`` is on PATH: ``quarto render`` (see ``_render_quarto``).
* ``.Rnw``: ``knitr::knit`` then ``tools::texi2pdf`` → PDF, if ``pdflatex`` is installed.

Only the final output appears in the working directory: everything is rendered in a
temporary directory outside it (rmarkdown's ``intermediates_dir``, knitr's figures, R's and
pandoc's ``TMPDIR``), then copied next to the target under the working directory's temp
prefix (which the agent's scanner skips) and renamed over the target. On failure nothing is
written and an older output stays as it was.

A render's processes are its own: ``Rscript`` runs in a new process group, which is killed
when the render ends (on success too, so a chunk's background child does not outlive it),
times out or is cancelled; the Python kernel is shut down the same way.

``r_in_session_code`` is the other mode: R code the agent runs in the user's R kernel, which
renders with the session's global environment (objects of the session visible to the
document, objects the document creates left in the session).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import html.parser
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rsparkhub.agent.modes import r_string
from rsparkhub.agent.workdir import TMP_PREFIX, PathOutsideWorkdir, Workdir

log = logging.getLogger("rsparkhub.agent.documents")

Engine = Literal["rmarkdown", "jupyter", "quarto", "knitr-latex"]
Format = Literal["html", "pdf"]

MARKDOWN_SUFFIXES = {".rmd", ".md", ".markdown", ".qmd"}
SWEAVE_SUFFIXES = {".rnw"}
NOTEBOOK_SUFFIXES = {".ipynb"}
LOG_LIMIT = 2_000_000  # characters of log kept (the end of it)
KILL_GRACE_S = 0.5  # how long output is drained after the process exited


@dataclass(frozen=True)
class RenderResult:
    output: str  # workdir-relative path of the rendered file
    format: Format
    engine: Engine
    log: str
    duration_s: float


class RenderError(Exception):
    """A render that produced nothing.

    ``code`` is machine-readable: ``not_found``, ``path_outside_workdir``, ``bad_output``,
    ``unsupported_file``, ``r_not_installed``, ``rmarkdown_not_installed``,
    ``pandoc_not_installed``, ``latex_not_installed``, ``jupyter_not_installed``,
    ``kernel_not_installed``, ``chunk_failed``, ``render_failed``, ``not_self_contained``,
    ``timeout``. ``message`` is a sentence for the user. For ``chunk_failed``, ``chunk`` is
    the chunk's label (knitr's ``unnamed-chunk-N`` for unnamed chunks, ``cell N`` in a
    notebook, None for inline R code) and ``line`` the 1-based line of the source where the
    chunk starts (its ```` ```{r} ```` line) or where the failing inline code is.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        chunk: str | None = None,
        line: int | None = None,
        log: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.chunk = chunk
        self.line = line
        self.log = log


# ====================================================================== source parsing

CHUNK_HEADER_RE = re.compile(
    r"^(?P<indent>[ \t>]*)(?P<fence>`{3,})\s*\{(?P<engine>[A-Za-z][\w.]*)(?P<rest>[^}]*)\}\s*$"
)
LABEL_OPTION_RE = re.compile(r"""(?:^|,)\s*label\s*=\s*(["'])(?P<label>.*?)\1""")
HASH_LABEL_RE = re.compile(r"""^\s*#\|\s*label\s*:\s*["']?(?P<label>[^"'\s]+)""")
INLINE_R_RE = re.compile(r"`r[ \t]+[^`]+`")


@dataclass(frozen=True)
class Chunk:
    line: int  # 1-based line of the ```{engine ...} header
    end: int  # 1-based line of the closing fence (last line of the file if unclosed)
    engine: str  # lower case
    label: str | None  # an explicit label (header, label= option or #| label:)


def find_chunks(text: str) -> list[Chunk]:
    """The executable chunks of an R Markdown / Quarto / markdown document, in order.

    Only braced fences count (```` ```{r} ````, ```` ```{python name, echo=FALSE} ````); plain
    ```` ```python ```` fences are code to show, as for knitr and jupytext.
    """
    lines = text.splitlines()
    chunks: list[Chunk] = []
    i = 0
    while i < len(lines):
        m = CHUNK_HEADER_RE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence = m["fence"]
        close = re.compile(rf"^[ \t>]*`{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        label = _header_label(m["rest"])
        if label is None:
            for body_line in lines[i + 1 : j]:
                hm = HASH_LABEL_RE.match(body_line)
                if hm:
                    label = hm["label"]
                    break
                if not body_line.lstrip().startswith("#|"):
                    break
        chunks.append(Chunk(i + 1, min(j, len(lines) - 1) + 1, m["engine"].lower(), label))
        i = j + 1
    return chunks


def _header_label(rest: str) -> str | None:
    rest = rest.strip().lstrip(",").strip()
    first = rest.split(",", 1)[0].strip()
    if first and "=" not in first:
        return first.strip("'\"")
    m = LABEL_OPTION_RE.search(rest)
    return m["label"] if m else None


def has_inline_r(text: str, chunks: list[Chunk]) -> bool:
    """Whether the text outside the chunks has inline R code (```` `r expr` ````)."""
    lines = text.splitlines()
    inside = {n for c in chunks for n in range(c.line, c.end + 1)}
    prose = "\n".join(line for n, line in enumerate(lines, 1) if n not in inside)
    return INLINE_R_RE.search(prose) is not None


def choose_engine(path: Path, text: str | None, search_path: str | None = None) -> Engine:
    """The engine that renders ``path`` (``text``: its content, for markdown documents;
    ``search_path``: the PATH the render's processes get)."""
    suffix = path.suffix.lower()
    if suffix in NOTEBOOK_SUFFIXES:
        return "jupyter"
    if suffix in SWEAVE_SUFFIXES:
        return "knitr-latex"
    if suffix not in MARKDOWN_SUFFIXES:
        raise RenderError(
            "unsupported_file",
            f"Cannot render {path.name}: rendering works for R Markdown (.Rmd), Quarto (.qmd), "
            "markdown (.md), Jupyter notebooks (.ipynb) and Sweave (.Rnw) files.",
        )
    if suffix == ".qmd" and shutil.which("quarto", path=search_path):
        return "quarto"
    text = text or ""
    chunks = find_chunks(text)
    engines = {c.engine for c in chunks}
    if engines == {"python"} and not has_inline_r(text, chunks):
        return "jupyter"
    return "rmarkdown"


# ====================================================================== the render


@dataclass
class _Job:
    source: Path  # absolute
    tmp: Path  # private temporary directory, outside the working directory
    env: dict[str, str]  # of the render's processes
    out: _Log


class _Log:
    """The render's log: kept (the last ``LOG_LIMIT`` characters) and passed on line by line."""

    def __init__(self, on_log: Callable[[str], None] | None) -> None:
        self.on_log = on_log
        self.lines: deque[str] = deque()
        self.size = 0
        self.hidden: str | None = None  # lines starting with this are dropped
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def line(self, text: str) -> None:
        if self.hidden and text.startswith(self.hidden):
            return
        self.lines.append(text)
        self.size += len(text) + 1
        while self.size > LOG_LIMIT and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1
        if self.on_log is not None:
            try:
                self.on_log(text)
            except Exception:  # a broken consumer must not break the render
                log.exception("on_log callback failed")

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._partial + self._decoder.decode(data, final)
        parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._partial = parts.pop()
        for part in parts:
            self.line(part)
        if final and self._partial:
            self.line(self._partial)
            self._partial = ""

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


async def render(
    workdir: Path,
    path: str,
    *,
    output: str | None = None,
    on_log: Callable[[str], None] | None = None,
    timeout_s: float = 600,
    env: dict[str, str] | None = None,
) -> RenderResult:
    """Render the workdir-relative ``path`` to ``output`` (default: next to it, ``.html``, or
    ``.pdf`` for ``.Rnw``) and return what was written; raises ``RenderError``.

    ``on_log`` receives the log line by line while the render runs (called in the event
    loop's thread). ``env`` is the environment of the render's processes (default: this
    process's). ``timeout_s`` bounds the whole render; its processes are killed then.
    """
    started = time.monotonic()
    root = Path(workdir).resolve()
    wd = Workdir(root)
    try:
        source = wd.resolve(path)
    except PathOutsideWorkdir as e:
        raise RenderError("path_outside_workdir", str(e)) from None
    if not source.is_file():
        raise RenderError("not_found", f"There is no file {path!r} in the working directory.")
    text: str | None = None
    if source.suffix.lower() in MARKDOWN_SUFFIXES:
        text = source.read_text(encoding="utf-8", errors="replace")
    proc_env = dict(os.environ if env is None else env)
    engine = choose_engine(source, text, proc_env.get("PATH"))
    fmt: Format = "pdf" if engine == "knitr-latex" else "html"
    target_rel = output if output is not None else Path(path).with_suffix("." + fmt).as_posix()
    try:
        target = wd.resolve(target_rel)
    except PathOutsideWorkdir:
        raise RenderError(
            "path_outside_workdir",
            f"The output {target_rel!r} must be a path inside the working directory.",
        ) from None
    if target.suffix.lower() != "." + fmt:
        raise RenderError(
            "bad_output", f"The output of {source.name} is {fmt.upper()}: name it *.{fmt}."
        )
    if target == source:
        raise RenderError("bad_output", "The output cannot replace the document itself.")
    if target.is_dir():
        raise RenderError("bad_output", f"The output {target_rel!r} is a directory.")
    target_rel = target.relative_to(root).as_posix()

    out = _Log(on_log)
    tmp = Path(tempfile.mkdtemp(prefix="rsparkhub-render-"))
    job = _Job(source, tmp, proc_env, out)
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            if engine == "rmarkdown":
                produced = await _render_rmarkdown(job, text or "")
            elif engine == "knitr-latex":
                produced = await _render_rnw(job)
            elif engine == "quarto":
                produced = await _render_quarto(job, text or "")
            else:
                produced = await _render_jupyter(job, text)
            if fmt == "html":
                refs = await asyncio.to_thread(_local_references_of, produced)
                if refs:
                    raise RenderError(
                        "not_self_contained",
                        f"The rendered HTML of {source.name} refers to local files "
                        f"({', '.join(refs[:3])}), which cannot be embedded; use images the "
                        "renderer can embed (e.g. ![caption](path) in markdown).",
                        log=out.text(),
                    )
            try:
                await asyncio.to_thread(_install, produced, target)
            except OSError as e:
                raise RenderError(
                    "bad_output", f"Cannot write {target_rel}: {e.strerror or e}.", log=out.text()
                ) from None
    except Exception:
        if not deadline.expired():
            raise
        # (a library may turn the cancellation into an error of its own)
        raise RenderError(
            "timeout",
            f"Rendering {source.name} took longer than {timeout_s:g} s and was stopped.",
            log=out.text(),
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.line(f"Output created: {target_rel}")
    return RenderResult(target_rel, fmt, engine, out.text(), time.monotonic() - started)


def _install(produced: Path, target: Path) -> None:
    """Copy ``produced`` over ``target`` atomically (a temp file next to it, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as dst, open(produced, "rb") as src:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ====================================================================== processes


async def _run(argv: list[str], *, cwd: Path, env: dict[str, str], out: _Log) -> int:
    """Run ``argv`` in a new process group, its stdout and stderr going to ``out`` as they
    come; the group is killed when this returns or is cancelled.

    The output pipe is not asyncio's: asyncio's ``Process.wait`` waits until its pipes close,
    which a background grandchild holding them open would delay until it exits.
    """
    rfd, wfd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=wfd,
            stderr=wfd,
            start_new_session=True,
        )
    except BaseException:
        os.close(rfd)
        raise
    finally:
        os.close(wfd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(rfd, "rb", 0)
    )

    async def pump() -> None:
        while data := await reader.read(65536):
            out.feed(data)
        out.feed(b"", final=True)

    pumping = asyncio.create_task(pump())
    try:
        rc = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pumping), KILL_GRACE_S)
        return rc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(pumping), KILL_GRACE_S)
        pumping.cancel()
        transport.close()


def _python3_interpreter() -> str:
    """The interpreter of the ``python3`` kernelspec (the session's Python), else ours."""
    with contextlib.suppress(Exception):
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec("python3").argv
        exe = shutil.which(argv[0]) if argv else None
        if exe:
            return exe
    return sys.executable


# ====================================================================== rmarkdown / knitr

# Shared by the separate process and the in-session code. ``.rsh_format(input)`` is the
# document's first HTML output format with self_contained = TRUE; ``.rsh_failure(e, status)``
# (a calling handler) writes what failed to ``status``: kind, chunk label, knitr's line range
# of the block, the failing inline code, the message.
R_COMMON = r"""
.rsh_format <- function(input) {
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
    accepts <- is.function(fun) && any(c("self_contained", "...") %in% names(formals(fun)))
    list(format = fmt, options = if (accepts) list(self_contained = TRUE) else list())
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

# The separate process: Rscript driver.R MODE INPUT OUTPUT TMPDIR STATUS (cwd: input's dir).
R_DRIVER = (
    "local({\n"
    + R_COMMON
    + r"""
    args <- commandArgs(trailingOnly = TRUE)
    mode <- args[[1L]]; input <- args[[2L]]; output <- args[[3L]]; tmp <- args[[4L]]
    status <- args[[5L]]
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
            f <- .rsh_format(input)
            rmarkdown::render(input, output_format = f$format, output_options = f$options,
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


async def _run_r(job: _Job, mode: str, produced: Path, source_text: str) -> Path:
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
        env["RETICULATE_PYTHON"] = await asyncio.to_thread(_python3_interpreter)
    job.out.hidden = f"Output created: {job.tmp}"  # rmarkdown's, naming the private copy
    argv = [rscript, str(driver), mode, str(job.source), str(produced), str(work), str(status)]
    rc = await _run(argv, cwd=job.source.parent, env=env, out=job.out)
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


async def _render_rmarkdown(job: _Job, text: str) -> Path:
    return await _run_r(job, "rmarkdown", job.tmp / (job.source.stem + ".html"), text)


async def _render_rnw(job: _Job) -> Path:
    if shutil.which("pdflatex", path=job.env.get("PATH")) is None:
        raise _missing("latex_not_installed")
    text = job.source.read_text(encoding="utf-8", errors="replace")
    return await _run_r(job, "rnw", job.tmp / (job.source.stem + ".pdf"), text)


def r_in_session_code(abs_path: str, abs_output: str, status_file: str | None = None) -> str:
    """R code rendering ``abs_path`` (R Markdown) to ``abs_output`` in the calling R session:
    the document's code runs in ``globalenv()``, so it sees and changes the session's objects.

    Like the separate process: intermediates in a temporary directory, the result copied next
    to ``abs_output`` under a temporary name and renamed over it (nothing written on failure).
    The R error propagates to the caller (knitr prints ``Quitting from lines …``); with
    ``status_file`` the failure is also written there for ``session_failure``. Evaluates to
    the output path, invisibly.
    """
    status = r_string(status_file) if status_file else "NULL"
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
    f <- .rsh_format(input)
    produced <- withCallingHandlers(
        rmarkdown::render(input, output_format = f$format, output_options = f$options,
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


# ====================================================================== quarto


async def _render_quarto(job: _Job, text: str) -> Path:
    """``quarto render`` (only when ``quarto`` is on PATH; NOT covered by the tests, which
    run without Quarto): HTML with ``embed-resources`` (Quarto 1.3+), written into the
    private directory. Quarto keeps its supporting files next to the source while it runs
    (``NAME_files``, removed unless it existed before; a ``.quarto`` directory may stay, which
    the agent's scanner skips). A failing R chunk is reported from knitr's ``Quitting from
    lines`` message (label and line); any other failure is ``render_failed`` with the log.
    """
    quarto = shutil.which("quarto", path=job.env.get("PATH"))
    assert quarto is not None
    name = job.source.stem + ".html"
    files_dir = job.source.parent / (job.source.stem + "_files")
    had_files = files_dir.exists()
    argv = [quarto, "render", job.source.name, "--to", "html", "-M", "embed-resources:true",
            "--output-dir", str(job.tmp / "out"), "--output", name]  # fmt: skip
    try:
        rc = await _run(argv, cwd=job.source.parent, env=job.env, out=job.out)
    finally:
        if not had_files:
            shutil.rmtree(files_dir, ignore_errors=True)
    produced = job.tmp / "out" / name
    if rc == 0 and produced.is_file():
        return produced
    raise failure_from_r(job.source, text, [], job.out.text(), rc)


# ====================================================================== jupyter


def _title_cells(nb: Any) -> tuple[str | None, list[Any]]:
    """Drop the YAML header (a raw first cell) of a jupytext-read document and return its
    title and the markdown cells to show it (title, author, date), as rmarkdown would."""
    import nbformat

    if not nb.cells or nb.cells[0].cell_type != "raw" or not nb.cells[0].source.startswith("---"):
        return None, []
    header = nb.cells.pop(0).source
    try:
        import yaml

        meta = yaml.safe_load(header.strip().strip("-").strip()) or {}
    except Exception:
        return None, []
    if not isinstance(meta, dict):
        return None, []
    title = meta.get("title")
    parts = [f"# {title}"] if isinstance(title, str) and title else []
    for key in ("subtitle", "author", "date"):
        value = meta.get(key)
        if isinstance(value, str | int | float) and str(value):
            parts.append(f"*{value}*")
    cells = [nbformat.v4.new_markdown_cell("\n\n".join(parts))] if parts else []
    return (title if isinstance(title, str) else None), cells


async def _render_jupyter(job: _Job, text: str | None) -> Path:
    try:
        import jupytext
        import nbformat
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError
        from nbconvert import HTMLExporter
        from traitlets.config import Config
    except ImportError as e:
        raise RenderError(
            "jupyter_not_installed",
            f"Rendering Python documents needs jupytext, nbclient and nbconvert ({e}).",
        ) from None
    try:
        await asyncio.to_thread(KernelSpecManager().get_kernel_spec, "python3")
    except NoSuchKernel:
        raise RenderError(
            "kernel_not_installed",
            "The python3 Jupyter kernel is not installed (pip install ipykernel).",
        ) from None

    notebook = text is None
    if notebook:
        nb = await asyncio.to_thread(nbformat.read, job.source, as_version=4)
        title, head = None, list[Any]()
        chunks: list[Chunk] = []
    else:
        nb = jupytext.reads(text or "", fmt="Rmd")
        title, head = _title_cells(nb)
        chunks = [c for c in find_chunks(text or "") if c.engine == "python"]
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not notebook:
        for index in code_cells:
            _apply_hash_options(nb.cells[index])
    if not notebook and len(code_cells) != len(chunks):
        chunks = []  # jupytext split the document differently: no line numbers

    labels: dict[int, tuple[str, int | None]] = {}  # cell index -> (label, source line)
    unnamed = 0
    for k, index in enumerate(code_cells):
        chunk = chunks[k] if chunks else None
        label = nb.cells[index].metadata.get("name") or (chunk.label if chunk else None)
        if notebook:
            label = f"cell {index + 1}"
        elif not label:
            unnamed += 1
            label = f"unnamed-chunk-{unnamed}"
        labels[index] = (str(label), chunk.line if chunk else None)

    env = dict(job.env)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.pop("PYDEVD_USE_FRAME_EVAL", None)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=None,
        allow_errors=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(job.source.parent)}},
    )
    # IPC sockets in the private directory, as the agent's own kernels (no TCP port)
    ipc = str(job.tmp / "k")
    if len(ipc) < 96:
        client.km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=ipc)
    failure: RenderError | None = None
    try:
        async with client.async_setup_kernel(env=env):
            for index in code_cells:
                cell = nb.cells[index]
                if cell.metadata.get("eval") is False:
                    continue
                label, line = labels[index]
                job.out.line(f"running chunk {label}" + (f" (line {line})" if line else ""))
                try:
                    await client.async_execute_cell(cell, index)
                except (asyncio.CancelledError, DeadKernelError):
                    # (nbclient turns our cancellation into DeadKernelError)
                    _cancel_kernel_polls(client)
                    raise
                except CellExecutionError as e:
                    for ln in _strip_ansi(str(e)).splitlines():
                        job.out.line(ln)
                    what = f"Cell {index + 1}" if notebook else f'Chunk "{label}"'
                    where = f" (line {line})" if line else ""
                    failure = RenderError(
                        "chunk_failed",
                        f"{what}{where} of {job.source.name} failed: {e.ename}: {e.evalue}",
                        chunk=label,
                        line=line,
                    )
                    break
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "stream":
                        for ln in str(output.get("text", "")).splitlines():
                            job.out.line(ln)
    except DeadKernelError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from None  # nbclient's reaction to our cancellation
        failure = RenderError(
            "render_failed",
            f"The Python kernel died while rendering {job.source.name} (out of memory?).",
        )
    except RuntimeError as e:  # the kernel did not start
        failure = RenderError("render_failed", f"Could not run {job.source.name}: {e}")
    if failure is not None:
        failure.log = job.out.text()
        raise failure

    nb.cells[0:0] = head
    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {"remove_cell"}
    config.TagRemovePreprocessor.remove_input_tags = {"remove_input"}
    config.TagRemovePreprocessor.remove_all_outputs_tags = {"remove_output"}
    config.HTMLExporter.embed_images = True
    config.HTMLExporter.exclude_input_prompt = True
    config.HTMLExporter.exclude_output_prompt = True
    resources = {"metadata": {"path": str(job.source.parent), "name": title or job.source.stem}}

    def export() -> Path:
        body, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
        produced = job.tmp / (job.source.stem + ".html")
        produced.write_text(body, encoding="utf-8")
        return produced

    return await asyncio.to_thread(export)


HASH_OPTION_RE = re.compile(r"^#\|\s*(?P<key>[\w.-]+)\s*:\s*(?P<value>.*?)\s*$")
HASH_TAGS = {"echo": "remove_input", "include": "remove_cell", "output": "remove_output"}


def _apply_hash_options(cell: Any) -> None:
    """Quarto-style ``#| key: value`` lines at the top of a chunk (jupytext keeps them as
    code): take them out of the code shown and apply ``echo``/``include``/``output``/``eval``
    ``false`` as the ``{python echo=FALSE}`` header options are applied."""
    lines = cell.source.split("\n")
    n = 0
    while n < len(lines) and (m := HASH_OPTION_RE.match(lines[n])):
        value = m["value"].strip("'\"").lower()
        if value == "false" and m["key"] in HASH_TAGS:
            tags = cell.metadata.setdefault("tags", [])
            if HASH_TAGS[m["key"]] not in tags:
                tags.append(HASH_TAGS[m["key"]])
        elif value == "false" and m["key"] == "eval":
            cell.metadata["eval"] = False
        elif m["key"] == "label" and not cell.metadata.get("name"):
            cell.metadata["name"] = m["value"].strip("'\"")
        n += 1
    cell.source = "\n".join(lines[n:])


def _cancel_kernel_polls(client: Any) -> None:
    """Cancel the kernel-alive poll ``async_execute_cell`` leaves running when it is cancelled
    (nbclient 0.11 cancels it only when the cell completes or the kernel died by itself; left
    alone it fails with an unretrieved AssertionError once the kernel is cleaned up)."""
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (
            getattr(coro, "__qualname__", "").endswith("_async_poll_kernel_alive")
            and frame is not None
            and frame.f_locals.get("self") is client
        ):
            task.cancel()


ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


# ====================================================================== self-contained check


class _RefFinder(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "src" or (tag == "link" and name == "href"):
                if _is_local(value):
                    self.refs.append(value)

    handle_startendtag = handle_starttag


SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _is_local(url: str) -> bool:
    url = url.strip()
    if not url or url.startswith(("#", "//")):
        return False
    if SCHEME_RE.match(url):
        return url.lower().startswith("file:")
    return True


def _local_references_of(path: Path) -> list[str]:
    return local_references(path.read_text(encoding="utf-8", errors="replace"))


def local_references(html_text: str) -> list[str]:
    """The local files an HTML document loads (``src=`` of any element, ``<link href>``):
    data:, http(s):, protocol-relative and fragment URLs are fine, anything else is a file
    that would be missing once the HTML is downloaded. Script and style bodies are not
    searched (they are text to the parser)."""
    finder = _RefFinder()
    finder.feed(html_text)
    finder.close()
    return list(dict.fromkeys(finder.refs))
