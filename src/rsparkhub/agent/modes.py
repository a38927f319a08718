"""Turning an ``execute`` request (console / run / source) into kernel code, per language.

``plan(language, mode, code, path)`` returns a list of ``Step``s: code to execute in the
language's kernel, optionally preceded by an echo text the agent emits itself as stdout
(used for bash ``source`` mode, where the agent splits the file into commands; a step
with empty code is only an echo).

* console: the code as typed.
* run: output as ``Rscript FILE`` / ``python FILE`` / ``bash FILE`` prints it, evaluated
  in the session (R: ``source(FILE, echo = FALSE, print.eval = TRUE)`` in the global
  environment; Python: the file executed in the user namespace with ``__file__`` set;
  bash: ``source FILE``).
* source: a transcript as an interactive R prints ``source(FILE, echo = TRUE)`` (with
  ``keep.source = TRUE``): before each top-level expression the file's own lines since
  the previous one, byte for byte with comments, the first ones with the prompt and the
  rest with the continuation prompt, then its output. R: ``r/source.R`` (which also sends
  each plot right after the expression that drew or finished it); Python: ``>>> ``/``... ``
  and expression values shown like the interactive interpreter; bash: ``$ ``/``> ``
  before each complete command (comments before it echoed, not run).

``KERNEL_INIT`` holds the code run silently when a kernel starts (R options matching
Rscript's defaults and the hooks that stream R's stdout while an expression runs, see
``R_STREAM_INIT``; the Python helper module).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rsparkhub.agent.rload import r_load
from rsparkhub.protocol import ExecMode, Language


@dataclass(frozen=True)
class Step:
    code: str
    echo: str | None = None  # text the agent emits on stdout before running ``code``


class ModeError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def r_string(s: str) -> str:
    """An R string literal."""
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{out}"'


# Rscript's defaults for options that change printed output; IRkernel turns colour on.
R_OPTIONS_INIT = """
options(width = 80L, digits = 7L, prompt = "> ", continue = "+ ", scipen = 0,
        OutDec = ".", keep.source = FALSE, warn = 0, crayon.enabled = FALSE,
        cli.num_colors = 1L, jupyter.plot_mimetypes = c("image/png"))
