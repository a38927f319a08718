"""PipeReader (rsparkhub/pipe_reader.py) under both event loops the code runs on: the hub's
(uvloop, through uvicorn) and asyncio's own (the agent). It delivers every byte, stops
watching past its limit without losing any, and closes its descriptor once — a second
close would hit whatever file took the number in between (uvloop#763)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from rsparkhub.pipe_reader import PipeReader

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(name: str, coro: Coroutine[Any, Any, Any]) -> Any:
    loop = LOOPS[name]()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_every_byte_of_a_child_arrives_in_order(loop: str) -> None:
    payload = b"".join(b"line %d\n" % i for i in range(200_000))  # ~2.3 MB

    async def main() -> bytes:
        r, w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
                stdin=asyncio.subprocess.PIPE,
                stdout=w,
            )
        finally:
            os.close(w)
        with PipeReader(r, limit=4096) as stream:
            assert proc.stdin is not None
            proc.stdin.write(payload)
            proc.stdin.close()
            got = bytearray()
            while chunk := await stream.read(1000):
                got += chunk
            await proc.wait()
        return bytes(got)

    assert run_on(loop, main()) == payload


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_it_pauses_past_its_limit_and_resumes_when_read(loop: str) -> None:
    async def main() -> tuple[bool, bool, bytes]:
        r, w = os.pipe()
        pipe = PipeReader(r, limit=1024)
        os.write(w, b"x" * 5000)  # > 2 × limit: StreamReader asks it to pause
        os.close(w)
        for _ in range(20):
            await asyncio.sleep(0)
        paused = not pipe._watching
        got = await pipe.stream.read()  # reading resumes it until the end
        resumed_to_eof = pipe.stream.at_eof()
        pipe.close()
        return paused, resumed_to_eof, got

    paused, eof, got = run_on(loop, main())
    assert paused and eof and got == b"x" * 5000


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_the_descriptor_is_closed_once(loop: str) -> None:
    """After close, the number goes to a new pipe; nothing may close that pipe later, on
    the loop or in a collection."""

    async def main() -> list[int]:
        r, w = os.pipe()
        with PipeReader(r) as stream:
            os.write(w, b"done\n")
            os.close(w)
            assert await stream.readline() == b"done\n"
            assert await stream.read() == b""
        taken = list(os.pipe())  # the lowest free numbers: r's among them
        assert r in taken
        for _ in range(20):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0.05)
        return taken

    taken = run_on(loop, main())
    gc.collect()
    for fd in taken:
        os.fstat(fd)  # raises EBADF if a stray close took it
        os.close(fd)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_read_error_reaches_the_reader(loop: str) -> None:
    async def main() -> BaseException | None:
        r, w = os.pipe()
        pipe = PipeReader(r)
        os.close(w)
        pipe.pause_reading()  # the loop lets go of r before r changes under it
        # A directory's descriptor in the pipe's place: read() fails with EISDIR.
        d = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        os.dup2(d, r)
        os.close(d)
        pipe._ready()
        try:
            await pipe.stream.read()
        except OSError as exc:
            return exc
        finally:
            pipe.close()
        return None

    exc = run_on(loop, main())
    assert isinstance(exc, IsADirectoryError)


def test_a_descriptor_it_cannot_use_is_closed_and_refused() -> None:
    r, w = os.pipe()
    os.close(w)
    with pytest.raises(RuntimeError):  # no running loop
        PipeReader(r)
    with pytest.raises(OSError):
        os.fstat(r)
