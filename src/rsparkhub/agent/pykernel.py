"""Python-kernel side of session introspection (see ``docs/introspection-contract.md``).

This module runs *inside the user's ipykernel*. The agent runs, silently
(``silent=True, store_history=False``)::

    __import__("rsparkhub.agent.pykernel", fromlist=["install"]).install()     # at kernel start
    __import__("rsparkhub.agent.pykernel", fromlist=["call"]).call("METHOD", 'ARGS_JSON', '/abs/out.json')

Rules it keeps, because it lives in the user's process:

* stdlib only at import time, nothing else from rsparkhub. numpy / pandas / polars are
  looked up in ``sys.modules`` to recognise an object (an object of a library means the
  library is loaded), never imported to check a type; they are imported only to *work* on
  such objects (viewing a numpy array goes through pandas).
* no visible effect: no names created in the user namespace, ``_`` / ``Out`` / ``In`` and
  the execution count untouched (``call`` returns None), no output (stdout / stderr are
  redirected while a call runs), warnings filters restored.
* never proportional to the data when listing: sizes and previews are bounded (sampling,
  shape-based fingerprints, a ~20 ms budget per object; an object whose preview or size
  took longer is not asked again while its fingerprint stays the same).

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
import datetime as _dt
import io
import itertools
import json
import math
import os
import re
import sys
import time
import types
import warnings
from collections import OrderedDict
from typing import Any

__all__ = ["call", "handle", "install", "METHODS"]

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


# ----------------------------------------------------------------------------- classification

_CATEGORIES: dict[type, str] = {}
_TYPE_NAMES: dict[type, str] = {}
_FUNC_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)
_DATA_CATS = frozenset(
    {"np_array", "pd_df", "pd_series", "pd_index", "pl_df", "pl_series", "pl_lazy"}
)
_PD_SCALARS = frozenset({"Timestamp", "Timedelta", "Period", "NaTType", "NAType", "Interval"})


def _category(t: type) -> str:
    try:
        c = _CATEGORIES.get(t)
        if c is None:
            if len(_CATEGORIES) > 5000:
                _CATEGORIES.clear()
            c = _CATEGORIES[t] = _compute_category(t)
        return c
    except TypeError:  # a metaclass with an unhashable __hash__
        return _compute_category(t)


def _compute_category(t: type) -> str:
    if t is type(None):
        return "none"
    if t in (bool, int, float, complex):
        return "scalar"
    try:
        if issubclass(t, str):
            return "str"
        if issubclass(t, bytes | bytearray):
            return "bytes"
        mod = _type_module(t)
        top = mod.partition(".")[0]
        name = getattr(t, "__name__", "")
        np = _np()
        if np is not None:
            if issubclass(t, np.ndarray):
                return "np_array"
            if issubclass(t, np.generic):
                return "np_scalar"
            if top == "numpy" and name == "ufunc":
                return "function"
        pd = _pd()
        if pd is not None:
            with contextlib.suppress(Exception):
                if issubclass(t, pd.DataFrame):
                    return "pd_df"
                if issubclass(t, pd.Series):
                    return "pd_series"
                if issubclass(t, pd.Index):
                    return "pd_index"
            if top == "pandas" and name in _PD_SCALARS:
                return "scalar_other"
        pl = _pl()
        if pl is not None:
            with contextlib.suppress(Exception):
                if issubclass(t, pl.DataFrame):
                    return "pl_df"
                if issubclass(t, pl.Series):
                    return "pl_series"
                if issubclass(t, pl.LazyFrame):
                    return "pl_lazy"
        if issubclass(t, list | tuple) or (mod == "collections" and name == "deque"):
            return "seq"
        if issubclass(t, set | frozenset):
            return "set"
        if issubclass(t, dict):
            return "dict"
        if issubclass(t, type):
            return "class"
        if issubclass(t, types.ModuleType):
            return "module"
        if issubclass(t, _FUNC_TYPES) or (mod == "functools" and name == "partial"):
            return "function"
        if issubclass(t, _dt.date | _dt.time | _dt.timedelta) or mod in ("decimal", "fractions"):
            return "scalar_other"
        if mod == "builtins":
            return "other"
    except TypeError:
        return "other"
    return "object"


def _type_name(t: type) -> str:
    """The type's name as a user would write it: ``int``, ``pandas.DataFrame``, ``Foo``."""
    try:
        n = _TYPE_NAMES.get(t)
        if n is None:
            if len(_TYPE_NAMES) > 5000:
                _TYPE_NAMES.clear()
            n = _TYPE_NAMES[t] = _compute_type_name(t)
        return n
    except TypeError:
        return _compute_type_name(t)


def _compute_type_name(t: type) -> str:
    mod = _type_module(t)
    qn = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    if mod in ("builtins", "__main__", ""):
        return str(qn)
    top = mod.partition(".")[0]
    m = sys.modules.get(top)
    d = getattr(m, "__dict__", None) if m is not None else None
    if isinstance(d, dict) and d.get(getattr(t, "__name__", "")) is t:
        return f"{top}.{t.__name__}"
    return f"{mod}.{qn}"


# ----------------------------------------------------------------------------- bounded repr


class _Repr:
    """A bounded one-line repr, like ``reprlib`` but never calling ``repr()`` on data
    structures (arrays, frames) and remembering objects whose ``repr()`` was slow."""

    def __init__(self, limit: int = PREVIEW_MAX, items: int = 12, depth: int = 3) -> None:
        self.limit = limit
        self.items = items
        self.depth = depth
        self.truncated = False

    def __call__(self, obj: Any, level: int = 0) -> str:
        t = type(obj)
        if t is str:
            return self.str_(obj)
        if t is int:
            return self.int_(obj)
        if t is float or t is bool or obj is None:
            return repr(obj)
        cat = _category(t)
        if cat == "str":
            return self.str_(obj)
        if cat in ("seq", "set", "dict"):
            return self.container(obj, t, cat, level)
        if cat == "np_array":
            return _np_preview(obj, self, level)
        if cat in _DATA_CATS:
            return _data_preview(obj, cat, self, level)
        if cat == "np_scalar":
            return self.np_scalar(obj)
        if cat == "scalar_other" and _type_module(t).startswith("pandas"):
            return self.cut(str(obj))
        if cat == "bytes":
            if len(obj) > self.limit:
                self.truncated = True
                return repr(bytes(obj[: self.limit])) + _ELL
            return repr(obj)
        if cat == "object":
            return self.instance(obj, t, level)
        return self.other(obj)

    def cut(self, s: str) -> str:
        if len(s) > 4 * self.limit:
            s = s[: 4 * self.limit]
        s = _one_line(s)
        if len(s) > self.limit:
            self.truncated = True
            return s[: self.limit - 1] + _ELL
        return s

    def str_(self, s: str) -> str:
        if len(s) > self.limit:
            self.truncated = True
            return repr(s[: self.limit])[:-1] + _ELL
        return repr(s)

    def int_(self, i: int) -> str:
        if -(10**60) < i < 10**60:
            return repr(i)
        self.truncated = True
        digits = int(i.bit_length() * 0.30103) + 1
        return f"<int with about {digits} digits>"

    def np_scalar(self, x: Any) -> str:
        kind = x.dtype.kind
        if kind in "biufc":
            return self(x.item())
        if kind in "Mm":
            return str(x)
        if kind in "US":
            return self(x.item())
        return self.other(x)

    def container(self, obj: Any, t: type, cat: str, level: int) -> str:
        name = getattr(t, "__name__", "")
        fields = getattr(t, "_fields", None) if cat == "seq" else None
        if cat == "seq":
            if fields is not None and isinstance(fields, tuple):
                open_, close = f"{name}(", ")"
            elif issubclass(t, list):
                open_, close = "[", "]"
            elif issubclass(t, tuple):
                open_, close = "(", ")"
            else:
                open_, close = f"{name}([", "])"
        elif cat == "set":
            if not obj:
                return f"{name}()"
            open_, close = ("{", "}") if t is set else (f"{name}({{", "})")
        else:
            open_, close = ("{", "}") if t is dict else (f"{name}({{", "})")
        if level >= self.depth:
            self.truncated = True
            return open_ + _ELL + close
        parts: list[str] = []
        total = len(open_)
        items = obj.items() if cat == "dict" else obj
        n = 0
        for i, item in enumerate(items):
            if i >= self.items or total > self.limit:
                self.truncated = True
                parts.append(_ELL)
                break
            if cat == "dict":
                s = self(item[0], level + 1) + ": " + self(item[1], level + 1)
            elif fields is not None and i < len(fields):
                s = f"{fields[i]}=" + self(item, level + 1)
            else:
                s = self(item, level + 1)
            parts.append(s)
            total += len(s) + 2
            n += 1
        text = ", ".join(parts)
        if cat == "seq" and open_ == "(" and n == 1 and len(obj) == 1:
            text += ","
        return open_ + text + close

    def instance(self, obj: Any, t: type, level: int) -> str:
        """Instances of classes without their own ``__repr__``: ``Foo(a=1, b=[1, 2])``."""
        if getattr(t, "__repr__", None) is not object.__repr__:
            return self.other(obj)
        name = getattr(t, "__qualname__", "object")
        names = _obj_attr_names(obj)
        if not names or level >= self.depth:
            return f"<{name} object>"
        parts: list[str] = []
        total = len(name)
        for i, k in enumerate(names):
            if i >= self.items or total > self.limit:
                self.truncated = True
                parts.append(_ELL)
                break
            s = f"{k}=" + self(_attr_value(obj, k), level + 1)
            parts.append(s)
            total += len(s) + 2
        return f"{name}(" + ", ".join(parts) + ")"

    def other(self, obj: Any) -> str:
        t = type(obj)
        if _is_slow(obj):
            self.truncated = True
            return f"<{getattr(t, '__qualname__', 'object')} object>"
        start = time.perf_counter()
        try:
            s = repr(obj)
        except Exception:
            s = f"<{getattr(t, '__qualname__', 'object')} object (repr failed)>"
        elapsed = time.perf_counter() - start
        if elapsed > BUDGET_S:
            _mark_slow(obj, elapsed)
        if not isinstance(s, str):
            s = str(s)
        return self.cut(s)


def _short(obj: Any, limit: int = PREVIEW_MAX) -> str:
    r = _Repr(limit=limit)
    return _clip(r(obj), limit)


# Objects whose preview/size went over the budget: id -> (type, fingerprint, strikes).
# Once clearly slow (5x the budget at once, or over it twice: one-off costs such as a first
# import do not count) they are not asked again while they stay the same.
_SLOW: dict[int, tuple[type, str, int]] = {}


