"""Bounded previews of the user's objects (the Environment pane's value column): a ``repr``
that stops at ``PREVIEW_MAX`` characters and a few items, and never asks an object that was
too slow once (``_SLOW``) again while its fingerprint stays the same. Kernel-side code: the
rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from rsparkhub.agent.pykernel_common import (
    _ELL,
    BUDGET_S,
    PREVIEW_MAX,
    _clip,
    _one_line,
    _type_module,
)
from rsparkhub.agent.pykernel_objects import (
    _DATA_CATS,
    _attr_value,
    _category,
    _fingerprint,
    _obj_attr_names,
    _type_name,
)


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
