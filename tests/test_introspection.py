"""Inside the session, through the hub and the Python client, with real kernels: the
environment (listing, pushed diffs, children, delete, clear), the data viewer (pages,
sorts, filters, search — compared with what R / pandas compute directly), help and help
search, plots drawn again at other sizes and formats, and the errors for bad input."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from typing import Any

import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient, HubError

from conftest import HubProcess


async def _workspace(c: HubClient) -> str:
    ws = await c.ensure_workspace(f"intro-{uuid.uuid4().hex[:8]}")
    return str(ws["id"])


def _by_name(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in listing["variables"]}


async def _run_ok(s: Any, code: str, language: str = "r") -> Any:
    r = await s.run(code, language=language)
    assert r.ok, (code, r.events)
    return r


def _env_events(r: Any) -> list[P.EnvEvent]:
    return [e for e in r.events if isinstance(e, P.EnvEvent)]


async def _json_out(s: Any, code: str, language: str = "r") -> Any:
    """Run code that prints one JSON document; return it parsed."""
    r = await _run_ok(s, code, language)
    return json.loads(r.stdout)


R_SCRIPT = """
v <- c(1.5, 2.5, 3.5)
f <- factor(c("a", "b", "a"))
d <- as.Date("2024-03-01") + 0:9
df <- data.frame(x = 1:100, y = seq(0.5, 50, by = 0.5), g = rep(c("u", "v"), 50))
l <- list(a = 1, b = "two", c = list(d = 3))
m <- matrix(1:6, nrow = 2)
fn <- function(x, y = 2) x + y
e <- new.env(); assign("inside", 1, envir = e)
.hidden <- 1
"""


async def test_r_environment_listing_diffs_children(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        await c.upload(wid, {"build.R": R_SCRIPT.encode()})
        async with c.attach(wid) as s:
            r = await s.run(path="build.R", mode="run")
            assert r.ok, r.events
            # the execution's own diff names exactly what the script made (not .hidden)
            [ev] = _env_events(r)
            assert sorted(a["name"] for a in ev.assigned) == sorted(
                ["v", "f", "d", "df", "l", "m", "fn", "e"]
            )
            assert ev.removed == [] and ev.language == "r"

            env = _by_name(await c.environment(wid, "r"))
            assert set(env) == {"v", "f", "d", "df", "l", "m", "fn", "e"}
            assert env["v"]["type"] == "numeric" and env["v"]["length"] == 3
            assert "1.5" in env["v"]["preview"]
            assert env["f"]["type"] == "factor" and "levels" in env["f"]["preview"].lower()
            assert env["d"]["type"] == "Date" and "2024-03-01" in env["d"]["preview"]
            assert env["df"]["type"] == "data.frame" and env["df"]["dims"] == [100, 3]
            assert env["df"]["tabular"] is True and env["df"]["kind"] == "table"
            assert env["m"]["dims"] == [2, 3] and env["m"]["tabular"] is True
            assert env["l"]["type"] == "list" and env["l"]["length"] == 3
            assert env["l"]["has_children"] is True
            assert env["fn"]["type"] == "function" and "y = 2" in env["fn"]["preview"]
            assert env["fn"]["tabular"] is False
            assert env["e"]["type"] == "environment"
            sizes = {n: x["size"] for n, x in env.items()}
            # an environment's size is not its members' (they may be shared): not given
            assert sizes.pop("e") is None
            assert all(isinstance(v, int) and v > 0 for v in sizes.values()), sizes
            hidden = _by_name(await c.environment(wid, "r", hidden=True))
            assert ".hidden" in hidden

            # a further execution: exactly the changed names
            r = await _run_ok(s, "y2 <- 2; v <- v * 2; rm(m)")
            [ev] = _env_events(r)
            assert sorted(a["name"] for a in ev.assigned) == ["v", "y2"]
            assert ev.removed == ["m"]
            # nothing changed: no env event at all
            r = await _run_ok(s, "1 + 1")
            assert _env_events(r) == []

            # children, paged, and a nested path by key
            kids = await c.children(wid, ["l"], "r")
            assert kids["total"] == 3
            assert [k["name"] for k in kids["children"]][:1] and len(kids["children"]) == 3
            nested = next(k for k in kids["children"] if "c" in k["name"])
            assert nested["has_children"] is True
            deeper = await c.children(wid, ["l", nested["key"]], "r")
            assert deeper["total"] == 1 and "d" in deeper["children"][0]["name"]
            page = await c.children(wid, ["l"], "r", offset=1, limit=1)
            assert page["total"] == 3 and len(page["children"]) == 1
            members = await c.children(wid, ["e"], "r")
            assert [k["name"] for k in members["children"]] == ["inside"]

            # introspection leaves .Last.value alone
            await _run_ok(s, "z <- 1:3; z")
            await c.environment(wid, "r")
            await c.children(wid, ["df"], "r")
            r = await _run_ok(s, "identical(.Last.value, 1:3)")
            assert r.results[0].data["text/plain"] == "[1] TRUE"

            # delete one, then clear (hidden ones stay)
            assert (await c.delete_variable(wid, "f", "r"))["removed"] == ["f"]
            assert "f" not in _by_name(await c.environment(wid, "r"))
            with pytest.raises(HubError) as err:
                await c.delete_variable(wid, "no_such_thing", "r")
            assert err.value.status == 404 and err.value.code == "not_found"
            await c.clear_environment(wid, "r")
            assert (await c.environment(wid, "r"))["variables"] == []
            assert ".hidden" in _by_name(await c.environment(wid, "r", hidden=True))
            r = await _run_ok(s, "exists('df', envir = globalenv(), inherits = FALSE)")
            assert r.results[0].data["text/plain"] == "[1] FALSE"


async def test_python_and_bash_environment(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            code = (
                "import numpy as np, pandas as pd\n"
                "n = 42\ns = 'hello'\nitems = [1, 2, 3]\nd = {'a': 1, 'b': [2]}\n"
                "arr = np.arange(12.0).reshape(3, 4)\n"
                "frame = pd.DataFrame({'a': range(10), 'b': list('abcdefghij')})\n"
                "def add(x, y=1):\n    return x + y\n"
                "class Point:\n    def __init__(self):\n        self.x = 1\n"
                "p = Point()\n_private = 1\n"
            )
            r = await _run_ok(s, code, "python")
            [ev] = _env_events(r)
            names = {a["name"] for a in ev.assigned}
            assert names == {"n", "s", "items", "d", "arr", "frame", "add", "Point", "p"}
            env = _by_name(await c.environment(wid, "python"))
            assert set(env) == names  # modules and private names hidden
            assert env["n"]["type"] == "int" and env["n"]["preview"] == "42"
            assert env["items"]["length"] == 3
            assert env["arr"]["dims"] == [3, 4] and env["arr"]["tabular"] is True
            assert env["frame"]["dims"] == [10, 2] and env["frame"]["tabular"] is True
            assert "DataFrame" in env["frame"]["type"]
            assert env["add"]["kind"] == "function" and "y=1" in env["add"]["preview"]
            assert env["Point"]["kind"] == "class"
            kids = await c.children(wid, ["d"], "python")
            assert kids["total"] == 2
            attrs = await c.children(wid, ["p"], "python")
            assert [k["name"] for k in attrs["children"]] == ["x"]
            r = await _run_ok(s, "41 + 1", "python")
            await c.environment(wid, "python")
            r = await _run_ok(s, "_", "python")
            assert r.results[0].data["text/plain"] == "42"
            r = await _run_ok(s, "del s\nn = 43", "python")
            [ev] = _env_events(r)
            assert [a["name"] for a in ev.assigned] == ["n"] and ev.removed == ["s"]

            r = await _run_ok(s, "COUNT=5; fruits=(apple pear fig); export MODE=fast", "bash")
            [ev] = _env_events(r)
            assert sorted(a["name"] for a in ev.assigned) == ["COUNT", "MODE", "fruits"]
            env = _by_name(await c.environment(wid, "bash"))
            assert set(env) == {"COUNT", "MODE", "fruits"}  # not BASH_VERSION, PATH, …
            assert env["COUNT"]["preview"] == "5"
            assert env["fruits"]["kind"] == "vector" and env["fruits"]["length"] == 3
            assert "exported" in env["MODE"]["type"]
            await c.delete_variable(wid, "COUNT", "bash")
            r = await _run_ok(s, 'echo "[$COUNT]"', "bash")
            assert r.stdout.strip() == "[]"


async def test_r_diff_comes_before_done_also_when_the_code_fails(
    shared_hub: HubProcess, alice: str
) -> None:
    """R's diff rides in the execution's own reply too (r/reply.R gives IRkernel user
    expressions); a failing execution is diffed by a separate request."""
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            r = await _run_ok(s, "a <- 1\nb <- list(a)")
            [ev] = _env_events(r)
            assert sorted(v["name"] for v in ev.assigned) == ["a", "b"]
            r = await s.run("cc <- 3\nrm(a)\nstop('boom')", language="r")
            assert not r.ok
            [ev] = _env_events(r)
            assert [v["name"] for v in ev.assigned] == ["cc"] and ev.removed == ["a"]
            r = await _run_ok(s, "cc")  # nothing changed: no env event
            assert _env_events(r) == []
            assert set(_by_name(await c.environment(wid, "r"))) == {"b", "cc"}
            r = await _run_ok(
                s,
                "cat(length(Sys.glob(file.path(Sys.getenv('JUPYTER_RUNTIME_DIR'), "
                "'call-*.json'))))",
            )
            assert r.stdout.strip() == "0"


async def test_python_diff_comes_before_done_also_when_the_code_fails(
    shared_hub: HubProcess, alice: str
) -> None:
    """The Python diff rides in the execution's own request (a user expression, evaluated
    only when the code succeeds); a failing cell is diffed by a separate request. Either
    way the execution's events, up to its ``done``, name what it assigned."""
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            r = await _run_ok(s, "a = 1\nb = [a]", "python")
            [ev] = _env_events(r)
            assert sorted(v["name"] for v in ev.assigned) == ["a", "b"]
            r = await s.run("c = 3\ndel a\nraise ValueError('boom')", language="python")
            assert not r.ok
            [ev] = _env_events(r)
            assert [v["name"] for v in ev.assigned] == ["c"] and ev.removed == ["a"]
            r = await _run_ok(s, "c", "python")  # nothing changed: no env event
            assert _env_events(r) == []
            assert set(_by_name(await c.environment(wid, "python"))) == {"b", "c"}
            # the answer files of both ways are gone from the runtime directory
            r = await _run_ok(
                s,
                "import glob, os\nprint(len(glob.glob(os.path.join("
                "os.environ['JUPYTER_RUNTIME_DIR'], 'call-*.json'))))",
                "python",
            )
            assert r.stdout.strip() == "0"


