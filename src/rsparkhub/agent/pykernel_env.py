"""The ``env_*`` methods: listing the user namespace and its changes since the last listing
(``_STATE``), an object's children by ``env_children`` path (keys: see ``pykernel``), and
deleting names. Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from rsparkhub.agent.pykernel_common import (
    _NOTHING,
    MAX_CHILDREN,
    CallError,
    _hidden_ns,
    _int_arg,
    _is_hidden,
    _is_ipython_own,
    _np,
    _visible,
)
from rsparkhub.agent.pykernel_objects import (
    _attr_value,
    _category,
    _class_names,
    _fingerprint,
    _module_names,
    _obj_attr_names,
)
from rsparkhub.agent.pykernel_repr import _short
from rsparkhub.agent.pykernel_summary import _summarize
from rsparkhub.agent.pykernel_table import _label_str

if TYPE_CHECKING:
    from rsparkhub.agent.pykernel_viewer import _View


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