"""

# Streaming stdout while one top-level R expression runs.
#
# IRkernel evaluates code with evaluate 0.20, which sinks stdout into a textConnection
# (``watchout``) and only hands the captured text to IRkernel's ``stream`` (an iopub
# message) in ``handle_output``: after each top-level expression, before a message/warning/
# error and when a plot starts. A loop or a whole ``source()`` is one expression, so its
# output used to arrive at the end. evaluate itself offers ``evaluate::flush_console()``
# (``.env$flush_console`` is set to ``function() handle_output(FALSE)`` while an expression
# runs); R has no timer that could call it from R code, so the functions through which R
# code writes to stdout call it when they return: ``cat``, ``print`` (the generic, so every
# print method, and source()'s auto-printing), ``writeLines``; ``Sys.sleep`` calls it before
# sleeping; ``flush.console()`` and ``flush(stdout())`` do what they promise.
#
# * The text stays byte-identical: it is the same text in the same order, only cut into more
#   pieces (evaluate's ``get_new`` sends a pending partial line without its newline).
# * Order with stderr and plots is evaluate's own: it flushes stdout before every message,
#   warning, error and plot. IRkernel still sends a plot once it is complete (when the next
#   plot starts or the execution ends), so text printed while a plot is open can precede it.
# * Output that reaches stdout without these functions (C code's Rprintf, e.g. optimiser
#   traces) goes out with the next flush or at the end of the top-level expression.
# * Cost: a send costs about 1 ms in IRkernel, so flushes come from a token bucket (a burst of
#   10, then 20 per second); a wait of 50 ms or more in ``Sys.sleep`` or an explicit flush
#   sends at once. Text held back by the bucket goes out with the next flush or at the end of
#   the expression.
# * Only evaluate's own sink (sink depth 1) is flushed: never inside ``capture.output()``, a
#   user's ``sink()`` or a nested ``evaluate()`` (knitr), never re-entrantly (while evaluate's
#   ``handle_output`` or IRkernel's ``send_response`` is on the stack, or from the ``cat``
#   evaluate itself calls); interrupts wait until a send is complete; errors and warnings of
#   a flush are swallowed. ``options(rsparkhub.stream_output = FALSE)`` turns it off.
# * If evaluate's internals are not as expected the hooks do nothing (output arrives per
#   top-level expression, as before).
# * Linear cost: R's text connection copies its whole character vector for every line
#   written (connections.c grows it by one element per line), and evaluate keeps one
#   connection for the whole top-level expression, so 100,000 lines cost ~64 s in IRkernel
#   (quadratic). Once a flush has sent everything, the hooks give evaluate a fresh, empty
#   connection (``renew``); and a flush is due, bucket or not, when ``renew_lines`` lines wait
#   — so the vector never holds more than about that many lines.
R_STREAM_INIT = """
local({
    ev <- tryCatch(get(".env", envir = asNamespace("evaluate")), error = function(e) NULL)
    if (!is.environment(ev) || !is.function(ev$flush_console) ||
        !is.null(getOption("rsparkhub.stream_output"))) return(invisible(NULL))
    options(rsparkhub.stream_output = TRUE)
    busy <- FALSE
    burst <- 10
    rate <- 20
    tokens <- burst
    stamp <- 0
    renew_lines <- 1000L
    calls <- 0L
    quiet <- function(expr) withCallingHandlers(expr,
        warning = function(w) invokeRestart("muffleWarning"),
        message = function(m) invokeRestart("muffleMessage"))
    due <- function(force) {
        f <- ev$flush_console
        w <- environment(f)$w
        if (!is.list(w) || !is.function(w$get_new)) return(NULL)
        we <- environment(w$get_new)
        waiting <- length(we$output) - length(we$prev)
        if (waiting == 0L && !isIncomplete(we$con)) return(NULL)
        now <- proc.time()[[3L]]
        tokens <<- min(burst, tokens + (now - stamp) * rate)
        stamp <<- now
        if (tokens < 1 && !isTRUE(force) && waiting < renew_lines) return(NULL)
        if (sink.number() != 1L || !isTRUE(getOption("rsparkhub.stream_output"))) return(NULL)
        for (cl in sys.calls()) {
            h <- cl[[1L]]
            if (is.symbol(h) && as.character(h) %in% c("handle_output", "send_response"))
                return(NULL)
        }
        tokens <<- max(0, tokens - 1)
        f
    }
    # evaluate's connection, everything in it sent: swap in an empty one (see above)
    renew <- function(f) {
        we <- environment(environment(f)$w$get_new)
        if (sink.number() != 1L || isIncomplete(we$con) ||
            length(we$output) != length(we$prev)) return(invisible(NULL))
        # evaluate opens it "wr", which appends to an existing ``output``: empty that first
        # (its binding is locked while the old connection is open)
        sink()
        close(we$con)
        we$output <- character()
        we$prev <- character()
        we$con <- eval(quote(textConnection("output", "wr", local = TRUE)), we)
        sink(we$con, split = isTRUE(we$debug))
        invisible(NULL)
    }
    # the cheap test every cat/print makes: could a flush be due (a token, or a backlog)?
    worth <- function() {
        if (tokens + (proc.time()[[3L]] - stamp) * rate >= 1) return(TRUE)
        calls <<- calls + 1L  # the backlog is looked at every 64th call only
        if (calls < 64L) return(FALSE)
        calls <<- 0L
        w <- environment(ev$flush_console)$w
        is.list(w) && is.function(w$get_new) &&
            length(environment(w$get_new)$output) - length(environment(w$get_new)$prev) >=
                renew_lines
    }
    flush <- function(force = FALSE) {
        if (busy || !(isTRUE(force) || worth())) return(invisible(NULL))
        busy <<- TRUE
        on.exit(busy <<- FALSE)
        suspendInterrupts(tryCatch({
            f <- due(force)
            if (!is.null(f)) {
                quiet(f())
                renew(f)
            }
        }, error = function(e) NULL))
        invisible(NULL)
    }
    patch <- function(name, ns, make) {
        envs <- list(ns)
        pkg <- paste0("package:", getNamespaceName(ns))
        if (pkg %in% search()) envs <- c(envs, as.environment(pkg))
        fun <- make(get(name, envir = ns))
        for (env in envs) {
            locked <- bindingIsLocked(name, env)
            if (locked) unlockBinding(name, env)
            assign(name, fun, envir = env)
            if (locked) lockBinding(name, env)
        }
    }
    on_exit <- function(force) function(fun) {
        body(fun) <- bquote({
            on.exit(.(flush)(.(force)))
            .(body(fun))
        })
        fun
    }
    base <- .BaseNamespaceEnv
    for (name in c("cat", "print", "writeLines")) patch(name, base, on_exit(FALSE))
    patch("flush.connection", base, on_exit(quote(identical(as.integer(con), 1L))))
    patch("flush.console", asNamespace("utils"), on_exit(TRUE))
    patch("Sys.sleep", base, function(fun) {
        body(fun) <- bquote({
            time
            .(flush)(is.numeric(time) && length(time) == 1L && !is.na(time) && time >= 0.05)
            .(body(fun))
        })
        fun
    })
    invisible(NULL)
})
"""

# Source mode's R side (r/source.R: the echo of ``source(echo = TRUE)`` from the file's own
# lines, plots sent where they were drawn), attached where user code does not see it.
R_SOURCE_MODE = Path(__file__).parent / "r" / "source.R"
R_SOURCE_INIT = (
    'local({ e <- attach(NULL, name = "tools:rsparkhub.source"); '
    f"{r_load(R_SOURCE_MODE, 'e')} }})\n"
)

# User expressions in IRkernel's execute replies (r/reply.R), so that an execution's
# environment diff rides in its own request as for Python (introspect.diff_expressions).
R_REPLY = Path(__file__).parent / "r" / "reply.R"
R_REPLY_INIT = f"{r_load(R_REPLY, 'new.env()')}\n"

R_INIT = R_OPTIONS_INIT + R_STREAM_INIT + R_SOURCE_INIT + R_REPLY_INIT + "invisible(NULL)\n"

PY_HELPER_SRC = r'''
import ast as _ast
import os as _os
import sys as _sys

_MISSING = object()


def _user_ns():
    return get_ipython().user_ns  # noqa: F821  (provided by IPython)


class _ScriptContext:
    def __init__(self, path, ns):
        self.path, self.ns = path, ns

    def __enter__(self):
        self.old_file = self.ns.get("__file__", _MISSING)
        self.old_argv = _sys.argv
        self.ns["__file__"] = self.path
        _sys.argv = [self.path]
        self.dir = _os.path.dirname(self.path)
        _sys.path.insert(0, self.dir)
        return self

    def __exit__(self, *exc):
        if self.old_file is _MISSING:
            self.ns.pop("__file__", None)
        else:
            self.ns["__file__"] = self.old_file
        _sys.argv = self.old_argv
        try:
            _sys.path.remove(self.dir)
        except ValueError:
            pass
        return False


def _exit_ok(exc):
    return exc.code is None or exc.code == 0


def run(path):
    """Like ``python FILE``, but in the kernel's user namespace."""
    with open(path, "rb") as f:
        source = f.read()
    ns = _user_ns()
    code = compile(source, path, "exec", dont_inherit=True)
    with _ScriptContext(path, ns):
        try:
            exec(code, ns)
        except SystemExit as exc:
            if not _exit_ok(exc):
                raise


