"""What every part of the Python-kernel side shares: its limits and mimetypes, ``CallError``,
the user namespace (which names are the user's) and small helpers. Runs inside the user's
kernel: the rules of ``pykernel`` apply (stdlib only at import time, no visible effect).
"""

from __future__ import annotations

import math
import re
import sys
import types
from typing import Any

BUDGET_S = 0.02  # per object: preview + size
PREVIEW_MAX = 200
CELL_MAX = 200
MAX_ROWS = 1000
MAX_CHILDREN = 1000
KEEP_PLOTS = 50
HELP_MIME = "application/vnd.rsparkhub.help+json"
PLOT_MIME = "application/vnd.rsparkhub.plot+json"
_ELL = "…"
_NOTHING: Any = object()


class CallError(Exception):
    """An error a user can act on: reported as ``{"ok": false, "error": {code, message}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ----------------------------------------------------------------------------- the user namespace


def _shell() -> Any:
    """The running IPython shell, without importing IPython when it is not loaded."""
    mod = sys.modules.get("IPython")
    if mod is None:
        return None
    try:
        return mod.get_ipython()
    except Exception:
        return None


def _user_ns() -> dict[str, Any]:
    ip = _shell()
    if ip is None:
        raise CallError("internal_error", "No IPython kernel is running in this process.")
    ns: dict[str, Any] = ip.user_ns
    return ns


def _hidden_ns(ns: dict[str, Any]) -> dict[str, Any]:
    """IPython's own names (``user_ns_hidden``) when ``ns`` is the kernel's namespace."""
    ip = _shell()
    if ip is not None and getattr(ip, "user_ns", None) is ns:
        hidden = getattr(ip, "user_ns_hidden", None)
        if isinstance(hidden, dict):
            return hidden
    return {}


# IPython's output/input cache names and the module dunders: never cleared
_IPY_NAMES = re.compile(r"_{1,3}|_i{1,3}|_i?\d+|_ih|_oh|_dh|__\w+__")


def _is_hidden(name: str, value: Any, hidden_ns: dict[str, Any]) -> bool:
    if name[:1] == "_":
        return True
    if isinstance(value, types.ModuleType):
        return True
    return hidden_ns.get(name, _NOTHING) is value


def _is_ipython_own(name: str, value: Any, hidden_ns: dict[str, Any]) -> bool:
    return bool(_IPY_NAMES.fullmatch(name)) or hidden_ns.get(name, _NOTHING) is value


def _visible(ns: dict[str, Any], hidden: bool) -> list[tuple[str, Any]]:
    hid = _hidden_ns(ns)
    out = []
    for name, value in list(ns.items()):
        if type(name) is not str or name == "__builtins__":
            continue
        if not hidden and _is_hidden(name, value, hid):
            continue
        out.append((name, value))
    out.sort(key=lambda nv: nv[0])
    return out


# ----------------------------------------------------------------------------- small helpers


def _clip(s: str, n: int = PREVIEW_MAX) -> str:
    return s if len(s) <= n else s[: n - 1] + _ELL


def _one_line(s: str) -> str:
    if "\n" in s or "\r" in s or "\t" in s:
        s = re.sub(r"\s+", " ", s)
    return s


def _float_cell(x: float) -> Any:
    if x != x:
        return None
    if x == math.inf:
        return "Inf"
    if x == -math.inf:
        return "-Inf"
    return x


def _np() -> Any:
    return sys.modules.get("numpy")


def _pd() -> Any:
    return sys.modules.get("pandas")


def _pl() -> Any:
    return sys.modules.get("polars")


def _type_module(t: type) -> str:
    mod = getattr(t, "__module__", None)
    return mod if isinstance(mod, str) else ""


def _int_arg(
    args: dict[str, Any], name: str, default: int, lo: int = 0, hi: int | None = None
) -> int:
    v = args.get(name, default)
    if v is None:
        v = default
    if type(v) is not int:
        raise CallError("invalid_request", f"{name} must be an integer.")
    v = max(lo, v)
    return min(v, hi) if hi is not None else v
