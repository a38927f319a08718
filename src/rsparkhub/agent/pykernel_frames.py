"""``_Table`` for pandas and polars data frames: column families, filter masks and
expressions, search, stable multi-column sorts, and pages of cells. pandas / polars are
taken from ``sys.modules`` (a frame of a library means the library is loaded). Kernel-side
code: the rules of ``pykernel`` apply.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
from typing import Any

from rsparkhub.agent import pykernel_engine as engine
from rsparkhub.agent.pykernel_common import CELL_MAX, CallError, _clip, _float_cell
from rsparkhub.agent.pykernel_repr import _short
from rsparkhub.agent.pykernel_table import (
    ENGINE_MIN_ROWS,
    _as_bool,
    _as_datetime,
    _as_number,
    _cell,
    _filter_error,
    _label_str,
    _may_contain,
    _numbers_contain,
    _Table,
)


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
        big = n >= ENGINE_MIN_ROWS
        if fam == "category":  # the labels once, looked up by code
            codes = np.asarray(s.cat.codes)
            labels = self._contains(self.pd.Series(s.cat.categories), "category", needle)
            m = np.zeros(n, dtype=bool)
            ok = codes >= 0
            m[ok] = np.asarray(labels, dtype=bool)[codes[ok]]
            return m
        if big and fam == "string" and needle == needle.upper():
            # no letters: a literal match in place beats hashing the distinct values
            fast = engine.arrow_text_contains(np, s, needle)
            if fast is not None:
                return fast
        fast = self._engine_contains(s, fam, needle) if big and fam != "string" else None
        if fast is not None:
            return fast & ~s.isna().to_numpy() if s.hasnans else fast
        if n > 50_000:
            probe = s.iloc[np.linspace(0, n - 1, 5_000).astype(np.intp)]
            try:
                distinct = probe.nunique(dropna=True)
                # dates repeat (10M rows of 9,000 days): formatting them is the slow part,
                # so match the distinct values once when the probe already repeats itself
                repeated = distinct < 1_000 or (fam == "datetime" and len(probe) - distinct >= 100)
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
        fast = engine.arrow_text_contains(self.np, s, needle) if big and fam == "string" else None
        if fast is not None:  # text that does not repeat: matched in place
            return fast
        return self._contains(s, fam, needle) & ~s.isna().to_numpy()

    def _engine_contains(self, s: Any, fam: str, needle: str) -> Any:
        """``pykernel_engine``'s answer for a large column, or None when it has none."""
        np = self.np
        dt = s.dtype
        if not isinstance(dt, np.dtype):
            return None
        if dt.kind == "b":
            arr = s.to_numpy()
            in_true, in_false = needle in "true", needle in "false"
            return (arr & in_true) | (~arr & in_false)
        if dt.kind in "iu":
            return engine.int_contains(np, s.to_numpy(), needle)
        if dt.kind == "f":
            return engine.decimal_contains(np, s.to_numpy(), needle)
        if dt.kind == "M":
            return engine.datetime_contains(np, s.to_numpy(), needle)
        return None

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
            if len(arr) >= ENGINE_MIN_ROWS:
                hit = _numbers_contain(np, arr, needle)
                if hit is not None:
                    return hit
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
        if arr is None and fam == "string":
            arr = engine.arrow_sort_codes(np, s)
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
        need: int | None = None,
    ) -> Any:
        np = self.np
        names = self.names()
        dtypes = self.df.dtypes.tolist()
        idx = None
        for j, f in filters:
            fam = self.family(dtypes[j])
            m = self._mask(self._take(self.col(j), idx), f, fam, names[j])
            idx = np.flatnonzero(m) if idx is None else idx[m]
        if search and (self.nrow() if idx is None else len(idx)) >= ENGINE_MIN_ROWS:
            idx = self._search_side_by_side(idx, search.lower())
        elif search:
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
            order, complete = engine.stable_prefix(np, keys, need)
            if not complete:
                return engine.Partial(idx[order], len(idx))
            idx = idx[order]
        return idx

    def _search_side_by_side(self, idx: Any, needle: str) -> Any:
        """Rows (of ``idx``, or all) where a column's text contains ``needle``: every column
        that may contain it matched over all those rows, side by side."""
        np = self.np
        floats: list[Any] = []  # formatted as text: one polars query
        tasks: list[Any] = []
        for j, dt in enumerate(self.df.dtypes.tolist()):
            fam = self.family(dt)
            if not _may_contain(self._charset(dt, fam), needle):
                continue
            s = self._take(self.col(j), idx)
            if (
                isinstance(dt, np.dtype)
                and dt.kind == "f"
                and engine.decimal_places(np, s.to_numpy()) is None
            ):
                floats.append(s)
            else:
                tasks.append(functools.partial(self._search_mask, s, fam, needle))
        n = self.nrow() if idx is None else len(idx)
        fallback = functools.partial(self._search_mask, fam="number", needle=needle)
        hit = engine.search_columns(np, n, floats, tasks, needle, fallback)
        return np.flatnonzero(hit) if idx is None else idx[hit]

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
        need: int | None = None,
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
