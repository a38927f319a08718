"""Garbage collection of unused environments on a real hub (hub/environments/gc.py), with
real builds from PyPI: with ``environment_gc_after_days`` set (here to 3 seconds), a
session start removes, in the background, an environment no session was given for that
long — but never one a running session mounts, however long ago it was given."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_environments import env_dirs, py, workspace

from rsparkhub.client import HubClient

from conftest import HubProcess, _hub

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
