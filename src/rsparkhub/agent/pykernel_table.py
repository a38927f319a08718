"""The data viewer's ground: cells as JSON values, filter arguments checked and coerced, and
``_Table``, what ``pykernel_frames`` implements for pandas and polars (row-index vectors,
never a copy of the data). Kernel-side code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from typing import Any

from rsparkhub.agent.pykernel_common import _ELL, CELL_MAX, CallError, _clip, _float_cell, _np
from rsparkhub.agent.pykernel_repr import _short

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
        need: int | None = None,
    ) -> Any:
        """The row positions of the query (None: all rows in order), or an
        ``pykernel_engine.Partial`` holding at least the first ``need`` of them."""
        raise NotImplementedError

    def page(self, index: Any, offset: int, limit: int) -> tuple[list[list[Any]], list[str]]:
        raise NotImplementedError


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


def _small_int(np: Any, key: Any) -> Any:
    """``key`` as the narrowest integer type that holds its range (numpy's stable sort is a
    radix sort for 8- and 16-bit keys: linear time), or ``key`` itself."""
    if key.dtype.kind == "b":
        return key.view(np.uint8)
    if key.dtype.kind not in "iu" or key.dtype.itemsize <= 2 or len(key) == 0:
        return key
    lo, hi = int(key.min()), int(key.max())
    if hi - lo < 1 << 16:
        return (key - lo).astype(np.uint16 if hi - lo >= 256 else np.uint8)
    return key


def _stable_order(np: Any, keys: list[Any]) -> Any:
    """The stable ascending order of rows by ``keys`` (most significant first).

    Least significant key first, each further key a stable sort of the order so far
    (LSD): a flag or a factor's codes is then a radix pass over 8-/16-bit integers instead
    of a full ``lexsort`` comparison sort of every key (3 s for factor + numeric on 10M rows).
    """
    order = None
    for key in reversed(keys):
        key = _small_int(np, key)
        if order is None and key.dtype.kind == "f":
            # floats rarely tie: quicksort is ~2x faster, and stable when there are no ties
            order = np.argsort(key)
            ordered = key[order]
            if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
                order = np.argsort(key, kind="stable")
        elif order is None:
            order = np.argsort(key, kind="stable")
        else:
            order = order[np.argsort(key[order], kind="stable")]
    return order if order is not None else np.arange(0)


ENGINE_MIN_ROWS = 100_000  # below this the engine's import and setup cost more than they save


def _engine() -> Any:
    """polars, imported on first use (never at import time), or None when not installed."""
    try:
        import polars
    except ImportError:
        return None
    return polars


def _numbers_contain(np: Any, arr: Any, needle: str) -> Any:
    """Which numbers of the 1-D numpy array ``arr`` (integers or floats) have ``needle`` (lower
    case) in their Python ``repr`` — what a cell shows — or None when polars is missing.

    polars formats the whole column in native code (zero copy from numpy) and matches with
    a literal substring search; its text equals ``repr`` for every integer and for every float
    except non-zero magnitudes below 1e-4 (polars writes 0.00001, Python 1e-05) and
    non-finite values: those few are formatted with ``repr``.
    """
    pl = _engine()
    if pl is None:
        return None
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        arr = arr.astype(np.float64)  # cells show the float64 value
    text = pl.Series("v", arr).cast(pl.String)  # lower case already (e, inf, nan: by repr)
    hit = text.str.contains(needle, literal=True).fill_null(False).to_numpy()
    if not hit.flags.writeable:
        hit = hit.copy()
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            odd = ~(np.isfinite(arr) & ((arr == 0) | (np.abs(arr) >= 1e-4)))
        pos = np.flatnonzero(odd)
        if len(pos):
            hit[pos] = [needle in repr(v) for v in arr[pos].tolist()]
    return hit
