"""Starting a child of the hub without copying the hub.

The hub runs on uvloop, whose subprocesses are started with ``fork()``: the kernel copies
the page tables of the hub's whole heap (~9 ms at 120 MiB here, growing with the heap)
while the event loop waits, and then the loop waits again until the child has exec'd.
CPython's ``subprocess`` uses ``vfork()`` instead (no copy) when no ``preexec_fn`` is
given. So sandboxes are started with ``subprocess.Popen`` and awaited through a pidfd
watched by the running loop (asyncio's or uvloop's alike).

Owns: that start, and the small part of ``asyncio.subprocess.Process``'s interface the
hub uses (``pid``, ``returncode``, ``wait``, ``kill``, ``stdin`` as a ``StreamWriter``).
Must not: decide what runs or how it is isolated (launcher.py does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence

POLL_S = 0.1  # without pidfds (Linux < 5.3): how often ``wait`` looks


class Child:
    """A running (or ended) child process of the hub."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter | None):
        self._popen = popen
        self.stdin = stdin
        self._ended: asyncio.Future[int] | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped (a negative signal number if killed), else None."""
        return self._popen.poll()

    async def wait(self) -> int:
        """The exit status, once the process has ended (it is reaped then)."""
        code = self._popen.poll()
        if code is not None:
            return code
        if self._ended is None:
            self._ended = self._watch()
        return await asyncio.shield(self._ended)

    def kill(self) -> None:
        """SIGKILL, unless it has already been reaped (its pid may belong to another)."""
        self._popen.kill()

    def _watch(self) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[int] = loop.create_future()
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfds here: look every POLL_S
            ended = asyncio.ensure_future(self._poll())
            return ended

        def readable() -> None:  # the pidfd is readable once the process has exited
            code = self._popen.poll()
            if code is None:
                return
            loop.remove_reader(fd)
            os.close(fd)
            if not ended.done():
                ended.set_result(code)

        loop.add_reader(fd, readable)
        readable()  # it may have ended before the reader was added
        return ended

    async def _poll(self) -> int:
        while (code := self._popen.poll()) is None:
            await asyncio.sleep(POLL_S)
        return code


async def start(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    stdout: int | None,
    stdin_pipe: bool = False,
    pass_fds: Sequence[int] = (),
) -> Child:
    """Start ``argv`` in a new session (stdout and stderr to ``stdout``; stdin a pipe the
    caller writes to, or /dev/null). Raises OSError when it cannot be executed."""
    # vfork + exec: the loop waits only for the exec (that is the point of this module)
    popen = subprocess.Popen(  # noqa: ASYNC220
        list(argv),
        stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
        stdout=stdout,
        stderr=stdout,
        env=env,
        cwd=cwd,
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
    writer = None
    if popen.stdin is not None:
        try:
            writer = await _writer(popen.stdin)
        except BaseException:
            with contextlib.suppress(OSError):
                popen.kill()
            raise
    return Child(popen, writer)


async def _writer(pipe: object) -> asyncio.StreamWriter:
    """The pipe as an ``asyncio.StreamWriter`` (``write`` + ``await drain()``)."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(loop), pipe
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)