def _is_slow(obj: Any, fp: str | None = None) -> bool:
    hit = _SLOW.get(id(obj))
    if hit is None or hit[0] is not type(obj) or hit[2] < 2:
        return False
    if fp is None:
        fp = _fingerprint(obj, _category(type(obj)))
    return hit[1] == fp


def _mark_slow(obj: Any, elapsed: float) -> None:
    if len(_SLOW) > 10000:
        _SLOW.clear()
    with contextlib.suppress(Exception):
        t = type(obj)
        fp = _fingerprint(obj, _category(t))
        old = _SLOW.get(id(obj))
        strikes = old[2] if old is not None and old[0] is t and old[1] == fp else 0
        strikes += 2 if elapsed > 5 * BUDGET_S else 1
        _SLOW[id(obj)] = (t, fp, strikes)


def _np_scalar_items(a: Any, r: _Repr, level: int) -> str:
    if level >= 3:
        r.truncated = True
        return "[" + _ELL + "]"
    n = a.shape[0]
    k = min(n, 8 if a.ndim == 1 else 3)
    if a.ndim == 1:
        kind = a.dtype.kind
        head = a[:k]
        if kind in "biuf":
            parts = [r(x) for x in head.tolist()]
        elif kind in "Mm":
            parts = [str(x) for x in head]
        elif kind in "US":
            parts = [r(x) for x in head.tolist()]
        else:
            parts = [r(x, 1) for x in head.tolist()]
    else:
        parts = [_np_scalar_items(a[i], r, level + 1) for i in range(k)]
    if n > k:
        r.truncated = True
        parts.append(_ELL)
    return "[" + ", ".join(parts) + "]"


def _np_preview(a: Any, r: _Repr, level: int = 0) -> str:
    try:
        if a.ndim == 0:
            inner = r(a[()], 1)
        elif 0 in a.shape:
            inner = "[]"
        else:
            inner = _np_scalar_items(a, r, 0)
        text = f"array({inner}) {a.dtype} {tuple(a.shape)}"
    except Exception:
        text = f"array {getattr(a, 'dtype', '?')} {getattr(a, 'shape', '?')}"
    return r.cut(text)


def _series_items(values: list[Any], n: int, r: _Repr) -> str:
    parts = [r(v, 1) for v in values]
    if n > len(values):
        r.truncated = True
        parts.append(_ELL)
    return "[" + ", ".join(parts) + "]"


def _data_preview(obj: Any, cat: str, r: _Repr, level: int) -> str:
    try:
        if cat == "pd_df":
            rows, cols = obj.shape
            text = f"{rows} rows × {cols} columns"
            return f"DataFrame({text})" if level else text
        if cat == "pl_df":
            rows, cols = obj.shape
            text = f"{rows} rows × {cols} columns"
            return f"DataFrame({text})" if level else text
        if cat == "pl_lazy":
            return "LazyFrame (not collected)"
        if cat == "pd_series":
            n = len(obj)
            items = _series_items(obj.iloc[:6].tolist(), n, r)
            return r.cut(f"Series({items}) {obj.dtype} ({n},)")
        if cat == "pd_index":
            n = len(obj)
            if type(obj).__name__ == "RangeIndex":
                return r.cut(repr(obj))
            items = _series_items(obj[:6].tolist(), n, r)
            return r.cut(f"{type(obj).__name__}({items}) {obj.dtype} ({n},)")
        if cat == "pl_series":
            n = len(obj)
            items = _series_items(obj.head(6).to_list(), n, r)
            return r.cut(f"Series({items}) {obj.dtype} ({n},)")
    except Exception:
        pass
    return f"<{_type_name(type(obj))}>"


# ----------------------------------------------------------------------------- fingerprints


def _ids_hint(items: Any) -> int:
    return hash(tuple(map(id, items)))


def _fingerprint(obj: Any, cat: str) -> str:
    """Cheap and bounded: changes on reassignment and on mutations that change the type,
    length/shape or (for small containers / objects) which objects the items are."""
    base = f"{id(obj):x}:{_type_name(type(obj))}"
    try:
        if cat in ("none", "scalar", "str", "scalar_other", "np_scalar"):
            return f"{base}:{hash(obj)}"
        if cat == "bytes":
            if isinstance(obj, bytes):
                return f"{base}:{hash(obj)}"
            return f"{base}:{len(obj)}:{hash(bytes(obj[:256]))}"
        if cat == "seq":
            n = len(obj)
            if n <= 64:
                return f"{base}:{n}:{_ids_hint(obj)}"
            if isinstance(obj, list | tuple):
                return f"{base}:{n}:{_ids_hint(obj[:8])}:{_ids_hint(obj[-8:])}"
            return f"{base}:{n}"
        if cat == "dict":
            n = len(obj)
            if n <= 64:
                return f"{base}:{n}:{_ids_hint(obj)}:{_ids_hint(obj.values())}"
            return f"{base}:{n}:{_ids_hint(itertools.islice(obj.values(), 8))}"
        if cat == "set":
            n = len(obj)
            if n <= 64:
                return f"{base}:{n}:{sum(map(id, obj))}"
            return f"{base}:{n}"
        if cat == "np_array":
            hint = ""
            if obj.nbytes <= 1024 and obj.dtype.kind != "O":
                hint = str(hash(obj.tobytes()))
            elif obj.dtype.kind == "O" and obj.size <= 64:
                hint = str(_ids_hint(obj.ravel().tolist()))
            return f"{base}:{obj.shape}:{obj.dtype.str}:{hint}"
        if cat in ("pd_df", "pl_df"):
            return f"{base}:{obj.shape}"
        if cat in ("pd_series", "pd_index", "pl_series"):
            return f"{base}:{len(obj)}:{obj.dtype}"
        if cat == "function":
            return f"{base}:{id(getattr(obj, '__code__', None)):x}"
        if cat == "object":
            d = object.__getattribute__(obj, "__dict__")
            if isinstance(d, dict):
                n = len(d)
                if n <= 64:
                    return f"{base}:{n}:{_ids_hint(d)}:{_ids_hint(d.values())}"
                return f"{base}:{n}"
    except Exception:
        pass
    return base


# ----------------------------------------------------------------------------- sizes


def _item_size(x: Any) -> int:
    t = type(x)
    if t in (int, float, str, bool, bytes, type(None), tuple, list, dict, set):
        return sys.getsizeof(x)
    cat = _category(t)
    if cat in _DATA_CATS:
        return _size(x, cat)[0] or 0
    try:
        return sys.getsizeof(x)
    except Exception:
        return 0


def _container_size(obj: Any, cat: str) -> tuple[int, bool]:
    n = len(obj)
    size = sys.getsizeof(obj)
    if n == 0:
        return size, False
    k = min(n, 32)
    if cat == "dict":
        sample = [_item_size(a) + _item_size(b) for a, b in itertools.islice(obj.items(), k)]
    elif isinstance(obj, list | tuple):
        step = n // k
        sample = [_item_size(obj[i * step]) for i in range(k)]
    else:
        sample = [_item_size(x) for x in itertools.islice(obj, k)]
    return size + int(sum(sample) / len(sample) * n), True


def _pointer_dtype(dt: Any) -> bool:
    np = _np()
    if np is not None and isinstance(dt, np.dtype):
        return dt.kind == "O"
    return type(dt).__name__ == "StringDtype" and getattr(dt, "storage", "") == "python"


def _sampled_objects_size(values: Any, n: int) -> int:
    """Mean size of up to 64 evenly spaced Python objects of ``values`` (a Series/Index)
    times ``n``."""
    np = _np()
    if n == 0 or np is None:
        return 0
    pos = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.intp))
    try:
        sample = values.take(pos).tolist()
    except Exception:
        return 0
    if not sample:
        return 0
    return int(sum(_item_size(v) for v in sample) / len(sample) * n)


def _pd_df_size(df: Any) -> tuple[int, bool]:
    n = len(df)
    idx = df.index
    total = int(idx.memory_usage(deep=False))
    est = False
    if _pointer_dtype(idx.dtype) and n:
        total += _sampled_objects_size(idx, n)
        est = True
    np = _np()
    dtypes = df.dtypes.tolist()
    # object columns: sample values until half the budget is spent, then assume the mean
    deadline = time.perf_counter() + BUDGET_S / 2
    sampled: list[int] = []
    for j, dt in enumerate(dtypes):
        if np is not None and isinstance(dt, np.dtype) and dt.kind != "O":
            total += dt.itemsize * n
            continue
        if not _pointer_dtype(dt):
            arr = df.iloc[:, j].array
            total += int(arr.nbytes) if hasattr(arr, "nbytes") else 8 * n
            continue
        total += 8 * n
        if not n:
            continue
        est = True
        if not sampled or time.perf_counter() < deadline:
            sampled.append(_sampled_objects_size(df.iloc[:, j], n))
            total += sampled[-1]
        else:
            total += sum(sampled) // len(sampled)
    return total, est


def _size(obj: Any, cat: str) -> tuple[int | None, bool]:
    """(bytes or None, estimated?)"""
    try:
        if cat in (
            "none",
            "scalar",
            "str",
            "bytes",
            "np_scalar",
            "scalar_other",
            "other",
            "function",
            "class",
        ):
            return sys.getsizeof(obj), False
        if cat in ("seq", "set", "dict"):
            return _container_size(obj, cat)
        if cat == "np_array":
            size = int(obj.nbytes)
            if obj.dtype.kind == "O" and obj.size:
                flat = obj.ravel()
                return size + _sampled_objects_size(flat, int(obj.size)), True
            return size, False
        if cat == "pd_df":
            return _pd_df_size(obj)
        if cat == "pd_series":
            n = len(obj)
            size = int(obj.index.memory_usage(deep=False))
            arr = obj.array
            size += int(arr.nbytes) if hasattr(arr, "nbytes") else 8 * n
            if _pointer_dtype(obj.dtype) and n:
                return size + _sampled_objects_size(obj, n), True
            return size, False
        if cat == "pd_index":
            size = int(obj.memory_usage(deep=False))
            if _pointer_dtype(obj.dtype) and len(obj):
                return size + _sampled_objects_size(obj, len(obj)), True
            return size, False
        if cat in ("pl_df", "pl_series"):
            return int(obj.estimated_size()), False
        if cat == "object":
            size = sys.getsizeof(obj)
            try:
                d = object.__getattribute__(obj, "__dict__")
            except Exception:
                return size, False
            if isinstance(d, dict):
                return size + sys.getsizeof(d), True
            return size, False
    except Exception:
        pass
    return None, False


# ----------------------------------------------------------------------------- summaries


