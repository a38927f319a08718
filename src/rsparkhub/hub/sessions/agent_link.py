"""The hub's end of each agent's socket (``/agent/ws``): the handshake, the agent's events
(to the ``Recorder``, acknowledged once durable), files written by code (saved in order by
a per-session worker and acknowledged with ``FileAck``), and calls (questions to the
session, answered with ``CallResult``).

The receive loop only parses and hands over: database commits, blob writes and fsyncs
happen in tasks, so a slow disk never holds up the agent's next batch. One ordering rule
holds across the two paths: events that arrive after a file change wait until the change
is committed, so no client sees a ``done`` or ``document`` before the files it implies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from typing import Any

from fastapi import WebSocket
from sqlalchemy import select

from rsparkhub import protocol as P
from rsparkhub.hub.auth import hash_token
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import File, Workspace
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import Files
from rsparkhub.hub.sessions.lifecycle import Lifecycle
from rsparkhub.hub.sessions.live import GONE, LiveSession, Registry
from rsparkhub.hub.sessions.recorder import Recorder

log = logging.getLogger("rsparkhub.sessions")

FileChange = P.FileFromAgent | P.FileDeletedByAgent | P.FileWant
FILE_WORKER_IDLE_S = 60.0
# Who a file written by code is recorded as in the file's history (a reserved user name).
CODE_AUTHOR = "session"


class AgentLink:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        registry: Registry,
        recorder: Recorder,
        lifecycle: Lifecycle,
        files: Files,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.registry = registry
        self.recorder = recorder
        self.lifecycle = lifecycle
        self.files = files
        self._file_queues: dict[str, asyncio.Queue[FileChange]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ the socket

    async def serve(self, ws: WebSocket) -> None:
        auth = ws.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        session_id: str | None = None
        if token:
            async with self.db.session() as db:
                session_id = (
                    await db.execute(
                        select(SessionRow.id).where(SessionRow.token_hash == hash_token(token))
                    )
                ).scalar_one_or_none()
        if session_id is None:
            await ws.close(code=4401, reason="invalid session token")
            return
        await ws.accept()
        try:
            hello = P.parse_agent_message(await ws.receive_text())
        except GONE:
            return
        except P.MessageError:
            await ws.close(code=4400, reason="expected hello")
            return
        live = self.registry.get(session_id)
        if not isinstance(hello, P.AgentHello) or hello.session_id != session_id:
            await ws.close(code=4400, reason="expected hello for this session")
            return
        if live is None or not live.alive:
            await ws.send_text(P.dump(P.StopMessage(reason="this session has ended")))
            await ws.close()
            return
        if not await self._handshake(live, ws, hello):
            return
        await self.lifecycle.agent_ready(live)
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    msg = P.parse_agent_message(raw)
                except P.MessageError as exc:
                    log.warning("session %s sent a bad message: %s", live.id, exc.message)
                    continue
                await self._from_agent(live, ws, msg)
        except GONE:
            pass  # the agent re-dials (or has exited: the spawner tells the lifecycle)
        except Exception:
            log.exception("session %s: the agent link failed", live.id)
            await ws.close(code=1011)
            raise
        finally:
            if live.agent is ws:
                live.agent = None
                live.fail_calls("the session's agent disconnected")

    async def _handshake(self, live: LiveSession, ws: WebSocket, hello: P.AgentHello) -> bool:
        async with live.agent_lock:
            if live.agent is not None:
                # Never swap one agent for another: a second connection with this token is
                # someone else's (a stolen token) until the first one is gone. The real
                # agent, re-dialling after a drop, gets in once the hub has seen it close.
                log.warning("session %s: refused a second agent connection", live.id)
                await ws.close(code=4409, reason="an agent is already connected")
                return False
            async with self.db.session() as db:
                files = list(
                    (await db.execute(select(File).where(File.workspace_id == live.workspace_id)))
                    .scalars()
                    .all()
                )
                ws_row = await db.get(Workspace, live.workspace_id)
                settings = dict(ws_row.settings or {}) if ws_row is not None else {}
            welcome = P.AgentWelcome(
                acked_seq=live.log.last_seq,
                manifest={f.path: f.sha256 for f in files},
                settings=settings,
            )
            await ws.send_text(P.dump(welcome))
            if not hello.resumed:  # a fresh agent: every file, before any request
                for f in files:
                    await ws.send_text(P.dump(await self._put(f)))
            while live.pending:
                await ws.send_text(live.pending.popleft())
            live.agent = ws
            live.languages = list(hello.languages)
        return True

    async def _put(self, f: File) -> P.FilePut:
        data = await self.blobs.get(f.sha256)
        return P.FilePut(path=f.path, content_b64=base64.b64encode(data).decode(), sha256=f.sha256)

    async def _from_agent(self, live: LiveSession, ws: WebSocket, msg: P.AgentToHub) -> None:
        if isinstance(msg, P.AgentEvents):
            pending_files = self._file_queues.get(live.id)
            if pending_files is not None:
                # Events after a file change are not shown before the file is in the
                # workspace (a `document` event names its output, `done` follows writes).
                await pending_files.join()
            await self.recorder.agent_events(live, msg.events)
            if not live.acking:
                live.acking = True
                self._spawn(self._ack(live, ws), f"ack-{live.id}")
        elif isinstance(msg, P.FileFromAgent | P.FileDeletedByAgent | P.FileWant):
            live.touch()
            queue = self._file_queues.get(live.id)
            if queue is None:
                queue = self._file_queues[live.id] = asyncio.Queue()
                self._spawn(self._file_worker(live, queue), f"files-{live.id}")
            queue.put_nowait(msg)
        elif isinstance(msg, P.CallResult):
            fut = live.calls.pop(msg.call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, P.AgentHello):
            log.warning("session %s said hello twice; ignored", live.id)

    async def _ack(self, live: LiveSession, ws: WebSocket) -> None:
        """Acknowledge to the agent what is durable; one fsync covers every batch that
        arrived meanwhile (group commit), off the path from agent to clients."""
        try:
            while True:
                target = live.log.last_seq
                synced = await live.log.sync()
                async with live.agent_lock:
                    if live.agent is not ws:
                        return
                    await ws.send_text(P.dump(P.AckMessage(seq=synced)))
                if live.log.last_seq == target or live.log.closed:
                    return
        except GONE:
            return  # the agent re-dials and resends what is unacked
        finally:
            live.acking = False

    # ------------------------------------------------------------------ files from code

    async def _file_worker(self, live: LiveSession, queue: asyncio.Queue[FileChange]) -> None:
        """Apply the session's file changes in the order the agent made them."""
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), FILE_WORKER_IDLE_S)
                except TimeoutError:
                    if queue.empty():
                        return
                    continue
                try:
                    if isinstance(msg, P.FileWant):
                        await self._send_wanted(live, msg.paths)
                    else:
                        await live.send_agent(P.dump(await self._apply(live, msg)))
                except ApiError as exc:
                    log.warning("session %s: file message not answered: %s", live.id, exc.message)
                finally:
                    queue.task_done()
        finally:
            self._file_queues.pop(live.id, None)

    async def _apply(
        self, live: LiveSession, msg: P.FileFromAgent | P.FileDeletedByAgent
    ) -> P.FileAck:
        try:
            async with self.db.session() as db:
                if isinstance(msg, P.FileDeletedByAgent):
                    try:
                        await self.files.delete(db, live.workspace_id, msg.path, origin="session")
                    except ApiError as exc:
                        if exc.status != 404:  # already gone is what was asked
                            raise
                    await self.recorder.runs.file_written(live, msg.path, None, deleted=True)
                    return P.FileAck(fseq=msg.fseq)
                try:
                    data = base64.b64decode(msg.content_b64, validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, "invalid_file", "The file's content was garbled.") from None
                saved = await self.files.save(
                    db,
                    live.workspace_id,
                    msg.path,
                    data,
                    CODE_AUTHOR,
                    None,
                    require_base=False,
                    origin="session",
                    overwrote=msg.base_sha256,
                )
                await self.recorder.runs.file_written(live, saved.file.path, saved.file)
                return P.FileAck(fseq=msg.fseq)
        except ApiError as exc:
            log.warning("session %s: refused %s: %s", live.id, msg.path, exc.message)
            return P.FileAck(fseq=msg.fseq, ok=False, error_code=exc.code, message=exc.message)

    async def _send_wanted(self, live: LiveSession, paths: list[str]) -> None:
        """After a re-dial the agent asks for files changed while it was away."""
        async with self.db.session() as db:
            rows = {
                f.path: f
                for f in (
                    await db.execute(
                        select(File).where(
                            File.workspace_id == live.workspace_id, File.path.in_(paths)
                        )
                    )
                ).scalars()
            }
        for path in paths:
            f = rows.get(path)
            msg: P.FilePut | P.FileDelete = (
                await self._put(f) if f is not None else P.FileDelete(path=path)
            )
            await live.send_agent(P.dump(msg))

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        live: LiveSession,
        language: P.Language,
        method: P.CallMethod,
        params: dict[str, Any],
        timeout_s: float,
        start_timeout_s: float,
        *,
        may_run_code: bool,
    ) -> P.CallResult:
        """Ask the running session a question (environment, data view, help, plot render).
        ``may_run_code``: the caller is the owner or an editor (see ``P.CallMessage``)."""
        if live.agent is None:
            try:
                await asyncio.wait_for(live.ready.wait(), start_timeout_s)
            except TimeoutError:
                raise ApiError(
                    503, "session_unavailable", "The session is not connected; try again."
                ) from None
        msg = P.CallMessage(
            call_id=uuid.uuid4().hex,
            language=language,
            method=method,
            params=params,
            may_run_code=may_run_code,
        )
        fut: asyncio.Future[P.CallResult] = asyncio.get_running_loop().create_future()
        live.calls[msg.call_id] = fut
        try:
            async with live.agent_lock:
                agent = live.agent
                if agent is None:
                    raise ApiError(
                        503, "session_unavailable", "The session is not connected; try again."
                    )
                await agent.send_text(P.dump(msg))
            result = await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            raise ApiError(
                504, "session_timeout", "The session did not answer in time; try again."
            ) from None
        except GONE as exc:
            raise ApiError(
                503, "session_unavailable", f"The session is not connected: {exc}"
            ) from None
        finally:
            live.calls.pop(msg.call_id, None)
        live.touch()
        return result
