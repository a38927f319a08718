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
Rscript's defaults, the Python helper module).
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
R_INIT = """
options(width = 80L, digits = 7L, prompt = "> ", continue = "+ ", scipen = 0,
        OutDec = ".", keep.source = FALSE, warn = 0, crayon.enabled = FALSE,
        cli.num_colors = 1L, jupyter.plot_mimetypes = c("image/png"))
invisible(NULL)
"""

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
