"""Sessions through the hub with real kernels: the shared stream, replay with ``since``,
interrupt, restart, completion, file sync both ways, stop with exit code 0, death of the
agent, and requests queued while a session starts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess, StartHub
from eventually import eventually


async def _workspace(hub: HubProcess, token: str, name: str | None = None) -> str:
    async with HubClient(hub.url, token) as c:
        ws = await c.ensure_workspace(name or f"ws-{uuid.uuid4().hex[:8]}")
        return str(ws["id"])


def _agent_pid(hub: HubProcess, token: str, workspace_id: str) -> int:
    with hub.client(token) as c:
        info = c.get(f"/api/workspaces/{workspace_id}/session").json()
    sid = info["id"]
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if (
            "rsparkhub.agent" in cmd
            and sid in cmd
            and "python" in cmd[0].rsplit("/")[-1]  # not setpriv/pasta/bwrap around it
        ):
            return p.pid
    raise AssertionError("agent process not found")


async def test_console_r_python_bash(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        r = await s.run("1 + 1", language="r")
        assert r.ok and r.results[0].data["text/plain"] == "[1] 2"
        r = await s.run("x = 21\nx * 2", language="python")
        assert r.ok and r.results[0].data["text/plain"] == "42"
        # bash_kernel runs bash on a pty, so stderr arrives merged into stdout.
        r = await s.run("echo hi; echo oops >&2", language="bash")
        assert r.ok and r.stdout == "hi\noops\n"
        r = await s.run("stop('bad thing')", language="r")
        assert r.done is not None and r.done.status == "error"
        assert "bad thing" in r.errors[0].evalue


async def test_interrupt_r_loop_and_session_stays_usable(
    shared_hub: HubProcess, alice: str
) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        assert (await s.run("1", language="r")).ok  # kernel warm
        rid = "loop"
        await s.send(P.ExecuteRequest(id=rid, code="while (TRUE) {}", language="r"))
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        await s.send(P.InterruptRequest(id="int1", language="r"))
        status = None
        async for msg in s.messages(timeout=10):
            ev = msg.get("event", {})
            if ev.get("type") == "done" and ev.get("request_id") == rid:
                status = ev["status"]
                break
        assert status == "aborted"
        assert time.monotonic() - t0 < 2.0
        r = await s.run("1 + 1", language="r")
        assert r.ok and r.results[0].data["text/plain"] == "[1] 2"


async def test_completion_and_is_complete(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        await s.run("my_long_variable <- 1", language="r")
        rep = await s.request(
            P.CompleteRequest(id="c1", language="r", code="my_long_v", cursor_pos=9)
        )
        assert rep.ok and "my_long_variable" in rep.content["matches"]
        rep = await s.request(
            P.IsCompleteRequest(id="c2", language="python", code="for i in range(3):")
        )
        assert rep.ok and rep.content["status"] == "incomplete"


async def test_two_clients_see_identical_streams_and_since_replays(
    shared_hub: HubProcess, alice: str
) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c:
        async with c.attach(wid) as a, c.attach(wid) as b:
            seen_b: list[str] = []

            async def follow_b() -> None:
                async for msg in b.messages(timeout=60):
                    if msg.get("type") == "event":
                        seen_b.append(json.dumps(msg, sort_keys=True))
                        if msg["event"]["type"] == "done" and msg["event"]["request_id"] == "last":
                            return

            task = asyncio.create_task(follow_b())
            seen_a: list[str] = []
            for i, code in enumerate(
                ["for (i in 1:5) cat('line', i, '\\n')", "print(letters[1:3])"]
            ):
                await a.send(P.ExecuteRequest(id=f"r{i}", code=code, language="r"))
            await a.send(
                P.ExecuteRequest(
                    id="last",
                    code="import sys; print('py'); print('e', file=sys.stderr)",
                    language="python",
                )
            )
            async for msg in a.messages(timeout=60):
                if msg.get("type") == "event":
                    seen_a.append(json.dumps(msg, sort_keys=True))
                    if msg["event"]["type"] == "done" and msg["event"]["request_id"] == "last":
                        break
            await asyncio.wait_for(task, 60)
            assert seen_a == seen_b
            seqs = [json.loads(m)["seq"] for m in seen_a]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
            sid = a.session_id
        # Reconnect with since=<middle>: exactly the rest, in order.
        middle = seqs[len(seqs) // 2]
        async with c.attach(wid, since=middle, session_id=sid) as again:
            assert again.welcome is not None and again.welcome.since == middle
            replay: list[str] = []
            async for msg in again.messages(timeout=10):
                if msg.get("type") == "event":
                    replay.append(json.dumps(msg, sort_keys=True))
                    if msg["seq"] == seqs[-1]:
                        break
            assert replay == [m for m in seen_a if json.loads(m)["seq"] > middle]


async def test_files_flow_both_ways(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        await c.save_text(wid, "input.txt", "first\n", 0)
        r = await s.run('cat(readLines("input.txt"), sep = "\\n")', language="r")
        assert r.stdout == "first\n"
        # A save is in the working directory before the next execution starts.
        await c.save_text(wid, "input.txt", "second\n", 1)
        r = await s.run('cat(readLines("input.txt"), sep = "\\n")', language="r")
        assert r.stdout == "second\n"
        # Files written by code reach the hub by the time the execution is done.
        r = await s.run(
            'dir.create("out"); write.csv(data.frame(a = 1:3), "out/table.csv", row.names = FALSE)',
            language="r",
        )
        assert r.ok
        files = {f["path"]: f for f in await c.list_files(wid)}
        assert "out/table.csv" in files and files["out/table.csv"]["kind"] == "other"
        assert (await c.read_file(wid, "out/table.csv")).decode() == '"a"\n1\n2\n3\n'
        r = await s.run("open('py.txt', 'w').write('from python')", language="python")
        assert (await c.read_file(wid, "py.txt")) == b"from python"
        # Deleting on the hub removes it from the session.
        await c.request("DELETE", f"/api/workspaces/{wid}/files/input.txt")
        r = await s.run('cat(file.exists("input.txt"))', language="r")
        assert r.stdout == "FALSE"


async def test_requests_sent_while_starting_are_queued(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        assert s.welcome is not None and s.welcome.state == "starting"
        ids = [f"q{i}" for i in range(5)]
        for i, rid in enumerate(ids):
            await s.send(P.ExecuteRequest(id=rid, code=f"cat({i})", language="r"))
        outputs: dict[str, str] = {}
        done: list[str] = []
        async for msg in s.messages(timeout=60):
            ev = msg.get("event", {})
            if ev.get("type") == "stream":
                outputs[ev["request_id"]] = outputs.get(ev["request_id"], "") + ev["text"]
            if ev.get("type") == "done":
                done.append(ev["request_id"])
                if len(done) == len(ids):
                    break
        assert done == ids
        assert [outputs[r] for r in ids] == ["0", "1", "2", "3", "4"]


async def test_bad_requests_get_clear_errors(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        for raw, code in [
            ("not json", "invalid_json"),
            ("[1,2]", "invalid_message"),
            ('{"type": "nope", "id": "x"}', "unknown_type"),
            (
                '{"type": "execute", "id": "e1", "language": "julia", "code": "1"}',
                "invalid_message",
            ),
            (
                '{"type": "execute", "id": "e2", "path": "../etc/passwd", "mode": "run"}',
                "invalid_path",
            ),
            (
                '{"type": "execute", "id": "e3", "path": "missing.R", "mode": "run"}',
                "file_not_found",
            ),
            ('{"type": "execute", "id": "e4", "mode": "source", "code": "1"}', "invalid_message"),
        ]:
            await s.conn.send(raw)
            async for msg in s.messages(timeout=30):
                if msg.get("type") == "protocol_error":
                    assert msg["code"] == code, (raw, msg)
                    assert msg["message"]
                    break
        # The session is unaffected.
        assert (await s.run("1 + 1", language="r")).ok


async def test_language_not_installed_fails_clearly(hub_with: StartHub) -> None:
    hub = hub_with({"RSPARKHUB_SESSION_LANGUAGES": "r,python"})
    token = hub.make_user("carol")
    wid = await _workspace(hub, token)
    async with HubClient(hub.url, token) as c, c.attach(wid) as s:
        r = await s.run("echo hi", language="bash")
        assert r.done is not None and r.done.status == "failed"
        assert r.done.error_code == "language_unavailable"
        assert "bash" in (r.done.message or "")
        assert (await s.run("1 + 1", language="r")).ok


async def test_stop_exits_zero_and_next_attach_starts_fresh(
    shared_hub: HubProcess, alice: str
) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c:
        async with c.attach(wid) as s:
            assert (await s.run("x <- 5", language="r")).ok
            first = s.session_id
            pid = _agent_pid(shared_hub, alice, wid)
            kernel_pids = [p.pid for p in psutil.Process(pid).children(recursive=True)]
            assert kernel_pids
            info = await c.stop_session(wid)
            assert info["state"] == "stopped" and info["exit_code"] == 0
            async for msg in s.messages(timeout=20):
                if msg.get("type") == "event" and msg["event"]["type"] == "session":
                    if msg["event"]["state"] == "stopped":
                        break
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not any(
            psutil.pid_exists(k) and psutil.Process(k).status() != psutil.STATUS_ZOMBIE
            for k in kernel_pids
        )
        async with c.attach(wid) as s2:
            assert s2.session_id != first
            r = await s2.run("exists('x')", language="r")
            assert r.results[0].data["text/plain"] == "[1] FALSE"


def test_a_session_stopped_while_it_starts_ends_stopped(shared_hub: HubProcess, alice: str) -> None:
    """A stop that lands before the agent has connected (even before its exec, when no
    agent is there to take a SIGTERM) is a clean stop, not a dead session. The race is
    hit within a few tries on this machine, so twenty are made, each a little later in
    the start than the one before, and every one must end 'stopped', with nothing of the
    session left running."""
    wid = asyncio.run(_workspace(shared_hub, alice))
    ends = []
    with shared_hub.client(alice) as c:
        for attempt in range(20):
            started = c.post(f"/api/workspaces/{wid}/session")
            started.raise_for_status()
            sid = started.json()["id"]
            time.sleep(0.025 * attempt)
            ended = c.delete(f"/api/workspaces/{wid}/session")
            ended.raise_for_status()
            info = ended.json()
            ends.append((info["state"], info["reason"]))
            assert not [
                p.pid
                for p in psutil.process_iter(["cmdline"])
                if sid in (p.info["cmdline"] or []) and p.status() != psutil.STATUS_ZOMBIE
            ]
    assert all(state == "stopped" for state, _ in ends), ends


async def test_agent_killed_mid_execution(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c:
        await c.save_text(wid, "keep.R", "cat('kept')\n", 0)
        async with c.attach(wid) as s, c.attach(wid) as other:
            assert (await s.run("1", language="r")).ok
            code = (
                "import time\nfor i in range(1000):\n    print(i, flush=True)\n    time.sleep(0.05)"
            )
            await s.send(P.ExecuteRequest(id="long", code=code, language="python"))
            async for msg in s.messages(timeout=30):
                if msg.get("event", {}).get("type") == "stream":
                    break
            pid = _agent_pid(shared_hub, alice, wid)
            os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()
            for client in (s, other):
                dead = None
                async for msg in client.messages(timeout=10):
                    ev = msg.get("event", {})
                    if ev.get("type") == "session" and ev["state"] == "dead":
                        dead = ev
                        break
                assert dead is not None and "SIGKILL" in (dead["message"] or "")
            assert time.monotonic() - t0 < 5
        info = await c.request("GET", f"/api/workspaces/{wid}/session")
        assert info["state"] == "dead" and info["exit_code"] in (
            -signal.SIGKILL,
            128 + signal.SIGKILL,
        )
        async with c.attach(wid) as s3:
            r = await s3.run(path="keep.R", mode="run")
            assert r.ok and r.stdout == "kept"
        assert (await c.read_file(wid, "keep.R")) == b"cat('kept')\n"


async def test_idle_session_is_culled(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "d", env={"RSPARKHUB_IDLE_TIMEOUT_S": "2", "RSPARKHUB_CULL_INTERVAL_S": "0.5"}
    ).start()
    try:
        token = hub.make_user("dave")
        wid = await _workspace(hub, token)
        async with HubClient(hub.url, token) as c:
            async with c.attach(wid) as s:
                assert (await s.run("1", language="python")).ok

            async def stopped() -> dict[str, object] | None:
                state = await c.request("GET", f"/api/workspaces/{wid}/session")
                return state if state["state"] == "stopped" else None

            state = await eventually(stopped, timeout=20, interval=0.5, what="an idle stop")
            assert state["exit_code"] == 0 and "idle" in state["reason"]
    finally:
        hub.close()


def test_plot_history(shared_hub: HubProcess, alice: str) -> None:
    async def make() -> str:
        wid = await _workspace(shared_hub, alice)
        async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
            r = await s.run("plot(1:10); hist(rnorm(100))", language="r")
            assert len(r.plots) == 2 and len(r.done.plot_ids) == 2  # type: ignore[union-attr]
            r = await s.run(
                "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
                language="python",
            )
            assert len(r.plots) == 1
        return wid

    wid = asyncio.run(make())
    with shared_hub.client(alice) as c:
        plots = c.get(f"/api/workspaces/{wid}/plots").json()
        assert len(plots) == 3
        img = c.get(plots[0]["url"], params={"download": True})
        assert img.content[:4] == b"\x89PNG" and "attachment" in img.headers["content-disposition"]
        assert c.delete(plots[0]["url"]).status_code == 200
        assert len(c.get(f"/api/workspaces/{wid}/plots").json()) == 2
        assert c.get(plots[0]["url"]).status_code == 404


@pytest.mark.parametrize("lang", ["python"])
def test_session_api_start_and_list(shared_hub: HubProcess, alice: str, lang: str) -> None:
    wid = asyncio.run(_workspace(shared_hub, alice))
    with shared_hub.client(alice) as c:
        started = c.post(f"/api/workspaces/{wid}/session").json()
        assert started["state"] in ("starting", "running")
        mine = c.get("/api/sessions").json()
        assert any(s["id"] == started["id"] for s in mine)
        stopped = c.delete(f"/api/workspaces/{wid}/session", timeout=httpx.Timeout(60)).json()
        assert stopped["state"] == "stopped"


async def test_clients_are_told_the_session_state(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c, c.attach(wid) as s:
        assert (await s.run("1", language="python")).ok
        states = [m["state"] for m in s.side if m.get("type") == "session_state"]
        assert states == ["starting", "running"], s.side
        s.side.clear()
        await c.stop_session(wid)
        seen = []
        async for msg in s.messages(timeout=20):
            if msg.get("type") == "session_state":
                seen.append(msg["state"])
                if msg["state"] == "stopped":
                    break
        assert seen == ["stopping", "stopped"]


async def test_resource_limits(hub_with: StartHub) -> None:
    """The session's memory limit (its cgroup on this root hub) kills the kernel that goes
    past it and the console says why; the session stays usable. See test_isolation.py for
    the same against an unprivileged hub (rlimits)."""
    env = {"RSPARKHUB_SESSION_MEMORY_MB": "2048", "RSPARKHUB_SESSION_CPU_SECONDS": "8"}
    hub = hub_with(env)
    token = hub.make_user("gus")
    wid = await _workspace(hub, token)
    async with HubClient(hub.url, token) as c, c.attach(wid) as s:
        r = await s.run("b = b'x' * (3 * 1024**3)", language="python")
        assert r.done is not None and r.done.status in ("error", "failed"), r.done
        assert r.done.error_code == "kernel_died", r.done
        assert "ran out of memory" in (r.done.message or ""), r.done
        assert (await s.run("print('still here')", language="python")).stdout == "still here\n"
        # A runaway loop is stopped by the CPU-time limit (SIGXCPU kills the kernel).
        r = await s.run("while True: pass", language="python", timeout=60)
        assert r.done is not None and r.done.status in ("error", "failed", "aborted")
        assert r.done.error_code in ("kernel_died", "kernel_restarted"), r.done


async def test_session_that_cannot_start_is_reported(hub_with: StartHub) -> None:
    # 40 MB of memory is too little for the Python interpreter of the agent.
    hub = hub_with({"RSPARKHUB_SESSION_MEMORY_MB": "40"})
    token = hub.make_user("hal")
    wid = await _workspace(hub, token)
    async with HubClient(hub.url, token) as c:
        async with c.attach(wid, reconnect_s=0) as s:
            await s.send(P.ExecuteRequest(id="x", code="1", language="r"))
            dead = done = None
            async for msg in s.messages(timeout=30):
                ev = msg.get("event", {})
                if ev.get("type") == "session":
                    dead = ev
                if ev.get("type") == "done":
                    done = ev
                if dead and done:
                    break
        assert dead is not None and dead["state"] == "dead" and dead["exit_code"] not in (0, None)
        # 40 MB is below what the agent needs: its cgroup's OOM kill is named as such.
        assert "ran out of memory" in dead["message"], dead["message"]
        assert (
            done is not None
            and done["status"] == "failed"
            and done["error_code"] == "session_ended"
        )
        info = await c.request("GET", f"/api/workspaces/{wid}/session")
        assert info["state"] == "dead" and info["reason"] == dead["message"]
    with hub.client(token) as http:
        assert http.get("/api/me").status_code == 200


async def test_viewer_can_watch_but_not_run(shared_hub: HubProcess, alice: str) -> None:
    viewer = shared_hub.make_user("vic")
    wid = await _workspace(shared_hub, alice)
    with shared_hub.client(alice) as http:
        assert (
            http.put(
                f"/api/workspaces/{wid}/members", json={"user": "vic", "role": "viewer"}
            ).status_code
            == 200
        )
    async with HubClient(shared_hub.url, viewer) as v, v.attach(wid) as s:
        await s.send(P.ExecuteRequest(id="v1", code="1", language="r"))
        async for msg in s.messages(timeout=30):
            if msg.get("type") == "protocol_error":
                assert msg["code"] == "viewer_cannot_run_code" and msg["request_id"] == "v1"
                break
        try:
            await v.save_text(wid, "x.R", "1", 0)
            raise AssertionError("a viewer saved a file")
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "status", None) == 403


async def test_execution_history(shared_hub: HubProcess, alice: str) -> None:
    wid = await _workspace(shared_hub, alice)
    async with HubClient(shared_hub.url, alice) as c:
        await c.save_text(wid, "a.py", "print(1)\n", 0)
        async with c.attach(wid) as s:
            assert (await s.run("1", language="r")).ok
            assert (await s.run(path="a.py", mode="run")).ok
            assert not (await s.run("stop('x')", language="r")).ok
        rows: list = []
        for _ in range(50):  # records are written in batches, about once a second
            rows = await c.request("GET", f"/api/workspaces/{wid}/executions")
            if len(rows) == 3:
                break
            await asyncio.sleep(0.2)
        assert [(r["language"], r["mode"], r["path"], r["status"]) for r in rows] == [
            ("r", "console", None, "error"),
            ("python", "run", "a.py", "ok"),
            ("r", "console", None, "ok"),
        ]
        assert all(r["user"] == "alice" and r["duration_ms"] > 0 for r in rows)
