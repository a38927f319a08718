"""The Python-kernel side of session introspection (``rsparkhub.agent.pykernel``, contract in
docs/introspection-contract.md): unit tests with explicit namespace dicts (listing, diffs,
children, delete/clear, the data viewer against what pandas/polars compute directly, help,
plots), then one test through a real ipykernel (hooks, and no visible effect of a call)."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from rsparkhub.agent import pykernel as K
from rsparkhub.agent import pykernel_env, pykernel_help, pykernel_plots
from rsparkhub.agent.pykernel_common import HELP_MIME, PLOT_MIME


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pykernel_env, "_STATE", pykernel_env._State())


def ok(method: str, args: dict[str, Any], ns: dict[str, Any]) -> Any:
    doc = K.handle(method, args, ns)
    assert doc["ok"], doc
    return doc["result"]


def err(method: str, args: dict[str, Any], ns: dict[str, Any]) -> dict[str, str]:
    doc = K.handle(method, args, ns)
    assert not doc["ok"], doc
    assert doc["error"]["message"]
    return doc["error"]


def by_name(variables: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in variables}


# classes and functions as a user defines them in a cell (module ``__main__``)
USER_CODE = """
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a = 1


def area(width: float, height: float = 2.0, *, unit: str = "m") -> float:
    return width * height
