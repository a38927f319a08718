"""The hub is killed (SIGKILL) and restarted while a session prints: the running agent
re-dials, the new hub adopts the session, and a client reconnecting with ``since`` receives
every output line exactly once, in order."""

from __future__ import annotations

import asyncio
import signal
import uuid

import websockets

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess

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
    async with HubClient(hub.url, token) as c, c.attach(wid) as s:
        assert s.session_id == sid
        r = await s.run("keep + 1", language="r")
        assert r.results[0].data["text/plain"] == "[1] 42"


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
