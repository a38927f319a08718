"""Turning an ``execute`` request (console / run / source) into kernel code, per language.

``plan(language, mode, code, path)`` returns a list of ``Step``s: code to execute in the
language's kernel, optionally preceded by an echo text the agent emits itself as stdout
(used for bash ``source`` mode, where the agent splits the file into commands).

* console: the code as typed.
* run: output as ``Rscript FILE`` / ``python FILE`` / ``bash FILE`` prints it, evaluated
  in the session (R: ``source(FILE, echo = FALSE, print.eval = TRUE)`` in the global
  environment; Python: the file executed in the user namespace with ``__file__`` set;
  bash: ``source FILE``).
* source: a transcript as ``source(FILE, echo = TRUE)`` prints it (R calls exactly that;
  Python echoes each top-level statement with ``>>> ``/``... `` and shows expression
  values like the interactive interpreter; bash echoes each complete command with ``$ ``).

``KERNEL_INIT`` holds the code run silently when a kernel starts (R options matching
Rscript's defaults and the hooks that stream R's stdout while an expression runs, see
``R_STREAM_INIT``; the Python helper module).
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

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
    quiet <- function(expr) withCallingHandlers(expr,
        warning = function(w) invokeRestart("muffleWarning"),
        message = function(m) invokeRestart("muffleMessage"))
    due <- function(force) {
        f <- ev$flush_console
        w <- environment(f)$w
        if (!is.list(w) || !is.function(w$get_new)) return(NULL)
        we <- environment(w$get_new)
        if (length(we$output) == length(we$prev) && !isIncomplete(we$con)) return(NULL)
        now <- proc.time()[[3L]]
        tokens <<- min(burst, tokens + (now - stamp) * rate)
        stamp <<- now
        if (tokens < 1 && !isTRUE(force)) return(NULL)
        if (sink.number() != 1L || !isTRUE(getOption("rsparkhub.stream_output"))) return(NULL)
        for (cl in sys.calls()) {
            h <- cl[[1L]]
            if (is.symbol(h) && as.character(h) %in% c("handle_output", "send_response"))
                return(NULL)
        }
        tokens <<- max(0, tokens - 1)
        f
    }
    flush <- function(force = FALSE) {
        if (busy) return(invisible(NULL))
        busy <<- TRUE
        on.exit(busy <<- FALSE)
        suspendInterrupts(tryCatch({
            f <- due(force)
            if (!is.null(f)) quiet(f())
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

R_INIT = R_OPTIONS_INIT + R_STREAM_INIT + "invisible(NULL)\n"

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


def source(path):
    """A transcript: each top-level statement echoed with >>> / ... then run."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tree = _ast.parse(text, path)
    lines = text.splitlines()
    ns = _user_ns()
    with _ScriptContext(path, ns):
        for node in tree.body:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            seg = lines[start - 1 : node.end_lineno]
            echo = [">>> " + seg[0]] + ["... " + line for line in seg[1:]]
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
        return [Step(f"source({r_string(path)}, echo = TRUE)")]
    if language == "python":
        fn = "run" if mode == "run" else "source"
        return [Step(f"__import__('_rsparkhub').{fn}({path!r})")]
    if language == "bash":
        if mode == "run":
            return [Step(f"source {shlex.quote(path)}")]
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        return [Step(cmd, echo=bash_echo(cmd)) for cmd in split_bash(text)]
    raise ModeError("language_unavailable", f"Unknown language {language!r}.")


def bash_echo(cmd: str) -> str:
    lines = cmd.split("\n")
    return "\n".join(["$ " + lines[0]] + ["> " + line for line in lines[1:]]) + "\n"


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
    commands: list[str] = []
    acc: list[str] = []
    for line in text.splitlines():
        if not acc and (not line.strip() or line.lstrip().startswith("#")):
            continue
        acc.append(line)
        chunk = "\n".join(acc) + "\n"
        if not _needs_check(chunk) or _bash_complete(chunk):
            commands.append("\n".join(acc))
            acc = []
    if acc:
        commands.append("\n".join(acc))
    return commands
