"""hub/sandbox/child.py: children of the hub are vforked (never a copy of the hub's heap)
and awaited through a pidfd, under asyncio's loop and under uvloop (the hub's)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from rsparkhub.hub.sandbox import child

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _run(loop: str, coro: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coro)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_stdin_exit_status_and_output(loop: str, tmp_path: Path) -> None:
    out = tmp_path / "out"

    async def main() -> tuple[int, int | None]:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            c = await child.start(
                ["/bin/sh", "-c", 'read line; echo "got $line"; echo err >&2; exit 3'],
                env={"PATH": "/usr/bin:/bin"},
                cwd="/",
                stdout=fd,
                stdin_pipe=True,
            )
        finally:
            os.close(fd)
        assert c.returncode is None and c.stdin is not None
        c.stdin.write(b"hello\n")
        await c.stdin.drain()
        code = await asyncio.wait_for(c.wait(), 10)
        return code, c.returncode

    assert _run(loop, main()) == (3, 3)
    assert out.read_text() == "got hello\nerr\n"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_kill_and_concurrent_waits(loop: str) -> None:
    async def main() -> list[int]:
        c = await child.start(["sleep", "60"], env={"PATH": "/usr/bin:/bin"}, cwd="/", stdout=None)
        assert os.getsid(c.pid) == c.pid, "a session of its own"
        waits = [asyncio.ensure_future(c.wait()) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waits)
        c.kill()
        codes = await asyncio.wait_for(asyncio.gather(*waits), 10)
        c.kill()  # reaped already: does nothing (the pid may be someone else's now)
        return [*codes, await c.wait()]

    assert _run(loop, main()) == [-9, -9, -9, -9]


def test_a_child_that_cannot_be_executed_raises() -> None:
    async def main() -> None:
        await child.start(["/nonexistent/program"], env={}, cwd="/", stdout=None)

    with pytest.raises(OSError):
        _run("uvloop", main())


def test_the_hub_vforks_its_children_under_uvloop(tmp_path: Path) -> None:
    """The reason for the module: uvloop's own subprocesses are fork()ed (a copy of the
    hub's page tables while the loop waits); these come from vfork (CLONE_VFORK)."""
    script = tmp_path / "spawn.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, uvloop
            from rsparkhub.hub.sandbox import child

            async def main():
                c = await child.start(["/bin/true"], env={}, cwd="/", stdout=None)
                assert await c.wait() == 0

            uvloop.run(main())
            """
        )
    )
    trace = tmp_path / "trace"
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=clone,clone3,fork,vfork",
            "-o",
            str(trace),
            sys.executable,
            str(script),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    calls = [ln for ln in trace.read_text().splitlines() if "clone" in ln or "fork" in ln]
    # the program starts threads (CLONE_THREAD) and exactly one process: vforked
    processes = [ln for ln in calls if "CLONE_THREAD" not in ln]
    assert len(processes) == 1 and ("CLONE_VFORK" in processes[0] or "vfork(" in processes[0]), (
        calls
    )
