"""The data viewer's engine for large pandas columns: searches that do not format every
value, and sorts that order only the rows a page needs.

* Integers: which values' text contains a needle is decided with integer arithmetic on
  digit windows (``(|x| // 10**p) % 10**len(needle)``) — no text is made.
* Floats that are decimals with few places (prices, rounded measures, whole numbers) and
  datetimes at midnight: the distinct values of their range are formatted once (a table of
  at most ``TABLE_MAX`` entries) and the rows look their answer up.
* Arrow-backed text (pandas' ``str`` dtype) that does not repeat: polars matches it in
  place (zero copy), with a case-insensitive regex when the needle has letters.
* Columns of one search are matched side by side on two threads (numpy and polars release
  the GIL); floats that need their text are formatted together in one polars query.
* Sorts: the rows a page needs are found by partitioning the leading key (``O(n)``), and
  only those are sorted (:func:`stable_prefix`); a page further down extends the prefix.

Every function here gives exactly the answer of the plain implementation in
``pykernel_frames``/``pykernel_table`` (Python's ``repr`` text of numbers, pandas' stable
order with missing values last); nothing is kept between calls. Kernel-side code: the
rules of ``pykernel`` apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rsparkhub.agent.pykernel_table import ENGINE_MIN_ROWS, _engine, _numbers_contain, _stable_order

TABLE_MAX = 1 << 21  # distinct values formatted once for a lookup table
PREFIX_MIN = 10_000  # rows ordered at least, when a sort orders a prefix only
PROBE = 2_000  # sampled values that decide whether a column qualifies for a table


def int_contains(np: Any, arr: Any, needle: str) -> Any:
    """Which integers of ``arr`` (signed or unsigned numpy integers) have ``needle`` in their
    decimal text (``str(x)``), computed on digit windows."""
    n = len(arr)
    if arr.dtype.kind == "i":
        neg = arr < 0
        u = np.abs(arr.astype(np.int64, copy=False)).view(np.uint64)  # abs(min) wraps to 2**63
    else:
        neg = None
        u = arr.astype(np.uint64, copy=False)
    if needle.startswith("-"):
        rest = needle[1:]
        if neg is None or not rest.isdigit() and rest:
            return np.zeros(n, dtype=bool)
        if not rest:
            return neg.copy()
        return neg & _starts_with(np, u, rest)
    if not needle.isdigit():
        return np.zeros(n, dtype=bool)
    return _digits_contain(np, u, needle)


def _ndigits(value: int) -> int:
    return len(str(value))


def _digits_contain(np: Any, u: Any, needle: str) -> Any:
    """``needle`` (digits) occurs in ``str(u)``: for each place ``p`` the window of
    ``len(needle)`` digits ending there is ``u % 10**(p+w)`` in ``[v*10**p, (v+1)*10**p)``,
    and a needle with a leading zero must lie inside the digits (``u >= 10**(p+w-1)``).
    Chunks of 64Ki values keep every pass in cache."""
    n = len(u)
    hit = np.zeros(n, dtype=bool)
    if n == 0:
        return hit
    top = _ndigits(int(u.max()))
    width = len(needle)
    if width > top:
        return hit
    v = int(needle)
    leading_zero = needle[0] == "0"
    biggest = 2**64 - 1
    windows = [
        (
            np.uint64(10 ** (p + width)) if 10 ** (p + width) <= biggest else None,
            np.uint64(v * 10**p),
            np.uint64(10**p) if (v + 1) * 10**p <= biggest else None,
            np.uint64(10 ** (p + width - 1)),
        )
        for p in range(top - width + 1)
        if v * 10**p <= biggest
    ]
    step = 1 << 16
    for start in range(0, n, step):
        part = u[start : start + step]
        out = hit[start : start + step]
        for mod, low, span, least in windows:
            # floor_divide by a scalar is libdivide-fast; no mod above 2**64: all digits
            rem = part if mod is None else part - (part // mod) * mod
            # unsigned: below `low` wraps past `span`, unless low + span passes 2**64
            window = (rem - low) < span if span is not None else rem >= low
            if leading_zero:
                window &= part >= least
            out |= window
    if needle == "0":
        hit |= u == 0  # the text of zero
    return hit


def _starts_with(np: Any, u: Any, digits: str) -> Any:
    """``str(u)`` starts with ``digits`` (no sign)."""
    n = len(u)
    hit = np.zeros(n, dtype=bool)
    if n == 0:
        return hit
    v = int(digits)
    width = len(digits)
    top = _ndigits(int(u.max()))
    for d in range(width, top + 1):
        lo = 10 ** (d - 1) if d > 1 else 0
        inside = (u >= np.uint64(lo)) & (u < np.uint64(10**d))
        hit |= inside & (u // np.uint64(10 ** (d - width)) == np.uint64(v))
    return hit


def _table_lookup(np: Any, codes: Any, valid: Any, table_hit: Any) -> Any:
    out = np.zeros(len(codes), dtype=bool)
    out[valid] = table_hit[codes[valid]]
    return out


def decimal_places(np: Any, arr: Any) -> int | None:
    """The decimal places (0-3) a sample of the float64 column ``arr`` fits, or None."""
    n = len(arr)
    if n < ENGINE_MIN_ROWS or arr.dtype != np.float64:
        return None
    probe = arr[np.linspace(0, n - 1, PROBE).astype(np.intp)]
    probe = probe[np.isfinite(probe)]
    for places in (0, 1, 2, 3):
        scale = 10.0**places
        if len(probe) and np.array_equal(np.rint(probe * scale) / scale, probe):
            return places
    return None


def floats_contain(np: Any, arrays: list[Any], needle: str) -> list[Any] | None:
    """For float columns (1-D numpy arrays): which values' ``repr`` contains ``needle``,
    NaN never; formatted by polars in one query (its threads, the GIL released), values
    whose polars text differs from ``repr`` (magnitudes below 1e-4, non-finite) by ``repr``.
    None when polars is missing."""
    pl = _engine()
    if pl is None:
        return None
    cols = [a.astype(np.float64) if a.dtype != np.float64 else a for a in arrays]
    frame = pl.DataFrame({f"c{i}": a for i, a in enumerate(cols)})
    found = frame.select(
        pl.col(name).cast(pl.String).str.contains(needle, literal=True).fill_null(False)
        for name in frame.columns
    )
    out = []
    for i, arr in enumerate(cols):
        hit = found.get_column(f"c{i}").to_numpy()
        if not hit.flags.writeable:
            hit = hit.copy()
        with np.errstate(invalid="ignore"):
            odd = np.flatnonzero(~(np.isfinite(arr) & ((arr == 0) | (np.abs(arr) >= 1e-4))))
        if len(odd):
            hit[odd] = [v == v and needle in repr(v) for v in arr[odd].tolist()]
        out.append(hit)
    return out


def decimal_contains(np: Any, arr: Any, needle: str) -> Any:
    """For a float column whose finite values are decimals with at most 3 places in a range
    of at most ``TABLE_MAX`` steps: which values' ``repr`` contains ``needle``, through a table
    of the range's values; None for other columns (the caller formats every value)."""
    places = decimal_places(np, arr)
    if places is None:
        return None
    scale = 10.0**places
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(arr)
        m = np.rint(np.where(finite, arr, 0.0) * scale)
        if not np.array_equal(m / scale, np.where(finite, arr, 0.0)):
            return None
        lo, hi = float(m.min()), float(m.max())
        if hi - lo >= TABLE_MAX or abs(lo) > 2.0**52 or abs(hi) > 2.0**52:
            return None
        codes = (m - lo).astype(np.intp)
    values = (np.arange(int(hi - lo) + 1, dtype=np.float64) + lo) / scale
    table_hit = _numbers_contain(np, values, needle)
    if table_hit is None:
        return None
    out = _table_lookup(np, codes, finite, table_hit)
    for text, where in (
        ("inf", arr == np.inf),
        ("-inf", arr == -np.inf),
        ("-0.0", (arr == 0) & np.signbit(arr)),
    ):
        if needle in text:
            out |= where
        else:
            out &= ~where
    return out  # NaN is missing: the caller masks it


