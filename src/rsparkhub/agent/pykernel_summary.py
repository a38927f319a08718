"""One object's summary for the Environment pane (``_summarize``): its kind, preview and
size (bounded: sampled, within ``BUDGET_S``), its fingerprint, and whether it can be
expanded. Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
import types
from typing import Any

from rsparkhub.agent.pykernel_common import BUDGET_S, PREVIEW_MAX, _clip, _np
from rsparkhub.agent.pykernel_objects import (
    _DATA_CATS,
    _category,
    _class_names,
    _fingerprint,
    _obj_attr_names,
    _type_name,
)
from rsparkhub.agent.pykernel_repr import _is_slow, _mark_slow, _Repr

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
