"""The data viewer's engine on large frames (``rsparkhub.agent.pykernel_engine``): searches
without formatting every value, sorts that order only a prefix, columns matched side by side.
Each answer is compared with what plain Python/pandas computes cell by cell: the text a cell
shows (``repr`` of numbers, ISO dates, labels) and pandas' stable sort, missing values last.
Frames are just above ``ENGINE_MIN_ROWS`` so the engine is used; the last test runs a view
through a real ipykernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from rsparkhub.agent import pykernel as K
from rsparkhub.agent import pykernel_engine as engine
from rsparkhub.agent import pykernel_env
from rsparkhub.agent.pykernel_table import ENGINE_MIN_ROWS

N = ENGINE_MIN_ROWS + 20_000


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pykernel_env, "_STATE", pykernel_env._State())


def ok(method: str, args: dict[str, Any], ns: dict[str, Any]) -> Any:
    doc = K.handle(method, args, ns)
    assert doc["ok"], doc
    return doc["result"]


def big_frame(n: int = N, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ints = rng.integers(-2_000_000, 2_000_000, n)
    ints[:4] = [0, np.iinfo(np.int64).min, np.iinfo(np.int64).max, -42]
    dec = np.round(rng.random(n) * 2000 - 1000, 2)
    dec[:6] = [np.nan, np.inf, -np.inf, -0.0, 0.0, 0.5]
    dec[rng.integers(0, n, 3000)] = np.nan
    days = np.datetime64("1999-12-20") + rng.integers(0, 4000, n).astype("timedelta64[D]")
    days = days.astype("datetime64[s]")
    days[rng.integers(0, n, 500)] = np.datetime64("NaT")
    stamps = np.datetime64("2024-01-01T00:00:00", "ns") + rng.integers(0, 10**15, n).astype(
        "timedelta64[ns]"
    )
    words = np.array(["Apple pie", "banana", "Straße", "ÉCLAIR", None, "date 2024"], dtype=object)
    return pd.DataFrame(
        {
            "i": ints,
            "u": rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
            "small": rng.integers(0, 300, n).astype(np.int16),
            "dec": dec,
            "whole": rng.integers(-500, 500, n).astype(np.float64),
            "f": rng.standard_normal(n) * 1e-3,
            "day": days,
            "ts": stamps,
            "s": pd.Series(words[rng.integers(0, 6, n)], dtype="str"),
            "o": pd.Series(words[rng.integers(0, 6, n)], dtype=object),
            "id": pd.Series([f"ID{k:06d}" for k in range(n)], dtype="str"),
            "uni": pd.Series(  # distinct text: matched in place, not on distinct values
                [None if k % 11 == 0 else f"{words[k % 4]}-{k}" for k in range(n)], dtype="str"
            ),
            "cat": pd.Categorical.from_codes(rng.integers(-1, 3, n), ["lo", "Mid", "hi"]),
            "icat": pd.Categorical(rng.integers(0, 60, n) * 7),  # categories that are numbers
            "flag": rng.random(n) < 0.3,
        }
    )


def cell_texts(col: pd.Series) -> list[str | None]:
    """What each cell shows, lower case; None for a missing value."""
    dt = col.dtype
    if isinstance(dt, np.dtype) and dt.kind == "b":
        return ["true" if v else "false" for v in col.tolist()]
    if isinstance(dt, np.dtype) and dt.kind == "f":
        return [None if v != v else repr(v).lower() for v in col.tolist()]
    if isinstance(dt, np.dtype) and dt.kind in "iu":
        return [str(v) for v in col.tolist()]
    if isinstance(dt, np.dtype) and dt.kind == "M":
        arr = col.to_numpy()
        text = np.datetime_as_string(arr, unit="s")
        return [None if np.isnat(a) else t.lower() for a, t in zip(arr, text, strict=True)]
    return [None if pd.isna(v) else str(v).lower() for v in col.tolist()]


@pytest.fixture(scope="module")
def frame_and_texts() -> tuple[pd.DataFrame, dict[str, list[str | None]]]:
    df = big_frame()
    return df, {c: cell_texts(df[c]) for c in df.columns}


@pytest.mark.parametrize(
    "needle",
    ["00042", "42", "-4", "-", "0", "0.5", "-0.0", "inf", "e-0", "2000-0", "t00:00:0", ":1",
     "APPLE", "é", "ss", "date 2", "id0001", "mid", "e", "tru", "nan", "qqq"],
)  # fmt: skip
def test_search_is_exactly_the_cells_text(
    needle: str, frame_and_texts: tuple[pd.DataFrame, dict[str, list[str | None]]]
) -> None:
    df, texts = frame_and_texts
    before = df.copy()
    lower = needle.lower()
    want = [
        r
        for r in range(len(df))
        if any(t[r] is not None and lower in t[r] for t in texts.values())  # type: ignore[operator]
    ]
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "search": needle, "limit": 1000}, ns)
    assert res["total"] == len(want), needle
    assert [int(x) for x in res["row_labels"]] == want[:1000], needle
    assert df.equals(before)


@pytest.mark.parametrize("column", ["i", "u", "dec", "whole", "f", "day", "s", "o", "cat"])
def test_contains_filter_per_column(
    column: str, frame_and_texts: tuple[pd.DataFrame, dict[str, list[str | None]]]
) -> None:
    df, texts = frame_and_texts
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    for needle in ("4", "00", "-1", "a", "20"):
        want = [r for r, t in enumerate(texts[column]) if t is not None and needle in t]
        flt = [{"column": column, "op": "contains", "value": needle}]
        res = ok("view_rows", {"view_id": vid, "filters": flt, "limit": 1000}, ns)
        assert res["total"] == len(want), (column, needle)
        assert [int(x) for x in res["row_labels"]] == want[:1000], (column, needle)


def test_digit_windows_match_str_on_extremes() -> None:
    rng = np.random.default_rng(11)
    vals = np.concatenate(
        [
            np.array([0, 1, -1, 10, -10, 100, 42, -42, 420, 1042, 10**18, -(10**18)]),
            np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max]),
            rng.integers(-(10**12), 10**12, 5000),
        ]
    ).astype(np.int64)
    uvals = np.concatenate(
        [
            np.array([0, 2**64 - 1, 10**19], dtype=np.uint64),
            rng.integers(0, 2**63, 500, dtype=np.uint64),
        ]
    ).astype(np.uint64)
    for needle in ("0", "00", "01", "1", "42", "-", "-4", "-42", "-0", "9223372036854775808"):
        for arr in (vals, uvals):
            got = engine.int_contains(np, arr, needle)
            assert got.tolist() == [needle in str(v) for v in arr.tolist()], (needle, arr.dtype)


@pytest.mark.parametrize(
    "spec",
    [
        [("dec", False)],
        [("dec", True)],
        [("cat", False), ("f", True)],
        [("s", False), ("i", True)],
        [("s", True)],
        [("flag", True), ("day", False)],
        [("day", True), ("o", False)],
        [("small", False)],
    ],
)
def test_sorted_prefix_pages_are_pandas_stable_sort(spec: list[tuple[str, bool]]) -> None:
    """The first page orders only a prefix (``recomputed``); a page far below it orders a
    longer prefix (same query: ``recomputed`` false); every page is pandas' order."""
    df = big_frame(n=ENGINE_MIN_ROWS + 60_000, seed=9)
    ns = {"df": df}
    key_frame = pd.DataFrame(index=df.index)
    for c, _d in spec:  # NA last in both directions: sort by (is_na, value)
        col = df[c]
        key_frame[c + "_na"] = col.isna()
        key_frame[c] = col.cat.codes if isinstance(col.dtype, pd.CategoricalDtype) else col
    want = key_frame.sort_values(
        [k for c, _ in spec for k in (c + "_na", c)],
        ascending=[a for _, d in spec for a in (True, not d)],
        kind="stable",
        na_position="last",
    ).index.tolist()
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    sort = [{"column": c, "descending": d} for c, d in spec]
    first = ok("view_rows", {"view_id": vid, "sort": sort, "limit": 1000}, ns)
    assert first["recomputed"] and first["total"] == len(df)
    assert [int(x) for x in first["row_labels"]] == want[:1000], spec
    for offset in (9_500, 120_000, len(df) - 500):
        page = ok("view_rows", {"view_id": vid, "sort": sort, "offset": offset, "limit": 1000}, ns)
        assert not page["recomputed"] and page["total"] == len(df)
        assert [int(x) for x in page["row_labels"]] == want[offset : offset + 1000], (spec, offset)