"""
USER: dict[str, Any] = {"__name__": "__main__"}
exec(compile(USER_CODE, "<cell>", "exec"), USER)
Point, Slotted, area = USER["Point"], USER["Slotted"], USER["area"]


VAR_KEYS = {
    "name",
    "key",
    "type",
    "kind",
    "size",
    "size_estimated",
    "length",
    "dims",
    "preview",
    "preview_truncated",
    "tabular",
    "has_children",
    "fingerprint",
}


# ----------------------------------------------------------------------------- env_list


def sample_ns(collected: list[int]) -> dict[str, Any]:
    def spy(frame: pl.DataFrame) -> pl.DataFrame:
        collected.append(1)
        return frame

    return {
        "i": 42,
        "f": 2.5,
        "s": "hello",
        "b": b"\x00ab",
        "flag": True,
        "nothing": None,
        "lst": list(range(1000)),
        "tup": (1, "a"),
        "dct": {"a": 1, "b": [1, 2]},
        "st": {3, 1, 2},
        "arr": np.arange(1000, dtype=np.float64),
        "mat": np.zeros((3, 4), dtype=np.int32),
        "df": pd.DataFrame({"a": range(1000), "b": ["x"] * 1000, "c": 1.5}),
        "ser": pd.Series([1.0, None, 3.0], name="z"),
        "idx": pd.Index(["p", "q"]),
        "pdf": pl.DataFrame({"a": [1, 2], "b": ["u", "v"]}),
        "pser": pl.Series("q", [1, 2, 3]),
        "lazy": pl.LazyFrame({"a": [1, 2]}).map_batches(spy),
        "area": area,
        "Point": Point,
        "pt": Point(1, [2, 3]),
        "slotted": Slotted(),
        "np": np,
        "_private": 1,
        "__builtins__": builtins,
        "long_text": "x" * 1000,
        "huge_int": 10**5000,
    }


def test_env_list_kinds_types_dims_previews() -> None:
    collected: list[int] = []
    ns = sample_ns(collected)
    res = ok("env_list", {"hidden": False}, ns)
    names = [v["name"] for v in res["variables"]]
    assert names == sorted(names)
    assert {"np", "_private", "__builtins__"}.isdisjoint(names)
    v = by_name(res["variables"])
    for var in res["variables"]:
        assert set(var) == VAR_KEYS
        assert len(var["preview"]) <= 200 and "\n" not in var["preview"]
        json.dumps(var, allow_nan=False)

    expect = {
        "i": ("int", "value", "42"),
        "f": ("float", "value", "2.5"),
        "s": ("str", "value", "'hello'"),
        "b": ("bytes", "value", "b'\\x00ab'"),
        "flag": ("bool", "value", "True"),
        "nothing": ("NoneType", "null", "None"),
        "tup": ("tuple", "list", "(1, 'a')"),
        "dct": ("dict", "list", "{'a': 1, 'b': [1, 2]}"),
        "st": ("set", "list", "{1, 2, 3}"),
        "df": ("pandas.DataFrame", "table", "1000 rows × 3 columns"),
        "pdf": ("polars.DataFrame", "table", "2 rows × 2 columns"),
        "area": (
            "function",
            "function",
            "def area(width: float, height: float = 2.0, *, unit: str = 'm') -> float",
        ),
        "Point": ("type", "class", "class Point"),
        "pt": ("Point", "object", "Point(x=1, y=[2, 3])"),
        "slotted": ("Slotted", "object", "Slotted(a=1)"),
    }
    for name, (tname, kind, preview) in expect.items():
        assert (v[name]["type"], v[name]["kind"], v[name]["preview"]) == (tname, kind, preview), (
            name
        )
        assert not v[name]["preview_truncated"], name

    assert v["arr"]["type"] == "numpy.ndarray" and v["arr"]["kind"] == "vector"
    assert (
        v["arr"]["dims"] == [1000] and v["arr"]["size"] == 8000 and not v["arr"]["size_estimated"]
    )
    assert v["arr"]["preview"].startswith("array([0.0, 1.0, 2.0")
    assert v["arr"]["preview"].endswith("…]) float64 (1000,)") and v["arr"]["preview_truncated"]
    assert v["mat"]["kind"] == "matrix" and v["mat"]["dims"] == [3, 4] and v["mat"]["tabular"]
    assert v["mat"]["preview"].endswith("int32 (3, 4)")
    assert v["df"]["dims"] == [1000, 3] and v["df"]["length"] == 1000
    assert v["df"]["tabular"] and v["df"]["has_children"]
    # an object (Python str) column is sampled; pandas' Arrow-backed str dtype (with pyarrow
    # installed) reports its exact size
    object_strings = pd.DataFrame({"b": ["x"]})["b"].dtype == object
    assert v["df"]["size"] > 1000 * 8 * 2 and v["df"]["size_estimated"] == object_strings
    assert v["ser"]["type"] == "pandas.Series" and v["ser"]["kind"] == "vector"
    assert v["ser"]["preview"] == "Series([1.0, nan, 3.0]) float64 (3,)"
    assert v["idx"]["type"] == "pandas.Index" and v["idx"]["dims"] == [2]
    assert (
        v["pser"]["type"] == "polars.Series" and v["pser"]["length"] == 3 and v["pser"]["tabular"]
    )
    assert v["lazy"]["type"] == "polars.LazyFrame" and not v["lazy"]["tabular"]
    assert v["lazy"]["dims"] is None and "not collected" in v["lazy"]["preview"]
    assert collected == []  # a LazyFrame is never collected by a listing
    assert (
        v["lst"]["length"] == 1000 and v["lst"]["size_estimated"] and v["lst"]["preview_truncated"]
    )
    assert v["lst"]["preview"].startswith("[0, 1, 2,") and v["lst"]["preview"].endswith("…]")
    assert v["long_text"]["length"] == 1000 and v["long_text"]["preview_truncated"]
    assert v["huge_int"]["preview_truncated"] and "digits" in v["huge_int"]["preview"]
    assert v["i"]["size"] == sys.getsizeof(42) and not v["i"]["size_estimated"]
    for name in ("i", "s", "arr", "area"):
        assert not v[name]["has_children"]
    for name in ("lst", "dct", "st", "pt", "slotted", "pdf"):
        assert v[name]["has_children"], name

    shown = ok("env_list", {"hidden": True}, ns)["variables"]
    names = [x["name"] for x in shown]
    assert "np" in names and "_private" in names and "__builtins__" not in names
    assert by_name(shown)["np"]["kind"] == "module"


def test_env_list_bounded_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[int] = []

    class Slow:
        def __repr__(self) -> str:
            calls.append(1)
            time.sleep(0.15)
            return "Slow()"

    class Noisy:
        def __repr__(self) -> str:
            print("noise on stdout")
            print("noise on stderr", file=sys.stderr)
            warnings.warn("a warning from repr", UserWarning, stacklevel=1)
            return "Noisy()"

    ns = {"slow": Slow(), "noisy": Noisy()}
    filters = list(warnings.filters)
    first = by_name(ok("env_list", {}, ns)["variables"])
    assert first["noisy"]["preview"] == "Noisy()"
    assert first["slow"]["preview"] == "Slow()"
    again = by_name(ok("env_list", {}, ns)["variables"])
    assert len(calls) == 1  # over budget once: not asked again while unchanged
    assert again["slow"]["preview_truncated"] and again["slow"]["size"] is None
    assert warnings.filters == filters
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


# ----------------------------------------------------------------------------- env_diff


def test_env_diff_reports_exactly_the_changes() -> None:
    ns: dict[str, Any] = {
        "a": 1,
        "lst": [1, 2],
        "d": {"k": 1},
        "big": list(range(1000)),
        "df": pd.DataFrame({"x": [1, 2]}),
        "arr": np.zeros(3),
        "obj": Point(1, []),
        "same": "unchanged",
        "gone": 0,
    }
    v1 = ok("env_list", {}, ns)["version"]
    nothing = ok("env_diff", {}, ns)
    assert nothing == {"version": v1, "assigned": [], "removed": [], "released_views": []}

    ns["a"] = 2  # reassigned
    ns["lst"].append(3)  # length
    ns["d"]["k"] = 2  # small container content
    ns["big"].append(1)  # length of a big one
    ns["df"] = pd.concat([ns["df"], ns["df"]])  # new frame
    ns["arr"].resize(4, refcheck=False)  # shape, same object
    ns["obj"].z = 3  # attribute added
    ns["new"] = "n"
    del ns["gone"]
    diff = ok("env_diff", {}, ns)
    assert sorted(v["name"] for v in diff["assigned"]) == sorted(
        ["a", "lst", "d", "big", "df", "arr", "obj", "new"]
    )
    assert diff["removed"] == ["gone"]
    assert diff["version"] == v1 + 1
    assert by_name(diff["assigned"])["lst"]["length"] == 3
    again = ok("env_diff", {}, ns)
    assert again["assigned"] == [] and again["removed"] == [] and again["version"] == v1 + 1


def test_listing_hidden_names_does_not_disturb_the_diffs() -> None:
    """A listing with hidden=true (the pane's "show hidden") must not make the next
    pushed diff report the hidden names as removed."""
    ns: dict[str, Any] = {"x": 1, "_secret": 2}
    ok("env_diff", {}, ns)
    listed = by_name(ok("env_list", {"hidden": True}, ns)["variables"])
    assert {"x", "_secret"} <= set(listed)
    ns["y"] = 3
    diff = ok("env_diff", {}, ns)
    assert [v["name"] for v in diff["assigned"]] == ["y"] and diff["removed"] == []


def test_env_diff_releases_views_by_name() -> None:
    df = pd.DataFrame({"x": [1, 2, 3]})
    ns: dict[str, Any] = {"df": df, "other": df}
    ok("env_list", {}, ns)
    by_name_view = ok("view_open", {"name": "df"}, ns)["view_id"]
    kept = ok("view_open", {"name": "other"}, ns)["view_id"]
    by_expr = ok("view_open", {"expr": "df.head(2)"}, ns)["view_id"]
    ns["df"] = pd.DataFrame({"x": [9]})
    diff = ok("env_diff", {}, ns)
    assert diff["released_views"] == [by_name_view]
    err("view_rows", {"view_id": by_name_view}, ns)
    assert ok("view_rows", {"view_id": kept}, ns)["total"] == 3
    assert ok("view_rows", {"view_id": by_expr}, ns)["total"] == 2
    del ns["other"]
    assert ok("env_diff", {}, ns)["released_views"] == [kept]


# ----------------------------------------------------------------------------- env_children


def test_env_children_paging_and_keys() -> None:
    ns: dict[str, Any] = {
        "lst": list(range(250)),
        "tup": ("a", "b"),
        "d": {"x": 1, 2: [10, 20], ("t", 1): "v"},
        "st": {"b", "c", "a"},
        "pt": Point(5, [1]),
        "sl": Slotted(),
        "df": pd.DataFrame({"a": [1, 2], 7: [0.5, 1.5]}),
        "pdf": pl.DataFrame({"u": [1], "v": ["w"]}),
        "mod": json,
    }
    page = ok("env_children", {"path": ["lst"], "offset": 100, "limit": 50}, ns)
    assert page["total"] == 250 and page["offset"] == 100
    assert [c["key"] for c in page["children"]] == list(range(100, 150))
    assert page["children"][0]["name"] == "[100]" and page["children"][0]["preview"] == "100"
    assert (
        ok("env_children", {"path": ["lst"], "offset": 240, "limit": 50}, ns)["children"][-1]["key"]
        == 249
    )

    d = ok("env_children", {"path": ["d"]}, ns)
    assert [(c["name"], c["key"]) for c in d["children"]] == [("'x'", 0), ("2", 1), ("('t', 1)", 2)]
    inner = ok("env_children", {"path": ["d", 1]}, ns)
    assert [c["preview"] for c in inner["children"]] == ["10", "20"]
    assert [c["preview"] for c in ok("env_children", {"path": ["st"]}, ns)["children"]] == [
        "'a'",
        "'b'",
        "'c'",
    ]
    assert [c["name"] for c in ok("env_children", {"path": ["tup"]}, ns)["children"]] == [
        "[0]",
        "[1]",
    ]
    pt = ok("env_children", {"path": ["pt"]}, ns)["children"]
    assert [(c["key"], c["preview"]) for c in pt] == [("x", "5"), ("y", "[1]")]
    assert ok("env_children", {"path": ["pt", "y", 0]}, ns)["total"] == 0
    assert [c["key"] for c in ok("env_children", {"path": ["sl"]}, ns)["children"]] == ["a"]
    cols = ok("env_children", {"path": ["df"]}, ns)["children"]
    assert [(c["name"], c["key"], c["type"]) for c in cols] == [
        ("a", "a", "pandas.Series"),
        ("7", 7, "pandas.Series"),
    ]
    assert ok("env_children", {"path": ["df", 7]}, ns)["total"] == 0
    pcols = ok("env_children", {"path": ["pdf"]}, ns)["children"]
    assert [(c["key"], c["type"]) for c in pcols] == [
        ("u", "polars.Series"),
        ("v", "polars.Series"),
    ]
    members = ok("env_children", {"path": ["mod"], "limit": 1000}, ns)
    assert "loads" in [c["key"] for c in members["children"]]
    assert all(not c["key"].startswith("_") for c in members["children"])

    assert err("env_children", {"path": ["nope"]}, ns)["code"] == "not_found"
    assert err("env_children", {"path": ["lst", 999]}, ns)["code"] == "not_found"
    assert err("env_children", {"path": ["d", "x"]}, ns)["code"] == "not_found"
    assert err("env_children", {"path": ["df", "zz"]}, ns)["code"] == "not_found"


# ----------------------------------------------------------------------------- delete / clear


def test_env_delete_and_clear() -> None:
    ns: dict[str, Any] = {
        "a": 1,
        "b": 2,
        "c": 3,
        "_h": 4,
        "np": np,
        "__name__": "__main__",
        "_": 5,
        "_i1": "x",
    }
    assert err("env_delete", {"names": ["a", "zz"]}, ns)["code"] == "not_found"
    assert "a" in ns  # nothing removed
    assert ok("env_delete", {"names": ["a", "b"]}, ns) == {"removed": ["a", "b"]}
    assert "a" not in ns and "b" not in ns
    assert ok("env_clear", {"hidden": False}, ns) == {"removed": ["c"]}
    assert set(ns) == {"_h", "np", "__name__", "_", "_i1"}
    assert ok("env_clear", {"hidden": True}, ns) == {"removed": ["_h", "np"]}
    assert set(ns) == {"__name__", "_", "_i1"}  # IPython's own names are never cleared


# ----------------------------------------------------------------------------- data viewer


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "num": [3.0, 1.0, np.nan, 2.0, 1.0, np.inf, -np.inf],
            "txt": ["banana", "Apple", None, "cherry", "apple", "Date", "fig"],
            "when": pd.to_datetime(
                [
                    "2024-01-02",
                    None,
                    "2023-05-01",
                    "2025-01-01",
                    "2024-01-01",
                    "2024-06-30",
                    "2022-12-31",
                ]
            ),
            "flag": [True, False, True, False, True, True, False],
            "cnt": pd.array([5, None, 1, 5, 2, 2, 9], dtype="Int64"),
            "cat": pd.Categorical(
                ["lo", "hi", "lo", None, "mid", "hi", "lo"], categories=["lo", "mid", "hi"]
            ),
        },
        index=[f"r{i}" for i in range(7)],
    )


def labels(res: dict[str, Any]) -> list[str]:
    return list(res["row_labels"])


def test_view_pages_cells_and_caching() -> None:
    df = frame()
    ns = {"df": df}
    opened = ok("view_open", {"name": "df"}, ns)
    assert opened["source"] == "df" and opened["nrow"] == 7 and opened["ncol"] == 6
    assert [c["name"] for c in opened["columns"]] == list(df.columns)
    assert [c["index"] for c in opened["columns"]] == list(range(6))
    vid = opened["view_id"]
    first = ok("view_rows", {"view_id": vid, "offset": 0, "limit": 3}, ns)
    assert first["total"] == 7 and first["offset"] == 0 and first["columns"] == list(df.columns)
    assert first["row_labels"] == ["r0", "r1", "r2"] and first["recomputed"]
    assert first["rows"][0] == [3.0, "banana", "2024-01-02T00:00:00", True, 5, "lo"]
    assert first["rows"][1] == [1.0, "Apple", None, False, None, "hi"]
    assert first["rows"][2][0] is None  # NaN
    rest = ok("view_rows", {"view_id": vid, "offset": 3, "limit": 100}, ns)
    assert rest["row_labels"] == ["r3", "r4", "r5", "r6"] and not rest["recomputed"]
    assert [r[0] for r in rest["rows"]] == [2.0, 1.0, "Inf", "-Inf"]
    assert rest["rows"][0][5] is None
    json.dumps(rest, allow_nan=False)
    past = ok("view_rows", {"view_id": vid, "offset": 50}, ns)
    assert past["rows"] == [] and past["total"] == 7
    assert ok("view_close", {"view_id": vid}, ns) == {"closed": True}
    assert err("view_rows", {"view_id": vid}, ns)["code"] == "view_not_found"
    assert err("view_close", {"view_id": vid}, ns)["code"] == "view_not_found"


def test_view_limit_is_capped() -> None:
    ns = {"big": pd.DataFrame({"x": np.arange(5000)})}
    vid = ok("view_open", {"name": "big"}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "offset": 10, "limit": 5000}, ns)
    assert len(res["rows"]) == 1000 and res["rows"][0] == [10] and res["row_labels"][0] == "10"


@pytest.mark.parametrize(
    "sort",
    [
        [("num", False)],
        [("num", True)],
        [("txt", False)],
        [("txt", True)],
        [("when", True)],
        [("cnt", False)],
        [("cnt", True), ("num", False)],
        [("flag", False), ("when", True)],
        [("cat", False), ("txt", True)],
    ],
)
def test_view_sort_matches_pandas(sort: list[tuple[str, bool]]) -> None:
    df = frame()
    before = df.copy()
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    spec = [{"column": c, "descending": d} for c, d in sort]
    res = ok("view_rows", {"view_id": vid, "sort": spec}, ns)
    expected = df.sort_values(
        by=[c for c, _ in sort],
        ascending=[not d for _, d in sort],
        kind="stable",
        na_position="last",
    )
    assert labels(res) == list(expected.index)
    assert df.equals(before) and list(df.index) == list(before.index)


def test_view_sort_is_stable_with_missing_last_both_ways() -> None:
    df = pd.DataFrame({"k": [2, None, 1, 2, None, 1], "v": list("abcdef")})
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    up = ok("view_rows", {"view_id": vid, "sort": [{"column": "k"}]}, ns)
    down = ok("view_rows", {"view_id": vid, "sort": [{"column": "k", "descending": True}]}, ns)
    assert [r[1] for r in up["rows"]] == list("cfadbe")
    assert [r[1] for r in down["rows"]] == list("adcfbe")


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({"column": "num", "op": "eq", "value": 1}, lambda d: d.num == 1),
    ({"column": "num", "op": "ne", "value": "1"}, lambda d: (d.num != 1) & d.num.notna()),
    ({"column": "num", "op": "lt", "value": 2}, lambda d: d.num < 2),
    ({"column": "num", "op": "le", "value": 2}, lambda d: d.num <= 2),
    ({"column": "num", "op": "gt", "value": 1.5}, lambda d: d.num > 1.5),
    ({"column": "num", "op": "ge", "value": 2}, lambda d: d.num >= 2),
    ({"column": "num", "op": "between", "min": 1, "max": 3}, lambda d: d.num.between(1, 3)),
    ({"column": "num", "op": "is_missing"}, lambda d: d.num.isna()),
    ({"column": "num", "op": "not_missing"}, lambda d: d.num.notna()),
    ({"column": "num", "op": "in", "values": [1, 3, "2"]}, lambda d: d.num.isin([1, 2, 3])),
    ({"column": "cnt", "op": "ge", "value": 5}, lambda d: (d.cnt >= 5).fillna(False)),
    ({"column": "cnt", "op": "is_missing"}, lambda d: d.cnt.isna()),
    (
        {"column": "when", "op": "lt", "value": "2024-01-02"},
        lambda d: d.when < pd.Timestamp("2024-01-02"),
    ),
    (
        {"column": "when", "op": "between", "min": "2023-01-01", "max": "2024-06-30T00:00:00"},
        lambda d: d.when.between(pd.Timestamp("2023-01-01"), pd.Timestamp("2024-06-30")),
    ),
    ({"column": "txt", "op": "eq", "value": "apple"}, lambda d: d.txt == "apple"),
    ({"column": "txt", "op": "gt", "value": "b"}, lambda d: (d.txt > "b").fillna(False)),
    (
        {"column": "txt", "op": "contains", "value": "AN"},
        lambda d: d.txt.str.contains("an", case=False).fillna(False),
    ),
    (
        {"column": "txt", "op": "regex", "pattern": "^[a-c]"},
        lambda d: d.txt.str.contains("^[a-c]").fillna(False),
    ),
    (
        {"column": "txt", "op": "in", "values": ["fig", "Date", None]},
        lambda d: d.txt.isin(["fig", "Date"]) | d.txt.isna(),
    ),
    ({"column": "flag", "op": "eq", "value": True}, lambda d: d.flag),
    ({"column": "cat", "op": "eq", "value": "lo"}, lambda d: (d.cat == "lo").fillna(False)),
    ({"column": "cat", "op": "in", "values": ["hi", "mid"]}, lambda d: d.cat.isin(["hi", "mid"])),
]


@pytest.mark.parametrize(("flt", "expected"), FILTERS)
def test_view_filter_matches_pandas(flt: dict[str, Any], expected: Any) -> None:
    df = frame()
    before = df.copy()
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "filters": [flt]}, ns)
    want = df[np.asarray(expected(df), dtype=bool)]
    assert labels(res) == list(want.index)
    assert res["total"] == len(want)
    assert df.equals(before)


def test_view_filters_are_anded_with_search_and_sort() -> None:
    df = frame()
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    res = ok(
        "view_rows",
        {
            "view_id": vid,
            "filters": [
                {"column": "flag", "op": "eq", "value": "true"},
                {"column": "num", "op": "not_missing"},
            ],
            "search": "a",
            "sort": [{"column": "txt", "descending": True}],
        },
        ns,
    )
    assert labels(res) == ["r0", "r4", "r5"]  # banana, apple, Date (code points); r2: no num


def pandas_search(df: pd.DataFrame, text: str) -> pd.Series:
    hit = pd.Series(False, index=df.index)
    for c in df.columns:
        col = df[c]
        if pd.api.types.is_float_dtype(col.dtype) and isinstance(col.dtype, np.dtype):
            as_text = col.map(repr)
        elif pd.api.types.is_datetime64_any_dtype(col.dtype):
            as_text = col.map(lambda t: t.isoformat() if not pd.isna(t) else "")
        else:
            as_text = col.astype(str)
        hit |= (
            as_text.str.lower().str.contains(text.lower(), regex=False).fillna(False) & col.notna()
        )
    return hit


@pytest.mark.parametrize("text", ["an", "APPLE", "2024-01", "tru", "inf", "5", "zzz"])
def test_view_search_matches_pandas(text: str) -> None:
    df = frame()
    before = df.copy()
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "search": text}, ns)
    assert labels(res) == list(df[pandas_search(df, text)].index)
    assert df.equals(before)


def test_view_search_and_contains_on_a_large_frame() -> None:
    n = 120_000
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "f": rng.random(n).round(3),
            "i": rng.integers(0, 50, n),
            "s": pd.Series(rng.choice(["alpha", "Beta", "gamma", None], n), dtype=object),
            "u": [f"id{k}" for k in range(n)],
        }
    )
    df.loc[::7, "f"] = np.nan
    before = df.copy()
    ns = {"df": df}
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]
    for text in ("12", "ta", "id11"):
        res = ok("view_rows", {"view_id": vid, "search": text, "limit": 1000}, ns)
        want = df[pandas_search(df, text)]
        assert res["total"] == len(want), text
        assert labels(res) == [str(x) for x in want.index[:1000]]
    res = ok(
        "view_rows",
        {"view_id": vid, "filters": [{"column": "s", "op": "contains", "value": "BET"}]},
        ns,
    )
    assert res["total"] == int((df.s == "Beta").sum())
    assert df.equals(before)


def test_view_polars() -> None:
    df = pl.DataFrame(
        {
            "a": [3, 1, None, 2, 1],
            "x": [0.5, float("nan"), 2.0, None, 1.0],
            "s": ["b", "A", None, "c", "a"],
        }
    )
    before = df.clone()
    ns = {"pdf": df, "lazy": df.lazy()}
    opened = ok("view_open", {"name": "pdf"}, ns)
    assert opened["nrow"] == 5 and [c["name"] for c in opened["columns"]] == ["a", "x", "s"]
    vid = opened["view_id"]
    first = ok("view_rows", {"view_id": vid, "limit": 2}, ns)
    assert first["rows"] == [[3, 0.5, "b"], [1, None, "A"]] and first["row_labels"] == ["0", "1"]

    def rows_of(**kw: Any) -> list[str]:
        return labels(ok("view_rows", {"view_id": vid, **kw}, ns))

    assert rows_of(sort=[{"column": "a"}, {"column": "s", "descending": True}]) == [
        "4",
        "1",
        "3",
        "0",
        "2",
    ]
    assert rows_of(sort=[{"column": "a", "descending": True}]) == ["0", "3", "1", "4", "2"]
    assert rows_of(sort=[{"column": "x", "descending": True}]) == ["2", "4", "0", "1", "3"]
    assert rows_of(filters=[{"column": "a", "op": "ge", "value": 2}]) == ["0", "3"]
    assert rows_of(filters=[{"column": "x", "op": "is_missing"}]) == ["1", "3"]
    assert rows_of(filters=[{"column": "s", "op": "contains", "value": "a"}]) == ["1", "4"]
    assert rows_of(filters=[{"column": "s", "op": "regex", "pattern": "^[a-b]"}]) == ["0", "4"]
    assert rows_of(filters=[{"column": "a", "op": "in", "values": [1, None]}]) == ["1", "2", "4"]
    assert rows_of(filters=[{"column": "a", "op": "between", "min": 2, "max": 3}]) == ["0", "3"]
    assert rows_of(search="C") == ["3"]
    assert rows_of(search="2") == ["2", "3"]
    assert (
        err(
            "view_rows",
            {"view_id": vid, "filters": [{"column": "a", "op": "eq", "value": "x"}]},
            ns,
        )["code"]
        == "invalid_filter"
    )
    assert df.equals(before)
    e = err("view_open", {"name": "lazy"}, ns)
    assert e["code"] == "not_tabular" and "collect()" in e["message"]


def test_view_numpy_series_and_expr() -> None:
    arr = np.arange(12).reshape(4, 3)
    ns: dict[str, Any] = {
        "arr": arr,
        "vec": np.array([3.0, np.nan, 1.0]),
        "cube": np.zeros((2, 2, 2)),
        "ser": pd.Series([5, 6], index=["a", "b"], name="val"),
        "df": frame(),
    }
    vid = ok("view_open", {"name": "arr"}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "sort": [{"column": "1", "descending": True}]}, ns)
    assert res["rows"] == [[9, 10, 11], [6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert res["row_labels"] == ["3", "2", "1", "0"]
    vid = ok("view_open", {"name": "vec"}, ns)["view_id"]
    assert ok("view_rows", {"view_id": vid, "sort": [{"column": 0}]}, ns)["rows"] == [
        [1.0],
        [3.0],
        [None],
    ]
    assert err("view_open", {"name": "cube"}, ns)["code"] == "not_tabular"
    opened = ok("view_open", {"name": "ser"}, ns)
    assert [c["name"] for c in opened["columns"]] == ["val"]
    assert ok("view_rows", {"view_id": opened["view_id"]}, ns)["row_labels"] == ["a", "b"]
    opened = ok("view_open", {"expr": "df[df.num > 1][['num', 'txt']]"}, ns)
    assert opened["source"] == "df[df.num > 1][['num', 'txt']]" and opened["nrow"] == 3
    assert ok("view_open", {"expr": "(leak := df.head(2))"}, ns)["nrow"] == 2
    assert "leak" not in ns


def test_view_errors() -> None:
    ns: dict[str, Any] = {"df": frame(), "fn": len, "x": 1}
    assert err("view_open", {"name": "nope"}, ns)["code"] == "not_found"
    assert err("view_open", {"name": "fn"}, ns)["code"] == "not_tabular"
    assert err("view_open", {"name": "x"}, ns)["code"] == "not_tabular"
    e = err("view_open", {"expr": "df["}, ns)
    assert e["code"] == "invalid_expression"
    e = err("view_open", {"expr": "undefined_name + 1"}, ns)
    assert e["code"] == "invalid_expression" and "undefined_name" in e["message"]
    vid = ok("view_open", {"name": "df"}, ns)["view_id"]

    def code(**kw: Any) -> str:
        return err("view_rows", {"view_id": vid, **kw}, ns)["code"]

    assert code(sort=[{"column": "zz"}]) == "unknown_column"
    assert code(filters=[{"column": "zz", "op": "eq", "value": 1}]) == "unknown_column"
    assert code(filters=[{"column": "num", "op": "bogus"}]) == "invalid_filter"
    assert code(filters=[{"column": "num", "op": "eq"}]) == "invalid_filter"
    assert code(filters=[{"column": "num", "op": "eq", "value": "abc"}]) == "invalid_filter"
    assert code(filters=[{"column": "when", "op": "lt", "value": "yesterday"}]) == "invalid_filter"
    assert code(filters=[{"column": "txt", "op": "regex", "pattern": "("}]) == "invalid_filter"
    assert code(filters=[{"column": "num", "op": "in", "values": "1"}]) == "invalid_filter"
    assert code(filters=[{"column": "num", "op": "between"}]) == "invalid_filter"
    assert err("view_rows", {"view_id": "v999"}, ns)["code"] == "view_not_found"


# ----------------------------------------------------------------------------- help


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_help_html() -> None:
    ns: dict[str, Any] = {}
    res = ok("help_html", {"topic": "len", "package": None}, ns)
    assert res["topic"] == "len" and res["package"] == ""
    assert res["title"] == "Return the number of items in a container."
    assert "number&nbsp;of&nbsp;items" in res["html"] and "<html" not in res["html"]
    res = ok("help_html", {"topic": "os.path.join"}, ns)
    assert "Join" in res["title"] and "<script" not in res["html"]
    res = ok("help_html", {"topic": "json"}, ns)
    links = hrefs(res["html"])
    assert "rsparkhub-help:python//json.decoder" in links
    assert "rsparkhub-help:python//json.JSONDecoder" in links
    assert "rsparkhub-help:python//json.loads" in links  # in-page anchor → topic
    assert "rsparkhub-help:python//ValueError" in links  # builtins.html#ValueError
    assert all(h.startswith(("rsparkhub-help:python//", "https://", "http://")) for h in links)
    assert "<script" not in res["html"].lower()
    res = ok("help_html", {"topic": "pandas.DataFrame"}, ns)
    assert "rsparkhub-help:python//pandas.DataFrame.merge" in hrefs(res["html"])
    assert ok("help_html", {"topic": "if"}, ns)["html"].startswith("<pre")
    assert err("help_html", {"topic": "no_such_module_xyz.thing"}, ns)["code"] == "help_not_found"
    # objects of the user namespace (e.g. functions defined in a cell)
    res = ok("help_html", {"topic": "area"}, {"area": area})
    assert "area" in res["html"]


def test_help_search() -> None:
    ns: dict[str, Any] = {}
    res = ok("help_search", {"query": "json", "limit": 5}, ns)
    assert res["query"] == "json" and res["results"][0]["topic"] == "json"
    first = res["results"][0]
    assert (
        set(first) == {"topic", "package", "title", "matched", "score"}
        and "topic" in first["matched"]
    )
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    decode = [r["topic"] for r in ok("help_search", {"query": "json decode"}, ns)["results"]]
    assert "json.decoder" in decode[:5] or "json.JSONDecoder" in decode[:5]
    regex = [r["topic"] for r in ok("help_search", {"query": "regular expression"}, ns)["results"]]
    assert "re" in regex[:5]
    frames = [r["topic"] for r in ok("help_search", {"query": "dataframe"}, ns)["results"]]
    assert "pandas.DataFrame" in frames[:3]
    assert ok("help_search", {"query": "qqqxxyyzz"}, ns)["results"] == []


def test_help_hook_publishes_and_keeps_plain_help(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(builtins, "help", lambda *a: calls.append(a))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # install() adds a finder
    import IPython.display

    monkeypatch.setattr(
        IPython.display, "publish_display_data", lambda data, **kw: published.append(data)
    )
    K.install()
    K.install()  # idempotent
    hook = builtins.help
    assert isinstance(hook, pykernel_help._HelpHook) and not isinstance(
        hook._orig, pykernel_help._HelpHook
    )
    assert sum(getattr(f, "_rsparkhub_finder", False) for f in sys.meta_path) == 1
    hook()
    assert calls == [()]
    hook(json.loads)
    hook(pd.DataFrame({"a": [1]}))
    hook("os.path")
    hook("no_such_topic_xyz")  # pydoc's own answer
    assert calls == [(), ("no_such_topic_xyz",)]
    assert [p[HELP_MIME]["topic"] for p in published] == [
        "json.loads",
        "pandas.DataFrame",
        "os.path",
    ]
    assert published[0]["text/plain"] == "Help on json.loads: see the Help pane."
    assert published[0][HELP_MIME] == {"topic": "json.loads", "package": "", "language": "python"}

    def local() -> None:
        """A function pydoc cannot locate by name."""

    hook(local)
    topic = published[-1][HELP_MIME]["topic"]
    assert "<locals>" in topic
    assert "cannot&nbsp;locate" in ok("help_html", {"topic": topic}, {})["html"]


# ----------------------------------------------------------------------------- plots


def png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def test_plot_render_sizes_and_formats(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=100)
    fig.subplots().plot([1, 3, 2])
    key = pykernel_plots._remember_figure(fig)
    for w, h, res in [(800, 600, 96), (333, 217, 72), (1001, 99, 150), (640, 480, 110)]:
        out = str(tmp_path / f"p{w}.png")
        r = ok(
            "plot_render",
            {"key": key, "format": "png", "width": w, "height": h, "res": res, "out": out},
            {},
        )
        assert r == {"path": out, "mime": "image/png"}
        assert png_size(out) == (w, h)
    assert tuple(fig.get_size_inches()) == (4, 3) and fig.dpi == 100
    svg = str(tmp_path / "p.svg")
    assert (
        ok(
            "plot_render",
            {"key": key, "format": "svg", "width": 400, "height": 300, "res": 96, "out": svg},
            {},
        )["mime"]
        == "image/svg+xml"
    )
    assert "<svg" in Path(svg).read_text()
    pdf = str(tmp_path / "p.pdf")
    ok(
        "plot_render",
        {"key": key, "format": "pdf", "width": 400, "height": 300, "res": 96, "out": pdf},
        {},
    )
    assert Path(pdf).read_bytes()[:5] == b"%PDF-"
    e = err(
        "plot_render",
        {"key": "f0", "format": "png", "width": 1, "height": 1, "res": 1, "out": svg},
        {},
    )
    assert e["code"] == "plot_not_found"


# ----------------------------------------------------------------------------- call


def test_call_writes_one_document_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "out.json")
    ns = {"x": 1}
    assert K.call("env_list", '{"hidden": false}', out, ns) is None
    doc = json.loads(Path(out).read_text(encoding="utf-8"))
    assert doc["ok"] and [v["name"] for v in doc["result"]["variables"]] == ["x"]
    assert os.listdir(tmp_path) == ["out.json"]
    K.call("env_list", "{not json", out, ns)
    assert json.loads(Path(out).read_text())["error"]["code"] == "invalid_request"
    K.call("no_such_method", "{}", out, ns)
    assert json.loads(Path(out).read_text())["error"]["code"] == "unknown_method"

    def boom(args: Any, ns: Any) -> Any:
        raise RuntimeError("kaput")

    monkeypatch.setitem(K.METHODS, "env_list", boom)
    K.call("env_list", "{}", out, ns)
    error = json.loads(Path(out).read_text())["error"]
    assert error["code"] == "internal_error" and "kaput" in error["message"]
    K.call("env_list", "{}", str(tmp_path / "missing-dir" / "out.json"), ns)  # unwritable: silent


def test_import_is_cheap() -> None:
    """Importing the kernel side loads no heavy library and nothing of rsparkhub but the
    ``pykernel*`` modules themselves."""
    import subprocess

    code = (
        "import sys; import rsparkhub.agent.pykernel as k; "
        "heavy = {'numpy', 'pandas', 'polars', 'matplotlib', 'IPython', 'pydoc'} & set(sys.modules); "
        "print(sorted(heavy)); print([m for m in sys.modules if m.startswith('rsparkhub') and m not in "
        "('rsparkhub', 'rsparkhub.agent', 'rsparkhub.agent.pykernel') "
        "and not m.startswith('rsparkhub.agent.pykernel_')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]


# ----------------------------------------------------------------------------- real kernel


class KernelDriver:
    def __init__(self, kc: Any) -> None:
        self.kc = kc

    def run(
        self, code: str, silent: bool = False, user_expressions: dict[str, str] | None = None
    ) -> tuple[list[Any], dict[str, Any]]:
        msg_id = self.kc.execute(
            code, silent=silent, store_history=not silent, user_expressions=user_expressions or {}
        )
        msgs = []
        while True:
            m = self.kc.get_iopub_msg(timeout=60)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
            msgs.append(m)
        while True:
            reply = self.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["status"] == "ok", reply["content"]
        return msgs, reply["content"]

    def call(self, method: str, args: dict[str, Any], out: Path) -> Any:
        code = (
            '__import__("rsparkhub.agent.pykernel", fromlist=["call"]).call('
            f"{method!r}, {json.dumps(args)!r}, {str(out)!r})"
        )
        msgs, _ = self.run(code, silent=True)
        assert [m["msg_type"] for m in msgs] == ["status"]  # busy only: no output at all
        doc = json.loads(out.read_text(encoding="utf-8"))
        assert doc["ok"], doc
        return doc["result"]


STATE_EXPRESSIONS = {
    "names": "sorted(get_ipython().user_ns)",
    "under": "repr((_, __, ___))",
    "out": "repr(Out)",
    "inputs": "repr((In, _i, _ii, _iii))",
    "count": "get_ipython().execution_count",
    "filters": "repr(__import__('warnings').filters)",
}


def test_real_kernel(tmp_path: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        k = KernelDriver(kc)
        k.run('__import__("rsparkhub.agent.pykernel", fromlist=["install"]).install()', silent=True)
        k.run('__import__("rsparkhub.agent.pykernel", fromlist=["install"]).install()', silent=True)
        msgs, _ = k.run("x = 41; x + 1")
        assert [
            m["content"]["data"]["text/plain"] for m in msgs if m["msg_type"] == "execute_result"
        ] == ["42"]

        def state() -> dict[str, Any]:
            return k.run("", silent=True, user_expressions=STATE_EXPRESSIONS)[1]["user_expressions"]

        before = state()
        listed = k.call("env_list", {"hidden": False}, tmp_path / "list.json")
        assert [v["name"] for v in listed["variables"]] == ["x"]  # no In/Out/exit/get_ipython/open…
        k.call("env_diff", {}, tmp_path / "diff.json")
        k.call("help_search", {"query": "json"}, tmp_path / "search.json")
        view = k.call(
            "view_open", {"expr": "(y := __import__('numpy').arange(3))"}, tmp_path / "v.json"
        )
        rows = k.call("view_rows", {"view_id": view["view_id"]}, tmp_path / "rows.json")
        assert rows["rows"] == [[0], [1], [2]]
        assert state() == before
        assert before["under"]["data"]["text/plain"] == repr(repr((42, "", "")))

        msgs, _ = k.run("help(len)")
        helps = [m["content"]["data"] for m in msgs if m["msg_type"] == "display_data"]
        assert helps == [
            {
                "text/plain": "Help on len: see the Help pane.",
                HELP_MIME: {"topic": "len", "package": "", "language": "python"},
            }
        ]

        msgs, _ = k.run(
            "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()"
        )
        shown = [m["content"] for m in msgs if m["msg_type"] == "display_data"]
        assert len(shown) == 1 and "image/png" in shown[0]["data"]
        key = shown[0]["metadata"][PLOT_MIME]["key"]
        out = tmp_path / "plot.png"
        res = k.call(
            "plot_render",
            {"key": key, "format": "png", "width": 500, "height": 321, "res": 96, "out": str(out)},
            tmp_path / "r.json",
        )
        assert res == {"path": str(out), "mime": "image/png"} and png_size(str(out)) == (500, 321)
        for fmt, magic in (("svg", b"<?xml"), ("pdf", b"%PDF-")):
            path = tmp_path / f"plot.{fmt}"
            k.call(
                "plot_render",
                {
                    "key": key,
                    "format": fmt,
                    "width": 400,
                    "height": 300,
                    "res": 72,
                    "out": str(path),
                },
                tmp_path / "r.json",
            )
            assert path.read_bytes()[:5] == magic
        msgs, _ = k.run("fig, ax = plt.subplots(); ax.plot([3, 1])")  # shown by flush_figures
        keys = [
            m["content"]["metadata"].get(PLOT_MIME) for m in msgs if m["msg_type"] == "display_data"
        ]
        assert len(keys) == 1 and keys[0]["key"] != key
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_stdout_untouched_outside_calls() -> None:
    before = sys.stdout
    K.handle("env_list", {}, {"x": io.StringIO()})
    assert sys.stdout is before


def test_spark_connect_retries_capped_at_250_ms_in_kernels() -> None:
    """The kernel hooks make pyspark retry a refused Spark Connect connection at most every
    250 ms (instead of a 4× backoff up to 60 s) with the same ~10 minutes of patience, and
    cap gRPC's own reconnect backoff of its channels the same way, both when pyspark is
    imported after the hooks and when it already was. A fresh interpreter, so this
    process's imports do not matter."""
    import subprocess

    code = (
        "import sys\n"
        "from rsparkhub.agent import pykernel\n"
        "early = sys.argv[1] == 'early'\n"
        "if early:\n"
        "    import pyspark.sql.connect.client.retries, pyspark.sql.connect.client.core\n"
        "pykernel.install()\n"
        "from pyspark.sql.connect.client.retries import DefaultPolicy\n"
        "p = DefaultPolicy()\n"
        "waits, b = [], p.initial_backoff\n"
        "for _ in range(p.max_retries):\n"
        "    waits.append(min(b, p.max_backoff)); b *= p.backoff_multiplier\n"
        "print(p.max_backoff, p.max_retries, round(sum(waits) / 1000))\n"
        "print(DefaultPolicy(max_backoff=7).max_backoff)\n"
        "from pyspark.sql.connect.client.core import ChannelBuilder\n"
        "print(dict(ChannelBuilder.GRPC_DEFAULT_OPTIONS)['grpc.max_reconnect_backoff_ms'])\n"
    )
    for when in ("late", "early"):
        out = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code, when],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.split("\n")  # fmt: skip
        backoff, retries, total_s = (int(x) for x in out[0].split())
        assert (backoff, retries) == (250, 2400), when
        assert 590 <= total_s <= 610, total_s  # about the 10 minutes pyspark guarantees
        assert out[1] == "7"  # explicit arguments still win
        assert out[2] == "250", when


