"""The API's part of isolation (issue 20, "API"), with a real hub and real R, Python and bash
kernels: nothing a workspace viewer may send runs code in the owner's session; bash
completion never expands anything, for editors too; a socket resumes only a session of its
own workspace and closes when its user stops being a member; the cookie socket checks the
whole origin; no 5xx for known inputs (agent error codes, non-Latin download names);
password hashing off the event loop; the one-time login link never in the hub's log.

Each check is made so that it fails on the behaviour the issue describes: the command in a
``$(…)`` would leave a file behind, an import would show in ``sys.modules``, a replayed
stream would carry the other session's output."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import select
import statistics
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rsparkhub import protocol as P
from rsparkhub.client import HubClient, HubError

from conftest import PASSWORD, RSPARKHUB, HubProcess, _user, free_port

ROOT = Path(__file__).resolve().parent.parent

SPY_MODULE = '''"""SPY_MODULE_DOC: importing me leaves a file behind."""
open("spy_imported", "w").close()
'''

PY_SETUP = '''
import os, sys
class Thing:
    """THING_DOC"""
    @property
    def boom(self):
        """BOOM_DOC"""
        open("boom_ran", "w").close()
        return 1
t = Thing()
'''

SEXPR_RD = r"""\name{sexprtopic}
\alias{sexprtopic}
\title{A page with R code in it}
\description{Made at help time: \Sexpr[stage=render,results=text]{file.create(file.path(tempdir(), "sexpr_ran")); paste0("REN", "DERED")}}
"""
SEXPR_DESCRIPTION = """Package: sexprpkg
Version: 0.1
Title: Render-Time Sexpr
Description: A help page with a render-stage Sexpr.
License: MIT
Author: test
Maintainer: test <t@example.com>
"""


class Shared:
    """alice's workspace (spy.py, file_a.txt) shared with bob as a viewer."""

    def __init__(self, hub: HubProcess) -> None:
        self.hub = hub
        self.alice = _user(hub, "alice")
        self.bob = _user(hub, "bob")
        with hub.client(self.alice) as c:
            r = c.post("/api/projects", json={"name": f"sec-{uuid.uuid4().hex[:6]}"})
            self.project_id = r.json()["id"]
            r = c.post(f"/api/projects/{self.project_id}/workspaces", json={"name": "shared"})
            self.workspace_id = r.json()["id"]
            for path, content in {
                "spy.py": SPY_MODULE,
                "file_a.txt": "a\n",
                "sexprpkg/DESCRIPTION": SEXPR_DESCRIPTION,
                "sexprpkg/NAMESPACE": "\n",
                "sexprpkg/man/sexprtopic.Rd": SEXPR_RD,
            }.items():
                r = c.put(
                    f"/api/workspaces/{self.workspace_id}/text/{path}",
                    json={"content": content, "base_version": 0},
                )
                assert r.status_code == 200, r.text
            r = c.put(
                f"/api/workspaces/{self.workspace_id}/members",
                json={"user": "bob", "role": "viewer"},
            )
            assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def shared(shared_hub: HubProcess) -> Shared:
    return Shared(shared_hub)


async def _run(s: Any, code: str, language: str) -> str:
    r = await s.run(code, language=language)
    assert r.ok, (code, r.events)
    return str(r.stdout)


async def _python_state(s: Any) -> dict[str, Any]:
    """What a viewer must not have caused, seen from the owner's Python kernel."""
    out = await _run(
        s,
        "import json as _j, os as _o, sys as _s; print(_j.dumps({"
        "'files': sorted(n for n in _o.listdir('.') if n.startswith(('viewer_', 'pwn_'))), "
        "'spy_imported': _o.path.exists('spy_imported'), 'spy': 'spy' in _s.modules, "
        "'tabnanny': 'tabnanny' in _s.modules, 'boom_ran': _o.path.exists('boom_ran')}))",
        "python",
    )
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- viewers