def test_filter_search_sort_together() -> None:
    df = big_frame(seed=3)
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    res = ok(
        "view_rows",
        {
            "view_id": vid,
            "filters": [{"column": "small", "op": "lt", "value": 150}],
            "search": "an",
            "sort": [{"column": "day", "descending": True}, {"column": "i"}],
            "limit": 1000,
        },
        ns,
    )
    sub = df[df["small"] < 150]
    texts = {c: cell_texts(sub[c]) for c in sub.columns}
    hit = [any(t[r] is not None and "an" in t[r] for t in texts.values()) for r in range(len(sub))]  # type: ignore[operator]
    want = sub[hit].sort_values(
        ["day", "i"], ascending=[False, True], kind="stable", na_position="last"
    )
    assert res["total"] == len(want)
    assert res["row_labels"] == [str(x) for x in want.index[:1000]]


def test_arrow_table_is_viewed_in_place() -> None:
    table = pa.table(
        {
            "a": [3, 1, None, 2, 1],
            "s": ["b", "A", None, "c", "a"],
            "d": pa.array([1, 2, 3, None, 0], type=pa.int32()).cast(pa.date32()),
        }
    )
    ns = {"t": table, "batch": table.to_batches()[0]}
    for name in ("t", "batch"):
        opened = ok("view_open", {"name": name}, ns)
        assert opened["nrow"] == 5 and [c["name"] for c in opened["columns"]] == ["a", "s", "d"]
        vid = opened["view_id"]

        def labels(vid: str = vid, **kw: Any) -> list[str]:
            return list(ok("view_rows", {"view_id": vid, **kw}, ns)["row_labels"])

        assert labels(sort=[{"column": "a"}, {"column": "s", "descending": True}]) == [
            "4", "1", "3", "0", "2",
        ]  # fmt: skip
        assert labels(search="a") == ["1", "4"]
        assert labels(filters=[{"column": "d", "op": "ge", "value": "1970-01-03"}]) == ["1", "2"]
        first = ok("view_rows", {"view_id": vid, "limit": 1}, ns)["rows"]
        assert first == [[3, "b", "1970-01-02"]]
    assert pl.from_arrow(table).shape == (5, 3)


