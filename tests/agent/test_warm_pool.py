"""The warm pool (``session_pool_size``; hub/sessions/warm.py, agent/handout.py): a user's
next session is handed a sandbox started ahead under their own uid, with kernels running,
and gets exactly what a cold start of its workspace would have: its environment, its
package overlay (bound into the running sandbox), its files, R's ``.Rprofile``. An entry
holds nothing of any workspace before its hand-out and is never handed to another user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hubsession import Recorder, new_workspace, results_of, stdout_of
from test_isolation import TOKEN_HUNT

from rsparkhub.client import HubClient
from rsparkhub.protocol import Language

from conftest import PASSWORD, HubProcess, StartHub, session_processes

pytestmark = pytest.mark.asyncio(loop_scope="function")

POOL = {"RSPARKHUB_SESSION_POOL_SIZE": "1", "RSPARKHUB_SESSION_POOL_KERNELS": "python,r"}


@pytest.fixture(scope="module")
def pool_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("warm") / "data", POOL).start()
    try:
        yield hub
    finally:
        hub.close()


def pooled(hub: HubProcess) -> dict[str, psutil.Process]:
    """The agents started for the pool (``--pool``), by session id: waiting, or handed
    out (then a session of that id exists)."""
    out = {}
    for p in session_processes(hub.data_dir):
        with contextlib.suppress(psutil.Error):
            cmd = p.cmdline()
            if cmd[0] == sys.executable and "rsparkhub.agent" in cmd and "--pool" in cmd:
                out[cmd[cmd.index("--session-id") + 1]] = p
    return out


def inner_pid(pid: int) -> int:
    """A process's pid in its sandbox's PID namespace (what its own getpid() says)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def user_of(proc: psutil.Process) -> str | None:
    """The hub user a session process runs for (its USER)."""
    with contextlib.suppress(psutil.Error):
        return str(proc.environ().get("USER"))
    return None


def kernels_of(agent: psutil.Process) -> dict[str, psutil.Process]:
    found = {}
    for c in agent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            line = " ".join(c.cmdline())
            if "rsparkhub.agent.launch" in line or "ipykernel" in line:
                found["python"] = c
            elif "IRkernel" in line:
                found["r"] = c
    return found


async def ready_entry(hub: HubProcess, uid: int, not_in: set[str]) -> str:
    """The session id of a pooled entry of ``uid`` whose kernels both run, other than the
    sessions ``not_in`` (at most 90 s)."""
    for _ in range(900):
        for sid, agent in pooled(hub).items():
            with contextlib.suppress(psutil.Error):
                if sid not in not_in and agent.uids().real == uid:
                    kernels = kernels_of(agent)
                    if set(kernels) == {"python", "r"} and all(
                        k.uids().real == uid for k in kernels.values()
                    ):
                        await asyncio.sleep(1.0)  # their start-up code has run
                        return sid
        await asyncio.sleep(0.1)
    raise AssertionError(f"no pooled session of uid {uid}: {list(pooled(hub))}")


async def entry_after(
    hub: HubProcess, c: HubClient, wid: str, uid: int
) -> tuple[str, dict[str, int]]:
    """Open workspace ``wid`` (its start fills the user's pool) and wait for an entry of
    ``uid``: its session id, and its kernels' pids as they see them."""
    async with c.attach(wid):
        sid = await ready_entry(hub, uid, {(await session_info(c, wid))["id"]})
        return sid, {k: inner_pid(p.pid) for k, p in kernels_of(pooled(hub)[sid]).items()}


async def session_info(client: HubClient, wid: str) -> dict[str, Any]:
    info: dict[str, Any] = await client.request("GET", f"/api/workspaces/{wid}/session")
    return info


async def run(att: Any, code: str, language: Language) -> str:
    done, events = await Recorder(att).run(code, language=language)
    assert done.status == "ok", events
    return stdout_of(events) + "".join(results_of(events))