def _func_preview(obj: Any) -> str:
    import inspect

    name = (
        getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    )
    try:
        sig = str(_unquoted(inspect.signature(obj)))
    except Exception:
        sig = "(…)"
    if isinstance(obj, types.FunctionType):
        if name.endswith("<lambda>"):
            return "lambda " + sig[1:-1] if sig.startswith("(") else "lambda"
        prefix = "async def " if obj.__code__.co_flags & 0x80 else "def "
        return prefix + name + sig
    if isinstance(obj, types.MethodType):
        return "method " + name + sig
    return f"{type(obj).__name__} {name}{sig}"


class _Raw(str):
    """A string annotation shown as written (``x: int``, not ``x: 'int'``)."""

    def __repr__(self) -> str:
        return str(self)


def _unquoted(sig: Any) -> Any:
    """String annotations (``from __future__ import annotations``) without quotes."""
    params = [
        p.replace(annotation=_Raw(p.annotation)) if isinstance(p.annotation, str) else p
        for p in sig.parameters.values()
    ]
    ret = sig.return_annotation
    return sig.replace(
        parameters=params, return_annotation=_Raw(ret) if isinstance(ret, str) else ret
    )


def _class_preview(obj: Any) -> str:
    bases = [b.__name__ for b in getattr(obj, "__bases__", ()) if b is not object]
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?")
    return f"class {name}" + (f"({', '.join(bases)})" if bases else "")


_KINDS = {
    "none": "null",
    "scalar": "value",
    "str": "value",
    "bytes": "value",
    "np_scalar": "value",
    "scalar_other": "value",
    "seq": "list",
    "set": "list",
    "dict": "list",
    "pd_df": "table",
    "pl_df": "table",
    "pl_lazy": "table",
    "pd_series": "vector",
    "pd_index": "vector",
    "pl_series": "vector",
    "function": "function",
    "class": "class",
    "module": "module",
    "object": "object",
    "other": "other",
}


def _obj_attr_names(obj: Any) -> list[str]:
    names: list[str] = []
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:
        d = None
    if isinstance(d, dict):
        names.extend(k for k in d if type(k) is str)
    seen = set(names)
    for klass in getattr(type(obj), "__mro__", ()):
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for s in slots:
            if not isinstance(s, str) or s in seen or s in ("__dict__", "__weakref__"):
                continue
            try:
                object.__getattribute__(obj, s)
            except Exception:
                continue
            seen.add(s)
            names.append(s)
    return names


def _attr_value(obj: Any, name: str) -> Any:
    try:
        d = object.__getattribute__(obj, "__dict__")
        if isinstance(d, dict) and name in d:
            return d[name]
    except Exception:
        pass
    return object.__getattribute__(obj, name)


def _module_names(mod: Any) -> list[str]:
    return sorted(k for k in vars(mod) if type(k) is str and not k.startswith("_"))


def _class_names(cls: Any) -> list[str]:
    return [
        k for k in vars(cls) if type(k) is str and not (k.startswith("__") and k.endswith("__"))
    ]


def _summarize(name: str, key: Any, obj: Any, fp: str | None = None) -> dict[str, Any]:
    """The ``Var`` of one object; never raises (a broken object gets a minimal summary)."""
    try:
        return _summarize1(name, key, obj, fp)
    except Exception:
        t = type(obj)
        return {
            "name": name,
            "key": key,
            "type": getattr(t, "__qualname__", "object"),
            "kind": "other",
            "size": None,
            "size_estimated": False,
            "length": None,
            "dims": None,
            "preview": f"<{getattr(t, '__qualname__', 'object')} object>",
            "preview_truncated": True,
            "tabular": False,
            "has_children": False,
            "fingerprint": fp or f"{id(obj):x}:{id(t):x}",
        }


def _summarize1(name: str, key: Any, obj: Any, fp: str | None) -> dict[str, Any]:
    t = type(obj)
    cat = _category(t)
    if fp is None:
        fp = _fingerprint(obj, cat)
    tname = _type_name(t)
    # fast path: the common small scalars
    if cat == "scalar" or cat == "none":
        r = _Repr()
        preview = r(obj) if t is not complex else repr(obj)
        return {
            "name": name,
            "key": key,
            "type": tname,
            "kind": _KINDS[cat],
            "size": sys.getsizeof(obj),
            "size_estimated": False,
            "length": None,
            "dims": None,
            "preview": preview,
            "preview_truncated": r.truncated,
            "tabular": False,
            "has_children": False,
            "fingerprint": fp,
        }
    start = time.perf_counter()
    if _is_slow(obj, fp):
        size: int | None = None
        est = False
        preview = f"<{tname}>"
        truncated = True
    else:
        size, est = _size(obj, cat)
        r = _Repr()
        try:
            if cat == "function":
                preview = r.cut(_func_preview(obj))
            elif cat == "class":
                preview = r.cut(_class_preview(obj))
            elif cat == "module":
                preview = r.cut(repr(obj))
            else:
                preview = r(obj)
        except Exception:
            preview = f"<{tname}>"
        truncated = r.truncated
        if len(preview) > PREVIEW_MAX:
            preview = _clip(preview)
            truncated = True
        elapsed = time.perf_counter() - start
        if elapsed > BUDGET_S:
            _mark_slow(obj, elapsed)
    kind = _KINDS.get(cat, "other")
    length: int | None = None
    dims: list[int] | None = None
    tabular = False
    has_children = False
    try:
        if cat in ("str", "bytes"):
            length = len(obj)
        elif cat in ("seq", "set", "dict"):
            length = len(obj)
            has_children = length > 0
        elif cat == "np_array":
            dims = [int(d) for d in obj.shape]
            length = dims[0] if dims else None
            kind = "value" if obj.ndim == 0 else ("vector" if obj.ndim == 1 else "matrix")
            tabular = obj.ndim in (1, 2)
        elif cat in ("pd_df", "pl_df"):
            dims = [int(d) for d in obj.shape]
            length = dims[0]
            tabular = True
            has_children = dims[1] > 0
        elif cat in ("pd_series", "pl_series", "pd_index"):
            length = len(obj)
            dims = [length]
            tabular = cat != "pd_index"
            if str(obj.dtype) in ("category", "Categorical", "Enum") or str(obj.dtype).startswith(
                "Enum"
            ):
                kind = "factor"
        elif cat == "object":
            has_children = bool(_obj_attr_names(obj))
        elif cat == "module":
            size = None
            has_children = True
        elif cat == "class":
            has_children = bool(_class_names(obj))
        elif cat == "other":
            with contextlib.suppress(Exception):
                length = len(obj) if hasattr(t, "__len__") else None
    except Exception:
        pass
    return {
        "name": name,
        "key": key,
        "type": tname,
        "kind": kind,
        "size": size,
        "size_estimated": bool(est) if size is not None else False,
        "length": length,
        "dims": dims,
        "preview": preview,
        "preview_truncated": bool(truncated),
        "tabular": tabular,
        "has_children": has_children,
        "fingerprint": fp,
    }


# ----------------------------------------------------------------------------- env methods


class _State:
    def __init__(self) -> None:
        self.version = 0
        self.baseline: dict[str, str] | None = None
        self.views: dict[str, _View] = {}
        self.view_counter = 0


_STATE = _State()


