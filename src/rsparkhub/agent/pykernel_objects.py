"""What kind of object a value is (its category and type name, cached per type), which
members it has (attributes, module and class members) and its fingerprint: cheap, bounded,
and changed by reassignment and by mutations that change type, length, shape or items.
Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import sys
import types
from typing import Any

from rsparkhub.agent.pykernel_common import _np, _pd, _pl, _type_module

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


# ----------------------------------------------------------------------------- members


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