def datetime_contains(np: Any, arr: Any, needle: str) -> Any:
    """For datetime64 values that are all at midnight within ``TABLE_MAX`` days: which
    values' text (``datetime_as_string(unit="s")``) contains ``needle``; else None."""
    n = len(arr)
    if n < ENGINE_MIN_ROWS or arr.dtype.kind != "M":
        return None
    unit = np.datetime_data(arr.dtype)[0]
    per_day = {"D": 1, "h": 24, "m": 1440, "s": 86_400, "ms": 86_400_000}.get(unit)
    if unit in ("us", "ns"):
        per_day = 86_400 * (10**6 if unit == "us" else 10**9)
    if per_day is None:
        return None
    i8 = arr.view(np.int64)
    nat = np.iinfo(np.int64).min
    probe = i8[np.linspace(0, n - 1, PROBE).astype(np.intp)]
    if ((probe[probe != nat] % per_day) != 0).any():
        return None
    valid = i8 != nat
    if ((i8[valid] % per_day) != 0).any():
        return None
    days = i8 // per_day
    if not valid.any():
        return np.zeros(n, dtype=bool)
    lo, hi = int(days[valid].min()), int(days[valid].max())
    if hi - lo >= TABLE_MAX:
        return None
    span = (np.arange(hi - lo + 1, dtype=np.int64) + lo).astype("datetime64[D]")
    strings = getattr(np, "strings", None) or np.char
    text = np.datetime_as_string(span.astype("datetime64[s]"), unit="s")
    table_hit = strings.find(strings.lower(text), needle) >= 0
    return _table_lookup(np, (days - lo).astype(np.intp), valid, table_hit)