_COMPOUND = (
    _ast.If, _ast.For, _ast.AsyncFor, _ast.While, _ast.With, _ast.AsyncWith, _ast.Try,
    _ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef,
) + ((_ast.Match,) if hasattr(_ast, "Match") else ()) + (
    (_ast.TryStar,) if hasattr(_ast, "TryStar") else ()
)


def _echo(seg, leading, prompt=">>> ", cont="... "):
    """R's source() echo rule: blank lines at the top dropped, the first ``leading`` lines
    (comments before the statement and its first line) with the prompt, the rest with the
    continuation prompt."""
    while seg and not seg[0].strip():
        seg = seg[1:]
        leading -= 1
    return [(prompt if k < leading else cont) + line for k, line in enumerate(seg)]


def source(path):
    """A transcript: the file's own lines echoed with >>> / ... (comments included) before
    each top-level statement runs."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tree = _ast.parse(text, path)
    lines = text.splitlines()
    ns = _user_ns()
    shown = 0  # the last line echoed
    with _ScriptContext(path, ns):
        for node in tree.body:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            if shown < node.end_lineno:
                echo = _echo(lines[shown : node.end_lineno], start - shown)
                shown = node.end_lineno
                if isinstance(node, _COMPOUND):
                    echo.append("... ")
                print("\n".join(echo), flush=True)
            try:
                if isinstance(node, _ast.Expr):
                    value = eval(compile(_ast.Expression(node.value), path, "eval"), ns)
                    if value is not None:
                        ns["_"] = value
                        print(repr(value), flush=True)
                else:
                    mod = _ast.Module(body=[node], type_ignores=[])
                    exec(compile(mod, path, "exec"), ns)
            except SystemExit as exc:
                if _exit_ok(exc):
                    return
                raise
            _sys.stdout.flush()
        tail = _echo(lines[shown:], len(lines) - shown)
        if tail:
            print("\n".join(tail), flush=True)
'''

PY_INIT = (
    "import sys as _rsh_sys, types as _rsh_types\n"
    "_rsh_m = _rsh_types.ModuleType('_rsparkhub')\n"
    f"exec({PY_HELPER_SRC!r}, _rsh_m.__dict__)\n"
    "_rsh_sys.modules['_rsparkhub'] = _rsh_m\n"
    "del _rsh_m, _rsh_sys, _rsh_types\n"
)

KERNEL_INIT: dict[str, str] = {"r": R_INIT, "python": PY_INIT, "bash": ""}


def plan(language: Language, mode: ExecMode, code: str | None, path: str | None) -> list[Step]:
    """The kernel steps for one execute request. ``path`` is absolute (in the workdir)."""
    if mode == "console":
        if code is None:
            if path is None:
                raise ModeError("invalid_request", "console mode needs code.")
            raise ModeError("invalid_request", "console mode runs code, not a file.")
        return [Step(code)]
    if path is None:
        raise ModeError("invalid_request", f"{mode} mode needs a path.")
    if language == "r":
        if mode == "run":
            return [Step(f"source({r_string(path)}, echo = FALSE, print.eval = TRUE)")]
        return [Step(f'get("source_echo", "tools:rsparkhub.source")({r_string(path)})')]
    if language == "python":
        fn = "run" if mode == "run" else "source"
        return [Step(f"__import__('_rsparkhub').{fn}({path!r})")]
    if language == "bash":
        if mode == "run":
            return [Step(f"source {shlex.quote(path)}")]
        with open(path, encoding="utf-8", errors="replace") as f:
            return bash_steps(f.read())
    raise ModeError("language_unavailable", f"Unknown language {language!r}.")


def bash_echo(cmd: str, leading: list[str] | None = None) -> str:
    """``$ `` before the command's first line and each line before it (comments), ``> ``
    before its continuation lines."""
    lines = cmd.split("\n")
    before = ["$ " + line for line in leading or []]
    return "\n".join([*before, "$ " + lines[0]] + ["> " + line for line in lines[1:]]) + "\n"


def bash_steps(text: str) -> list[Step]:
    """Source mode for bash: one step per complete command, echoed with the comment lines
    before it (blank lines at the top of that block dropped, as R's source() does); lines
    after the last command are echoed at the end."""
    steps: list[Step] = []
    commands, trailing = _split_bash(text)
    for leading, cmd in commands:
        steps.append(Step(cmd, echo=bash_echo(cmd, _drop_blank_top(leading))))
    tail = _drop_blank_top(trailing)
    if tail:
        steps.append(Step("", echo="".join("$ " + line + "\n" for line in tail)))
    return steps


def _drop_blank_top(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    return lines


def _bash_complete(text: str) -> bool:
    if text.rstrip("\n").endswith("\\"):
        return False
    try:
        proc = subprocess.run(
            ["bash", "-n"], input=text, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    # an unterminated here-document is only a warning (exit 0) but still incomplete
    return proc.returncode == 0 and not proc.stderr.strip()


def _needs_check(text: str) -> bool:
    """Cheap pre-filter: a single line without shell grouping syntax is complete."""
    if "\n" in text.rstrip("\n"):
        return True
    specials = ("'", '"', "\\", "<<", "(", "{", "`", "$(", "if", "for", "while", "case", "until")
    return any(s in text for s in specials) or text.rstrip().endswith(("|", "&&", "||"))


def split_bash(text: str) -> list[str]:
    """Split a script into complete top-level commands (blank/comment-only lines dropped)."""
    return [cmd for _, cmd in _split_bash(text)[0]]


def _split_bash(text: str) -> tuple[list[tuple[list[str], str]], list[str]]:
    """(the blank/comment lines before each command, the command), and the lines after the
    last command."""
    commands: list[tuple[list[str], str]] = []
    before: list[str] = []
    acc: list[str] = []
    for line in text.splitlines():
        if not acc and (not line.strip() or line.lstrip().startswith("#")):
            before.append(line)
            continue
        acc.append(line)
        chunk = "\n".join(acc) + "\n"
        if not _needs_check(chunk) or _bash_complete(chunk):
            commands.append((before, "\n".join(acc)))
            before, acc = [], []
    if acc:
        commands.append((before, "\n".join(acc)))
        before = []
    return commands, before