def _view_index(
    ns: dict[str, Any], name: str, limit: int = 1000, **query: Any
) -> tuple[int, list[int]]:
    vid = ok("view_open", {"name": name}, ns)["view_id"]
    res = ok("view_rows", {"view_id": vid, "offset": 0, "limit": limit, **query}, ns)
    return res["total"], [int(x) for x in res["row_labels"]]


def test_multi_column_sort_is_pandas_stable_sort_with_missing_last() -> None:
    """The LSD sort (small-integer keys radix-sorted) gives exactly pandas' stable sort, NA
    last in both directions, on factors, integers with NA, floats with ties and NaN, text
    and dates."""
    rng = np.random.default_rng(7)
    n = 900
    df = pd.DataFrame(
        {
            "g": pd.Categorical.from_codes(rng.integers(-1, 4, n), ["d", "a", "c", "b"]),
            "k": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "x": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n), 1)),
            "s": np.array(["b", "a", None, "c"], dtype=object)[rng.integers(0, 4, n)],
            "d": np.datetime64("2020-01-01") + rng.integers(0, 9, n).astype("timedelta64[D]"),
            "big": rng.integers(-(10**12), 10**12, n),
        }
    )
    df.loc[rng.integers(0, n, 50), "k"] = pd.NA
    ns = {"df": df}
    for spec in (
        [("g", False), ("x", True)],
        [("g", True), ("k", False), ("x", False)],
        [("k", True), ("s", False)],
        [("s", True), ("d", True), ("big", False)],
        [("x", False)],
        [("big", True)],
    ):
        sort = [{"column": c, "descending": d} for c, d in spec]
        _, got = _view_index(ns, "df", sort=sort)
        key_frame = pd.DataFrame(index=df.index)
        for c, _d in spec:  # NA last in both directions, stable: sort by (is_na, value) keys
            col = df[c]
            key_frame[c + "_na"] = col.isna()
            if isinstance(col.dtype, pd.CategoricalDtype):  # pandas' order: the categories'
                col = col.cat.codes
            key_frame[c] = col
        want = key_frame.sort_values(
            [k for c, _ in spec for k in (c + "_na", c)],
            ascending=[a for _, d in spec for a in (True, not d)],
            kind="stable",
            na_position="last",
        ).index.tolist()
        assert got == want[:1000], spec