def env_list(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    hidden = bool(args.get("hidden", False))
    variables = [_summarize(name, name, value) for name, value in _visible(ns, hidden)]
    baseline = {v["name"]: v["fingerprint"] for v in variables}
    if hidden:  # diffs (pushed after executions) cover the visible names only
        shown = {name for name, _value in _visible(ns, False)}
        baseline = {n: fp for n, fp in baseline.items() if n in shown}
    if baseline != _STATE.baseline:
        _STATE.version += 1
    _STATE.baseline = baseline
    return {"version": _STATE.version, "variables": variables}


def env_diff(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    hidden = bool(args.get("hidden", False))
    old = _STATE.baseline or {}
    current: dict[str, str] = {}
    assigned = []
    for name, value in _visible(ns, hidden):
        fp = _fingerprint(value, _category(type(value)))
        current[name] = fp
        if old.get(name) != fp:
            assigned.append(_summarize(name, name, value, fp))
    removed = sorted(n for n in old if n not in current)
    changed = {v["name"] for v in assigned} | set(removed)
    released = []
    for vid, view in list(_STATE.views.items()):
        if view.by_name is None:
            continue
        if view.by_name in changed or ns.get(view.by_name, _NOTHING) is not view.obj:
            released.append(vid)
            del _STATE.views[vid]
    if assigned or removed or _STATE.baseline is None:
        _STATE.version += 1
    _STATE.baseline = current
    return {
        "version": _STATE.version,
        "assigned": assigned,
        "removed": removed,
        "released_views": released,
    }


def _path_text(path: list[Any]) -> str:
    out = str(path[0])
    for k in path[1:]:
        out += f"[{k!r}]"
    return out


def _set_snapshot(s: Any) -> list[Any]:
    if len(s) <= 10000:
        try:
            return sorted(s)
        except Exception:
            pass
    return list(s)


def _pd_col_position(df: Any, key: Any) -> int | None:
    cols = df.columns
    try:
        if key in cols:
            loc = cols.get_loc(key)
            if isinstance(loc, int):
                return loc
            np = _np()
            if isinstance(loc, slice):
                return int(loc.start or 0)
            if np is not None:
                hits = np.flatnonzero(np.asarray(loc))
                if len(hits):
                    return int(hits[0])
    except Exception:
        pass
    for j, c in enumerate(cols):
        if _label_str(c) == str(key):
            return j
    return None


def _child(obj: Any, key: Any) -> Any:
    """The child of ``obj`` at ``key``, or _NOTHING."""
    cat = _category(type(obj))
    is_int = type(key) is int
    try:
        if cat == "seq":
            if is_int and 0 <= key < len(obj):
                return (
                    obj[key]
                    if isinstance(obj, list | tuple)
                    else next(itertools.islice(obj, key, None))
                )
        elif cat == "dict":
            if is_int and 0 <= key < len(obj):
                k = next(itertools.islice(obj, key, None))
                return obj[k]
        elif cat == "set":
            if is_int and 0 <= key < len(obj):
                return _set_snapshot(obj)[key]
        elif cat == "pd_df":
            j = _pd_col_position(obj, key)
            if j is not None:
                return obj.iloc[:, j]
        elif cat == "pl_df":
            if isinstance(key, str) and key in obj.columns:
                return obj.get_column(key)
        elif cat == "module":
            d = vars(obj)
            if isinstance(key, str) and key in d:
                return d[key]
        elif cat == "class":
            d = vars(obj)
            if isinstance(key, str) and key in d:
                return d[key]
        elif isinstance(key, str) and key in _obj_attr_names(obj):
            return _attr_value(obj, key)
    except Exception:
        pass
    return _NOTHING


def _resolve(path: Any, ns: dict[str, Any]) -> Any:
    if not isinstance(path, list) or not path or not isinstance(path[0], str):
        raise CallError("invalid_request", "path must be a list starting with a variable name.")
    name = path[0]
    if name not in ns:
        raise CallError("not_found", f"No variable named {name!r}.")
    obj = ns[name]
    for i, key in enumerate(path[1:], start=1):
        child = _child(obj, key)
        if child is _NOTHING:
            raise CallError("not_found", f"{_path_text(path[:i])} has no element {key!r}.")
        obj = child
    return obj


def _children(obj: Any, offset: int, limit: int) -> tuple[int, list[tuple[str, Any, Any]]]:
    cat = _category(type(obj))
    end = offset + limit
    out: list[tuple[str, Any, Any]] = []
    if cat == "seq":
        n = len(obj)
        if isinstance(obj, list | tuple):
            out = [(f"[{i}]", i, obj[i]) for i in range(offset, min(n, end))]
        else:
            out = [
                (f"[{i}]", i, v)
                for i, v in enumerate(itertools.islice(obj, offset, end), start=offset)
            ]
        return n, out
    if cat == "dict":
        n = len(obj)
        for i, k in enumerate(itertools.islice(obj, offset, end), start=offset):
            out.append((_short(k, 100), i, obj[k]))
        return n, out
    if cat == "set":
        snap = _set_snapshot(obj)
        return len(snap), [(f"[{i}]", i, snap[i]) for i in range(offset, min(len(snap), end))]
    if cat == "pd_df":
        cols = list(obj.columns)
        for j in range(offset, min(len(cols), end)):
            c = cols[j]
            key = c if type(c) in (str, int) else _label_str(c)
            out.append((_label_str(c), key, obj.iloc[:, j]))
        return len(cols), out
    if cat == "pl_df":
        cols = obj.columns
        return len(cols), [(c, c, obj.get_column(c)) for c in cols[offset:end]]
    if cat == "module":
        names = _module_names(obj)
        d = vars(obj)
        return len(names), [(k, k, d[k]) for k in names[offset:end]]
    if cat == "class":
        names = _class_names(obj)
        d = vars(obj)
        return len(names), [(k, k, d[k]) for k in names[offset:end]]
    if cat == "object":
        names = _obj_attr_names(obj)
        try:
            d = object.__getattribute__(obj, "__dict__")
        except Exception:
            d = {}
        return len(names), [(k, k, _attr_value(obj, k)) for k in names[offset:end]]
    return 0, []


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


def env_children(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    obj = _resolve(args.get("path"), ns)
    offset = _int_arg(args, "offset", 0)
    limit = _int_arg(args, "limit", 100, 0, MAX_CHILDREN)
    total, page = _children(obj, offset, limit)
    return {"total": total, "offset": offset, "children": [_summarize(n, k, v) for n, k, v in page]}


def env_delete(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    names = args.get("names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CallError("invalid_request", "names must be a list of variable names.")
    missing = [n for n in names if n not in ns]
    if missing:
        which = ", ".join(repr(n) for n in missing)
        plural = "variables" if len(missing) > 1 else "variable"
        raise CallError("not_found", f"No {plural} named {which}; nothing was removed.")
    removed = []
    for n in dict.fromkeys(names):
        ns.pop(n, None)
        removed.append(n)
    return {"removed": removed}


def env_clear(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    hidden = bool(args.get("hidden", False))
    hid = _hidden_ns(ns)
    removed = []
    for name, value in list(ns.items()):
        if type(name) is not str or _is_ipython_own(name, value, hid):
            continue
        if not hidden and _is_hidden(name, value, hid):
            continue
        ns.pop(name, None)
        removed.append(name)
    return {"removed": sorted(removed)}


# ----------------------------------------------------------------------------- data viewer

_CMP_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
_FILTER_OPS = frozenset(
    _CMP_OPS + ("between", "is_missing", "not_missing", "in", "contains", "regex")
)


def _label_str(x: Any) -> str:
    if type(x) is str:
        return x
    if isinstance(x, tuple):
        return ", ".join(_label_str(v) for v in x)
    if isinstance(x, _dt.datetime | _dt.date):
        with contextlib.suppress(Exception):
            return x.isoformat()
    if isinstance(x, float):
        c = _float_cell(x)
        return "NaN" if c is None else str(c)
    return _clip(str(x), CELL_MAX)


def _cell(x: Any) -> Any:
    """A JSON value for one table cell."""
    if x is None:
        return None
    t = type(x)
    if t is bool or t is int:
        return x
    if t is float:
        return _float_cell(x)
    if t is str:
        return x if len(x) <= CELL_MAX else x[: CELL_MAX - 1] + _ELL
    name = t.__name__
    if name in ("NAType", "NaTType"):
        return None
    if name == "Decimal":
        with contextlib.suppress(Exception):
            return _float_cell(float(x)) if x.is_finite() else str(x)
    np = _np()
    if np is not None and isinstance(x, np.generic):
        kind = x.dtype.kind
        if kind == "M":
            return None if np.isnat(x) else str(np.datetime_as_string(x))
        if kind == "m":
            return None if np.isnat(x) else str(x)
        if kind in "biufUS":
            return _cell(x.item())
        if kind == "c":
            return str(x.item())
    if isinstance(x, float):
        return _float_cell(float(x))
    if isinstance(x, bool | int):
        return int(x) if not isinstance(x, bool) else bool(x)
    if isinstance(x, _dt.datetime | _dt.date | _dt.time):
        try:
            return x.isoformat()
        except Exception:
            return str(x)
    if isinstance(x, str):
        return _cell(str(x))
    if isinstance(x, _dt.timedelta):
        return str(x)
    return _short(x, CELL_MAX)


class _Table:
    """What the viewer needs from a backend."""

    df: Any

    def nrow(self) -> int:
        raise NotImplementedError

    def columns(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def compute_index(
        self,
        sort: list[tuple[int, bool]],
        filters: list[tuple[int, dict[str, Any]]],
        search: str | None,
    ) -> Any:
        raise NotImplementedError

    def page(self, index: Any, offset: int, limit: int) -> tuple[list[list[Any]], list[str]]:
        raise NotImplementedError


class _View:
    def __init__(self, vid: str, source: str, by_name: str | None, obj: Any, table: _Table) -> None:
        self.id = vid
        self.source = source
        self.by_name = by_name
        self.obj = obj
        self.table = table
        self.cache_key: Any = None
        self.index: Any = None


def _filter_error(col: str, msg: str) -> CallError:
    return CallError("invalid_filter", f"Filter on column {col!r}: {msg}")


def _as_number(v: Any, col: str) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s)
        except ValueError:
            pass
        try:
            return float(s)
        except ValueError:
            pass
    raise _filter_error(col, f"{v!r} is not a number (the column is numeric).")


def _as_bool(v: Any, col: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise _filter_error(col, f"{v!r} is not true or false (the column is logical).")


def _as_datetime(v: Any, col: str) -> _dt.datetime:
    if isinstance(v, str):
        s = v.strip()
        if s.endswith("Z"):
            s = s[:-1] + "+00:00"
        try:
            return _dt.datetime.fromisoformat(s)
        except ValueError:
            pass
    raise _filter_error(
        col, f"{v!r} is not an ISO-8601 date/time (e.g. '2024-01-31' or '2024-01-31T12:00:00')."
    )


def _check_filter(f: Any, names: list[str]) -> None:
    if not isinstance(f, dict):
        raise CallError("invalid_filter", "Each filter must be an object with column and op.")
    op = f.get("op")
    col = str(f.get("column"))
    if op not in _FILTER_OPS:
        raise _filter_error(
            col, f"unknown operator {op!r}; use one of {', '.join(sorted(_FILTER_OPS))}."
        )
    if op in _CMP_OPS and ("value" not in f or f["value"] is None):
        raise _filter_error(col, f"{op} needs a value.")
    if op == "between" and f.get("min") is None and f.get("max") is None:
        raise _filter_error(col, "between needs min and/or max.")
    if op == "in" and not isinstance(f.get("values"), list):
        raise _filter_error(col, "in needs a list of values.")
    if op == "contains" and not isinstance(f.get("value"), str):
        raise _filter_error(col, "contains needs a text value.")
    if op == "regex":
        pat = f.get("pattern")
        if not isinstance(pat, str):
            raise _filter_error(col, "regex needs a pattern.")
        try:
            re.compile(pat)
        except re.error as exc:
            raise _filter_error(col, f"invalid regular expression: {exc}.") from None


def _column_position(column: Any, names: list[str]) -> int:
    if type(column) is int:
        if 0 <= column < len(names):
            return column
    elif isinstance(column, str):
        try:
            return names.index(column)
        except ValueError:
            pass
    raise CallError("unknown_column", f"There is no column {column!r}.")


# characters the text of a value of a family can contain (for skipping columns in a search)
_DIGITS = frozenset("0123456789")
_CHARSETS = {
    "int": _DIGITS | frozenset("-"),
    "float": _DIGITS | frozenset("-+.einfa"),
    "datetime": _DIGITS | frozenset("-:. +tz"),
}


def _may_contain(charset: str | None, needle: str) -> bool:
    if charset is None:
        return True
    if charset == "bool":
        return needle in "true" or needle in "false"
    return set(needle) <= _CHARSETS[charset]


def _stable_order(np: Any, keys: list[Any]) -> Any:
    """The stable ascending order of rows by ``keys`` (most significant first)."""
    if len(keys) == 1 and keys[0].dtype.kind == "f":
        # floats rarely tie: quicksort is ~2x faster, and stable when there are no ties
        key = keys[0]
        order = np.argsort(key)
        ordered = key[order]
        if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
            order = np.argsort(key, kind="stable")
        return order
    if len(keys) == 1:
        return np.argsort(keys[0], kind="stable")
    return np.lexsort(keys[::-1])


class _PandasTable(_Table):
    def __init__(self, df: Any) -> None:
        import numpy
        import pandas

        self.df = df
        self.pd = pandas
        self.np = numpy

    def nrow(self) -> int:
        return int(self.df.shape[0])

    def names(self) -> list[str]:
        return [_label_str(c) for c in self.df.columns]

    def family(self, dtype: Any) -> str:
        api = self.pd.api.types
        if isinstance(dtype, self.pd.CategoricalDtype):
            return "category"
        if api.is_bool_dtype(dtype):
            return "bool"
        if api.is_datetime64_any_dtype(dtype):
            return "datetime"
        if api.is_timedelta64_dtype(dtype):
            return "timedelta"
        if api.is_numeric_dtype(dtype):
            return "number"
        if isinstance(dtype, self.np.dtype) and dtype.kind == "O":
            return "string"
        if api.is_string_dtype(dtype):
            return "string"
        return "other"

    def columns(self) -> list[dict[str, Any]]:
        dtypes = self.df.dtypes.tolist()
        return [
            {"name": n, "type": str(dt), "index": j, "family": self.family(dt)}
            for j, (n, dt) in enumerate(zip(self.names(), dtypes, strict=True))
        ]

    def col(self, j: int) -> Any:
        return self.df.iloc[:, j]

    @staticmethod
    def _take(s: Any, idx: Any) -> Any:
        return s if idx is None else s.iloc[idx]

    def _bool(self, m: Any) -> Any:
        if hasattr(m, "to_numpy"):
            return m.to_numpy(dtype=bool, na_value=False)
        return self.np.asarray(m, dtype=bool)

    def _text(self, s: Any, fam: str) -> Any:
        if fam == "string" and not (isinstance(s.dtype, self.np.dtype) and s.dtype.kind == "O"):
            return s
        return s.astype(str)

    def _coerce(self, v: Any, fam: str, s: Any, col: str) -> Any:
        if fam == "number":
            return _as_number(v, col)
        if fam == "bool":
            return _as_bool(v, col)
        if fam == "datetime":
            ts = self.pd.Timestamp(_as_datetime(v, col))
            tz = getattr(s.dtype, "tz", None)
            if tz is not None and ts.tzinfo is None:
                ts = ts.tz_localize(tz)
            elif tz is None and ts.tzinfo is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            return ts
        if fam == "timedelta":
            try:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    return self.pd.Timedelta(seconds=v)
                return self.pd.Timedelta(v)
            except Exception:
                raise _filter_error(
                    col, f"{v!r} is not a duration (e.g. '1 day 02:00:00')."
                ) from None
        return str(v)

    def _mask(self, s: Any, f: dict[str, Any], fam: str, col: str) -> Any:
        op = f["op"]
        na = s.isna().to_numpy()
        if op == "is_missing":
            return na
        if op == "not_missing":
            return ~na
        if op in ("contains", "regex"):
            if op == "contains":
                return self._search_mask(s, fam, f["value"].lower())
            m = self._text(s, fam).str.contains(f["pattern"], regex=True)
            return self._bool(m) & ~na
        textual = fam in ("string", "category", "other")
        target = self._text(s, fam) if textual else s
        try:
            if op == "in":
                vals = f["values"]
                want_na = any(v is None for v in vals)
                vals = [self._coerce(v, fam, s, col) for v in vals if v is not None]
                m = self._bool(target.isin(vals)) & ~na
                return m | na if want_na else m
            if op == "between":
                m = ~na
                if f.get("min") is not None:
                    m &= self._bool(target >= self._coerce(f["min"], fam, s, col))
                if f.get("max") is not None:
                    m &= self._bool(target <= self._coerce(f["max"], fam, s, col))
                return m
            v = self._coerce(f["value"], fam, s, col)
            import operator

            fn = getattr(operator, op)
            return self._bool(fn(target, v)) & ~na
        except CallError:
            raise
        except Exception as exc:
            raise _filter_error(
                col,
                f"{op} cannot compare this column with the value ({type(exc).__name__}: {_clip(str(exc), 150)}).",
            ) from None

    def _charset(self, dtype: Any, fam: str) -> str | None:
        if fam == "bool":
            return "bool"
        if fam == "number":
            k = getattr(dtype, "kind", "")
            return "int" if k in "iu" else ("float" if k == "f" else None)
        if fam == "datetime":
            return "datetime"
        return None

    def _search_mask(self, s: Any, fam: str, needle: str) -> Any:
        """Rows of ``s`` whose text contains ``needle`` (lower case), missing values never.
        Columns with many repeated values match their distinct values only."""
        np = self.np
        n = len(s)
        if n > 50_000:
            probe = s.iloc[np.linspace(0, n - 1, 5_000).astype(np.intp)]
            try:
                repeated = probe.nunique(dropna=True) < 1_000
            except TypeError:
                repeated = False
            if repeated:
                codes, uniques = self.pd.factorize(s)
                hit = self._contains(self.pd.Series(uniques), fam, needle)
                codes = np.asarray(codes)
                m = np.zeros(n, dtype=bool)
                ok = codes >= 0
                m[ok] = hit[codes[ok]]
                return m
        return self._contains(s, fam, needle) & ~s.isna().to_numpy()

    def _contains(self, s: Any, fam: str, needle: str) -> Any:
        np = self.np
        dt = s.dtype
        if isinstance(dt, np.dtype) and dt.kind in "biufM":
            arr = s.to_numpy()
            if dt.kind == "b":
                return (arr if needle in "true" else np.zeros(len(arr), bool)) | (
                    ~arr if needle in "false" else np.zeros(len(arr), bool)
                )
            out = np.empty(len(arr), dtype=bool)
            step = 1 << 18  # chunks: bounded memory, and an interrupt lands between them
            if dt.kind == "M":
                strings = getattr(np, "strings", None) or np.char
                for start in range(0, len(arr), step):
                    text = np.datetime_as_string(arr[start : start + step], unit="s")
                    out[start : start + step] = strings.find(strings.lower(text), needle) >= 0
                return out
            # Python's repr is what a cell shows (JSON numbers) and faster than numpy's str
            for start in range(0, len(arr), step):
                part = arr[start : start + step].tolist()
                out[start : start + len(part)] = np.fromiter(
                    (needle in r for r in map(repr, part)), dtype=bool, count=len(part)
                )
            return out
        text = self._text(s, fam)
        return self._bool(text.str.contains(needle, case=False, regex=False))

    def _sort_key(self, s: Any, fam: str, desc: bool) -> tuple[Any, Any]:
        np = self.np
        na = s.isna().to_numpy()
        dt = s.dtype
        arr = None
        if isinstance(dt, np.dtype) and dt.kind in "biuf":
            arr = s.to_numpy()
            if dt.kind == "b":
                arr = arr.astype(np.int8)
            elif dt.kind == "f" and na.any():
                arr = np.where(na, 0.0, arr)
        elif fam in ("datetime", "timedelta") and hasattr(s.array, "asi8"):
            arr = np.where(na, 0, np.asarray(s.array.asi8))
        elif fam in ("number", "bool") and not isinstance(dt, np.dtype):
            with contextlib.suppress(Exception):
                if self.pd.api.types.is_integer_dtype(dt) or fam == "bool":
                    arr = s.to_numpy(dtype="int64", na_value=0)
                elif self.pd.api.types.is_float_dtype(dt):
                    arr = s.to_numpy(dtype="float64", na_value=0.0)
                    arr = np.where(np.isnan(arr), 0.0, arr)
        if arr is None:
            try:
                codes, _ = self.pd.factorize(s, sort=True)
            except TypeError:
                codes, _ = self.pd.factorize(s.astype(str), sort=True)
            arr = np.asarray(codes)
        if desc:
            arr = -arr if arr.dtype.kind in "fc" else ~arr
        return arr, na

    def compute_index(
        self,
        sort: list[tuple[int, bool]],
        filters: list[tuple[int, dict[str, Any]]],
        search: str | None,
    ) -> Any:
        np = self.np
        names = self.names()
        dtypes = self.df.dtypes.tolist()
        idx = None
        for j, f in filters:
            fam = self.family(dtypes[j])
            m = self._mask(self._take(self.col(j), idx), f, fam, names[j])
            idx = np.flatnonzero(m) if idx is None else idx[m]
        if search:
            needle = search.lower()
            n = self.nrow() if idx is None else len(idx)
            hit = np.zeros(n, dtype=bool)
            for j, dt in enumerate(dtypes):
                fam = self.family(dt)
                if not _may_contain(self._charset(dt, fam), needle):
                    continue
                rest = np.flatnonzero(~hit)
                if len(rest) == 0:
                    break
                pos = rest if idx is None else idx[rest]
                s = self.col(j)
                if not (idx is None and len(rest) == n):
                    s = s.iloc[pos]
                m = self._search_mask(s, fam, needle)
                hit[rest[m]] = True
            idx = np.flatnonzero(hit) if idx is None else idx[hit]
        if sort:
            if idx is None:
                idx = np.arange(self.nrow())
            keys: list[Any] = []  # most significant first
            for j, desc in sort:
                arr, na = self._sort_key(self._take(self.col(j), idx), self.family(dtypes[j]), desc)
                if na.any():
                    keys.append(na)
                keys.append(arr)
            idx = idx[_stable_order(np, keys)]
        return idx

    def page(self, index: Any, offset: int, limit: int) -> tuple[list[list[Any]], list[str]]:
        n = self.nrow() if index is None else len(index)
        if offset >= n or limit == 0:
            return [], []
        end = min(n, offset + limit)
        part = self.df.iloc[offset:end] if index is None else self.df.iloc[index[offset:end]]
        cols = []
        for j in range(part.shape[1]):
            cols.append(self._cells(part.iloc[:, j]))
        rows = (
            [list(r) for r in zip(*cols, strict=True)]
            if cols
            else [[] for _ in range(end - offset)]
        )
        idx = part.index
        if type(idx).__name__ == "RangeIndex":
            labels = [str(i) for i in idx]
        else:
            labels = [_label_str(x) for x in idx.tolist()]
        return rows, labels

    def _cells(self, s: Any) -> list[Any]:
        dt = s.dtype
        if isinstance(dt, self.np.dtype):
            if dt.kind in "iub":
                return list(s.to_numpy().tolist())
            if dt.kind == "f":
                return [_float_cell(x) for x in s.to_numpy().tolist()]
        return [_cell(x) for x in s.tolist()]


class _PolarsTable(_Table):
    def __init__(self, df: Any) -> None:
        import numpy
        import polars

        self.df = df
        self.pl = polars
        self.np = numpy

    def nrow(self) -> int:
        return int(self.df.height)

    def names(self) -> list[str]:
        return list(self.df.columns)

    def family(self, dtype: Any) -> str:
        pl = self.pl
        try:
            if dtype == pl.Boolean:
                return "bool"
            if dtype.is_numeric():
                return "number"
            if dtype == pl.Datetime or dtype == pl.Date:
                return "datetime"
            if dtype == pl.Duration:
                return "timedelta"
            if dtype == pl.String:
                return "string"
            if dtype == pl.Categorical or dtype == pl.Enum:
                return "category"
        except Exception:
            pass
        return "other"

    def columns(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "type": str(dt), "index": j, "family": self.family(dt)}
            for j, (n, dt) in enumerate(zip(self.df.columns, self.df.dtypes, strict=True))
        ]

    def _nested(self, dtype: Any) -> bool:
        pl = self.pl
        try:
            return bool(dtype.is_nested()) or dtype == pl.Object
        except Exception:
            return True

    def _text(self, name: str, dtype: Any) -> Any:
        pl = self.pl
        c = pl.col(name)
        if dtype == pl.String:
            return c
        with contextlib.suppress(Exception):
            if dtype.is_float():
                c = c.fill_nan(None)  # NaN is missing, as in pandas: no text to match
        if self._nested(dtype):
            return c.map_elements(lambda v: _short(v, CELL_MAX), return_dtype=pl.String)
        return c.cast(pl.String)

    def _value(self, v: Any, fam: str, dtype: Any, col: str) -> Any:
        pl = self.pl
        if fam == "number":
            return _as_number(v, col)
        if fam == "bool":
            return _as_bool(v, col)
        if fam == "datetime":
            d = _as_datetime(v, col)
            if dtype == pl.Date:
                return d.date()
            tz = getattr(dtype, "time_zone", None)
            if tz:
                import zoneinfo

                zone = zoneinfo.ZoneInfo(tz)
                d = d.replace(tzinfo=zone) if d.tzinfo is None else d.astimezone(zone)
            elif d.tzinfo is not None:
                d = d.astimezone(_dt.UTC).replace(tzinfo=None)
            return d
        if fam == "timedelta":
            if isinstance(v, int | float) and not isinstance(v, bool):
                return _dt.timedelta(seconds=v)
            raise _filter_error(col, f"{v!r} is not a number of seconds.")
        return str(v)

    def _expr(self, name: str, dtype: Any, f: dict[str, Any]) -> Any:
        pl = self.pl
        fam = self.family(dtype)
        c = pl.col(name)
        is_float = False
        with contextlib.suppress(Exception):
            is_float = bool(dtype.is_float())
        missing = c.is_null() | c.is_nan() if is_float else c.is_null()
        op = f["op"]
        if op == "is_missing":
            return missing
        if op == "not_missing":
            return ~missing
        textual = fam in ("string", "category", "other")
        target = self._text(name, dtype) if textual else (c.fill_nan(None) if is_float else c)
        if op == "contains":
            t = self._text(name, dtype).str.to_lowercase()
            return t.str.contains(f["value"].lower(), literal=True).fill_null(False) & ~missing
        if op == "regex":
            m = self._text(name, dtype).str.contains(f["pattern"]).fill_null(False)
            return m & ~missing
        if op == "in":
            vals = f["values"]
            want_na = any(v is None for v in vals)
            vals = [self._value(v, fam, dtype, name) for v in vals if v is not None]
            m = target.is_in(pl.Series(vals) if vals else []).fill_null(False) & ~missing
            return m | missing if want_na else m
        if op == "between":
            m = ~missing
            if f.get("min") is not None:
                m = m & (target >= self._value(f["min"], fam, dtype, name)).fill_null(False)
            if f.get("max") is not None:
                m = m & (target <= self._value(f["max"], fam, dtype, name)).fill_null(False)
            return m
        v = self._value(f["value"], fam, dtype, name)
        import operator

        return getattr(operator, op)(target, v).fill_null(False) & ~missing

    def _charset(self, dtype: Any, fam: str) -> str | None:
        if fam == "bool":
            return "bool"
        if fam == "number":
            with contextlib.suppress(Exception):
                if dtype.is_integer():
                    return "int"
                if dtype.is_float():
                    return "float"
            return None
        if fam == "datetime":
            return "datetime"
        return None

    def compute_index(
        self,
        sort: list[tuple[int, bool]],
        filters: list[tuple[int, dict[str, Any]]],
        search: str | None,
    ) -> Any:
        pl = self.pl
        names = self.names()
        dtypes = self.df.dtypes
        row = "__rsparkhub_row"
        while row in names:
            row += "_"
        lf = self.df.lazy().with_row_index(row)
        for j, f in filters:
            lf = lf.filter(self._expr(names[j], dtypes[j], f))
        if search:
            needle = search.lower()
            exprs = []
            for name, dt in zip(names, dtypes, strict=True):
                if not _may_contain(self._charset(dt, self.family(dt)), needle):
                    continue
                t = self._text(name, dt).str.to_lowercase()
                exprs.append(t.str.contains(needle, literal=True).fill_null(False))
            lf = lf.filter(pl.any_horizontal(exprs) if exprs else pl.lit(False))
        if sort:
            by = []
            for j, _desc in sort:
                c = pl.col(names[j])
                with contextlib.suppress(Exception):
                    if dtypes[j].is_float():
                        c = c.fill_nan(None)
                by.append(c)
            lf = lf.sort(
                by=by, descending=[d for _, d in sort], nulls_last=True, maintain_order=True
            )
        if not filters and not search and not sort:
            return None
        try:
            out = lf.select(row).collect()
        except pl.exceptions.PolarsError as exc:
            msg = _clip(
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, 300
            )
            raise CallError("invalid_filter", f"The filter could not be applied: {msg}") from None
        return out.get_column(row).to_numpy().astype(self.np.intp)

    def page(self, index: Any, offset: int, limit: int) -> tuple[list[list[Any]], list[str]]:
        n = self.nrow() if index is None else len(index)
        if offset >= n or limit == 0:
            return [], []
        end = min(n, offset + limit)
        if index is None:
            part = self.df.slice(offset, end - offset)
            pos = list(range(offset, end))
        else:
            sel = index[offset:end]
            part = self.df[sel]
            pos = sel.tolist()
        cols = [[_cell(x) for x in s.to_list()] for s in part.get_columns()]
        rows = [list(r) for r in zip(*cols, strict=True)] if cols else [[] for _ in pos]
        return rows, [str(p) for p in pos]


def _to_table(obj: Any, source: str) -> _Table:
    cat = _category(type(obj))
    tname = _type_name(type(obj))
    if cat == "pd_df":
        return _PandasTable(obj)
    if cat == "pd_series":
        name = obj.name if obj.name is not None else "value"
        return _PandasTable(obj.to_frame(name=name))
    if cat == "pl_df":
        return _PolarsTable(obj)
    if cat == "pl_series":
        name = obj.name or "value"
        return _PolarsTable(obj.to_frame(name=name))
    if cat == "pl_lazy":
        raise CallError(
            "not_tabular",
            f"{source!r} is a polars LazyFrame: it has no rows until it is collected. "
            f"View {source}.collect() (or {source}.head(1000).collect()) instead.",
        )
    if cat == "np_array" and obj.ndim in (1, 2):
        try:
            import pandas as pd
        except ImportError:
            raise CallError(
                "not_tabular", "Viewing numpy arrays needs pandas, which is not installed."
            ) from None
        if obj.ndim == 1 and obj.dtype.names:
            return _PandasTable(pd.DataFrame(obj))  # a structured array: one column per field
        if obj.ndim == 1:
            return _PandasTable(pd.DataFrame({"value": obj}, copy=False))
        return _PandasTable(pd.DataFrame(obj, copy=False))
    if cat == "np_array":
        raise CallError(
            "not_tabular",
            f"{source!r} is a {obj.ndim}-dimensional array; only 1-D and 2-D arrays can be viewed.",
        )
    raise CallError(
        "not_tabular",
        f"{source!r} is a {tname}, not a table; only data frames, series and 1-D/2-D arrays can be viewed.",
    )


def view_open(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    by_name = None
    if isinstance(args.get("name"), str):
        by_name = source = args["name"]
        if by_name not in ns:
            raise CallError("not_found", f"No variable named {by_name!r}.")
        obj = ns[by_name]
    elif isinstance(args.get("path"), list):
        path = args["path"]
        obj = _resolve(path, ns)
        source = _path_text(path)
    elif isinstance(args.get("expr"), str):
        source = args["expr"]
        obj = _eval_expr(source, ns)
    else:
        raise CallError("invalid_request", "view_open needs a name or an expr.")
    table = _to_table(obj, source)
    _STATE.view_counter += 1
    vid = f"v{_STATE.view_counter}"
    _STATE.views[vid] = _View(vid, source, by_name, obj, table)
    return {
        "view_id": vid,
        "source": source,
        "nrow": table.nrow(),
        "ncol": len(table.names()),
        "columns": table.columns(),
    }


def _eval_expr(expr: str, ns: dict[str, Any]) -> Any:
    try:
        code = compile(expr.strip(), "<view expression>", "eval")
    except SyntaxError as exc:
        raise CallError(
            "invalid_expression",
            f"The expression is not valid Python: {exc.msg} (column {exc.offset}).",
        ) from None
    except (ValueError, OverflowError) as exc:
        raise CallError(
            "invalid_expression", f"The expression is not valid Python: {exc}."
        ) from None
    scope = dict(ns)  # assignments (walrus) stay in the copy
    try:
        return eval(code, scope)
    except Exception as exc:
        raise CallError(
            "invalid_expression", f"{type(exc).__name__}: {_clip(str(exc), 300)}"
        ) from None


def _get_view(args: dict[str, Any]) -> _View:
    vid = args.get("view_id")
    view = _STATE.views.get(vid) if isinstance(vid, str) else None
    if view is None:
        raise CallError("view_not_found", f"No open view {vid!r}; open the data again.")
    return view


def view_rows(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    view = _get_view(args)
    table = view.table
    names = table.names()
    offset = _int_arg(args, "offset", 0)
    limit = _int_arg(args, "limit", 100, 0, MAX_ROWS)
    sort_arg = args.get("sort") or []
    filt_arg = args.get("filters") or []
    search = args.get("search")
    if not isinstance(sort_arg, list) or not isinstance(filt_arg, list):
        raise CallError("invalid_request", "sort and filters must be lists.")
    if search is not None and not isinstance(search, str):
        raise CallError("invalid_request", "search must be a text or null.")
    sort: list[tuple[int, bool]] = []
    for s in sort_arg:
        if not isinstance(s, dict):
            raise CallError("invalid_request", "Each sort entry must be an object with a column.")
        sort.append((_column_position(s.get("column"), names), bool(s.get("descending", False))))
    filters: list[tuple[int, dict[str, Any]]] = []
    for f in filt_arg:
        if not isinstance(f, dict):
            raise CallError("invalid_filter", "Each filter must be an object with column and op.")
        j = _column_position(f.get("column"), names)
        _check_filter(f, names)
        filters.append((j, f))
    search = search if search else None
    key = (
        json.dumps([sort, filt_arg, search], sort_keys=True, default=str),
        table.nrow(),
        len(names),
    )
    recomputed = key != view.cache_key
    if recomputed:
        view.index = table.compute_index(sort, filters, search)
        view.cache_key = key
    total = table.nrow() if view.index is None else len(view.index)
    rows, labels = table.page(view.index, offset, limit)
    return {
        "total": int(total),
        "offset": offset,
        "columns": names,
        "rows": rows,
        "row_labels": labels,
        "recomputed": recomputed,
    }


def view_close(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    view = _get_view(args)
    del _STATE.views[view.id]
    return {"closed": True}


# ----------------------------------------------------------------------------- help

_HELP_OBJECTS: OrderedDict[str, Any] = OrderedDict()


def _help_topic(obj: Any) -> str | None:
    """The dotted name ``help_html`` resolves back to ``obj`` (or to its type)."""
    import inspect

    if isinstance(obj, str):
        topic = obj.strip()
        if not topic:
            return None
        ns = getattr(_shell(), "user_ns", None)
        if _lookup_help(topic, ns if isinstance(ns, dict) else {}) is _NOTHING:
            if _keyword_doc(topic) is None:
                return None  # pydoc's own "No Python documentation found"
        return topic
    if inspect.ismodule(obj):
        return str(obj.__name__)
    if not (
        inspect.isclass(obj)
        or inspect.isroutine(obj)
        or callable(obj)
        and hasattr(obj, "__qualname__")
    ):
        obj = type(obj)
    qn = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(qn, str):
        return None
    mod = getattr(obj, "__module__", None)
    if not isinstance(mod, str) or not mod:
        self_ = getattr(obj, "__self__", None)
        mod = getattr(type(self_), "__module__", "builtins") if self_ is not None else "builtins"
    topic = qn if mod == "builtins" else f"{mod}.{qn}"
    try:
        import pydoc

        found = pydoc.locate(topic)
    except Exception:
        found = None
    if found is not obj:
        _HELP_OBJECTS[topic] = obj
        _HELP_OBJECTS.move_to_end(topic)
        while len(_HELP_OBJECTS) > 200:
            _HELP_OBJECTS.popitem(last=False)
    return topic


def _lookup_help(topic: str, ns: dict[str, Any]) -> Any:
    import pydoc

    if topic in _HELP_OBJECTS:
        return _HELP_OBJECTS[topic]
    try:
        obj = pydoc.locate(topic)
    except pydoc.ErrorDuringImport as exc:
        raise CallError(
            "help_not_found",
            f"No help for {topic!r}: importing it failed ({_clip(str(exc.value), 200)}).",
        ) from None
    except Exception:
        obj = None
    if obj is not None:
        return obj
    parts = topic.split(".")
    if parts[0] in ns and all(p.isidentifier() for p in parts):
        obj = ns[parts[0]]
        for p in parts[1:]:
            try:
                obj = getattr(obj, p)
            except Exception:
                return _NOTHING
        return obj
    return _NOTHING


def _lookup_help_static(topic: str, ns: dict[str, Any]) -> Any:
    """``_lookup_help`` for a caller who may not run code (a workspace viewer): nothing is
    imported and no attribute code runs. The topic must start at a module the session has
    already imported, a variable of the session or a builtin; the rest of the dotted name
    is followed with ``inspect.getattr_static`` (no properties, no ``__getattr__``)."""
    import inspect

    if topic in _HELP_OBJECTS:  # documented before by help() in the session's own code
        return _HELP_OBJECTS[topic]
    parts = topic.split(".")
    if not all(p.isidentifier() for p in parts):
        return _NOTHING
    obj: Any
    for i in range(len(parts), 0, -1):
        mod = sys.modules.get(".".join(parts[:i]))
        if isinstance(mod, types.ModuleType):
            obj, rest = mod, parts[i:]
            break
    else:
        if parts[0] in ns:
            obj = ns[parts[0]]
        elif parts[0] in vars(builtins):
            obj = vars(builtins)[parts[0]]
        else:
            return _NOTHING
        rest = parts[1:]
    for p in rest:
        try:
            obj = inspect.getattr_static(obj, p)
        except AttributeError:
            return _NOTHING
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
    return obj


_PYDOC_NEEDS = ("html", "inspect", "pkgutil", "pydoc", "pydoc_data.topics", "sysconfig")


class _NoImports:
    """A meta path finder that fails every import of the thread that installed it (other
    threads of the session import as usual): rendering a viewer's help page with pydoc
    can then import nothing, whatever the documented object does."""

    def __init__(self) -> None:
        import threading

        self._thread = threading.get_ident()
        self._get_ident = threading.get_ident

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if self._get_ident() == self._thread:
            raise ImportError(f"{fullname} is not imported (help for a viewer imports nothing)")
        return None


@contextlib.contextmanager
def _imports_blocked() -> Any:
    blocker = _NoImports()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(blocker)


def _keyword_doc(topic: str) -> str | None:
    import pydoc

    helper = pydoc.Helper
    target = helper.keywords.get(topic) or helper.symbols.get(topic) or helper.topics.get(topic)
    if target is None:
        return None
    if isinstance(target, str) and target in helper.topics and topic not in helper.topics:
        target = helper.topics.get(target) or target
    label = target[0] if isinstance(target, tuple) else target
    try:
        import pydoc_data.topics

        text = pydoc_data.topics.topics.get(label)
    except Exception:
        return None
    return text if isinstance(text, str) else None


_HREF = re.compile(r'href="([^"]*)"')
_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.IGNORECASE | re.DOTALL)


def _rewrite_links(html: str, topic: str, obj: Any) -> str:
    """pydoc's hrefs → ``rsparkhub-help:python//DOTTED.NAME`` (http(s) links kept, file:
    and other links dropped, keeping their text)."""
    import inspect

    if inspect.ismodule(obj):
        base = topic
    else:
        mod = getattr(obj, "__module__", None)
        base = (
            mod
            if isinstance(mod, str) and topic.startswith(mod + ".")
            else topic.rpartition(".")[0]
        )
    last = topic.rpartition(".")[2]

    def target(href: str) -> str | None:
        if href.startswith(("http://", "https://")):
            return href
        m = re.fullmatch(r"([\w.]+)\.html(?:#([\w.\-]*))?", href)
        if m:
            mod, frag = m.group(1), m.group(2) or ""
            name = frag.lstrip("-") if frag else ""
            dotted = f"{mod}.{name}" if name else mod
            if dotted.startswith("builtins."):
                dotted = dotted[len("builtins.") :]
            return dotted
        if re.fullmatch(r"#[\w.\-]+", href):
            frag = href[1:]
            if frag.startswith("-"):
                name = frag[1:]
                if name == topic or name.startswith(topic + "."):
                    return name
                return f"{base}.{name}" if base else name
            head, sep, tail = frag.partition("-")
            if sep:
                if head == topic:
                    return f"{topic}.{tail}"
                if head == last and not inspect.ismodule(obj):
                    return f"{topic}.{tail}"
                return f"{base}.{head}.{tail}" if base else f"{head}.{tail}"
            if head == topic:
                return topic
            return f"{base}.{head}" if base else head
        return None

    def repl(m: re.Match[str]) -> str:
        t = target(m.group(1))
        if t is None:
            return 'data-removed-link=""'
        if t.startswith(("http://", "https://")):
            return f'href="{t}"'
        return f'href="rsparkhub-help:python//{t}"'

    html = _HREF.sub(repl, _SCRIPT.sub("", html))
    return re.sub(r'<a data-removed-link="">(.*?)</a>', r"\1", html, flags=re.DOTALL)


def help_html(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    """The help page of ``topic``. ``may_run_code`` false (a workspace viewer asks): only
    modules the session has already imported, builtins and the session's variables are
    looked up (``_lookup_help_static``), and pydoc renders with imports blocked."""
    topic = args.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise CallError("invalid_request", "help_html needs a topic.")
    topic = topic.strip()
    if args.get("may_run_code") is True:
        return _help_page(topic, _lookup_help(topic, ns), "")
    for name in _PYDOC_NEEDS:  # what pydoc itself imports while rendering, before the block
        __import__(name)
    with _imports_blocked():
        return _help_page(
            topic,
            _lookup_help_static(topic, ns),
            " (a workspace viewer gets help on the modules the session has imported, "
            "builtins and the session's variables only)",
        )


def _help_page(topic: str, obj: Any, not_found_note: str) -> dict[str, Any]:
    import html as html_mod
    import pydoc

    if obj is _NOTHING:
        text = _keyword_doc(topic)
        if text is None:
            raise CallError(
                "help_not_found", f"No Python documentation found for {topic!r}{not_found_note}."
            )
        body = f'<pre class="pydoc-topic">{html_mod.escape(text)}</pre>'
        return {"topic": topic, "package": "", "title": f"Python: {topic}", "html": body}
    import inspect

    doc_obj = obj
    if not (
        inspect.ismodule(obj)
        or inspect.isclass(obj)
        or inspect.isroutine(obj)
        or inspect.isdatadescriptor(obj)
        or (callable(obj) and pydoc.getdoc(obj))
    ):
        doc_obj = type(obj)
    try:
        body = pydoc.HTMLDoc().document(doc_obj, topic)
    except Exception as exc:
        raise CallError(
            "help_not_found",
            f"No help for {topic!r}: pydoc failed ({type(exc).__name__}: {_clip(str(exc), 200)}).",
        ) from None
    first = (pydoc.getdoc(doc_obj) or "").strip().splitlines()
    title = first[0].strip() if first and first[0].strip() else pydoc.describe(doc_obj)
    return {
        "topic": topic,
        "package": "",
        "title": _clip(title),
        "html": _rewrite_links(body, topic, doc_obj),
    }


class _HelpIndex:
    """topic -> [topic, title, kind, topic_l, title_l, last_l, depth, description_l]"""

    def __init__(self) -> None:
        self.signature: Any = None
        self.entries: dict[str, list[Any]] = {}
        self.by_id: dict[int, str] = {}
        self.modules_done: set[str] = set()
        self.build_s = 0.0

    def add(
        self, topic: str, title: str | None, kind: str, description: str = "", prefer: bool = False
    ) -> None:
        title = (title or "").strip()
        old = self.entries.get(topic)
        if old is not None:
            if title and (prefer or not old[1]):
                old[1] = title
                old[4] = title.lower()
            if description and not old[7]:
                old[7] = description.lower()
            return
        tl = topic.lower()
        last = tl.rpartition(".")[2]
        depth = topic.count(".")
        self.entries[topic] = [
            topic,
            title,
            kind,
            tl,
            title.lower(),
            last,
            depth,
            description.lower(),
        ]


_INDEX: _HelpIndex | None = None


def _path_signature() -> tuple[Any, ...]:
    sig: list[tuple[str, int | None]] = []
    cwd = os.getcwd()
    for p in sys.path:
        if not p or p == "." or p == cwd:
            continue  # the working directory changes all the time; its modules still count
        try:
            sig.append((p, os.stat(p or ".").st_mtime_ns))
        except OSError:
            sig.append((p, None))
    return tuple(sig)


_UNDERLINE = frozenset("=-~*#^+")


def _first_line(doc: Any, name: str = "") -> str:
    """The synopsis of a docstring: its first line that is not a title underline, the
    object's own name or a signature (numpy's ufuncs start with one)."""
    if not isinstance(doc, str):
        return ""
    short = name.rpartition(".")[2]
    for line in doc.strip().splitlines()[:12]:
        text = line.strip().strip("`").strip()
        if not text or set(text) <= _UNDERLINE:
            continue
        if name and (text == name or text == short or text.startswith((short + "(", name + "("))):
            continue
        return text
    return ""


def _description(doc: Any) -> str:
    return " ".join(doc[:400].split()) if isinstance(doc, str) else ""


def _disk_synopsis(finder: Any, name: str) -> str:
    import pydoc

    try:
        spec = finder.find_spec(name)
    except Exception:
        return ""
    origin = getattr(spec, "origin", None) if spec is not None else None
    if isinstance(origin, str) and origin.endswith(".py"):
        try:
            return pydoc.synopsis(origin) or ""
        except Exception:
            return ""
    mod = sys.modules.get(name)
    return _first_line(getattr(mod, "__doc__", None)) if mod is not None else ""


_SKIP_SUBMODULES = frozenset({"tests", "test", "testing", "conftest", "setup", "__main__"})


def _index_disk(index: _HelpIndex) -> None:
    import pkgutil

    for name in sys.builtin_module_names:
        if not name.startswith("_"):
            mod = sys.modules.get(name)
            index.add(name, _first_line(getattr(mod, "__doc__", None)) if mod else "", "module")
    for info in list(pkgutil.iter_modules()):
        name = info.name
        if name.startswith("_") or name in _SKIP_SUBMODULES:
            continue
        index.add(name, _disk_synopsis(info.module_finder, name), "module")
        if not info.ispkg:
            continue
        base = getattr(info.module_finder, "path", None)
        if not isinstance(base, str):
            continue
        try:
            subs = list(pkgutil.iter_modules([os.path.join(base, name)]))
        except Exception:
            continue
        for sub in subs:
            if sub.name.startswith("_") or sub.name in _SKIP_SUBMODULES:
                continue
            index.add(f"{name}.{sub.name}", _disk_synopsis(sub.module_finder, sub.name), "module")


def _index_loaded(index: _HelpIndex) -> None:
    for modname, mod in list(sys.modules.items()):
        if modname in index.modules_done:
            continue
        index.modules_done.add(modname)
        if not isinstance(mod, types.ModuleType) or modname == "__main__":
            continue
        if any(p.startswith("_") for p in modname.split(".")):
            continue
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        doc = d.get("__doc__")
        index.add(modname, _first_line(doc, modname), "module", _description(doc), prefer=True)
        prefix = "" if modname == "builtins" else modname + "."
        for k, v in list(d.items()):
            if type(k) is not str or k.startswith("_"):
                continue
            if isinstance(v, type):
                kind = "class"
            elif (
                isinstance(v, types.FunctionType | types.BuiltinFunctionType)
                or type(v).__name__ == "ufunc"
            ):
                kind = "function"
            else:
                continue
            topic = prefix + k
            key = id(v)
            prev = index.by_id.get(key)
            if prev is not None:
                if (prev.count("."), len(prev)) <= (topic.count("."), len(topic)):
                    continue
                index.entries.pop(prev, None)
            index.by_id[key] = topic
            try:
                doc = v.__doc__
            except Exception:
                doc = None
            index.add(topic, _first_line(doc, k), kind, _description(doc))


def _help_index() -> _HelpIndex:
    global _INDEX
    sig = _path_signature()
    index = _INDEX
    start = time.perf_counter()
    if index is None or index.signature != sig:
        index = _HelpIndex()
        index.signature = sig
        _index_disk(index)
        _INDEX = index
    _index_loaded(index)
    index.build_s = time.perf_counter() - start
    return index


def help_search(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    query = args.get("query")
    if not isinstance(query, str) or not query.strip():
        raise CallError("invalid_request", "help_search needs a query.")
    limit = _int_arg(args, "limit", 50, 1, 500)
    q = query.strip().lower()
    words = q.split()
    q_dotted = ".".join(words)
    index = _help_index()
    results = []
    for topic, title, _kind, tl, til, last, depth, desc in index.entries.values():
        if tl == q or last == q or tl == q_dotted or last == "_".join(words):
            score, matched = 100.0, ["topic"]
        elif all(w in tl for w in words):
            score, matched = 50.0, ["topic"] + (["title"] if all(w in til for w in words) else [])
        elif all(w in til for w in words):
            score, matched = 20.0, ["title"]
        elif all(w in tl or w in til for w in words):
            score, matched = 10.0, ["topic", "title"]
        elif desc and all(w in tl or w in til or w in desc for w in words):
            score, matched = 5.0, ["description"]
        else:
            continue
        score -= min(depth, 9) * 0.5
        results.append((score, topic, title, matched))
    results.sort(key=lambda r: (-r[0], len(r[1]), r[1]))
    return {
        "query": query,
        "results": [
            {"topic": t, "package": "", "title": _clip(title), "matched": m, "score": s}
            for s, t, title, m in results[:limit]
        ],
    }


# ----------------------------------------------------------------------------- plots

_PLOTS: OrderedDict[str, Any] = OrderedDict()
_PLOT_COUNTER = [0]


def _remember_figure(fig: Any) -> str:
    _PLOT_COUNTER[0] += 1
    key = f"f{_PLOT_COUNTER[0]}"
    _PLOTS[key] = fig
    while len(_PLOTS) > KEEP_PLOTS:
        _PLOTS.popitem(last=False)
    return key


def _patch_inline(mod: Any) -> None:
    """Wrap ``matplotlib_inline.backend_inline._fetch_figure_metadata`` (looked up as a
    global by ``show``/``flush_figures``/``figure.show``) so each displayed figure is kept
    and its display_data carries ``{PLOT_MIME: {"key": "fN"}}`` metadata."""
    d = getattr(mod, "__dict__", {})
    orig = d.get("_fetch_figure_metadata")
    if orig is None or getattr(orig, "_rsparkhub", False):
        return

    def _fetch_figure_metadata(fig: Any) -> Any:
        md = orig(fig)
        try:
            key = _remember_figure(fig)
            md = dict(md or {})
            md[PLOT_MIME] = {"key": key}
        except Exception:
            pass
        return md

    _fetch_figure_metadata._rsparkhub = True  # type: ignore[attr-defined]
    _fetch_figure_metadata.__wrapped__ = orig  # type: ignore[attr-defined]
    mod._fetch_figure_metadata = _fetch_figure_metadata


_INLINE = "matplotlib_inline.backend_inline"
_SPARK_RETRIES = "pyspark.sql.connect.client.retries"
# pyspark's DefaultPolicy.__init__ defaults (4.x): max_retries, backoff_multiplier,
# initial_backoff (ms), max_backoff (ms), jitter, min_jitter_threshold, …
_SPARK_RETRY_DEFAULTS = (15, 4.0, 50, 60000)


def _patch_spark_retries(mod: Any) -> None:
    """A refused connection (the hub's embedded Spark server still starting, or restarting)
    is retried by pyspark with a backoff growing 4× up to 60 s, so a server that comes up
    just after the 17 s retry answers the user's first query only at the 68 s one. Retry at
    most every 2 s instead, for the same total patience (~10 minutes). Changes nothing
    unless the defaults are the ones this was written for."""
    init = mod.DefaultPolicy.__init__
    defaults = init.__defaults__
    if not defaults or tuple(defaults[:4]) != _SPARK_RETRY_DEFAULTS:
        return
    init.__defaults__ = (300, 2.0, 50, 2000, *defaults[4:])


_PATCHES: dict[str, Any] = {_INLINE: _patch_inline, _SPARK_RETRIES: _patch_spark_retries}


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        with contextlib.suppress(Exception):
            _PATCHES[module.__name__](module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _InlineFinder:
    """A meta path finder that patches a module of ``_PATCHES`` right after it is imported:
    the inline backend (matplotlib may be imported, and a figure shown, in the very cell
    that loads it) and Spark Connect's retry policy."""

    _rsparkhub_finder = True

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "_rsparkhub_finder", False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(fullname, path, target)
            except Exception:
                continue
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None

    def invalidate_caches(self) -> None:
        pass


def plot_render(args: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    key = args.get("key")
    fig = _PLOTS.get(key) if isinstance(key, str) else None
    if fig is None:
        raise CallError(
            "plot_not_found",
            f"Plot {key!r} is no longer available (the last {KEEP_PLOTS} are kept).",
        )
    fmt = args.get("format", "png")
    mimes = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
    if fmt not in mimes:
        raise CallError("invalid_request", "format must be png, svg or pdf.")
    width = args.get("width", 800)
    height = args.get("height", 600)
    res = args.get("res", 96)
    out = args.get("out")
    for name, v in (("width", width), ("height", height), ("res", res)):
        if not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 20000:
            raise CallError("invalid_request", f"{name} must be a positive number.")
    if not isinstance(out, str) or not os.path.isabs(out):
        raise CallError("invalid_request", "out must be an absolute path.")
    import matplotlib

    w_in = math.nextafter(width / res, math.inf)
    h_in = math.nextafter(height / res, math.inf)
    old_size = fig.get_size_inches().copy()
    try:
        fig.set_size_inches(w_in, h_in, forward=False)
        with matplotlib.rc_context({"savefig.bbox": "standard"}):
            fig.savefig(out, format=fmt, dpi=res)  # sets and restores fig.dpi itself
    finally:
        fig.set_size_inches(old_size, forward=False)
    return {"path": out, "mime": mimes[fmt]}


# ----------------------------------------------------------------------------- install


class _HelpHook:
    """``builtins.help`` in the kernel: ``help(x)`` points the Help pane at x."""

    _rsparkhub_help = True

    def __init__(self, orig: Any) -> None:
        self._orig = orig

    def __repr__(self) -> str:
        return repr(self._orig)

    def __call__(self, *args: Any, **kwds: Any) -> Any:
        if len(args) != 1 or kwds:
            return self._orig(*args, **kwds)
        if args[0] is self:
            return self._orig(self._orig)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                topic = _help_topic(args[0])
            if topic is None:
                return self._orig(*args)
            from IPython.display import publish_display_data

            publish_display_data(
                data={
                    "text/plain": f"Help on {topic}: see the Help pane.",
                    HELP_MIME: {"topic": topic, "package": "", "language": "python"},
                }
            )
        except Exception:
            return self._orig(*args)
        return None


def install(shell: Any = None) -> None:
    """Kernel hooks: ``help()`` → Help pane, matplotlib inline figures kept for
    ``plot_render``. Idempotent; never raises or prints."""
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
