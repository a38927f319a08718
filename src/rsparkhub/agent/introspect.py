"""Asking a kernel about its state: variables, data views, help, plot re-rendering.

R and Python answer through kernel-side code (``r/rsparkhub.R``, ``pykernel.py``) called
by a *silent* execute request (no output, no history, ``.Last.value``/``_`` untouched)
that writes one JSON document to a file in the session's runtime directory; the contract
is docs/introspection-contract.md. Bash variables are read with ``declare -p`` and
summarised here.

A call runs only while the language's kernel is not executing user code (the kernel runs
one request at a time, so a call would otherwise wait behind a long computation): the
caller holds the language's lock, and a call that finds it taken fails at once with
``kernel_busy``. A call that runs longer than its limit interrupts the kernel and fails
with ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent.helpindex import HelpIndex, merge
from rsparkhub.agent.kernels import Kernel, KernelError
from rsparkhub.agent.modes import r_string
from rsparkhub.agent.pool import KernelPool
from rsparkhub.agent.rload import r_load

log = logging.getLogger("rsparkhub.agent.introspect")

R_SOURCE = Path(__file__).parent / "r" / "rsparkhub.R"
R_SPARK = Path(__file__).parent / "r" / "spark.R"  # the rspark_* functions (docs/spark.md)


def r_tools(source: Path = R_SOURCE) -> str:
    """R code that loads rsparkhub.R as kernels get it: into an environment of its own whose
    parent is the base namespace, bound to ``.rsparkhub`` in an attached ``tools:rsparkhub``
    (its layout: the file's header)."""
    return (
        'local({ e <- attach(NULL, name = "tools:rsparkhub"); '
        f"h <- new.env(parent = .BaseNamespaceEnv); {r_load(source, 'h')}; "
        'assign(".rsparkhub", h, envir = e) })\n'
    )


R_LOAD = (
    r_tools()
    + f'try(local({{ e <- attach(NULL, name = "tools:rspark"); {r_load(R_SPARK, "e")} }}), '
    "silent = TRUE)\n"
)
# The key of the environment diff among an execution's user expressions (Python).
_DIFF_EXPRESSION = "__rsparkhub_env_diff"
PY_LOAD = '__import__("rsparkhub.agent.pykernel", fromlist=["install"]).install()\n'

CALL_LIMIT_S = {"help_search": 120.0, "view_rows": 120.0, "view_open": 60.0}
DEFAULT_LIMIT_S = 30.0
HELP_MIME = "application/vnd.rsparkhub.help+json"
PLOT_MIME = "application/vnd.rsparkhub.plot+json"
PLOT_FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}


class CallError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_mime_json(value: Any) -> dict[str, Any] | None:
    """A ``+json`` bundle entry: IRkernel sends it as a JSON string, ipykernel as an object."""
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, dict) else None