def test_search_numbers_through_the_engine_matches_python_repr() -> None:
    """Above the engine threshold numbers are formatted by polars; the rows found are exactly
    those whose Python repr (what a cell shows) contains the text, including tiny, huge,
    non-finite and float32 values."""
    from rsparkhub.agent.pykernel_table import ENGINE_MIN_ROWS

    rng = np.random.default_rng(3)
    n = ENGINE_MIN_ROWS + 5_000
    special = np.array(
        [1e-5, -2.5e-7, 1e16, 1e22, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-4, 5e-324]
    )
    x = np.concatenate([rng.random(n - len(special)) * 1e-3, special])
    df = pd.DataFrame(
        {
            "x": x,
            "i": rng.integers(-50_000, 50_000, n),
            "f32": rng.random(n).astype(np.float32),
        }
    )
    ns = {"df": df}
    for needle in ("e-0", "1e-", "inf", "00042", "-4", "e+", "7.5"):
        expect = [
            i
            for i, (a, b, c) in enumerate(
                zip(df["x"].tolist(), df["i"].tolist(), df["f32"].tolist(), strict=True)
            )
            if (a == a and needle in repr(a)) or needle in repr(b) or needle in repr(c)
        ]
        total, got = _view_index(ns, "df", search=needle.upper())
        assert total == len(expect), needle
        assert got == expect[:1000], needle
