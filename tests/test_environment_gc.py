"""Garbage collection of unused environments on a real hub (hub/environments/gc.py), with
real builds from PyPI: with ``environment_gc_after_days`` set (here to 3 seconds), a
session start removes, in the background, an environment no session was given for that
long — but never one a running session mounts, however long ago it was given."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_environments import env_dirs, py, workspace

from rsparkhub.client import HubClient

from conftest import RSPARKHUB, HubProcess, _hub

KEEP_S = 3.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    yield from _hub(
        tmp_path_factory.mktemp("hub") / "data",
        {
            "RSPARKHUB_SESSION_MEMORY_MB": "1536",
            "RSPARKHUB_ENVIRONMENT_GC_AFTER_DAYS": str(KEEP_S / 86400),
        },
    )


async def test_unused_environments_go_and_mounted_ones_stay(hub: HubProcess) -> None:
    token = hub.make_user("gina")
    async with workspace(hub, token, "kept", {"requirements.txt": "six==1.16.0\n"}) as (c, kept):
        async with c.attach(kept) as s:  # stays running throughout
            assert (await py(s, "import six; print(six.__version__)")).strip() == "1.16.0"
            [mounted] = env_dirs(hub, "python")
            files = {"requirements.txt": "six==1.17.0\n"}
            async with workspace(hub, token, "dropped", files) as (c2, dropped):
                async with c2.attach(dropped) as s2:
                    out = await py(s2, "import six; print(six.__version__)")
                    assert out.strip() == "1.17.0", out
                await c2.stop_session(dropped)
            [unused] = [d for d in env_dirs(hub, "python") if d != mounted]
            await asyncio.sleep(KEEP_S + 1)
            # any session start looks (a workspace with no declaration will do)
            async with HubClient(hub.url, token) as c3:
                wid = (await c3.ensure_workspace("plain"))["id"]
                await c3.start_session(wid)
                deadline = time.monotonic() + 30
                while unused.exists() and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await c3.stop_session(wid)
            assert not unused.exists()
            assert not (hub.data_dir / "environments" / ".used" / f"python-{unused.name}").exists()
            # the running session's environment stays, and still works
            assert env_dirs(hub, "python") == [mounted]
            out = await py(s, "import importlib, six; importlib.reload(six); print(six.__file__)")
            assert str(mounted) in out, out
    log = hub.log_path.read_text()
    assert f"removed environment python/{unused.name}: unused for" in log
    assert f"removed environment python/{mounted.name}" not in log
    assert Path(mounted).is_dir()


async def test_admins_list_and_collect_from_the_cli(hub: HubProcess) -> None:
    admin = hub.make_user("ada", admin=True)
    user = hub.make_user("ursula")
    env = {**os.environ, "RSPARKHUB_URL": hub.url, "RSPARKHUB_TOKEN": admin}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RSPARKHUB, "environments", *args], capture_output=True, text=True, env=env, timeout=60
        )

    files = {"requirements.txt": "six==1.16.0\n"}
    async with workspace(hub, user, "listed", files) as (c, wid):
        async with c.attach(wid) as s:
            assert (await py(s, "import six; print(six.__version__)")).strip() == "1.16.0"
            listed = await asyncio.to_thread(cli, "list", "--json")
            assert listed.returncode == 0, listed.stderr
            [e] = json.loads(listed.stdout)
            assert (e["kind"], e["declaration"], e["mounted"]) == (
                "python",
                "requirements.txt",
                True,
            )
            assert e["bytes"] > 0 and e["last_used"] > e["built_at"] - 1
            table = await asyncio.to_thread(cli, "list")
            assert e["key"][:12] in table.stdout and " yes" in table.stdout
            # mounted: never removed, however old
            kept = await asyncio.to_thread(cli, "gc", "--older-than-days", "0")
            assert kept.returncode == 0 and "0 environment(s) removed" in kept.stdout
        await c.stop_session(wid)
    gone = await asyncio.to_thread(cli, "gc", "--older-than-days", "0")
    assert gone.returncode == 0, gone.stderr
    assert f"removed python/{e['key']}" in gone.stdout and "1 environment(s)" in gone.stdout
    assert json.loads((await asyncio.to_thread(cli, "list", "--json")).stdout) == []
    # admins only, and the body is checked
    c = hub.client(user)
    r = c.get("/api/environments")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    a = hub.client(admin)
    bad = a.post("/api/environments/gc", json={"older_than_days": -1})
    assert bad.status_code == 422 and bad.json()["error"]["code"], bad.text