R_FRAME = """
set.seed(1)
n <- 2000
df <- data.frame(
  id = seq_len(n),
  grp = factor(sample(c("alpha", "beta", "gamma"), n, replace = TRUE)),
  val = round(rnorm(n, 10, 3), 2),
  txt = sample(c("Red fox", "blue whale", "green frog", NA), n, replace = TRUE),
  day = as.Date("2024-01-01") + sample(0:365, n, replace = TRUE),
  stringsAsFactors = FALSE
)
df$val[sample(n, 50)] <- NA
df0 <- df
"""


async def test_r_data_viewer_matches_r(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            await _run_ok(s, R_FRAME)
            view = await c.open_view(wid, "df", language="r")
            vid = view["view_id"]
            assert view["nrow"] == 2000 and view["ncol"] == 5
            assert [col["name"] for col in view["columns"]] == ["id", "grp", "val", "txt", "day"]

            page = await c.view_rows(wid, vid, offset=10, limit=5)
            assert page["total"] == 2000 and [row[0] for row in page["rows"]] == list(range(11, 16))

            sort = [{"column": "grp"}, {"column": "val", "descending": True}]
            got = await c.view_rows(wid, vid, sort=sort, limit=40)
            want = await _json_out(
                s,
                "o <- df[order(df$grp, -df$val, na.last = TRUE), ]; "
                "cat(jsonlite::toJSON(head(o$id, 40)))",
            )
            assert [row[0] for row in got["rows"]] == want and got["recomputed"] is True
            again = await c.view_rows(wid, vid, sort=sort, offset=40, limit=40)
            assert again["recomputed"] is False  # the cached index, not a new sort

            filters = [
                {"column": "val", "op": "between", "min": 8, "max": 12},
                {"column": "grp", "op": "in", "values": ["alpha", "gamma"]},
                {"column": "txt", "op": "contains", "value": "FOX"},
                {"column": "day", "op": "ge", "value": "2024-06-01"},
            ]
            got = await c.view_rows(wid, vid, filters=filters, limit=1000)
            want = await _json_out(
                s,
                "w <- with(df, !is.na(val) & val >= 8 & val <= 12 & grp %in% c('alpha','gamma') & "
                "!is.na(txt) & grepl('fox', txt, ignore.case = TRUE) & day >= as.Date('2024-06-01')); "
                "cat(jsonlite::toJSON(df$id[w]))",
            )
            assert got["total"] == len(want) and [row[0] for row in got["rows"]] == want
            missing = await c.view_rows(
                wid, vid, filters=[{"column": "val", "op": "is_missing"}], limit=1000
            )
            assert missing["total"] == 50 and all(row[2] is None for row in missing["rows"])
            rx = await c.view_rows(
                wid, vid, filters=[{"column": "txt", "op": "regex", "pattern": "^(Red|blue)"}]
            )
            want_rx = await _json_out(s, "cat(sum(grepl('^(Red|blue)', df$txt)))")
            assert rx["total"] == want_rx
            found = await c.view_rows(wid, vid, search="whale", limit=1000)
            want_n = await _json_out(s, "cat(sum(grepl('whale', df$txt, ignore.case = TRUE)))")
            assert found["total"] == want_n

            # the user's object is untouched
            r = await _run_ok(s, "identical(df, df0)")
            assert r.results[0].data["text/plain"] == "[1] TRUE"

            # an expression, a matrix
            ex = await c.open_view(wid, expr="head(mtcars, 7)", language="r")
            rows = await c.view_rows(wid, ex["view_id"], limit=10)
            assert rows["total"] == 7 and rows["row_labels"][0] == "Mazda RX4"
            r = await _run_ok(s, "exists('mtcars', envir = globalenv(), inherits = FALSE)")
            assert r.results[0].data["text/plain"] == "[1] FALSE"

            # bad input
            for call, status, code in [
                (c.open_view(wid, "nope", language="r"), 404, "not_found"),
                (c.open_view(wid, expr="stop('boom')", language="r"), 422, "invalid_expression"),
                (
                    c.view_rows(wid, vid, filters=[{"column": "nope", "op": "eq", "value": 1}]),
                    422,
                    "unknown_column",
                ),
                (c.view_rows(wid, "no-such-view"), 404, "view_not_found"),
            ]:
                with pytest.raises(HubError) as err:
                    await call
                assert (err.value.status, err.value.code) == (status, code), err.value.message
            await _run_ok(s, "fn <- function(x) x")
            with pytest.raises(HubError) as err:
                await c.open_view(wid, "fn", language="r")
            assert (err.value.status, err.value.code) == (422, "not_tabular")

            # reassigning the variable releases the view, and clients are told
            r = await _run_ok(s, "df <- df[1:5, ]")
            deadline = asyncio.get_running_loop().time() + 10
            while not any(
                m.get("event", {}).get("type") == "view_released" and vid in m["event"]["view_ids"]
                for m in s.side
            ):
                assert asyncio.get_running_loop().time() < deadline, s.side
                await _run_ok(s, "invisible(NULL)")
            with pytest.raises(HubError) as err:
                await c.view_rows(wid, vid)
            assert err.value.code == "view_not_found"
            await c.close_view(wid, ex["view_id"])


async def test_pandas_data_viewer_matches_pandas(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            await _run_ok(
                s,
                "import numpy as np, pandas as pd, json\n"
                "rng = np.random.default_rng(7)\n"
                "df = pd.DataFrame({'k': rng.integers(0, 5, 1000), 'v': rng.normal(size=1000),"
                " 'name': rng.choice(['ann', 'bob', 'cy', None], 1000)})\n"
                "df.loc[::37, 'v'] = np.nan\n"
                "before = df.copy()\n",
                "python",
            )
            view = await c.open_view(wid, "df", language="python")
            vid = view["view_id"]
            assert view["nrow"] == 1000 and view["ncol"] == 3
            sort = [{"column": "k"}, {"column": "v", "descending": True}]
            got = await c.view_rows(wid, vid, language="python", sort=sort, limit=50)
            want = await _json_out(
                s,
                "o = df.sort_values(['k', 'v'], ascending=[True, False], kind='stable', "
                "na_position='last')\nprint(json.dumps([str(i) for i in o.index[:50]]))",
                "python",
            )
            assert got["row_labels"] == want
            filters = [
                {"column": "k", "op": "ge", "value": 2},
                {"column": "name", "op": "in", "values": ["ann", "cy"]},
            ]
            got = await c.view_rows(wid, vid, language="python", filters=filters, limit=1000)
            want_n = await _json_out(
                s,
                "print(int(((df.k >= 2) & df.name.isin(['ann', 'cy'])).sum()))",
                "python",
            )
            assert got["total"] == want_n
            r = await _run_ok(s, "df.equals(before)", "python")
            assert r.results[0].data["text/plain"] == "True"
            with pytest.raises(HubError) as err:
                await c.view_rows(
                    wid, vid, language="python", filters=[{"column": "zz", "op": "is_missing"}]
                )
            assert err.value.code == "unknown_column"


async def test_help_pages_search_and_events(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            await _run_ok(s, "invisible(1)")
            page = await c.help(wid, "mean", language="r")
            assert page["package"] == "base" and page["title"] == "Arithmetic Mean"
            assert "Usage" in page["html"] and "mean(x, ...)" in page["html"]
            assert "<script" not in page["html"].lower()
            # links between pages point at the help endpoint
            assert f"/api/workspaces/{wid}/help?" in page["html"]
            lm = await c.help(wid, "lm", language="r", package="stats")
            assert lm["title"] == "Fitting Linear Models"
            with pytest.raises(HubError) as err:
                await c.help(wid, "no_such_topic_xyz", language="r")
            assert (err.value.status, err.value.code) == (404, "help_not_found")

            hits = await c.help_search(wid, "linear model", language="r")
            assert any(h["topic"] == "lm" and h["package"] == "stats" for h in hits[:20])
            assert all({"topic", "package", "title", "matched"} <= set(h) for h in hits)

            await _run_ok(s, "import json", "python")
            py = await c.help(wid, "len", language="python")
            assert "len" in py["html"]
            join = await c.help(wid, "os.path.join", language="python")
            assert "join" in join["html"]
            py_hits = await c.help_search(wid, "json", language="python")
            assert any(h["topic"] == "json" for h in py_hits[:10])

            r = await _run_ok(s, "?mean")
            [h] = [e for e in r.events if isinstance(e, P.HelpEvent)]
            assert (h.topic, h.package, h.kind) == ("mean", "base", "topic")
            r = await _run_ok(s, 'help("lm", package = "stats")')
            [h] = [e for e in r.events if isinstance(e, P.HelpEvent)]
            assert (h.topic, h.package) == ("lm", "stats")
            r = await _run_ok(s, "help(len)", "python")
            [h] = [e for e in r.events if isinstance(e, P.HelpEvent)]
            assert h.language == "python" and h.topic == "len"

            # as a page for a frame: sanitized, with a CSP that sandboxes it
            with shared_hub.client(alice) as http:
                resp = http.get(
                    f"/api/workspaces/{wid}/help",
                    params={"topic": "mean", "language": "r", "format": "html"},
                )
            assert resp.status_code == 200 and "sandbox" in resp.headers["content-security-policy"]
            assert resp.text.startswith("<!doctype html>")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


async def test_plots_render_again(shared_hub: HubProcess, alice: str) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        async with c.attach(wid) as s:
            r = await _run_ok(s, "plot(1:10, main = 'ten')")
            [plot] = r.plots
            assert plot.renderable
            png = await c.render_plot(wid, plot.plot_id, format="png", width=640, height=480)
            assert _png_size(png) == (640, 480)
            big = await c.render_plot(
                wid, plot.plot_id, format="png", width=1200, height=900, res=150
            )
            assert _png_size(big) == (1200, 900)
            svg = await c.render_plot(wid, plot.plot_id, format="svg", width=500, height=400)
            assert b"<svg" in svg[:500]
            pdf = await c.render_plot(wid, plot.plot_id, format="pdf")
            assert pdf.startswith(b"%PDF")

            r = await _run_ok(
                s,
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot([1, 3, 2]); plt.show()",
                "python",
            )
            [fig] = r.plots
            assert fig.renderable
            png = await c.render_plot(wid, fig.plot_id, format="png", width=500, height=300)
            assert _png_size(png) == (500, 300)
            svg = await c.render_plot(wid, fig.plot_id, format="svg")
            assert b"<svg" in svg[:1000]

            listed = [p["id"] for p in await c.request("GET", f"/api/workspaces/{wid}/plots")]
            assert listed == [plot.plot_id, fig.plot_id]
            # after a restart only the stored image is left
            reply = await s.request(P.RestartRequest(id=uuid.uuid4().hex, language="r"))
            assert reply.ok
            with pytest.raises(HubError) as err:
                await c.render_plot(wid, plot.plot_id)
            assert (err.value.status, err.value.code) == (409, "plot_not_renderable")
            assert (await c.plot_bytes(f"/api/workspaces/{wid}/plots/{plot.plot_id}"))[
                :4
            ] == b"\x89PNG"
            await c.request("DELETE", f"/api/workspaces/{wid}/plots/{plot.plot_id}")
            with pytest.raises(HubError) as err:
                await c.render_plot(wid, plot.plot_id)
            assert err.value.status == 404


async def test_introspection_needs_a_running_idle_session(
    shared_hub: HubProcess, alice: str
) -> None:
    async with HubClient(shared_hub.url, alice) as c:
        wid = await _workspace(c)
        with pytest.raises(HubError) as err:
            await c.environment(wid, "r")
        assert (err.value.status, err.value.code) == (409, "session_not_running")
        async with c.attach(wid) as s:
            # a started session with no R kernel yet: an empty listing, no kernel started
            listing = await c.environment(wid, "r")
            assert listing["variables"] == []
            await s.send(P.ExecuteRequest(id="sleep", code="Sys.sleep(4)", language="r"))
            await asyncio.sleep(1.5)
            with pytest.raises(HubError) as err:
                await c.environment(wid, "r")
            assert (err.value.status, err.value.code) == (409, "kernel_busy")
            async for msg in s.messages(30):
                if msg.get("type") == "event" and msg["event"].get("type") == "done":
                    break
            assert (await c.environment(wid, "r"))["variables"] == []
            with pytest.raises(HubError) as err:
                await c.open_view(wid, "x", language="bash")  # type: ignore[arg-type]
            assert err.value.status == 422
