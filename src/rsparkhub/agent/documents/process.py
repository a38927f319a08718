"""A render's processes and its log: ``run`` starts a command in its own process group and
kills the group when it returns; ``RenderLog`` keeps the output and passes it on line by line.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rsparkhub.pipe_reader import PipeReader

log = logging.getLogger("rsparkhub.agent.documents")

LOG_LIMIT = 2_000_000  # characters of log kept (the end of it)
KILL_GRACE_S = 0.5  # how long output is drained after the process exited


@dataclass
class Job:
    source: Path  # absolute
    tmp: Path  # private temporary directory, outside the working directory
    env: dict[str, str]  # of the render's processes
    out: RenderLog


class RenderLog:
    """The render's log: kept (the last ``LOG_LIMIT`` characters) and passed on line by line."""

    def __init__(self, on_log: Callable[[str], None] | None) -> None:
        self.on_log = on_log
        self.lines: deque[str] = deque()
        self.size = 0
        self.hidden: str | None = None  # lines starting with this are dropped
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def line(self, text: str) -> None:
        if self.hidden and text.startswith(self.hidden):
            return
        self.lines.append(text)
        self.size += len(text) + 1
        while self.size > LOG_LIMIT and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1
        if self.on_log is not None:
            try:
                self.on_log(text)
            except Exception:  # a broken consumer must not break the render
                log.exception("on_log callback failed")

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._partial + self._decoder.decode(data, final)
        parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._partial = parts.pop()
        for part in parts:
            self.line(part)
        if final and self._partial:
            self.line(self._partial)
            self._partial = ""

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


async def run(argv: list[str], *, cwd: Path, env: dict[str, str], out: RenderLog) -> int:
    """Run ``argv`` in a new process group, its stdout and stderr going to ``out`` as they
    come; the group is killed when this returns or is cancelled.

    The output pipe is not asyncio's: asyncio's ``Process.wait`` waits until its pipes close,
    which a background grandchild holding them open would delay until it exits. It is read
    with ``PipeReader``, which closes it once under any event loop.
    """
    rfd, wfd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=wfd,
            stderr=wfd,
            start_new_session=True,
        )
    except BaseException:
        os.close(rfd)
        raise
    finally:
        os.close(wfd)
    pipe = PipeReader(rfd)
    reader = pipe.stream

    async def pump() -> None:
        while data := await reader.read(65536):
            out.feed(data)
        out.feed(b"", final=True)

    pumping = asyncio.create_task(pump())
    try:
        rc = await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pumping), KILL_GRACE_S)
        return rc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(pumping), KILL_GRACE_S)
        pumping.cancel()
        pipe.close()


def python3_interpreter() -> str:
    """The interpreter of the ``python3`` kernelspec (the session's Python), else ours."""
    with contextlib.suppress(Exception):
        from jupyter_client.kernelspec import KernelSpecManager

        argv = KernelSpecManager().get_kernel_spec("python3").argv
        exe = shutil.which(argv[0]) if argv else None
        if exe:
            return exe
    return sys.executable
