"""A session starts the kernel of its workspace's most recently changed script or document
before any request (``agent/prestart.py``, ``hub/files.latest_language``), after the hub
has put the workspace's files — so R has read the workspace's ``.Rprofile`` — and the
first run uses that kernel. ``session_prestart_kernel = false`` turns it off."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import psutil
import pytest
from hubsession import Recorder, new_workspace, results_of

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import HubProcess, StartHub, session_processes

pytestmark = pytest.mark.asyncio(loop_scope="function")


def statuses(rec: Recorder, language: str) -> list[str]:
    return [e.state for _, e in rec.log if isinstance(e, P.StatusEvent) and e.language == language]


async def agent_argv(hub: HubProcess, session_id: str) -> list[str]:
    """The command line of the session's agent, once it runs (at most 30 s)."""
    for _ in range(300):
        for p in session_processes(hub.data_dir):
            with contextlib.suppress(psutil.Error):
                cmd: list[str] = p.cmdline()
                if "rsparkhub.agent" in cmd and session_id in cmd and cmd[0] == sys.executable:
                    return cmd
        await asyncio.sleep(0.1)
    raise AssertionError(f"no agent process of session {session_id}")


async def session_id(client: HubClient, wid: str) -> str:
    info: dict[str, Any] = await client.request("GET", f"/api/workspaces/{wid}/session")
    return str(info["id"])


async def test_the_latest_files_kernel_starts_with_the_session_after_its_files(
    shared_hub: HubProcess,
) -> None:
    token = shared_hub.make_user("ahead")
    wid = await new_workspace(
        shared_hub, token, {".Rprofile": b"rprofile_ran <- TRUE\n", "old.py": b"print(1)\n"}
    )
    async with HubClient(shared_hub.url, token) as c:
        await c.upload(wid, {"analysis.R": b"x <- 1\n"})  # the latest: R starts ahead
        async with c.attach(wid) as att:
            rec = Recorder(att)
            # no request sent: the R kernel starts and goes idle by itself
            await rec.pump(lambda: "idle" in statuses(rec, "r"), timeout=90)
            assert statuses(rec, "r") == ["starting", "idle"]
            assert statuses(rec, "python") == []
            argv = await agent_argv(shared_hub, await session_id(c, wid))
            assert argv[argv.index("--prestart") + 1] == "r"
            # it started after the workspace's files were put: it read the .Rprofile
            done, events = await rec.run('exists("rprofile_ran")', language="r")
            assert done.status == "ok", events
            assert results_of(events) == ["[1] TRUE"]
            assert statuses(rec, "r").count("starting") == 1  # the first run used it
        await c.stop_session(wid)


async def test_a_python_kernel_starts_ahead_and_serves_the_first_run(
    shared_hub: HubProcess,
) -> None:
    token = shared_hub.make_user("pyahead")
    wid = await new_workspace(shared_hub, token, {"old.R": b"x <- 1\n"})
    async with HubClient(shared_hub.url, token) as c:
        await c.upload(wid, {"analysis.py": b"x = 1\n"})
        async with c.attach(wid) as att:
            rec = Recorder(att)
            await rec.pump(lambda: "idle" in statuses(rec, "python"), timeout=90)
            assert statuses(rec, "python") == ["starting", "idle"]
            assert statuses(rec, "r") == []
            argv = await agent_argv(shared_hub, await session_id(c, wid))
            assert argv[argv.index("--prestart") + 1] == "python"
            done, events = await rec.run("6 * 7", language="python")
            assert results_of(events) == ["42"], events
            assert statuses(rec, "python").count("starting") == 1
        await c.stop_session(wid)


async def test_no_kernel_starts_ahead_when_turned_off_or_nothing_runs(
    hub_with: StartHub,
) -> None:
    hub = hub_with({"RSPARKHUB_SESSION_PRESTART_KERNEL": "false"})
    token = hub.make_user("ahead")
    off = await new_workspace(hub, token, {"analysis.py": b"x = 1\n"})
    async with HubClient(hub.url, token) as c:
        await c.start_session(off)
        assert "--prestart" not in await agent_argv(hub, await session_id(c, off))
        await c.stop_session(off)


async def test_a_workspace_without_a_script_starts_no_kernel_ahead(
    shared_hub: HubProcess,
) -> None:
    token = shared_hub.make_user("notahead")
    wid = await new_workspace(shared_hub, token, {"notes.txt": b"hello\n"})
    async with HubClient(shared_hub.url, token) as c:
        await c.start_session(wid)
        assert "--prestart" not in await agent_argv(shared_hub, await session_id(c, wid))
        await c.stop_session(wid)
