"""The ``view_*`` methods: a view of a data frame, array or sequence (by variable name,
expression or ``env_children`` path), its rows after filters and sorts (the last index
cached per view), and closing it. Views live in ``pykernel_env._STATE``, where a change of
their variable releases them. Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import json
from typing import Any

from rsparkhub.agent import pykernel_env
from rsparkhub.agent.pykernel_common import MAX_ROWS, CallError, _clip, _int_arg
from rsparkhub.agent.pykernel_engine import Partial
from rsparkhub.agent.pykernel_env import _path_text, _resolve
from rsparkhub.agent.pykernel_frames import _PandasTable, _PolarsTable
from rsparkhub.agent.pykernel_objects import _category, _type_name
from rsparkhub.agent.pykernel_table import _check_filter, _column_position, _Table


class _View:
    def __init__(self, vid: str, source: str, by_name: str | None, obj: Any, table: _Table) -> None:
        self.id = vid
        self.source = source
        self.by_name = by_name
        self.obj = obj
        self.table = table
        self.cache_key: Any = None
        self.index: Any = None


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
    if type(obj).__module__.startswith("pyarrow") and type(obj).__name__ in (
        "Table",
        "RecordBatch",
    ):
        try:
            import polars

            return _PolarsTable(polars.from_arrow(obj))  # zero copy: the same Arrow buffers
        except ImportError:
            raise CallError(
                "not_tabular", "Viewing Arrow tables needs polars, which is not installed."
            ) from None
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
    pykernel_env._STATE.view_counter += 1
    vid = f"v{pykernel_env._STATE.view_counter}"
    pykernel_env._STATE.views[vid] = _View(vid, source, by_name, obj, table)
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
    view = pykernel_env._STATE.views.get(vid) if isinstance(vid, str) else None
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
    need = offset + limit
    if recomputed:
        view.cache_key = None
        view.index = table.compute_index(sort, filters, search, need)
        view.cache_key = key
    elif isinstance(view.index, Partial) and need > len(view.index.rows):
        # a page below the sorted prefix: order a longer one (the same query)
        view.index = table.compute_index(sort, filters, search, max(need, 4 * len(view.index.rows)))
    index = view.index.rows if isinstance(view.index, Partial) else view.index
    total = (
        view.index.total
        if isinstance(view.index, Partial)
        else (table.nrow() if index is None else len(index))
    )
    rows, labels = table.page(index, offset, limit)
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
    del pykernel_env._STATE.views[view.id]
    return {"closed": True}