def test_engine_through_a_real_kernel(tmp_path: Path) -> None:
    """A search (two threads) and a prefix sort inside ipykernel: the same rows as pandas,
    no output, no new variable."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:

        def run(code: str, silent: bool = False) -> list[dict[str, Any]]:
            msg_id = kc.execute(code, silent=silent, store_history=not silent)
            msgs = []
            while True:
                m = kc.get_iopub_msg(timeout=120)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    break
                msgs.append(m)
            reply = kc.get_shell_msg(timeout=120)
            assert reply["content"]["status"] == "ok", reply["content"]
            return msgs

        def call(method: str, args: dict[str, Any]) -> Any:
            out = tmp_path / f"{method}.json"
            msgs = run(
                '__import__("rsparkhub.agent.pykernel", fromlist=["call"]).call('
                f"{method!r}, {json.dumps(args)!r}, {str(out)!r})",
                silent=True,
            )
            assert [m["msg_type"] for m in msgs] == ["status"]
            doc = json.loads(out.read_text(encoding="utf-8"))
            assert doc["ok"], doc
            return doc["result"]

        run(
            "import numpy as np, pandas as pd\n"
            f"rng = np.random.default_rng(2); n = {N}\n"
            "df = pd.DataFrame({'x': rng.random(n), 'k': rng.integers(0, 10**6, n),\n"
            "    's': pd.Series(rng.choice(['Red fox', 'grey wolf', None], n), dtype='str')})\n"
            "want_search = [int(i) for i in df.index[df.x.map(repr).str.contains('042')\n"
            "    | df.k.astype(str).str.contains('042')][:1000]]\n"
            "want_sort = [int(i) for i in df.sort_values(['s', 'x'], ascending=[False, True],\n"
            "    kind='stable', na_position='last').index[:1000]]\n"
            "del rng, n"
        )
        names_before = run("", silent=False)  # nothing: a no-op execution
        assert names_before == [] or all(m["msg_type"] != "stream" for m in names_before)
        view = call("view_open", {"name": "df"})
        got = call("view_rows", {"view_id": view["view_id"], "search": "042", "limit": 1000})
        sort = [{"column": "s", "descending": True}, {"column": "x"}]
        ordered = call("view_rows", {"view_id": view["view_id"], "sort": sort, "limit": 1000})
        check = tmp_path / "check.json"
        run(
            "import json as _j\n"
            f"open({str(check)!r}, 'w').write(_j.dumps([want_search, want_sort,\n"
            "    sorted(k for k in globals() if not k.startswith('_'))]))"
        )
        want_search, want_sort, names = json.loads(check.read_text())
        assert [int(x) for x in got["row_labels"]] == want_search
        assert [int(x) for x in ordered["row_labels"]] == want_sort
        assert "view" not in names and "engine" not in names
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_engine_paths_are_taken(
    frame_and_texts: tuple[pd.DataFrame, dict[str, list[str | None]]],
) -> None:
    """The frame above reaches every table path (so the exactness tests cover them), and
    columns that do not qualify fall back."""
    df, _ = frame_and_texts
    assert engine.decimal_contains(np, df["dec"].to_numpy(), "5") is not None
    assert engine.decimal_contains(np, df["whole"].to_numpy(), "5") is not None
    assert engine.decimal_contains(np, df["f"].to_numpy(), "5") is None
    assert engine.datetime_contains(np, df["day"].to_numpy(), "5") is not None
    assert engine.datetime_contains(np, df["ts"].to_numpy(), "5") is None
    assert engine.arrow_text_contains(np, df["uni"], "a") is not None
    assert engine.arrow_text_contains(np, df["o"], "a") is None
    assert engine.arrow_sort_codes(np, df["s"]) is not None