def arrow_text_contains(np: Any, s: Any, needle: str) -> Any:
    """For a pandas Series backed by Arrow text: which values contain ``needle`` ignoring
    case (missing: False), matched by polars in place; None for other Series."""
    pl = _engine()
    arrow = getattr(s.array, "__arrow_array__", None)
    if pl is None or arrow is None or len(s) < ENGINE_MIN_ROWS:
        return None
    try:
        col = pl.Series("v", arrow())
    except Exception:
        return None
    if col.dtype != pl.String:
        return None
    if needle != needle.upper():  # letters: a case-insensitive regex, no lower-cased copy
        import re

        hit = col.str.contains("(?i)" + re.escape(needle)).fill_null(False).to_numpy()
    else:
        hit = col.str.contains(needle, literal=True).fill_null(False).to_numpy()
    return hit if hit.flags.writeable else hit.copy()


def arrow_sort_codes(np: Any, s: Any) -> Any:
    """For a large pandas Series backed by Arrow text: integer codes that order as the
    values do (code point order, as ``pandas.factorize(sort=True)``; missing values get
    code 0, the caller sorts them by their flag); None for other Series. Arrow hashes the
    column once and sorts only its distinct values."""
    get = getattr(s.array, "__arrow_array__", None)
    if get is None or len(s) < ENGINE_MIN_ROWS:
        return None
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = get()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return None
        enc = pc.dictionary_encode(arr)
        order = np.asarray(pc.array_sort_indices(enc.dictionary))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        codes = np.asarray(pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False))
    except ImportError:
        return None
    if len(rank) == 0:
        return np.zeros(len(s), dtype=np.int64)
    return rank[codes]


def search_columns(
    np: Any,
    n: int,
    floats: list[Any],
    tasks: list[Callable[[], Any]],
    needle: str,
    fallback: Callable[[Any], Any],
) -> Any:
    """Rows where one column matches: the float Series ``floats`` formatted together by
    :func:`floats_contain` (``fallback(series)`` without polars), first, side by side with
    ``tasks`` (each gives a column's mask)."""

    def formatted() -> list[Any]:
        hits = floats_contain(np, [s.to_numpy() for s in floats], needle)
        return hits if hits is not None else [fallback(s) for s in floats]

    hit = np.zeros(n, dtype=bool)
    for m in run_side_by_side(([formatted] if floats else []) + tasks):
        for part in m if isinstance(m, list) else [m]:
            hit |= part
    return hit


def run_side_by_side(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Results of ``tasks`` run on two threads (in order); one task runs inline."""
    if len(tasks) <= 1:
        return [t() for t in tasks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rsparkhub-view") as pool:
        futures = [pool.submit(t) for t in tasks]
        return [f.result() for f in futures]


def _candidates(np: Any, keys: list[Any], rows: Any, need: int) -> Any:
    """Ascending positions (a subset of ``rows``) that are exactly the first rows of the
    stable order of ``rows`` by ``keys`` (most significant first), at least ``need`` of them."""
    if need <= 0:
        return rows[:0]
    if len(rows) <= need:
        return rows
    if not keys:
        return rows[:need]  # ties: the stable order keeps positions
    k = keys[0][rows]
    t = np.partition(k, need - 1)[need - 1]
    less = k < t
    a = int(np.count_nonzero(less))
    tie = rows[k == t]
    rest = _candidates(np, keys[1:], tie, need - a)
    if a == 0:
        return rest
    return np.union1d(rows[less], rest)


class Partial:
    """The first ``rows`` of a sorted view's order (positions), of ``total`` rows in all."""

    def __init__(self, rows: Any, total: int) -> None:
        self.rows = rows
        self.total = total


def stable_prefix(np: Any, keys: list[Any], need: int | None) -> tuple[Any, bool]:
    """The first rows (at least ``need``) of the stable ascending order by ``keys`` (most
    significant first), and whether that is the whole order."""
    n = len(keys[0]) if keys else 0
    if need is None or n < ENGINE_MIN_ROWS or max(need, PREFIX_MIN) * 8 >= n:
        return _stable_order(np, keys), True
    rows = _candidates(np, keys, np.arange(n), max(need, PREFIX_MIN))
    order = _stable_order(np, [key[rows] for key in keys])
    return rows[order], len(rows) == n
