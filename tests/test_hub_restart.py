"""The hub is killed (SIGKILL) and restarted while a session prints: the running agent
re-dials, the new hub adopts the session, and a client reconnecting with ``since`` receives
every output line exactly once, in order."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import websockets

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess, session_processes

N_LINES = 150
CODE = f"import time\nfor i in range({N_LINES}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.04)\n"


async def test_hub_killed_while_session_prints(hub: HubProcess) -> None:
    token = hub.make_user("erin")
    async with HubClient(hub.url, token) as c:
        ws = await c.ensure_workspace("printing")
        wid = ws["id"]
        await c.save_text(wid, "notes.txt", "saved before the crash\n", 0)
        text = ""
        async with c.attach(wid) as s:
            session_id = s.session_id
            assert (await s.run("1", language="python")).ok
            await s.send(P.ExecuteRequest(id="print", code=CODE, language="python"))
            async for msg in s.messages(timeout=30):
                ev = msg.get("event", {})
                if ev.get("type") == "stream":
                    text += ev["text"]
                    if text.count("\n") >= 20:
                        break
            since = s.last_seq
            hub.stop(signal.SIGKILL)

    hub.start()  # same port and data directory; the agent re-dials it
    async with HubClient(hub.url, token) as c:
        for _attempt in range(50):
            try:
                async with c.attach(wid, since=since, session_id=session_id) as s:
                    assert s.session_id == session_id, "the session was not adopted"
                    assert s.welcome is not None and s.welcome.since == since
                    seqs = []
                    async for msg in s.messages(timeout=30):
                        if msg.get("type") != "event":
                            continue
                        seqs.append(msg["seq"])
                        ev = msg["event"]
                        if ev["type"] == "stream" and ev.get("request_id") == "print":
                            text += ev["text"]
                        if ev["type"] == "done" and ev["request_id"] == "print":
                            assert ev["status"] == "ok"
                            break
                    assert seqs == list(range(since + 1, since + 1 + len(seqs)))
                    r = await s.run("print('still alive')", language="python")
                    assert r.stdout == "still alive\n"
                break
            except (OSError, websockets.exceptions.InvalidStatus):
                await asyncio.sleep(0.2)
        assert text == "".join(f"line {i}\n" for i in range(N_LINES))
        assert (await c.read_file(wid, "notes.txt")) == b"saved before the crash\n"
        info = await c.request("GET", f"/api/workspaces/{wid}/session")
        assert info["id"] == session_id and info["state"] == "running"


async def test_graceful_restart_keeps_sessions(hub: HubProcess) -> None:
    token = hub.make_user("fay")
    async with HubClient(hub.url, token) as c:
        wid = (await c.ensure_workspace(f"w-{uuid.uuid4().hex[:6]}"))["id"]
        async with c.attach(wid) as s:
            assert (await s.run("keep <- 41", language="r")).ok
            sid = s.session_id
    hub.restart(signal.SIGTERM)
    # The operator who stopped the hub was told what happens to the sessions, and how to
    # stop them with the hub instead.
    told = hub.log_path.read_text()
    assert "1 session(s) keep running" in told and "--stop-sessions" in told
    async with HubClient(hub.url, token) as c, c.attach(wid) as s:
        assert s.session_id == sid
        r = await s.run("keep + 1", language="r")
        assert r.results[0].data["text/plain"] == "[1] 42"


async def test_stop_sessions_stops_them_cleanly_with_the_hub(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", env={"RSPARKHUB_STOP_SESSIONS_ON_EXIT": "true"}).start()
    try:
        token = hub.make_user("gil")
        async with HubClient(hub.url, token) as c:
            wid = (await c.ensure_workspace("stopped-with-the-hub"))["id"]
            async with c.attach(wid) as s:
                assert (await s.run("1", language="python")).ok
                sid = s.session_id
        assert session_processes(hub.data_dir), "the check below could not fail"
        hub.stop(signal.SIGINT)  # Ctrl+C in the foreground
        assert "stopping 1 session(s) before the hub exits" in hub.log_path.read_text()
        assert session_processes(hub.data_dir) == [], "the session outlived the hub"
        hub.start()
        async with HubClient(hub.url, token) as c:
            info = await c.request("GET", f"/api/workspaces/{wid}/session")
            assert info["id"] == sid and info["state"] == "stopped", info
            assert info["reason"] == "the hub is shutting down", info
    finally:
        hub.close()


async def test_a_session_that_died_with_the_hub_leaves_no_disk(hub: HubProcess) -> None:
    """A session's disk (a root hub's loop mount, sandbox/disk.py) outlives neither the
    session nor a hub crash: a session that died while its hub was down is ended by the next
    hub, its disk unmounted and deleted; a session that survived keeps its own."""
    import contextlib
    import os

    import psutil

    token = hub.make_user("ivy")
    async with HubClient(hub.url, token) as c:
        dead_ws = (await c.ensure_workspace("dies"))["id"]
        kept_ws = (await c.ensure_workspace("survives"))["id"]
        sids = {}
        for wid in (dead_ws, kept_ws):
            async with c.attach(wid) as s:
                assert (await s.run("1", language="python")).ok
                sids[wid] = s.session_id
    disks = hub.data_dir / "session-disks"
    images = {wid: disks / f"session-{sid}.img" for wid, sid in sids.items()}
    mounts = {wid: hub.data_dir / "sessions" / sid for wid, sid in sids.items()}
    assert all(p.is_file() for p in images.values()) and all(map(os.path.ismount, mounts.values()))
    hub.stop(signal.SIGKILL)
    for p in session_processes(hub.data_dir):  # the session of "dies" dies meanwhile
        with contextlib.suppress(psutil.Error):
            if sids[dead_ws] in " ".join(p.cmdline()):
                p.kill()
    hub.start()
    async with HubClient(hub.url, token) as c:
        info = await c.request("GET", f"/api/workspaces/{dead_ws}/session")
        assert info["state"] == "dead", info
        async with c.attach(kept_ws) as s:
            assert s.session_id == sids[kept_ws]
            assert (await s.run("2", language="python")).ok
    assert not images[dead_ws].exists() and not os.path.ismount(mounts[dead_ws])
    assert images[kept_ws].is_file() and os.path.ismount(mounts[kept_ws])


def test_rsparkhub_run_rides_through_a_hub_restart(hub: HubProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess

    from conftest import RSPARKHUB

    token = hub.make_user("gil")
    script = tmp_path / "slow.py"
    script.write_text(CODE)
    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": token}
    proc = subprocess.Popen(
        [RSPARKHUB, "run", str(script), "--workspace", "slow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    first = [proc.stdout.readline() for _ in range(10)]
    assert first[0] == "line 0\n"
    hub.stop(signal.SIGKILL)
    hub.start()
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "".join(first) + rest == "".join(f"line {i}\n" for i in range(N_LINES))