class Introspector:
    def __init__(
        self,
        kernels: KernelPool,
        runtime_dir: Path,
        emit: Callable[[Any], int],
    ) -> None:
        self.kernels = kernels
        self.runtime_dir = runtime_dir
        self.emit = emit
        self.locks: dict[str, asyncio.Lock] = {lang: asyncio.Lock() for lang in P.LANGUAGES}
        self.versions: dict[str, int] = dict.fromkeys(P.LANGUAGES, 0)
        self.views: dict[str, set[str]] = {lang: set() for lang in P.LANGUAGES}
        # plot id (the hub's) → (language, kernel-side key, kernel generation)
        self.plot_keys: dict[str, tuple[str, str, int]] = {}
        self.generation: dict[str, int] = dict.fromkeys(P.LANGUAGES, 0)
        self._bash = _BashEnv()
        # the full-text help index lives next to the runtime directory, in the session's
        # own directory (writable in the sandbox; kept for the session's lifetime)
        self.help_index = HelpIndex(runtime_dir.parent / "cache" / "help")

    # ------------------------------------------------------------------ kernel restarts

    async def kernel_started(self, kernel: Kernel, on_r_ready: Callable[[Kernel], Any]) -> None:
        """A (re)started kernel has none of the old variables, views or plots. Loads the
        kernel-side code (R, Python) or records the shell's own variables (bash)."""
        language = kernel.language
        self.generation[language] += 1
        self.versions[language] = 0
        released = sorted(self.views[language])
        self.views[language].clear()
        self.emit(P.EnvEvent(language=language, version=0, reset=True))
        if released:
            self.emit(
                P.ViewReleasedEvent(
                    language=language, view_ids=released, reason="the kernel was restarted"
                )
            )
        if language == "bash":
            self._bash = _BashEnv()
            try:
                self._bash.start(parse_declare(await self._bash_declared(kernel)))
            except CallError as exc:
                log.warning("bash: %s", exc.message)
            return
        code = R_LOAD if language == "r" else PY_LOAD
        reply = await kernel.execute(code, None, silent=True, store_history=False)
        if reply.get("status") != "ok":
            log.warning("loading the %s introspection code failed: %s", language, reply)
            return
        # the baseline of diffs: what the kernel has now (nothing, or a restored image)
        if language == "r":
            await on_r_ready(kernel)
        with contextlib.suppress(CallError):
            await self._diff(kernel, language, None)

    # ------------------------------------------------------------------ calls

    async def call(
        self, language: str, method: str, params: dict[str, Any], may_run_code: bool = False
    ) -> tuple[dict[str, Any], bytes | None]:
        """Answer one ``CallMessage``; raises ``CallError``. Without ``may_run_code`` (a
        viewer asks) nothing runs on the caller's behalf: no expression is evaluated, and
        the kernel-side help is told so (Python imports nothing, R evaluates no \\Sexpr)."""
        if method == "view_open" and params.get("expr") is not None and not may_run_code:
            raise CallError(
                "viewer_cannot_run_code",
                "Viewers cannot evaluate expressions in the session; open a variable by name.",
            )
        if method == "help_html":
            params = {**params, "may_run_code": may_run_code}
        if method == "plot_render":  # the kernel that drew the plot answers
            entry = self.plot_keys.get(str(params.get("plot_id") or ""))
            language = entry[0] if entry else language
        if method == "help_search" and language in ("r", "python"):
            return await self._help_search(language, params), None
        lock = self.locks[language]
        if lock.locked():
            raise CallError(
                "kernel_busy",
                f"The {language} session is running code; try again when it has finished.",
            )
        async with lock:
            return await self._call_locked(language, method, params)

    async def _help_search(self, language: str, params: dict[str, Any]) -> dict[str, Any]:
        """The kernel's ranked search (topics, aliases, titles, concepts) merged with the
        full-text index (``helpindex.py``), which the kernel's answer tells where to look.
        While the kernel runs code the index alone answers (from where it looked last)."""
        lock = self.locks[language]
        busy: CallError | None = None
        found: dict[str, Any] | None = None
        if lock.locked():
            busy = CallError(
                "kernel_busy",
                f"The {language} session is running code; try again when it has finished.",
            )
        else:
            async with lock:
                found, _ = await self._call_locked(language, "help_search", params)
        roots = found.pop("roots", None) if found else None
        attached = found.pop("attached", None) if found else None
        query = str(params.get("query") or "")
        limit = int(params.get("limit") or 50)
        hits = await self.help_index.search(
            language,
            query,
            max(limit, 100),
            [str(r) for r in roots] if isinstance(roots, list) else None,
            prefer=[str(a) for a in attached] if isinstance(attached, list) else None,
        )
        if hits is None:  # no FTS5 here, or the index could not be built
            if found is None:
                raise busy or CallError("internal_error", "Help search failed.")
            return found
        kernel_results = list(found.get("results") or []) if found else []
        return {"query": query, "results": merge(kernel_results, hits, limit)}

    async def _call_locked(
        self, language: str, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes | None]:
        if language == "bash":
            return await self._bash_call(method, params), None
        if method == "plot_render":
            return await self._plot_render(language, params)
        kernel = self.kernels.running(language)
        if kernel is None:
            if method == "env_list":
                return {"version": 0, "variables": [], "kernel": "not_started"}, None
            if method in ("env_children", "env_delete", "view_open"):
                raise CallError("not_found", f"The {language} kernel has no variables yet.")
            if method in ("view_rows", "view_close"):
                raise CallError("view_not_found", "That view no longer exists.")
            kernel = await self._start(language)
        result = await self.kernel_call(kernel, method, params)
        if method == "view_open" and isinstance(result.get("view_id"), str):
            self.views[language].add(result["view_id"])
        elif method == "view_close":
            self.views[language].discard(str(params.get("view_id")))
        elif method in ("env_delete", "env_clear"):
            await self._diff(kernel, language, None)
        return result, None

    async def _start(self, language: str) -> Kernel:
        try:
            return await self.kernels.get(language)  # type: ignore[arg-type]
        except KernelError as exc:
            raise CallError(exc.code, exc.message) from None

    def _call_code(self, language: str, method: str, params: dict[str, Any]) -> tuple[str, Path]:
        """The code that runs one kernel-side method, and the file it answers in."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        out = self.runtime_dir / f"call-{uuid.uuid4().hex}.json"
        args = json.dumps(params)
        if language == "r":
            code = f".rsparkhub$call({r_string(method)}, {r_string(args)}, {r_string(str(out))})"
        else:
            code = (
                '__import__("rsparkhub.agent.pykernel", fromlist=["call"])'
                f".call({method!r}, {args!r}, {str(out)!r})"
            )
        return code, out

    async def kernel_call(
        self, kernel: Kernel, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Run one kernel-side method (the caller holds the language's lock)."""
        code, out = self._call_code(kernel.language, method, params)
        limit = CALL_LIMIT_S.get(method, DEFAULT_LIMIT_S)
        try:
            reply = await asyncio.wait_for(
                kernel.execute(code, None, silent=True, store_history=False), limit
            )
        except TimeoutError:
            with contextlib.suppress(Exception):
                await kernel.interrupt()
            raise CallError(
                "timeout", f"The session took longer than {limit:.0f} s to answer; stopped it."
            ) from None
        except KernelError as exc:
            raise CallError(exc.code, exc.message) from None
        return await self._answer(kernel.language, out, reply)

    async def _answer(self, language: str, out: Path, reply: dict[str, Any]) -> dict[str, Any]:
        """The result a kernel-side call wrote to ``out`` (removed); raises ``CallError``."""
        try:
            text = await asyncio.to_thread(out.read_text, encoding="utf-8")
        except OSError:
            detail = reply.get("evalue") or reply.get("status")
            raise CallError(
                "introspection_failed",
                f"The {language} session could not answer ({detail}).",
            ) from None
        finally:
            with contextlib.suppress(OSError):
                out.unlink()
        try:
            doc = json.loads(text)
        except ValueError:
            raise CallError(
                "introspection_failed", "The session's answer was not valid JSON."
            ) from None
        if not doc.get("ok"):
            err = doc.get("error") or {}
            raise CallError(
                str(err.get("code") or "internal_error"), str(err.get("message") or "failed")
            )
        result = doc.get("result")
        return result if isinstance(result, dict) else {}

    # ------------------------------------------------------------------ pushed diffs

    async def refresh(self, language: str, request_id: str | None) -> None:
        """After an execution (the caller holds the language's lock): push what changed."""
        if language == "bash":
            kernel = self.kernels.running("bash")
            if kernel is not None:
                await self._bash_refresh(kernel, request_id)
            return
        kernel = self.kernels.running(language)
        if kernel is None:
            return
        try:
            await self._diff(kernel, language, request_id)
        except CallError as exc:
            log.warning("environment refresh of %s failed: %s", language, exc.message)

    def diff_expressions(self, language: str) -> tuple[dict[str, str], Path] | None:
        """The environment diff as a ``user_expressions`` entry of the execution's own
        request, so that it costs no second round trip to the kernel: ipykernel evaluates
        it after the code, only when the code succeeded, and so does IRkernel with r/reply.R
        (without it IRkernel answers no user expressions, and ``refresh`` asks
        separately). With the answer file, for ``diff_from_reply``."""
        if language not in ("python", "r"):
            return None
        code, out = self._call_code(language, "env_diff", {"hidden": False})
        return {_DIFF_EXPRESSION: code}, out

    async def diff_from_reply(
        self, language: str, request_id: str | None, reply: dict[str, Any], out: Path
    ) -> bool:
        """Push the diff the execution's user expression wrote; False (and nothing pushed)
        when it did not run — then ``refresh`` asks the kernel separately."""
        done = (reply.get("user_expressions") or {}).get(_DIFF_EXPRESSION) or {}
        if done.get("status") != "ok":
            with contextlib.suppress(OSError):
                await asyncio.to_thread(out.unlink, missing_ok=True)
            return False
        try:
            result = await self._answer(language, out, reply)
        except CallError as exc:
            log.warning("environment refresh of %s failed: %s", language, exc.message)
            return True  # asking again would fail the same way
        self._push_diff(language, request_id, result)
        return True

    async def _diff(self, kernel: Kernel, language: str, request_id: str | None) -> None:
        result = await self.kernel_call(kernel, "env_diff", {"hidden": False})
        self._push_diff(language, request_id, result)

    def _push_diff(self, language: str, request_id: str | None, result: dict[str, Any]) -> None:
        assigned = result.get("assigned") or []
        removed = result.get("removed") or []
        released = [str(v) for v in result.get("released_views") or []]
        version = int(result.get("version") or 0)
        if assigned or removed:
            self.versions[language] = version
            self.emit(
                P.EnvEvent(
                    request_id=request_id,
                    language=language,  # type: ignore[arg-type]
                    version=version,
                    assigned=assigned,
                    removed=removed,
                )
            )
        if released:
            self.views[language].difference_update(released)
            self.emit(
                P.ViewReleasedEvent(
                    language=language,  # type: ignore[arg-type]
                    view_ids=released,
                    reason="the variable changed or was removed",
                )
            )

    # ------------------------------------------------------------------ plots

    def plot_made(self, plot_id: str, language: str, key: str) -> None:
        self.plot_keys[plot_id] = (language, key, self.generation[language])
        if len(self.plot_keys) > 500:
            for old in list(self.plot_keys)[:100]:
                del self.plot_keys[old]

    async def _plot_render(
        self, language: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes | None]:
        plot_id = str(params.get("plot_id") or "")
        fmt = str(params.get("format") or "png")
        if fmt not in PLOT_FORMATS:
            raise CallError("invalid_format", "Plots render as png, svg or pdf.")
        entry = self.plot_keys.get(plot_id)
        kernel = self.kernels.running(language)
        if entry is None or kernel is None or entry[2] != self.generation[language]:
            raise CallError(
                "plot_not_renderable",
                "This plot was made before the kernel (re)started; only its original image "
                "is available. Run the code again to draw it at another size.",
            )
        out = self.runtime_dir / f"plot-{uuid.uuid4().hex}.{fmt}"
        args = {
            "key": entry[1],
            "format": fmt,
            "width": int(params.get("width") or 800),
            "height": int(params.get("height") or 600),
            "res": int(params.get("res") or 96),
            "out": str(out),
        }
        try:
            await self.kernel_call(kernel, "plot_render", args)
            data = await asyncio.to_thread(out.read_bytes)
        except OSError:
            raise CallError("introspection_failed", "The plot could not be drawn.") from None
        finally:
            with contextlib.suppress(OSError):
                out.unlink()
        return {"mime": PLOT_FORMATS[fmt], "format": fmt}, data

    # ------------------------------------------------------------------ R image

    async def save_image(self, path: Path) -> dict[str, Any] | None:
        kernel = self.kernels.running("r")
        if kernel is None:
            return None
        async with self.locks["r"]:
            return await self.kernel_call(kernel, "image_save", {"path": str(path)})

    async def load_image(self, kernel: Kernel, path: Path) -> dict[str, Any]:
        return await self.kernel_call(kernel, "image_load", {"path": str(path)})

    # ------------------------------------------------------------------ bash

    async def _bash_declared(self, kernel: Kernel) -> str:
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        out = self.runtime_dir / f"call-{uuid.uuid4().hex}.sh"
        q = "'" + str(out).replace("'", "'\\''") + "'"
        try:
            await asyncio.wait_for(
                kernel.execute(
                    f"declare -p > {q} 2>/dev/null", None, silent=True, store_history=False
                ),
                DEFAULT_LIMIT_S,
            )
            return await asyncio.to_thread(out.read_text, encoding="utf-8", errors="replace")
        except (TimeoutError, OSError, KernelError) as exc:
            raise CallError(
                "introspection_failed", f"Could not read bash variables: {exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                out.unlink()

    async def _bash_refresh(self, kernel: Kernel, request_id: str | None) -> None:
        try:
            declared = await self._bash_declared(kernel)
        except CallError as exc:
            log.warning("bash refresh failed: %s", exc.message)
            return
        assigned, removed = self._bash.diff(parse_declare(declared))
        if assigned or removed:
            self.versions["bash"] += 1
            self.emit(
                P.EnvEvent(
                    request_id=request_id,
                    language="bash",
                    version=self.versions["bash"],
                    assigned=assigned,
                    removed=removed,
                )
            )

    async def _bash_call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        kernel = self.kernels.running("bash")
        if method not in ("env_list", "env_delete", "env_clear", "env_children"):
            raise CallError(
                "unsupported", "The bash session has variables only (no data viewer or help)."
            )
        if kernel is None:
            if method == "env_list":
                return {"version": 0, "variables": [], "kernel": "not_started"}
            raise CallError("not_found", "The bash kernel has no variables yet.")
        variables = parse_declare(await self._bash_declared(kernel))
        hidden = bool(params.get("hidden"))
        if method == "env_list":
            self._bash.baseline(variables)
            return {
                "version": self.versions["bash"],
                "variables": [
                    v for v in self._bash.visible(variables, hidden) if v["name"] in variables
                ],
            }
        if method == "env_children":
            path = params.get("path") or []
            name = str(path[0]) if path else ""
            if name not in variables:
                raise CallError("not_found", f"No variable named {name!r}.")
            items = variables[name]["items"]
            offset, limit = _paging(params)
            return {
                "total": len(items),
                "offset": offset,
                "children": [
                    _bash_var(f"[{k}]", k, "", v, {}) for k, v in items[offset : offset + limit]
                ],
            }
        if method == "env_delete":
            names = [str(n) for n in params.get("names") or []]
            missing = [n for n in names if n not in variables]
            if missing:
                raise CallError("not_found", f"No variable named {missing[0]!r}.")
        else:
            names = [v["name"] for v in self._bash.visible(variables, hidden)]
        names = [n for n in names if _BASH_NAME.fullmatch(n)]
        if names:
            await kernel.execute(
                "unset -v " + " ".join(names) + " 2>/dev/null",
                None,
                silent=True,
                store_history=False,
            )
        await self._bash_refresh(kernel, None)
        return {"removed": names}


# ---------------------------------------------------------------------- bash variables

_BASH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# bash's own variables that change by themselves (hidden unless asked for hidden ones)
_BASH_DYNAMIC = frozenset(
    "_ PIPESTATUS LINENO RANDOM SRANDOM SECONDS EPOCHSECONDS EPOCHREALTIME FUNCNAME OLDPWD "
    "PWD COLUMNS LINES HISTCMD BASHPID OPTIND OPTARG PS1 PS2 PROMPT_COMMAND".split()
)
_DECLARE = re.compile(r"^declare -([-a-zA-Z]+) ([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$", re.S)
_ITEM = re.compile(r'\[((?:[^\]\\]|\\.)*)\]="((?:[^"\\]|\\.)*)"', re.S)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1], flags=re.S)
    if value.startswith("$'") and value.endswith("'"):
        try:
            return value[2:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            return value[2:-1]
    return value


def parse_declare(text: str) -> dict[str, dict[str, Any]]:
    """``declare -p`` output → name → {flags, value, items}. A value may span lines."""
    entries: list[str] = []
    for line in text.split("\n"):
        if line.startswith("declare -") or not entries:
            entries.append(line)
        else:
            entries[-1] += "\n" + line
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        m = _DECLARE.match(entry)
        if not m:
            continue
        flags, name, raw = m.group(1), m.group(2), m.group(3)
        items: list[tuple[str, str]] = []
        value = ""
        if raw is not None and ("a" in flags or "A" in flags):
            body = raw.strip()
            if body.startswith("(") and body.endswith(")"):
                body = body[1:-1]
            items = [(k, re.sub(r"\\(.)", r"\1", v, flags=re.S)) for k, v in _ITEM.findall(body)]
        elif raw is not None:
            value = _unquote(raw)
        out[name] = {"flags": flags, "value": value, "items": items}
    return out


def _bash_var(name: str, key: Any, flags: str, value: str, entry: dict[str, Any]) -> dict[str, Any]:
    items = entry.get("items") or []
    if "A" in flags:
        kind, type_ = "list", "associative array"
        preview = " ".join(f"[{k}]={v}" for k, v in items[:10])
    elif "a" in flags:
        kind, type_ = "vector", "array"
        preview = " ".join(v for _, v in items[:20])
    else:
        kind = "value"
        type_ = "integer" if "i" in flags else "string"
        preview = value
    truncated = len(preview) > 200
    one_line = preview.replace("\n", "\\n")[:200]
    size = len(value.encode()) if not items else sum(len(v.encode()) for _, v in items)
    fp = hashlib.sha1(f"{flags}\0{value}\0{items!r}".encode()).hexdigest()[:16]
    return {
        "name": name,
        "key": key,
        "type": type_ + (" (exported)" if "x" in flags else ""),
        "kind": kind,
        "size": size,
        "size_estimated": False,
        "length": len(items) if items else len(value),
        "dims": None,
        "preview": one_line,
        "preview_truncated": truncated,
        "tabular": False,
        "has_children": bool(items),
        "fingerprint": fp,
    }


class _BashEnv:
    """What the shell had when the kernel started is hidden (bash's own and the
    environment's variables) unless it changed; diffs are against the last listing."""

    def __init__(self) -> None:
        self.initial: dict[str, str] | None = None
        self.last: dict[str, str] = {}

    def _summaries(self, variables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {
            name: _bash_var(name, name, e["flags"], e["value"], e) for name, e in variables.items()
        }

    def start(self, variables: dict[str, dict[str, Any]]) -> None:
        self.initial = {n: s["fingerprint"] for n, s in self._summaries(variables).items()}

    def visible(self, variables: dict[str, dict[str, Any]], hidden: bool) -> list[dict[str, Any]]:
        summaries = self._summaries(variables)
        initial = self.initial or {}
        return [
            s
            for n, s in sorted(summaries.items())
            if hidden
            or (
                initial.get(n) != s["fingerprint"]
                and n not in _BASH_DYNAMIC
                and not n.startswith("BASH_")
            )
        ]

    def baseline(self, variables: dict[str, dict[str, Any]]) -> None:
        self.last = {s["name"]: s["fingerprint"] for s in self.visible(variables, False)}

    def diff(self, variables: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        now = {s["name"]: s for s in self.visible(variables, False)}
        assigned = [s for n, s in now.items() if self.last.get(n) != s["fingerprint"]]
        removed = sorted(n for n in self.last if n not in now)
        self.last = {n: s["fingerprint"] for n, s in now.items()}
        return assigned, removed


def _paging(params: dict[str, Any]) -> tuple[int, int]:
    try:
        offset = max(0, int(params.get("offset") or 0))
        limit = min(1000, max(1, int(params.get("limit") or 100)))
    except (TypeError, ValueError):
        raise CallError("invalid_request", "offset and limit must be integers.") from None
    return offset, limit
