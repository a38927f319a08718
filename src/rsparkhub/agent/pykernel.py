"""Python-kernel side of session introspection (see ``docs/introspection-contract.md``).

This module runs *inside the user's ipykernel*. The agent runs, silently
(``silent=True, store_history=False``)::

    __import__("rsparkhub.agent.pykernel", fromlist=["install"]).install()     # at kernel start
    __import__("rsparkhub.agent.pykernel", fromlist=["call"]).call("METHOD", 'ARGS_JSON', '/abs/out.json')

Rules it keeps, because it lives in the user's process:

* stdlib only at import time, nothing from rsparkhub but its own ``pykernel_*`` modules. numpy / pandas / polars are
  looked up in ``sys.modules`` to recognise an object (an object of a library means the
  library is loaded), never imported to check a type; they are imported only to *work* on
  such objects (viewing a numpy array goes through pandas).
* no visible effect: no names created in the user namespace, ``_`` / ``Out`` / ``In`` and
  the execution count untouched (``call`` returns None), no output (stdout / stderr are
  redirected while a call runs), warnings filters restored.
* never proportional to the data when listing: sizes and previews are bounded (sampling,
  shape-based fingerprints, a ~20 ms budget per object; an object whose preview or size
  took longer is not asked again while its fingerprint stays the same).

The kernel side is one module per job, all imported with this one: ``pykernel`` (entry
points, ``METHODS``, ``install``), ``pykernel_common`` (limits, ``CallError``, the user
namespace), ``pykernel_objects`` (classification, members, fingerprints), ``pykernel_repr``
(bounded previews), ``pykernel_summary`` (one object's ``Var``), ``pykernel_env``
(``env_*``), ``pykernel_table`` / ``pykernel_frames`` / ``pykernel_viewer`` (the data
viewer: filters, pandas and polars tables, ``view_*``), ``pykernel_help`` (``help()``,
``help_*``), ``pykernel_plots`` (``plot_render`` and the import hooks) and
``pykernel_spark`` (pyspark imported in the background in a Spark workspace).

``env_children`` keys (what to append to a ``path`` to reach a child):

* list / tuple / deque: the int index; name ``[i]``.
* dict: the int *position* of the key in ``list(d)`` (iteration order); name ``repr(key)``
  (truncated). Positions, because dict keys need not be JSON values; a dict changed between
  a listing and an access may shift them.
* set / frozenset: the int position in a snapshot: sorted when the elements sort (up to
  10,000 elements), iteration order otherwise; name ``[i]``.
* pandas / polars DataFrame: the column name (a string; an int for pandas int labels;
  other labels as their text); the child is the column as a Series.
* instance: attribute name (``vars(obj)``, then set ``__slots__``); module: public member
  name (sorted); class: non-dunder attribute name.

Extensions to the contract (optional, ignored by agents that do not use them): ``view_open``
also takes ``{"path": [...]}`` (an ``env_children`` path); filter and sort ``column`` may be
an int (column position); view columns carry ``family`` (``number``, ``bool``, ``string``,
``category``, ``datetime``, ``timedelta``, ``other``) next to the dtype ``type``.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import sys
import warnings
from typing import Any

from rsparkhub.agent.pykernel_common import CallError, _clip, _float_cell, _user_ns
from rsparkhub.agent.pykernel_env import env_children, env_clear, env_delete, env_diff, env_list
from rsparkhub.agent.pykernel_help import _HelpHook, help_html, help_search
from rsparkhub.agent.pykernel_plots import _PATCHES, _InlineFinder, plot_render
from rsparkhub.agent.pykernel_spark import preload_spark, quiet_pandas_warning
from rsparkhub.agent.pykernel_viewer import view_close, view_open, view_rows

__all__ = ["call", "handle", "install", "METHODS"]


# ----------------------------------------------------------------------------- entry points


class _Null(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)

    def writable(self) -> bool:
        return True


def handle(method: str, args: Any = None, ns: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one method and return the response document (what ``call`` writes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            null = _Null()
            with contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
                if isinstance(args, str | bytes):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except ValueError as exc:
                        raise CallError(
                            "invalid_request", f"The arguments are not JSON: {exc}."
                        ) from None
                if args is None:
                    args = {}
                if not isinstance(args, dict):
                    raise CallError("invalid_request", "The arguments must be a JSON object.")
                fn = METHODS.get(method)
                if fn is None:
                    raise CallError("unknown_method", f"Unknown introspection method {method!r}.")
                if ns is None:
                    ns = _user_ns()
                result = fn(args, ns)
        return {"ok": True, "result": result}
    except CallError as exc:
        return {"ok": False, "error": {"code": exc.code, "message": exc.message}}
    except KeyboardInterrupt:
        return {
            "ok": False,
            "error": {"code": "internal_error", "message": "The call was interrupted."},
        }
    except Exception as exc:  # noqa: BLE001 - call never raises
        msg = f"Unexpected error in {method}: {type(exc).__name__}: {_clip(str(exc), 300)}"
        return {"ok": False, "error": {"code": "internal_error", "message": msg}}


def call(
    method: str,
    args_json: str = "{}",
    out_path: str | None = None,
    ns: dict[str, Any] | None = None,
) -> None:
    """Run ``method`` with JSON arguments and write the response document to ``out_path``
    (via ``out_path.tmp`` and a rename). Never raises, never prints, returns None."""
    try:
        doc = handle(method, args_json, ns)
        if out_path:
            _write_json(out_path, doc)
    except BaseException:  # noqa: BLE001 - not even a KeyboardInterrupt may escape
        with contextlib.suppress(BaseException):
            if out_path:
                err = {
                    "code": "internal_error",
                    "message": "The call failed while writing its result.",
                }
                _write_json(out_path, {"ok": False, "error": err})
    return None


def _write_json(path: str, doc: dict[str, Any]) -> None:
    try:
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = json.dumps(_json_safe(doc), ensure_ascii=False, default=str)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return _float_cell(x)
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if x is None or isinstance(x, str | int | bool):
        return x
    return str(x)


# ----------------------------------------------------------------------------- install


def install(shell: Any = None) -> None:
    """Kernel hooks: ``help()`` → Help pane, matplotlib inline figures kept for
    ``plot_render``; in a Spark workspace, pyspark's Connect client imported in the
    background (``pykernel_spark``). Idempotent; never raises or prints."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            current = builtins.help
            if not getattr(current, "_rsparkhub_help", False):
                builtins.help = _HelpHook(current)  # type: ignore[assignment]
            for name, patch in _PATCHES.items():
                mod = sys.modules.get(name)
                if mod is not None:
                    patch(mod)
            if not any(getattr(f, "_rsparkhub_finder", False) for f in sys.meta_path):
                sys.meta_path.insert(0, _InlineFinder())
        quiet_pandas_warning()
        preload_spark()  # after the finder: the import is patched like the user's own
    except Exception:
        pass


METHODS: dict[str, Any] = {
    "env_list": env_list,
    "env_diff": env_diff,
    "env_children": env_children,
    "env_delete": env_delete,
    "env_clear": env_clear,
    "view_open": view_open,
    "view_rows": view_rows,
    "view_close": view_close,
    "help_html": help_html,
    "help_search": help_search,
    "plot_render": plot_render,
}
