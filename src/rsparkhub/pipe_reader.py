"""Reading the read end of an OS pipe on the running event loop, the same way under
asyncio's own loop and under uvloop, closing the descriptor exactly once.

The hub runs on uvloop (uvicorn picks it when it is installed). uvloop's
``connect_read_pipe`` closes a pipe's descriptor twice: libuv closes the number, then the
file object handed to it closes the same number again (MagicStack/uvloop#763). A file,
socket or pipe that another thread opened in between gets that number and is closed
under its owner: a build's output pipe failed with ``EBADF`` that way. So no pipe goes to
a transport here: ``PipeReader`` watches the descriptor with ``add_reader`` and feeds an
``asyncio.StreamReader``, which pauses it past its limit like a transport would."""

from __future__ import annotations

import asyncio
import os
from types import TracebackType

CHUNK = 1 << 16


class PipeReader:
    """Owns ``fd`` from construction: ``close`` (or leaving the ``with`` block) closes it,
    once. ``stream`` is the StreamReader to read from (``readline``, ``read``…)."""

    def __init__(self, fd: int, limit: int = CHUNK) -> None:
        self._fd = fd
        try:
            os.set_blocking(fd, False)
            self._loop = asyncio.get_running_loop()
        except BaseException:
            os.close(fd)
            raise
        self._watching = False
        self._eof = False
        self.stream = asyncio.StreamReader(limit=limit, loop=self._loop)
        self.stream.set_transport(self)  # type: ignore[arg-type]  # pause/resume only
        self.resume_reading()

    # ------------------------------------------------------------ what StreamReader calls
    def pause_reading(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._fd)
            self._watching = False

    def resume_reading(self) -> None:
        if not self._watching and not self._eof and self._fd >= 0:
            self._loop.add_reader(self._fd, self._ready)
            self._watching = True

    # ------------------------------------------------------------------ the descriptor
    def _ready(self) -> None:
        try:
            data = os.read(self._fd, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end()
            self.stream.set_exception(exc)
            return
        if data:
            self.stream.feed_data(data)
        else:
            self._end()
            self.stream.feed_eof()

    def _end(self) -> None:
        self.pause_reading()
        self._eof = True

    def close(self) -> None:
        """Stop watching and close the descriptor (idempotent)."""
        self._end()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> asyncio.StreamReader:
        return self.stream

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