async def test_viewer_socket_requests_run_no_code(shared_hub: HubProcess, shared: Shared) -> None:
    """Every request type of the protocol, sent by a viewer: only ``ping`` and ``focus``
    (which reaches no session) are answered;
    execute, render, completion and is_complete are refused with ``viewer_cannot_run_code``
    (they would reach a kernel), interrupt and restart with ``forbidden``."""
    wid = shared.workspace_id
    async with HubClient(shared_hub.url, shared.alice) as a, a.attach(wid) as s:
        await _run(s, PY_SETUP + "kept = 41", "python")
        await _run(s, "echo ready", "bash")
        await _run(s, "kept <- 41", "r")
        async with HubClient(shared_hub.url, shared.bob) as b, b.attach(wid) as v:
            bash_code = "ls x$(touch${IFS}viewer_complete)"
            refused: list[tuple[Any, str]] = [
                (P.ExecuteRequest(id="v-exec", code="system('touch viewer_exec')"), "run"),
                (P.ExecuteRequest(id="v-run", path="spy.py", mode="run"), "run"),
                (P.RenderRequest(id="v-render", path="spy.py"), "run"),
                (
                    P.CompleteRequest(
                        id="v-c-bash", language="bash", code=bash_code, cursor_pos=len(bash_code)
                    ),
                    "run",
                ),
                (
                    P.CompleteRequest(
                        id="v-c-py", language="python", code="from spy import ", cursor_pos=16
                    ),
                    "run",
                ),
                (
                    P.CompleteRequest(
                        id="v-c-r",
                        language="r",
                        code="(system('touch viewer_r'))$a",
                        cursor_pos=28,
                    ),
                    "run",
                ),
                (P.IsCompleteRequest(id="v-isc", language="python", code="import spy"), "run"),
                (P.InterruptRequest(id="v-int"), "control"),
                (P.RestartRequest(id="v-restart", language="python"), "control"),
            ]
            # answered for viewers: ping, and focus (which file they show; the session
            # never sees it: tests/test_presence.py sends it as a viewer)
            kinds = {type(req).model_fields["type"].default for req, _ in refused}
            kinds |= {"ping", "focus"}
            every = {m.model_fields["type"].default for m in get_args(get_args(P.ClientRequest)[0])}
            assert kinds == every, f"classify the new request types {every - kinds} here"
            for req, what in refused:
                with pytest.raises(HubError) as err:
                    await v.request(req, timeout=60)
                expected = "viewer_cannot_run_code" if what == "run" else "forbidden"
                assert err.value.code == expected, (req, err.value)
                assert err.value.body.get("request_id") == req.id
            pong = await v.request(P.PingRequest(id="v-ping"))
            assert pong.ok and pong.content == {"pong": True}
        # Nothing ran: no file, no import, the Python kernel was not restarted.
        state = await _python_state(s)
        assert state["files"] == [] and not state["spy_imported"] and not state["spy"], state
        assert (await _run(s, "print(kept)", "python")).strip() == "41"
        assert (await _run(s, "cat(kept)", "r")).strip() == "41"


