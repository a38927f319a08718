"""The tests' one polling helper: wait, bounded in time, until a check passes.

``await eventually(check, timeout=…, what=…)`` calls ``check`` (sync or async) every
``interval`` seconds until it returns something truthy, and returns that; after
``timeout`` seconds it fails the test naming ``what`` and the last value seen.
``eventually_sync`` is the same for code that is not async.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 30,
    interval: float = 0.1,
    what: str = "",
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or check}; last: {last!r}"
            )
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T], timeout: float = 30, interval: float = 0.1, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or check}; last: {last!r}"
            )
        time.sleep(interval)
