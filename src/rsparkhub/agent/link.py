"""The agent's link to the hub: dialling, hello/welcome, the event send loop, re-dialling.

``HubLink.run`` connects to the hub's ``/agent/ws`` (over the hub's unix socket when one is
given, else TCP; ``Authorization: Bearer`` with the session token), says ``hello``, waits
for the ``welcome`` (rewinds the outbox to the hub's ``acked_seq``, then hands the welcome
to ``on_welcome``), and then, per connection, runs the receive loop (each parsed message to
``on_message``) beside the send loop (outbox batches as ``AgentEvents``). A lost or refused
connection is re-dialled (0.2 s backoff growing to 2 s) until the hub has been unreachable
for ``redial_timeout`` seconds; then ``run`` returns False.

Error policy: only disconnects (OSError, timeouts, websockets errors) lead to a re-dial.
Anything else raised by a handler ends ``run`` with that exception (the agent logs it and
exits non-zero); frames that do not parse are logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect, unix_connect

from rsparkhub import protocol as P
from rsparkhub.agent.outbox import Outbox

log = logging.getLogger("rsparkhub.agent.link")

WELCOME_TIMEOUT_S = 60.0
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 2.0

OnWelcome = Callable[[P.AgentWelcome, bool], Awaitable[None]]  # (welcome, resumed)
OnMessage = Callable[[P.HubToAgent], Awaitable[None]]
DISCONNECTS = (OSError, TimeoutError, websockets.exceptions.WebSocketException)


class HubLink:
    def __init__(
        self,
        *,
        hub_url: str,
        session_id: str,
        outbox: Outbox,
        languages: list[P.Language],
        on_welcome: OnWelcome,
        on_message: OnMessage,
        on_down: Callable[[], None],
        token: str | None = None,
        hub_socket: Path | None = None,
        redial_timeout: float = 600.0,
    ) -> None:
        self.hub_url = hub_url
        self.session_id = session_id
        self.outbox = outbox
        self.languages = languages
        self.on_welcome = on_welcome
        self.on_message = on_message
        self.on_down = on_down
        self.token = token
        self.hub_socket = hub_socket
        self.redial_timeout = redial_timeout
        self.ws: ClientConnection | None = None
        self.welcomed = False  # a welcome was received at least once (hello says resumed)
        self._send_lock = asyncio.Lock()
        self._welcomed_now = False  # the current connection got its welcome

    @property
    def connected(self) -> bool:
        return self.ws is not None

    async def run(self, stopping: asyncio.Event) -> bool:
        """Serve connections until ``stopping`` is set (True) or the hub stayed away for
        ``redial_timeout`` seconds (False)."""
        backoff = FIRST_BACKOFF_S
        down_since = time.monotonic()
        while not stopping.is_set():
            self._welcomed_now = False
            try:
                async with self._dial() as ws:
                    await self._serve(ws)
            except DISCONNECTS as exc:
                log.info("hub link: %s", exc)
            finally:
                if self.ws is not None:
                    self.ws = None
                self.on_down()
            if stopping.is_set():
                return True
            if self._welcomed_now:  # the link worked: the timeout counts from its end
                backoff = FIRST_BACKOFF_S
                down_since = time.monotonic()
            if time.monotonic() - down_since > self.redial_timeout:
                log.error("hub unreachable for %.0f s; giving up", self.redial_timeout)
                return False
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
        return True

    def _dial(self) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        options: dict[str, Any] = {
            "additional_headers": headers,
            "max_size": P.MAX_FRAME_BYTES,
            "compression": None,
            "open_timeout": 10,
        }
        if self.hub_socket is not None:
            return unix_connect(str(self.hub_socket), self.hub_url, **options)
        return connect(self.hub_url, proxy=None, **options)

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection: hello, welcome, then receiving and sending until it ends."""
        resumed = self.welcomed
        hello = P.AgentHello(
            session_id=self.session_id,
            pid=os.getpid(),
            languages=list(self.languages),
            first_unacked_seq=self.outbox.first_unacked_seq,
            resumed=resumed,
        )
        await ws.send(P.dump(hello))
        welcome = await self._await_welcome(ws)
        self.outbox.rewind(welcome.acked_seq)
        self.welcomed = self._welcomed_now = True
        self.ws = ws
        await self.on_welcome(welcome, resumed)
        receiver = asyncio.create_task(self._receive_loop(ws), name="hub-receive")
        sender = asyncio.create_task(self._send_loop(ws), name="hub-send")
        try:
            await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.ws = None
            for task in (receiver, sender):
                task.cancel()
            for task in (receiver, sender):
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # re-raises what ended it, unless that was a disconnect

    async def _await_welcome(self, ws: ClientConnection) -> P.AgentWelcome:
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout=WELCOME_TIMEOUT_S)
            try:
                msg = P.parse_hub_to_agent(raw)
            except P.MessageError as exc:
                log.warning("ignoring unparseable hub message before welcome: %s", exc.message)
                continue
            if isinstance(msg, P.AgentWelcome):
                return msg
            log.warning("ignoring %s before welcome", msg.type)

    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    msg = P.parse_hub_to_agent(raw)
                except P.MessageError as exc:
                    log.warning("ignoring hub message: %s", exc.message)
                    continue
                if isinstance(msg, P.AgentWelcome):
                    log.warning("unexpected second welcome; rewinding")
                    self.outbox.rewind(msg.acked_seq)
                    continue
                await self.on_message(msg)
        except websockets.exceptions.ConnectionClosed:
            return

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await self.outbox.pending.wait()
            batch = self.outbox.take_batch()
            if not batch:
                continue
            data = P.AgentEvents(events=batch).model_dump_json()
            try:
                async with self._send_lock:
                    await ws.send(data)
            except websockets.exceptions.ConnectionClosed:
                return

    async def send(self, msg: BaseModel) -> bool:
        """Send one message outside the event stream; False if the link is down."""
        ws = self.ws
        if ws is None:
            return False
        try:
            async with self._send_lock:
                await ws.send(P.dump(msg))
        except websockets.exceptions.ConnectionClosed:
            return False
        return True

    async def close(self) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(*DISCONNECTS):
                await asyncio.wait_for(ws.close(), 2)