async def test_packages_for_a_viewer_start_no_interpreter(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """The Packages pane's list (``GET …/packages``) for a viewer is the session's last
    snapshot: taking a new one starts R, which runs the workspace's ``.Rprofile`` (code an
    editor wrote), so a viewer's request never does, even when the snapshot is stale."""
    with shared_hub.client(shared.alice) as c:
        r = c.post(f"/api/projects/{shared.project_id}/workspaces", json={"name": "pkgs"})
        wid = r.json()["id"]
        profile = 'cat("run\\n", file = "rprofile_runs", append = TRUE)\n'
        c.put(f"/api/workspaces/{wid}/text/.Rprofile", json={"content": profile, "base_version": 0})
        r = c.put(f"/api/workspaces/{wid}/members", json={"user": "bob", "role": "viewer"})
        assert r.status_code == 200, r.text
    async with HubClient(shared_hub.url, shared.alice) as a, a.attach(wid) as s:
        runs = "print(open('rprofile_runs').read().count('run'))"
        listed = await a.request("GET", f"/api/workspaces/{wid}/packages")
        assert any(p["name"] == "jsonlite" and p["source"] == "base" for p in listed["r"])
        before = int(await _run(s, runs, "python"))
        # a library directory changes: the snapshot is stale now
        await _run(
            s, "import os; open(os.environ['RSPARKHUB_OVERLAY'] + '/python/x', 'w')", "python"
        )
        async with HubClient(shared_hub.url, shared.bob) as b:
            for _ in range(2):
                assert await b.request("GET", f"/api/workspaces/{wid}/packages") == listed
        assert int(await _run(s, runs, "python")) == before
        await a.request("GET", f"/api/workspaces/{wid}/packages")  # the owner's takes one
        assert int(await _run(s, runs, "python")) == before + 1


async def test_bash_completion_never_expands(shared_hub: HubProcess, shared: Shared) -> None:
    """The owner's own completions: bash_kernel pastes the word into ``compgen`` unquoted,
    so a word with an expansion gets no completions instead of running; plain words and
    paths still complete."""
    wid = shared.workspace_id
    async with HubClient(shared_hub.url, shared.alice) as a, a.attach(wid) as s:
        await _run(s, "echo ready", "bash")

        async def complete(code: str) -> P.ReplyEvent:
            req = P.CompleteRequest(
                id=uuid.uuid4().hex, language="bash", code=code, cursor_pos=len(code)
            )
            return await s.request(req, timeout=60)

        for code in (
            "ls x$(touch${IFS}pwn_dollar)",
            "ls x`touch${IFS}pwn_tick`",
            "ls ${IFS}$(touch${IFS}pwn_brace)",
            "cat <(touch${IFS}pwn_procsub)",
            "cd a&&touch${IFS}pwn_and",
            'echo "$(touch${IFS}pwn_quoted)',
        ):
            reply = await complete(code)
            assert reply.ok and reply.content["matches"] == [], (code, reply)
        assert (await _run(s, "ls pwn_* 2>/dev/null | wc -l", "bash")).strip() == "0"
        assert (await _python_state(s))["files"] == []
        # Plain words still complete: a path, a command, a variable.
        assert "./file_a.txt" in (await complete("cat ./file_")).content["matches"]
        assert "echo" in (await complete("ech")).content["matches"]
        assert "$PATH" in (await complete("echo $PAT")).content["matches"]


async def test_python_help_for_a_viewer_imports_nothing(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """A viewer's help looks only at modules already imported, builtins and the session's
    variables, statically: no import, no property. The owner's help imports (the contrast
    that shows the check can fail)."""
    wid = shared.workspace_id
    async with (
        HubClient(shared_hub.url, shared.alice) as a,
        HubClient(shared_hub.url, shared.bob) as b,
        a.attach(wid) as s,
    ):
        await _run(s, PY_SETUP, "python")
        before = await _python_state(s)
        assert not before["spy"] and not before["tabnanny"] and not before["boom_ran"], before
        for topic in ("spy", "tabnanny", "spy.anything"):
            with pytest.raises(HubError) as err:
                await b.help(wid, topic, language="python")
            assert err.value.status == 404 and err.value.code == "help_not_found", topic
        assert (
            "Return&nbsp;the&nbsp;number&nbsp;of&nbsp;items"
            in (await b.help(wid, "len", language="python"))["html"]
        )
        assert "THING_DOC" in (await b.help(wid, "Thing", language="python"))["html"]
        assert "BOOM_DOC" in (await b.help(wid, "t.boom", language="python"))["html"]
        after = await _python_state(s)
        assert not after["spy"] and not after["spy_imported"], after
        assert not after["tabnanny"] and not after["boom_ran"], after
        # The owner may run code, so their help imports — and then the viewer may read it.
        assert "SPY_MODULE_DOC" in (await a.help(wid, "spy", language="python"))["html"]
        assert (await _python_state(s))["spy_imported"]
        assert "SPY_MODULE_DOC" in (await b.help(wid, "spy", language="python"))["html"]


async def test_r_help_for_a_viewer_evaluates_no_sexpr(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """A help page with ``\\Sexpr[stage=render]`` (R code run while rendering): shown to a
    viewer unevaluated, evaluated for the owner."""
    wid = shared.workspace_id
    async with (
        HubClient(shared_hub.url, shared.alice) as a,
        HubClient(shared_hub.url, shared.bob) as b,
        a.attach(wid) as s,
    ):
        out = await _run(
            s,
            'lib <- file.path(tempdir(), "rlib"); dir.create(lib, showWarnings = FALSE)\n'
            'log <- system2(file.path(R.home("bin"), "R"), c("CMD", "INSTALL", "-l", '
            'shQuote(lib), "sexprpkg"), stdout = TRUE, stderr = TRUE)\n'
            ".libPaths(c(lib, .libPaths()))\n"
            'cat(file.exists(file.path(lib, "sexprpkg", "help")), '
            'file.exists(file.path(tempdir(), "sexpr_ran")))',
            "r",
        )
        assert out.split() == ["TRUE", "FALSE"], out
        page = await b.help(wid, "sexprtopic", language="r", package="sexprpkg")
        assert page["package"] == "sexprpkg" and "Made at help time" in page["html"]
        assert "RENDERED" not in page["html"], page["html"]
        ran = 'cat(file.exists(file.path(tempdir(), "sexpr_ran")))'
        assert (await _run(s, ran, "r")).strip() == "FALSE"
        page = await a.help(wid, "sexprtopic", language="r", package="sexprpkg")
        assert "RENDERED" in page["html"]
        assert (await _run(s, ran, "r")).strip() == "TRUE"


async def test_viewer_views_by_name_only(shared_hub: HubProcess, shared: Shared) -> None:
    """A viewer opens data views by variable name; a name is looked up, never evaluated,
    and an expression is refused before it reaches the session."""
    wid = shared.workspace_id
    async with (
        HubClient(shared_hub.url, shared.alice) as a,
        HubClient(shared_hub.url, shared.bob) as b,
        a.attach(wid) as s,
    ):
        await _run(s, "df <- data.frame(x = 1:3)", "r")
        view = await b.open_view(wid, "df", language="r")
        assert view["nrow"] == 3
        for language, name in (
            ("r", "system('touch viewer_view_r')"),
            ("python", "__import__('os').system('touch viewer_view_py')"),
        ):
            with pytest.raises(HubError) as err:
                await b.open_view(wid, name, language=language)  # type: ignore[arg-type]
            assert err.value.status == 404 and err.value.code == "not_found", err.value
            with pytest.raises(HubError) as err:
                await b.open_view(wid, expr=name, language=language)  # type: ignore[arg-type]
            assert err.value.status == 403 and err.value.code == "viewer_cannot_run_code"
        assert (await _python_state(s))["files"] == []


# --------------------------------------------------------------------------- sockets


def _ws_url(hub: HubProcess, workspace_id: str, query: str = "") -> str:
    return hub.url.replace("http://", "ws://") + f"/api/workspaces/{workspace_id}/ws{query}"


async def _first_messages(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Everything the hub sends up to and including the (last) welcome."""
    out: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
            out.append(msg)
            if msg["type"] == "welcome":
                return out


async def _refusal(url: str, headers: dict[str, str]) -> str:
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
            try:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if msg["type"] == "welcome":
                        return "accepted"
            except ConnectionClosed as exc:
                return f"close {exc.rcvd.code if exc.rcvd else None}"
    except InvalidStatus as exc:
        return f"http {exc.response.status_code}"


async def test_a_socket_resumes_only_its_own_workspaces_sessions(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """bob names alice's session on his own workspace's socket: he gets his own session's
    stream and nothing of hers (before: her whole stream was replayed to him)."""
    wid = shared.workspace_id
    async with HubClient(shared_hub.url, shared.alice) as a, a.attach(wid) as s:
        await _run(s, "print('alice-secret-output')", "python")
        alice_session = s.session_id
    async with HubClient(shared_hub.url, shared.bob) as b:
        own = (await b.ensure_workspace(f"bob-{uuid.uuid4().hex[:6]}"))["id"]
        try:
            auth = {"Authorization": f"Bearer {shared.bob}"}
            for query in (f"?session={alice_session}&since=0", f"?session={alice_session}"):
                msgs = await _first_messages(_ws_url(shared_hub, own, query), auth)
                text = json.dumps(msgs)
                assert "alice-secret-output" not in text and alice_session not in text, msgs
                assert msgs[-1]["workspace_id"] == own and msgs[-1]["since"] == 0
        finally:
            await b.stop_session(own)


async def test_removing_a_member_closes_their_sockets(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """Removal closes the member's open socket (4403) and refuses their next one (4404),
    a resume of the session included; a role change applies to open sockets at once."""
    wid = shared.workspace_id
    carol, dave = _user(shared_hub, "carol"), _user(shared_hub, "dave")
    async with HubClient(shared_hub.url, shared.alice) as a:
        await a.share(wid, "carol", "editor")
        await a.share(wid, "dave", "editor")
        async with (
            HubClient(shared_hub.url, carol) as c,
            c.attach(wid, reconnect_s=0) as cs,
            HubClient(shared_hub.url, dave) as d,
            d.attach(wid, reconnect_s=0) as ds,
        ):
            assert (await _run(cs, "cat(1 + 1)", "r")).strip() == "2"
            session_id = cs.session_id
            # dave, made a viewer, can no longer run code on the socket he has open …
            await a.share(wid, "dave", "viewer")
            with pytest.raises(HubError) as err:
                await ds.request(P.ExecuteRequest(id="d1", code="1", language="r"), timeout=60)
            assert err.value.code == "viewer_cannot_run_code"
            # … and can again once he is an editor again.
            await a.share(wid, "dave", "editor")
            assert (await _run(ds, "cat(3)", "r")).strip() == "3"

            removed = await a.unshare(wid, "carol")
            assert removed == {"user": "carol", "removed": True, "sockets_closed": 1}
            seen: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed) as closed:
                async for msg in cs.messages(timeout=30):
                    seen.append(msg)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            assert any(m.get("code") == "not_a_member" for m in seen), seen
            # dave's socket was not touched
            assert (await _run(ds, "cat(4)", "r")).strip() == "4"
        auth = {"Authorization": f"Bearer {carol}"}
        for query in ("", f"?session={session_id}&since=0"):
            assert await _refusal(_ws_url(shared_hub, wid, query), auth) == "close 4404"
        await a.unshare(wid, "dave")


async def _closed_with(ws: Any, timeout: float) -> tuple[int | None, list[dict[str, Any]]]:
    """Read a socket until the hub closes it: the close code and what came before."""
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                seen.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), seen


async def test_revoked_credentials_close_their_sockets(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """A socket lives no longer than the credential it was opened with: deleting an API
    token or signing out closes (4401, ``signed_out``) exactly the sockets opened with it, at
    once; a user disabled from the command line (another process) loses theirs within
    ``credential_check_s``. Sockets opened with other credentials keep going."""
    wid = shared.workspace_id
    url = _ws_url(shared_hub, wid)
    user = f"rev{uuid.uuid4().hex[:6]}"
    first = shared_hub.make_user(user)
    with shared_hub.client(shared.alice) as a:
        assert a.put(
            f"/api/workspaces/{wid}/members", json={"user": user, "role": "viewer"}
        ).is_success
    with shared_hub.client(first) as c:
        made = c.post("/api/tokens", json={"name": "second"}).json()
    second, second_id = made["token"], made["id"]
    async with httpx.AsyncClient(base_url=shared_hub.url, timeout=60) as browser:
        r = await browser.post("/api/login", json={"name": user, "password": PASSWORD})
        r.raise_for_status()
        cookie_headers = {
            "Cookie": f"rsparkhub_session={browser.cookies['rsparkhub_session']}",
            "Origin": shared_hub.url,
        }

        def bearer(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        async with (
            websockets.connect(url, additional_headers=bearer(first)) as by_first,
            websockets.connect(url, additional_headers=bearer(second)) as by_second,
            websockets.connect(url, additional_headers=cookie_headers) as by_cookie,
        ):
            for ws in (by_first, by_second, by_cookie):
                while json.loads(await asyncio.wait_for(ws.recv(), 60))["type"] != "welcome":
                    pass
            with shared_hub.client(first) as c:
                assert c.delete(f"/api/tokens/{second_id}").is_success
            code, seen = await _closed_with(by_second, 10)
            assert code == 4401 and any(m.get("code") == "signed_out" for m in seen), seen

            csrf = browser.cookies["rsparkhub_csrf"]
            r = await browser.post("/api/logout", headers={"X-CSRF-Token": csrf})
            r.raise_for_status()
            code, seen = await _closed_with(by_cookie, 10)
            assert code == 4401 and any(m.get("code") == "signed_out" for m in seen), seen

            # the first token's socket was not touched: a ping is answered …
            await by_first.send(json.dumps({"type": "ping", "id": "p1"}))
            while '"pong"' not in (raw := await asyncio.wait_for(by_first.recv(), 30)):
                assert json.loads(raw)["type"] != "error", raw
            # … until its user is disabled from the command line: the watch closes it
            shared_hub.cli("user", "disable", user)
            code, seen = await _closed_with(by_first, 60)
            assert code == 4401 and any(m.get("code") == "signed_out" for m in seen), seen


async def test_cookie_socket_origin_is_scheme_host_and_port(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """A browser (cookie) socket is accepted from the hub's own origin only: another
    scheme or port on the same host is another origin."""
    async with httpx.AsyncClient(base_url=shared_hub.url, timeout=60) as c:
        r = await c.post("/api/login", json={"name": "alice", "password": PASSWORD})
        r.raise_for_status()
        cookie = {"Cookie": f"rsparkhub_session={c.cookies['rsparkhub_session']}"}
    url = _ws_url(shared_hub, shared.workspace_id)
    port = shared_hub.port
    for origin, expected in (
        (f"http://127.0.0.1:{port}", "accepted"),
        (f"HTTP://127.0.0.1:{port}/", "accepted"),
        (f"https://127.0.0.1:{port}", "close 4403"),
        (f"http://127.0.0.1:{port + 1}", "close 4403"),
        ("http://127.0.0.1", "close 4403"),
        (f"http://localhost:{port}", "close 4403"),
        (f"http://127.0.0.1:{port}@evil.example", "close 4403"),
        ("null", "close 4403"),
    ):
        assert await _refusal(url, {**cookie, "Origin": origin}) == expected, origin


# --------------------------------------------------------------------------- no 5xx


def test_non_latin_download_names(shared_hub: HubProcess, shared: Shared) -> None:
    """A workspace named 数据分析 downloads as a zip (it was a 500), and so does a file
    named 数据.csv: RFC 6266 ``filename*`` with the real name, an ASCII ``filename``."""
    with shared_hub.client(shared.alice) as c:
        r = c.post(f"/api/projects/{shared.project_id}/workspaces", json={"name": "数据分析"})
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        r = c.put(f"/api/workspaces/{wid}/files/数据.csv", content=b"a,b\n1,2\n")
        assert r.status_code == 200, r.text
        r = c.get(f"/api/workspaces/{wid}/zip")
        assert r.status_code == 200, r.text
        cd = r.headers["content-disposition"]
        assert cd == (
            "attachment; filename=\"workspace.zip\"; filename*=UTF-8''"
            "%E6%95%B0%E6%8D%AE%E5%88%86%E6%9E%90.zip"
        ), cd
        assert zipfile.ZipFile(io.BytesIO(r.content)).read("数据.csv") == b"a,b\n1,2\n"
        r = c.get(f"/api/workspaces/{wid}/files/数据.csv", params={"download": "true"})
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == (
            "attachment; filename=\"download.csv\"; filename*=UTF-8''%E6%95%B0%E6%8D%AE.csv"
        )
        # ASCII names keep their plain form
        r = c.post(f"/api/projects/{shared.project_id}/workspaces", json={"name": "Café"})
        r = c.get(f"/api/workspaces/{r.json()['id']}/zip")
        assert r.headers["content-disposition"] == (
            "attachment; filename=\"Cafe.zip\"; filename*=UTF-8''Caf%C3%A9.zip"
        )


def _agent_error_codes() -> set[str]:
    """Every error code the agent and its kernel-side code can answer a call with."""
    pattern = re.compile(
        r"""(?:KernelError|CallError|\bfail)\(\s*["']([a-z_]+)["']""", re.MULTILINE
    )
    agent = ROOT / "src" / "rsparkhub" / "agent"
    codes: set[str] = set()
    for path in [*agent.glob("*.py"), *agent.glob("r/*.R")]:
        codes |= set(pattern.findall(path.read_text()))
    return codes | {"internal_error"}  # the generic one (pykernel, rsparkhub.R, main.py)


def test_every_agent_error_code_has_an_http_status() -> None:
    from rsparkhub.hub.api.introspection import AGENT_ERROR_STATUS

    codes = _agent_error_codes()
    assert {"invalid_argument", "io_error", "kernel_died", "plot_failed"} <= codes, codes
    missing = codes - set(AGENT_ERROR_STATUS)
    assert not missing, f"map these agent error codes in AGENT_ERROR_STATUS: {missing}"
    assert 500 not in AGENT_ERROR_STATUS.values()


async def test_invalid_input_to_the_r_session_is_a_4xx(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """The R side answers ``invalid_argument`` for a children path that does not start
    with a name (unmapped, that was a 500)."""
    wid = shared.workspace_id
    async with HubClient(shared_hub.url, shared.alice) as a, a.attach(wid) as s:
        await _run(s, "l <- list(1)", "r")
        with pytest.raises(HubError) as err:
            await a.children(wid, [0], language="r")
        assert err.value.status == 422 and err.value.code == "invalid_argument", err.value


# --------------------------------------------------------------------------- passwords


async def test_wrong_passwords_do_not_stall_other_requests(
    shared_hub: HubProcess, shared: Shared
) -> None:
    """argon2 runs in worker threads: while 24 wrong logins are being checked (seconds of
    CPU), another user's requests keep answering. On the event loop each check stalled
    every request behind it (the issue measured a 1.3 s median); in unbounded threads the
    checks starved the loop of CPU, and logins holding database connections while they
    waited exhausted the pool (both measured here at about 2 s)."""
    async with httpx.AsyncClient(base_url=shared_hub.url, timeout=120) as http:
        me = {"Authorization": f"Bearer {shared.bob}"}
        assert (await http.get("/api/me", headers=me)).status_code == 200

        async def wrong_login(i: int) -> int:
            # One wrong password for each of 24 names (unknown names cost a check too):
            # 24 for one account would meet the per-account login limit instead.
            body = {"name": f"nobody-{i}", "password": "wrong-one!"}
            r = await http.post("/api/login", json=body)
            return r.status_code

        async def timed_me(delay: float) -> tuple[float, float]:
            await asyncio.sleep(delay)
            start = time.perf_counter()
            assert (await http.get("/api/me", headers=me)).status_code == 200
            return start, time.perf_counter() - start

        began = time.perf_counter()
        logins = [asyncio.create_task(wrong_login(i)) for i in range(24)]
        # while the checks are under way (they take seconds in all), one request every 0.1 s
        probes = await asyncio.gather(*(timed_me(0.3 + 0.1 * i) for i in range(8)))
        assert set(await asyncio.gather(*logins)) == {401}
        logins_took = time.perf_counter() - began
    latencies = [took for _, took in probes]
    assert all(start - began < logins_took for start, _ in probes), (probes, logins_took)
    assert statistics.median(latencies) < 0.5, latencies


# --------------------------------------------------------------------------- login link


def test_login_link_is_not_in_the_hubs_log(shared_hub: HubProcess) -> None:
    """The hub's output is a log file here: the one-time link is not in it, but in a file
    only the hub's account can read, and it works once."""
    link = shared_hub.login_link()
    secret = link.rsplit("/", 1)[1]
    assert secret.startswith("rso_")
    assert secret not in shared_hub.log_path.read_text()
    assert (shared_hub.data_dir / "first-login-link").stat().st_mode & 0o777 == 0o600
    assert httpx.get(link, follow_redirects=False).status_code == 303
    assert secret not in shared_hub.log_path.read_text()  # the access log redacts it


def test_login_link_goes_to_the_operators_terminal(tmp_path: Path) -> None:
    """Started from a terminal, the hub shows the link there and writes no file."""
    import pty

    data = tmp_path / "data"
    port = free_port()
    main, tty = pty.openpty()
    env = {**HubProcess(data).env, "TERM": "dumb"}
    proc = subprocess.Popen(
        [RSPARKHUB, "serve", "--port", str(port), "--data-dir", str(data)],
        stdin=tty,
        stdout=tty,
        stderr=tty,
        env=env,
        start_new_session=True,
    )
    os.close(tty)
    seen = b""
    try:
        deadline = time.monotonic() + 90
        while b"/login/rso_" not in seen and time.monotonic() < deadline:
            if not select.select([main], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the hub exited: the terminal is gone
                break
            if not chunk:
                break
            seen += chunk
            if b"Application startup complete" in seen:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        os.close(main)
    text = seen.decode(errors="replace")
    assert re.search(rf"http://127\.0\.0\.1:{port}/login/rso_\S+", text), text
    assert not (data / "first-login-link").exists()


async def test_a_viewer_cannot_rerun_a_record_but_may_export_it(shared_hub: HubProcess) -> None:
    """A re-run runs the recorded code in a fresh session: bob, a viewer, is refused (403,
    nothing runs, no re-run workspace appears anywhere); the export, which holds only what
    a viewer reads anyway, is his to download."""
    alice, bob = _user(shared_hub, "alice"), _user(shared_hub, "bob")
    async with HubClient(shared_hub.url, alice) as a:
        p = await a.request("POST", "/api/projects", json={"name": f"rr-{uuid.uuid4().hex[:6]}"})
        w = await a.request("POST", f"/api/projects/{p['id']}/workspaces", json={"name": "rr"})
        wid = w["id"]
        await a.upload(wid, {"note.py": b"open('ran.txt', 'a').write('x')\nprint('ran')\n"})
        await a.request(
            "PUT", f"/api/workspaces/{wid}/members", json={"user": "bob", "role": "viewer"}
        )
        async with a.attach(wid) as s:
            assert (await s.run(path="note.py", mode="run")).ok
        await a.stop_session(wid)
        deadline = time.monotonic() + 30
        while (runs := await a.runs(wid))[0]["status"] == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        [run] = runs
    with shared_hub.client(bob) as b:
        r = b.post(f"/api/workspaces/{wid}/runs/{run['id']}/rerun", json={})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        assert not [w for w in b.get("/api/workspaces").json() if w["project"] == "reruns"]
        bundle = b.get(f"/api/workspaces/{wid}/export", params={"run": run["id"]})
        assert bundle.status_code == 200
        with zipfile.ZipFile(io.BytesIO(bundle.content)) as zf:
            assert zf.read("note.py").startswith(b"open('ran.txt'")
    with shared_hub.client(alice) as c:
        assert [r["id"] for r in c.get(f"/api/workspaces/{wid}/runs").json()] == [run["id"]]
        assert c.get(f"/api/workspaces/{wid}/text/ran.txt").json()["content"] == "x"
        assert c.get(f"/api/workspaces/{wid}/session").json()["state"] in ("stopped", "stopping")


def test_environments_are_for_administrators_and_the_collection_is_checked(
    shared_hub: HubProcess,
) -> None:
    """Listing and collecting the hub's built environments (hub/api/environments.py):
    anyone else gets 403 admin_only before the body is looked at; an admin's body must be
    exactly ``{"older_than_days": <0…36500>}``."""
    bob = _user(shared_hub, "bob")
    admin = shared_hub.make_user(f"env-admin-{uuid.uuid4().hex[:6]}", admin=True)
    with shared_hub.client(bob) as b:
        for r in (
            b.get("/api/environments"),
            b.post("/api/environments/gc", json={"older_than_days": 0}),
            b.post("/api/environments/gc", json={"older_than_days": "everything"}),
        ):
            assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only", r.text
    with shared_hub.client(admin) as a:
        for body in (
            {},
            {"older_than_days": -1},
            {"older_than_days": 1e9},
            {"older_than_days": 1, "path": "/"},
        ):
            r = a.post("/api/environments/gc", json=body)
            assert r.status_code == 422 and r.json()["error"]["code"], (body, r.text)
            assert r.json()["error"]["message"], r.text
        assert a.post("/api/environments/gc", json={"older_than_days": 1}).json() == {"removed": []}
        assert isinstance(a.get("/api/environments").json(), list)
