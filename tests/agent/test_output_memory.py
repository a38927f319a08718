"""A session printing far more than it can forward at once stays within bounded memory
and still delivers every byte in order (issue #14; the flow control in ``launch.py``).

The first test drives one Python ``Kernel`` directly with an outbox that is "full" (its
``wait_for_room`` does not return): the agent stops reading iopub, so the kernel's ``print``
must wait instead of buffering 60 MB. The second goes through the real hub and samples the
agent's and the kernel's memory while 100 MB are printed. Memory is read with psutil (RSS);
nothing here measures time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from hubsession import new_workspace

from rsparkhub import protocol as P
from rsparkhub.agent.kernels import Kernel
from rsparkhub.client import HubClient

from conftest import HubProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

MIB = 1024 * 1024
LINE = "x" * 90
CHUNK_LINES = 10_000  # one write: 10,000 numbered 100-byte lines, 1 MB


def flood_code(mb: int) -> str:
    """``mb`` writes of 1 MB, each line numbered (so order is checked too)."""
    return (
        "import sys\n"
        f"for c in range({mb}):\n"
        f"    sys.stdout.write(''.join(f'{{c * {CHUNK_LINES} + i:09d}}{LINE}\\n' "
        f"for i in range({CHUNK_LINES})))\n"
    )


def flood_sha256(mb: int) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for c in range(mb):
        chunk = "".join(f"{c * CHUNK_LINES + i:09d}{LINE}\n" for i in range(CHUNK_LINES)).encode()
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


class PeakRss(threading.Thread):
    """Peak RSS of some processes, sampled until stopped."""

    def __init__(self, procs: dict[str, psutil.Process]) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.base = {k: p.memory_info().rss for k, p in procs.items()}
        self.peak = dict(self.base)
        self._halt = threading.Event()

    def run(self) -> None:
        for _ in range(20_000):  # bounded: 20,000 samples at most
            for k, p in self.procs.items():
                try:
                    self.peak[k] = max(self.peak[k], p.memory_info().rss)
                except psutil.Error:
                    pass
            if self._halt.wait(0.02):
                return

    def growth(self) -> dict[str, float]:
        self._halt.set()
        self.join(5)
        return {k: (self.peak[k] - self.base[k]) / MIB for k in self.procs}


async def test_a_paused_agent_makes_print_wait_and_loses_nothing(tmp_path: Path) -> None:
    runtime = Path("/tmp") / f"rsh-mem-{os.getpid()}"  # short: IPC socket paths
    runtime.mkdir(exist_ok=True)
    room = asyncio.Event()  # the outbox is full until this is set

    async def wait_for_room() -> None:
        await room.wait()

    k = Kernel(
        "python",
        cwd=tmp_path,
        env=dict(os.environ),
        wait_for_room=wait_for_room,
        runtime_dir=runtime,
    )
    room.set()
    await k.start()
    try:
        pid = k.pid
        assert pid is not None
        kernel = psutil.Process(pid)
        got = hashlib.sha256()
        n_bytes = 0

        def handler(msg: dict[str, Any]) -> None:
            nonlocal n_bytes
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                b = msg["content"]["text"].encode()
                got.update(b)
                n_bytes += len(b)

        mb = 60
        room.clear()
        before = kernel.memory_info().rss
        run = asyncio.create_task(k.execute(flood_code(mb), handler))
        # The kernel prints while nobody reads: it must end up waiting, not buffering.
        peak = before
        for _ in range(40):  # 4 s at most
            await asyncio.sleep(0.1)
            peak = max(peak, kernel.memory_info().rss)
        assert not run.done()
        assert (peak - before) / MIB < 24, f"the kernel grew by {(peak - before) / MIB:.0f} MiB"
        room.set()
        reply = await asyncio.wait_for(run, 240)
        assert reply["status"] == "ok"
        assert (n_bytes, got.hexdigest()) == flood_sha256(mb)
    finally:
        room.set()
        await k.shutdown()
        shutil.rmtree(runtime, ignore_errors=True)


def _session_procs(session_id: str) -> dict[str, psutil.Process]:
    """The session's agent (its command line names the session) and its Python kernel."""
    found: dict[str, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
        except psutil.Error:
            continue
        if session_id in " ".join(cmd) and "rsparkhub.agent" in cmd and "bwrap" not in cmd[0]:
            found["agent"] = p
            for child in p.children(recursive=True):
                if "ipykernel" in " ".join(child.cmdline()):
                    found["python"] = child
    return found


async def test_printing_100_mb_keeps_agent_and_kernel_memory_bounded(
    shared_hub: HubProcess,
) -> None:
    token = shared_hub.make_user("memflood")
    wid = await new_workspace(shared_hub, token, {})
    mb = 100
    async with HubClient(shared_hub.url, token) as c, c.attach(wid) as att:
        res = await att.run("1", language="python", timeout=120)
        assert res.ok
        procs = _session_procs(att.session_id)
        assert set(procs) == {"agent", "python"}, procs
        sampler = PeakRss(procs)
        sampler.start()
        got = hashlib.sha256()
        n_bytes = 0
        status = None
        try:
            async for ev in att.execute(flood_code(mb), language="python", timeout=300):
                if isinstance(ev, P.StreamEvent) and ev.name == "stdout":
                    b = ev.text.encode()
                    got.update(b)
                    n_bytes += len(b)
                elif isinstance(ev, P.DoneEvent):
                    status = ev.status
        finally:
            growth = sampler.growth()
        assert status == "ok"
        assert (n_bytes, got.hexdigest()) == flood_sha256(mb)
        # before the flow control: agent +288 MiB, kernel +284 MiB for 100 MB
        assert growth["agent"] < 96, growth
        assert growth["python"] < 48, growth
        res = await att.run("print(1 + 1)", language="python", timeout=60)
        assert res.ok
