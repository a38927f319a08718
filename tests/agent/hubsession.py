"""A recording client for the agent tests that run through the real hub.

``Recorder`` wraps an ``rsparkhub.client.Attachment`` and keeps every event the hub sends,
by request id, with the client-side arrival time (``time.monotonic()``), so that a test can
send an execution, then an interrupt, and still see both the reply and the ``done`` in
whatever order they come (``Attachment.request`` would skip events of other requests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.client import Attachment, HubClient

from conftest import HubProcess


class Recorder:
    def __init__(self, att: Attachment) -> None:
        self.att = att
        self.log: list[tuple[float, P.Event]] = []  # (arrival, event), in seq order
        self.protocol_errors: list[dict[str, Any]] = []
        # the first done / reply of each request: checked after every message by ``pump``,
        # so a lookup, not a scan of a log that can hold many thousand events
        self._dones: dict[str, P.DoneEvent] = {}
        self._replies: dict[str, P.ReplyEvent] = {}

    async def pump(self, pred: Callable[[], bool], timeout: float = 60) -> None:
        """Read the hub's messages until ``pred()`` holds."""
        if pred():
            return
        async with asyncio.timeout(timeout):
            async for msg in self.att.messages():
                if msg.get("type") == "event":
                    event = P.parse_event(msg["event"])
                    self.log.append((time.monotonic(), event))
                    if isinstance(event, P.DoneEvent):
                        self._dones.setdefault(event.request_id, event)
                    elif isinstance(event, P.ReplyEvent):
                        self._replies.setdefault(event.request_id, event)
                elif msg.get("type") == "protocol_error":
                    self.protocol_errors.append(msg)
                if pred():
                    return

    def timed(self, request_id: str) -> list[tuple[float, P.Event]]:
        return [(t, e) for t, e in self.log if getattr(e, "request_id", None) == request_id]

    def events(self, request_id: str) -> list[P.Event]:
        return [e for _, e in self.timed(request_id)]

    def done_of(self, request_id: str) -> P.DoneEvent | None:
        return self._dones.get(request_id)

    def reply_of(self, request_id: str) -> P.ReplyEvent | None:
        return self._replies.get(request_id)

    async def wait_busy(self, language: str, mark: int, timeout: float = 30) -> None:
        """Wait for the kernel of ``language`` to go busy in an event after ``rec.log[mark]``."""

        def busy() -> bool:
            return any(
                isinstance(e, P.StatusEvent) and e.language == language and e.state == "busy"
                for _, e in self.log[mark:]
            )

        await self.pump(busy, timeout)

    async def send(self, req: Any) -> None:
        await self.att.send(req)

    async def wait_done(self, request_id: str, timeout: float = 60) -> P.DoneEvent:
        await self.pump(lambda: self.done_of(request_id) is not None, timeout)
        done = self.done_of(request_id)
        assert done is not None
        return done

    async def run(
        self,
        code: str | None = None,
        *,
        language: P.Language | None = None,
        path: str | None = None,
        mode: P.ExecMode = "console",
        timeout: float = 60,
        rid: str | None = None,
    ) -> tuple[P.DoneEvent, list[P.Event]]:
        """One execution: send it, wait for its ``done``; (done, every event of it)."""
        rid = rid or uuid.uuid4().hex
        await self.send(
            P.ExecuteRequest(id=rid, code=code, language=language, path=path, mode=mode)
        )
        done = await self.wait_done(rid, timeout)
        return done, self.events(rid)

    async def reply(self, req: Any, timeout: float = 30) -> P.ReplyEvent:
        await self.send(req)
        await self.pump(lambda: self.reply_of(req.id) is not None, timeout)
        reply = self.reply_of(req.id)
        assert reply is not None
        return reply


async def new_workspace(hub: HubProcess, token: str, files: dict[str, bytes]) -> str:
    """A fresh workspace holding ``files`` (uploaded before any session starts)."""
    async with HubClient(hub.url, token) as c:
        ws = await c.ensure_workspace(f"agent-{uuid.uuid4().hex[:8]}")
        if files:
            await c.upload(ws["id"], files)
        return str(ws["id"])


def stdout_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, P.StreamEvent) and e.name == "stdout")


def plots_of(events: list[Any]) -> list[P.PlotEvent]:
    return [e for e in events if isinstance(e, P.PlotEvent)]


def results_of(events: list[Any]) -> list[str]:
    return [e.data["text/plain"] for e in events if isinstance(e, P.ResultEvent)]