async def test_a_users_next_session_is_handed_a_warm_one_with_its_workspace(
    pool_hub: HubProcess,
) -> None:
    token = pool_hub.make_user("warmalice")
    first = await new_workspace(pool_hub, token, {"first.py": b"x = 1\n"})
    target = await new_workspace(pool_hub, token, {"data.csv": b"a\n1\n", "b.py": b"y = 2\n"})
    async with HubClient(pool_hub.url, token) as c:
        # a cold session of the target puts a module into its package overlay
        async with c.attach(target) as att:
            uid = int(await run(att, "import os; print(os.getuid())", "python"))
            code = (
                "import os; d = os.path.join(os.environ['RSPARKHUB_OVERLAY'], 'python');"
                "open(os.path.join(d, 'warm_mod.py'), 'w').write('WHO = 41 + 1\\n')"
            )
            await run(att, code, "python")
        await c.stop_session(target)
        async with c.attach(first):  # the user's session: their pool fills
            sid = await ready_entry(pool_hub, uid, {(await session_info(c, first))["id"]})
            agent = pooled(pool_hub)[sid]
            procs = kernels_of(agent)
            kernels = {lang: inner_pid(k.pid) for lang, k in procs.items()}
            # before its hand-out an entry holds no workspace: no overlay, no files
            root = f"/proc/{procs['python'].pid}/root"
            assert os.listdir(f"{root}{pool_hub.data_dir}/overlays") == []
            assert os.listdir(f"{root}{pool_hub.data_dir}/sessions/{sid}/work") == []
            environ = Path(f"/proc/{procs['python'].pid}/environ").read_bytes().split(b"\0")
            assert b"RSPARKHUB_WORKSPACE_ID=" in environ
        async with c.attach(target) as att:
            info = await session_info(c, target)
            assert info["id"] == sid  # handed out
            state = json.loads(
                await run(
                    att,
                    "import os, json, sys, warm_mod\n"
                    "print(json.dumps({'pid': os.getpid(), 'uid': os.getuid(),"
                    " 'ws': os.environ['RSPARKHUB_WORKSPACE_ID'],"
                    " 'overlays': os.listdir(os.path.dirname(os.environ['RSPARKHUB_OVERLAY'])),"
                    " 'who': warm_mod.WHO, 'files': sorted(os.listdir('.')),"
                    " 'pip': os.environ.get('PIP_TARGET'),"
                    " 'first': sys.path.index(os.environ['PIP_TARGET'])}))",
                    "python",
                )
            )
            assert state["pid"] == kernels["python"]  # the kernel started ahead
            assert state["uid"] == uid
            assert state["ws"] == target
            assert state["overlays"] == [target]  # only its own workspace's overlay
            assert state["who"] == 42
            assert state["files"] == ["b.py", "data.csv"]
            assert state["pip"].endswith(f"/overlays/{target}/python")
            # the overlay comes before the standard library and site-packages, as PYTHONPATH
            assert (
                state["first"]
                < next(i for i, p in enumerate(sys.path) if p.startswith(sys.base_prefix) and p) + 2
            )
            r = await run(
                att,
                'cat(Sys.getpid(), Sys.getenv("RSPARKHUB_WORKSPACE_ID"), .libPaths()[1], '
                'file.exists("data.csv"), "\\n")',
                "r",
            )
            pid, ws, lib, seen = r.split()
            assert int(pid) == kernels["r"]
            assert ws == target
            assert lib.endswith(f"/overlays/{target}/r")
            assert seen == "TRUE"
            # the token came through the pooled agent's pipe: session code finds it nowhere
            hunt = await run(att, TOKEN_HUNT, "python")
            assert "AGENTS 1" in hunt and "HITS []" in hunt, hunt
            # what the session writes into its overlay stays the workspace's
            await run(att, "install_mark <- file.create(file.path(.libPaths()[1], 'mark'))", "r")
        await c.stop_session(target)
        await c.stop_session(first)
    assert (pool_hub.data_dir / "overlays" / target / "r" / "mark").exists()


async def test_logging_in_fills_the_pool_for_the_first_session(pool_hub: HubProcess) -> None:
    """A password login (the browser's) starts the user's pool: their first session of
    the day is handed out too."""
    token = pool_hub.make_user("warmlogin")
    wid = await new_workspace(pool_hub, token, {"a.py": b"1\n"})
    before = set(pooled(pool_hub))
    async with httpx.AsyncClient(base_url=pool_hub.url, timeout=60) as web:
        r = await web.post("/api/login", json={"name": "warmlogin", "password": PASSWORD})
        assert r.status_code == 200, r.text
    new: list[str] = []
    for _ in range(900):  # the entry the login started (other users' may start meanwhile)
        new = [
            s
            for s, a in pooled(pool_hub).items()
            if s not in before and any(user_of(k) == "warmlogin" for k in kernels_of(a).values())
        ]
        if new:
            break
        await asyncio.sleep(0.1)
    assert len(new) == 1, new
    await asyncio.sleep(1.0)  # its kernels' start-up code has run
    async with HubClient(pool_hub.url, token) as c:
        async with c.attach(wid) as att:
            await run(att, "1", "python")
            assert (await session_info(c, wid))["id"] == new[0]  # handed out
        await c.stop_session(wid)


