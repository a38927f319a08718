"""A protocol peer for the agent's end of the hub link, used only for link-level tests.

Everything an agent *does* for a user (kernels, run/source output, plots, interrupts, files,
streaming) is tested through the real hub (``rsparkhub serve``, see ``hubsession.py``).
This peer plays the hub's side of ``/agent/ws`` with the real wire protocol
(``rsparkhub.protocol``) against a real agent process, for the few behaviours the real hub
cannot be made to show on demand:

* **withholding acknowledgements, then dropping the link** (resend after re-dial): the hub
  acknowledges every batch as soon as it is durable and offers no switch to stop; it only
  drops an agent link when it shuts down or restarts, and then it cannot also report which
  envelopes arrived on which connection, the hello of the re-dial, or delay its welcome;
* **the exit code 3 after the re-dial timeout**: the agent outlives the hub by design, so
  once the hub is gone nobody who saw the exit is left to report it (the agent is not the
  test's child, and a restarted hub adopts or buries it without its exit status);
* **malformed or random frames from the hub**: the real hub only ever sends well-formed
  messages (``tests/test_fuzz.py`` fuzzes the hub's own inputs, not this direction).

It answers ``hello`` with ``welcome`` (its manifest: ``files``), sends ``file_put``s on the
first connect, acknowledges event batches unless told not to, commits files from the agent
into ``files`` and answers each with ``file_ack`` (unless told not to; ``refuse`` names
paths it refuses), answers ``file_want`` with ``file_put``s, records everything the agent
sends in arrival order, and can drop the connection or go away.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from rsparkhub import protocol as P


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Connection:
    hello: P.AgentHello
    headers: dict[str, str]
    received: list[Any] = field(default_factory=list)  # envelopes and file messages, in order


class HubPeer:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})  # the workspace, as the hub sees it
        self.auto_ack = True
        self.acked = 0
        self.welcome_delay = 0.0
        self.connections: list[Connection] = []
        self.log: list[Any] = []  # every envelope / file message in arrival order (dupes kept)
        self.events: dict[int, P.EventEnvelope] = {}  # seq -> first copy received
        self.agent_files: dict[str, bytes | None] = {}  # written/deleted by code
        self.auto_file_ack = True
        self.refuse: dict[str, tuple[str, str]] = {}  # path → (error_code, message)
        self.file_acks: list[P.FileAck] = []  # sent, in order
        self.wants: list[list[str]] = []
        self._ws: ServerConnection | None = None
        self._changed = asyncio.Condition()
        self._server: Any = None
        self.port = 0

    # ------------------------------------------------------------------ server

    async def start(self) -> None:
        self._server = await serve(
            self._handler, "127.0.0.1", 0, max_size=P.MAX_FRAME_BYTES, compression=None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/agent/ws"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handler(self, ws: ServerConnection) -> None:
        hello = P.parse_agent_message(await ws.recv())
        assert isinstance(hello, P.AgentHello), hello
        headers = {k.lower(): v for k, v in ws.request.headers.raw_items()}
        conn = Connection(hello, headers)
        self.connections.append(conn)
        if self.welcome_delay:
            await asyncio.sleep(self.welcome_delay)
        manifest = {p: sha(c) for p, c in self.files.items()}
        await ws.send(P.dump(P.AgentWelcome(acked_seq=self.acked, manifest=manifest)))
        if not hello.resumed:
            for path in self.files:
                await ws.send(P.dump(self._put(path)))
        self._ws = ws
        await self._notify()
        try:
            async for raw in ws:
                msg = P.parse_agent_message(raw)
                if isinstance(msg, P.AgentEvents):
                    for env in msg.events:
                        conn.received.append(env)
                        self.log.append(env)
                        self.events.setdefault(env.seq, env)
                    if self.auto_ack and msg.events:
                        self.acked = max(self.acked, msg.events[-1].seq)
                        await ws.send(P.dump(P.AckMessage(seq=self.acked)))
                elif isinstance(msg, P.FileFromAgent | P.FileDeletedByAgent):
                    conn.received.append(msg)
                    self.log.append(msg)
                    await self._file_from_agent(ws, msg)
                elif isinstance(msg, P.FileWant):
                    self.wants.append(list(msg.paths))
                    conn.received.append(msg)
                    for path in msg.paths:
                        if path in self.files:
                            await ws.send(P.dump(self._put(path)))
                await self._notify()
        except Exception as exc:  # connection closed
            print(f"hubpeer: connection ended: {exc!r}", file=sys.stderr)
        finally:
            if self._ws is ws:
                self._ws = None
            await self._notify()

    def _put(self, path: str) -> P.FilePut:
        content = self.files[path]
        return P.FilePut(
            path=path, content_b64=base64.b64encode(content).decode(), sha256=sha(content)
        )

    async def _file_from_agent(
        self, ws: ServerConnection, msg: P.FileFromAgent | P.FileDeletedByAgent
    ) -> None:
        """Commit (or refuse) a file change of code and acknowledge it, as the hub does."""
        if not self.auto_file_ack:
            return
        if msg.path in self.refuse:
            code, message = self.refuse[msg.path]
            ack = P.FileAck(fseq=msg.fseq, ok=False, error_code=code, message=message)
        else:
            if isinstance(msg, P.FileFromAgent):
                content = base64.b64decode(msg.content_b64)
                assert sha(content) == msg.sha256
                self.agent_files[msg.path] = self.files[msg.path] = content
            else:
                self.agent_files[msg.path] = None
                self.files.pop(msg.path, None)
            ack = P.FileAck(fseq=msg.fseq)
        self.file_acks.append(ack)
        await ws.send(P.dump(ack))

    # ------------------------------------------------------------------ driving the agent

    async def send(self, msg: Any) -> None:
        await self.wait_for(lambda: self._ws is not None, 60)
        assert self._ws is not None
        await self._ws.send(P.dump(msg))

    async def request(self, req: Any, user: str = "alice") -> None:
        await self.send(P.ForwardedRequest(user=user, request=req))

    async def ack(self, seq: int) -> None:
        self.acked = max(self.acked, seq)
        await self.send(P.AckMessage(seq=seq))

    async def drop(self) -> None:
        """Close the agent's socket (the agent is expected to re-dial)."""
        if self._ws is not None:
            await self._ws.close()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def wait_for(self, pred: Any, timeout: float = 30) -> None:
        """Wait until ``pred()`` holds (re-checked on every message and every 50 ms)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            if loop.time() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.05)
                except TimeoutError:
                    pass

    def request_events(self, request_id: str) -> list[Any]:
        return [
            self.events[s].event
            for s in sorted(self.events)
            if getattr(self.events[s].event, "request_id", None) == request_id
        ]

    def done_of(self, request_id: str) -> P.DoneEvent | None:
        for ev in self.request_events(request_id):
            if isinstance(ev, P.DoneEvent):
                return ev
        return None

    async def run(self, req: Any, timeout: float = 60) -> tuple[P.DoneEvent, list[Any]]:
        """Send an execute (or any request ending in done) and wait for its done."""
        await self.request(req)
        await self.wait_for(lambda: self.done_of(req.id) is not None, timeout)
        done = self.done_of(req.id)
        assert done is not None
        return done, self.request_events(req.id)

    async def reply(self, req: Any, timeout: float = 30) -> P.ReplyEvent:
        await self.request(req)

        def find() -> P.ReplyEvent | None:
            for ev in self.request_events(req.id):
                if isinstance(ev, P.ReplyEvent):
                    return ev
            return None

        await self.wait_for(lambda: find() is not None, timeout)
        found = find()
        assert found is not None
        return found


def stdout_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, P.StreamEvent) and e.name == "stdout")


async def start_agent(
    peer: HubPeer,
    workdir: Path,
    *extra: str,
    session_id: str = "sess-1",
    token: str = "tok-123",
) -> asyncio.subprocess.Process:
    env = dict(os.environ, RSPARKHUB_SESSION_TOKEN=token)
    log = open(workdir.parent / "agent.log", "ab")  # noqa: SIM115
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rsparkhub.agent",
        "--hub-url",
        peer.url,
        "--session-id",
        session_id,
        "--workdir",
        str(workdir),
        *extra,
        env=env,
        stdout=log,
        stderr=log,
    )
    log.close()
    await peer.wait_for(lambda: peer.connected, 30)
    return proc


async def stop_agent(peer: HubPeer, proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        try:
            await peer.send(P.StopMessage())
        except Exception:
            proc.terminate()
        try:
            return await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            return await proc.wait()
    return proc.returncode
