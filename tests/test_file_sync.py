"""Files written by code reach the workspace like events reach the log: acknowledged once
committed, sent again after a lost link, and announced to every client when refused.

The hub is SIGKILLed while code writes and deletes files; after it comes back, the
workspace holds exactly what the code left on disk. A file the hub refuses (the workspace
is full) becomes a ``file_refused`` event, and later files still arrive."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import websockets

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess, StartHub
from eventually import eventually

N_FILES = 60
WRITER = f"""
import os, time
os.makedirs("out", exist_ok=True)
for i in range({N_FILES}):
    with open(f"out/f{{i}}.txt", "w") as fh:
        fh.write(f"file {{i}}\\n" * (i + 1))
    if i == {N_FILES // 2}:
        os.remove("old.txt")
    print(f"wrote {{i}}", flush=True)
    time.sleep(0.05)
"""


def _expected() -> dict[str, bytes]:
    return {f"out/f{i}.txt": (f"file {i}\n" * (i + 1)).encode() for i in range(N_FILES)}


async def _workspace_files(c: HubClient, wid: str) -> dict[str, bytes]:
    return {f["path"]: await c.read_file(wid, f["path"]) for f in await c.list_files(wid)}


async def test_hub_killed_while_code_writes_files(hub: HubProcess) -> None:
    token = hub.make_user("gus")
    async with HubClient(hub.url, token) as c:
        wid = (await c.ensure_workspace("writing"))["id"]
        await c.save_text(wid, "old.txt", "deleted by code while the hub is down\n", 0)
        async with c.attach(wid) as s:
            session_id = s.session_id
            assert (await s.run("1", language="python")).ok
            await s.send(P.ExecuteRequest(id="write", code=WRITER, language="python"))
            printed = 0
            async for msg in s.messages(timeout=60):
                ev = msg.get("event", {})
                if ev.get("type") == "stream" and ev.get("request_id") == "write":
                    printed += ev["text"].count("\n")
                    if printed >= 10:
                        break
            hub.stop(signal.SIGKILL)
    await asyncio.sleep(1.5)  # code goes on writing (and deletes old.txt) while the hub is down
    hub.start()
    async with HubClient(hub.url, token) as c:
        for _attempt in range(100):
            try:
                async with c.attach(wid, session_id=session_id) as s:
                    assert s.session_id == session_id, "the session was not adopted"
                    # Runs after the writer: its files were all scanned and sent by then.
                    assert (await s.run("print('after')", language="python")).ok
                break
            except (OSError, websockets.exceptions.InvalidStatus):
                await asyncio.sleep(0.2)
        expected = _expected()

        async def synced() -> dict[str, bytes] | None:
            files = await _workspace_files(c, wid)
            return files if files == expected else None

        await eventually(synced, timeout=30, interval=0.5, what="the code's files in the hub")
        # Each file was committed once per content: no duplicate versions from resends.
        for f in await c.list_files(wid):
            assert f["version"] == 1, f


async def test_a_refused_file_from_code_is_announced(hub_with: StartHub) -> None:
    hub = hub_with({"RSPARKHUB_MAX_WORKSPACE_BYTES": "100000"})
    token = hub.make_user("hal")
    async with HubClient(hub.url, token) as c:
        wid = (await c.ensure_workspace("small"))["id"]
        async with c.attach(wid) as s:
            r = await s.run(
                "open('big.bin', 'wb').write(b'x' * 200_000)\n"
                "open('small.txt', 'w').write('fits\\n')",
                language="python",
            )
            assert r.ok, r.events

            async def refused() -> list[dict[str, Any]]:
                return [
                    m["event"]
                    for m in s.side
                    if m.get("type") == "event" and m["event"]["type"] == "file_refused"
                ]

            async def more() -> list[dict[str, Any]]:
                with_ping = await s.request(P.PingRequest(id=f"p{len(s.side)}"))
                assert with_ping.ok
                return await refused()

            events = await eventually(more, timeout=20, interval=0.5, what="file_refused")
            assert events[0]["path"] == "big.bin", events
            assert events[0]["error_code"] == "workspace_full", events
            assert "limit" in events[0]["message"], events

            async def small_saved() -> bool:
                return [f["path"] for f in await c.list_files(wid)] == ["small.txt"]

            await eventually(small_saved, timeout=20, what="small.txt saved, big.bin not")
            # The copy in the working directory is untouched.
            r = await s.run("import os; print(os.path.getsize('big.bin'))", language="python")
            assert r.stdout == "200000\n"