async def test_an_entry_is_never_handed_to_another_user(pool_hub: HubProcess) -> None:
    alice = pool_hub.make_user("poolowner")
    bob = pool_hub.make_user("poolother")
    mine = await new_workspace(pool_hub, alice, {"a.py": b"1\n"})
    theirs = await new_workspace(pool_hub, bob, {"b.py": b"2\n"})
    async with HubClient(pool_hub.url, alice) as a, HubClient(pool_hub.url, bob) as b:
        async with a.attach(mine) as att:
            alice_uid = int(await run(att, "import os; print(os.getuid())", "python"))
            entry = await ready_entry(pool_hub, alice_uid, {(await session_info(a, mine))["id"]})
            async with b.attach(theirs) as batt:
                bob_uid = int(await run(batt, "import os; print(os.getuid())", "python"))
                assert (await session_info(b, theirs))["id"] != entry
            assert bob_uid != alice_uid
            assert entry in pooled(pool_hub)  # still waiting for alice
        await a.stop_session(mine)
        await b.stop_session(theirs)


async def test_an_r_kernel_that_must_read_the_workspace_starts_anew(
    pool_hub: HubProcess,
) -> None:
    token = pool_hub.make_user("warmr")
    first = await new_workspace(pool_hub, token, {"first.R": b"x <- 1\n"})
    prof = await new_workspace(
        pool_hub, token, {".Rprofile": b"rprofile_ran <- TRUE\n", "an.R": b"y <- 2\n"}
    )
    async with HubClient(pool_hub.url, token) as c:
        async with c.attach(first) as att:
            uid = int(await run(att, "import os; print(os.getuid())", "python"))
        sid, kernels = await entry_after(pool_hub, c, first, uid)
        async with c.attach(prof) as att:
            assert (await session_info(c, prof))["id"] == sid
            out = await run(att, 'cat(exists("rprofile_ran"), Sys.getpid())', "r")
            ran, pid = out.split()
            assert ran == "TRUE"
            assert int(pid) != kernels["r"]
            assert (
                int(await run(att, "import os; print(os.getpid())", "python"))
                == (kernels["python"])
            )
        await c.stop_session(prof)
        await c.stop_session(first)


async def test_a_kernel_that_imported_what_the_overlay_replaces_starts_anew(
    pool_hub: HubProcess,
) -> None:
    """The pooled kernel imported ``platformdirs`` (jupyter_core does) before the hand-out;
    the workspace's overlay has its own copy, which a cold kernel would have imported."""
    token = pool_hub.make_user("warmshadow")
    target = await new_workspace(pool_hub, token, {"a.py": b"1\n"})
    first = await new_workspace(pool_hub, token, {"b.py": b"2\n"})
    copy = (
        "import os, shutil, platformdirs\n"
        "d = os.path.join(os.environ['RSPARKHUB_OVERLAY'], 'python', 'platformdirs')\n"
        "shutil.copytree(os.path.dirname(platformdirs.__file__), d)\n"
        "open(os.path.join(d, '__init__.py'), 'a').write('\\nSHADOW = True\\n')"
    )
    async with HubClient(pool_hub.url, token) as c:
        async with c.attach(target) as att:
            uid = int(await run(att, "import os; print(os.getuid())", "python"))
            await run(att, copy, "python")
        await c.stop_session(target)
        sid, kernels = await entry_after(pool_hub, c, first, uid)
        async with c.attach(target) as att:
            assert (await session_info(c, target))["id"] == sid
            out = await run(
                att, "import os, platformdirs; print(platformdirs.SHADOW, os.getpid())", "python"
            )
            shadow, pid = out.split()
            assert shadow == "True"
            assert int(pid) != kernels["python"]
        await c.stop_session(target)
        await c.stop_session(first)


async def test_a_declared_environment_is_bound_read_only_at_hand_out(
    pool_hub: HubProcess,
) -> None:
    """requirements.txt: the environment a cold session built is bound into the running
    sandbox at its own path, read-only there (a propagated mount keeps the flags it was
    made with), and the pooled kernel imports from it."""
    token = pool_hub.make_user("warmenv")
    target = await new_workspace(pool_hub, token, {"requirements.txt": b"six==1.16.0\n"})
    first = await new_workspace(pool_hub, token, {"b.py": b"2\n"})
    probe = (
        "import os, six\n"
        "site = os.path.dirname(six.__file__)\n"
        "mnt = [l.split() for l in open('/proc/self/mountinfo')]\n"
        "opts = [m[5] for m in mnt if m[4] == os.path.dirname(site)]\n"
        "print(six.__version__, os.getpid(), site == os.environ['RSPARKHUB_ENV_PYTHON'], opts)"
    )
    async with HubClient(pool_hub.url, token) as c:
        async with c.attach(target) as att:
            uid = int(await run(att, "import os; print(os.getuid())", "python"))
            cold = (await run(att, probe, "python")).split(" ", 3)
        await c.stop_session(target)
        sid, kernels = await entry_after(pool_hub, c, first, uid)
        async with c.attach(target) as att:
            assert (await session_info(c, target))["id"] == sid
            version, pid, same, opts = (await run(att, probe, "python")).split(" ", 3)
        await c.stop_session(target)
        await c.stop_session(first)
    assert (version, same) == ("1.16.0", "True") == (cold[0], cold[2])
    assert int(pid) == kernels["python"]
    assert opts.strip().startswith("['ro,"), opts
    assert cold[3].strip().startswith("['ro,"), cold


async def test_pooled_sessions_stop_with_the_hub(hub_with: StartHub) -> None:
    hub = hub_with(POOL)
    token = hub.make_user("warmstop")
    wid = await new_workspace(hub, token, {"a.py": b"1\n"})
    async with HubClient(hub.url, token) as c, c.attach(wid) as att:
        uid = int(await run(att, "import os; print(os.getuid())", "python"))
        live = (await session_info(c, wid))["id"]
        entry = await ready_entry(hub, uid, {live})
        procs = [pooled(hub)[entry], *pooled(hub)[entry].children(recursive=True)]
    hub.stop()  # sessions outlive the hub (the next one adopts them); pooled ones do not
    gone, alive = psutil.wait_procs(procs, timeout=20)
    assert not alive, alive
    assert entry not in pooled(hub)
    assert any(live in p.cmdline() for p in session_processes(hub.data_dir))  # adoptable
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"/sessions/{entry}" not in mounts
    assert not (hub.data_dir / "sessions" / entry).exists()


async def test_a_hub_crash_leaves_no_pooled_session_behind(hub_with: StartHub) -> None:
    """SIGKILL the hub: a waiting entry reads the end of its hand-out pipe and exits; the
    next hub removes what it left (cgroup, disk, mounts), and the user's next sessions
    still start (cold, then from a new pool)."""
    hub = hub_with(POOL)
    token = hub.make_user("warmcrash")
    wid = await new_workspace(hub, token, {"a.py": b"1\n"})
    async with HubClient(hub.url, token) as c:
        async with c.attach(wid) as att:
            uid = int(await run(att, "import os; print(os.getuid())", "python"))
            live = (await session_info(c, wid))["id"]
            entry = await ready_entry(hub, uid, {live})
            procs = [pooled(hub)[entry], *pooled(hub)[entry].children(recursive=True)]
        await c.stop_session(wid)
    hub.stop(signal.SIGKILL)
    _gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, alive  # no hub, no hand-out: the entry ended itself
    assert os.path.ismount(hub.data_dir / "sessions" / entry)  # until a hub cleans up
    hub.start()
    for _ in range(100):  # the new hub's reconcile runs at its start
        if not os.path.ismount(hub.data_dir / "sessions" / entry):
            break
        await asyncio.sleep(0.1)
    assert not os.path.ismount(hub.data_dir / "sessions" / entry)
    assert not (hub.data_dir / "session-disks" / f"session-{entry}.img").exists()
    assert entry not in Path("/proc/self/mountinfo").read_text()
    async with HubClient(hub.url, token) as c:
        async with c.attach(wid) as att:
            assert int(await run(att, "import os; print(os.getuid())", "python")) == uid
        await c.stop_session(wid)
