"""Sessions: one per workspace, started on demand, stopped on request or when idle,
recorded when they die, adopted after a hub restart — and the relay between the agent's
socket and every client socket of the workspace.

Owns: the ``sessions`` and ``executions`` rows, the per-session ``EventLog``, the agent
link (``/agent/ws``) and the client link (``/api/workspaces/{id}/ws``). It does not own
files (``files.py``) or authorization of objects (``access.py``), which it calls.

Durability rule: an event is acknowledged to the agent only after it is in the event log;
clients read only from the event log. A hub crash therefore loses nothing acknowledged, and
a client reconnecting with ``since`` gets every event exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket, WebSocketDisconnect
from sqlalchemy import select, update

from rsparkhub import protocol as P
from rsparkhub.hub.auth import hash_token, new_secret
from rsparkhub.hub.db.engine import aware
from rsparkhub.hub.db.models import Execution, File, Plot, Project, Usage, User, Workspace
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.eventlog import EventLog, LogReader
from rsparkhub.hub.files import delete_file, save_file
from rsparkhub.hub.paths import clean_path
from rsparkhub.hub.spawners.base import SessionSpec, Spawner, SpawnError, profiles_for

if TYPE_CHECKING:
    from rsparkhub.hub.state import Hub

log = logging.getLogger("rsparkhub.sessions")

ENDED = ("stopped", "dead")


# The caller's role in the workspace now (owner, editor, viewer), or None once they have
# lost access (no longer a member, disabled, the workspace deleted).
RoleCheck = Callable[[], Awaitable[str | None]]

VIEWER_CANNOT_RUN_CODE = "viewer_cannot_run_code"


@dataclass(eq=False)
class ClientConn:
    ws: WebSocket
    user: str
    workspace_id: str
    can_write: bool
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pump: asyncio.Task[None] | None = None
    current_role: RoleCheck | None = None
    closed: bool = False

    async def send_text(self, text: str) -> bool:
        try:
            async with self.send_lock:
                await self.ws.send_text(text)
            return True
        except Exception:  # noqa: BLE001 - a gone client is not our error
            return False


@dataclass(eq=False)
class LiveSession:
    id: str
    workspace_id: str
    owner_id: str
    owner_name: str
    state: str
    spawner_state: dict[str, Any]
    log: EventLog
    started_at: float = field(default_factory=time.time)
    agent: WebSocket | None = None
    agent_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: list[str] = field(default_factory=list)
    running: dict[str, Execution] = field(default_factory=dict)  # by request id, not yet stored
    acking: bool = False  # an fsync + ack to the agent is under way
    languages: list[str] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None
    monitor: asyncio.Task[None] | None = None
    exit_code: int | None = None
    reason: str | None = None
    calls: dict[str, asyncio.Future[P.CallResult]] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.state not in ENDED


def loopback_ports(env: dict[str, str]) -> tuple[int, ...]:
    """The host loopback ports a session's services live on (its PostgreSQL database, its
    user's Spark server), read from the variables that point the session at them: the
    sandbox forwards exactly these into the session's network namespace."""
    from urllib.parse import urlsplit

    ports: set[int] = set()
    loopback = ("127.0.0.1", "localhost", "::1")
    if env.get("PGHOST") in loopback and env.get("PGPORT", "").isdigit():
        ports.add(int(env["PGPORT"]))
    remote = env.get("SPARK_REMOTE", "")
    if remote.startswith("sc://"):
        parts = urlsplit("http://" + remote[5:].split("/;")[0].split(";")[0])
        if parts.hostname in loopback and parts.port:
            ports.add(parts.port)
    return tuple(sorted(ports))


class SessionManager:
    def __init__(self, hub: Hub, spawner: Spawner) -> None:
        self.hub = hub
        self.spawner = spawner
        self.live: dict[str, LiveSession] = {}  # by workspace id
        self.by_id: dict[str, LiveSession] = {}
        self.clients: dict[str, set[ClientConn]] = {}  # by workspace id
        self._start_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cull_task: asyncio.Task[None] | None = None
        self._record_task: asyncio.Task[None] | None = None
        self._finished: list[Execution] = []  # finished executions not yet stored

    # ------------------------------------------------------------------ paths
    def session_dir(self, session_id: str) -> Path:
        return self.hub.settings.data_dir / "sessions" / session_id

    def log_dir(self, session_id: str) -> Path:
        return self.hub.settings.data_dir / "logs" / session_id

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        """Adopt the sessions a previous hub process left running."""
        async with self.hub.db.session() as db:
            rows = (
                (
                    await db.execute(
                        select(SessionRow).where(
                            SessionRow.state.in_(("starting", "running", "stopping"))
                        )
                    )
                )
                .scalars()
                .all()
            )
            for row in rows:
                ws = await db.get(Workspace, row.workspace_id)
                if ws is None:
                    continue
                owner = await db.get(User, row.owner_id)
                live = LiveSession(
                    id=row.id,
                    workspace_id=row.workspace_id,
                    owner_id=row.owner_id,
                    owner_name=owner.name if owner else "?",
                    state="running" if row.state == "running" else row.state,
                    spawner_state=dict(row.spawner_state or {}),
                    log=EventLog(
                        self.log_dir(row.id) / "events.jsonl", self.hub.settings.event_fsync
                    ),
                )
                if await self.spawner.poll(live.spawner_state):
                    log.info("adopting session %s of workspace %s", row.id, row.workspace_id)
                    self.live[row.workspace_id] = live
                    self.by_id[row.id] = live
                    # its Spark driver (spark = 'kubernetes') is kept, or made again if gone
                    self._spawn(
                        self.hub.spark.session_started(
                            live.owner_name,
                            live.id,
                            live.spawner_state,
                            workspace_id=live.workspace_id,
                        )
                    )
                    live.monitor = self._spawn(self._monitor(live))
                else:
                    self.by_id[row.id] = live
                    await self._finish(
                        live, None, "the session ended while the hub was down", dead=True
                    )
        reconcile = getattr(self.spawner, "reconcile", None)
        if reconcile is not None:  # remove what no live session owns (e.g. orphaned pods)
            try:
                await reconcile({sid for sid, live in self.by_id.items() if live.alive})
            except SpawnError as exc:
                log.warning("could not clean up after the last hub: %s", exc)
        self._cull_task = asyncio.create_task(self._cull_loop())
        self._record_task = asyncio.create_task(self._record_loop())

    async def shutdown(self) -> None:
        """Hub shutdown: sessions keep running (the next hub adopts them)."""
        for task in (self._cull_task, self._record_task):
            if task:
                task.cancel()
        await self._flush_records()
        for task in list(self._tasks):
            task.cancel()
        for conns in self.clients.values():
            for c in list(conns):
                if c.pump:
                    c.pump.cancel()
        for live in list(self.by_id.values()):
            if live.agent is not None:
                try:
                    await live.agent.close(code=1012)
                except Exception:  # noqa: BLE001
                    pass
            live.log.close()
        close = getattr(self.spawner, "close", None)
        if close is not None:
            await close()

    async def ensure_session(self, workspace_id: str, profile: str | None = None) -> LiveSession:
        """The workspace's running session, started if there is none (with ``profile``,
        else the workspace's last profile, else the spawner's default)."""
        lock = self._start_locks.setdefault(workspace_id, asyncio.Lock())
        async with lock:
            live = self.live.get(workspace_id)
            if live is not None and live.alive and live.state != "stopping":
                running = live.spawner_state.get("profile")
                if profile is not None and running is not None and running != profile:
                    raise ApiError(
                        409,
                        "session_running",
                        f"The workspace's session runs with profile '{running}'; stop it "
                        f"(DELETE /api/workspaces/{workspace_id}/session) to start one with "
                        f"'{profile}'.",
                    )
                return live
            if live is not None and live.state == "stopping":
                await asyncio.wait_for(live.ended.wait(), 30)
            return await self._start(workspace_id, profile)

    async def _pick_profile(
        self, db: Any, workspace_id: str, owner: User, asked: str | None
    ) -> str | None:
        """The profile asked for (the API checked the caller may use it), else the
        workspace's last one while its owner may still use it, else the default."""
        if asked is not None:
            return asked
        allowed = profiles_for(self.spawner, owner.name, owner.is_admin)
        if not allowed:
            raise ApiError(
                403,
                "no_profile",
                "No session profile is open to the workspace's owner; ask an administrator.",
            )
        last = (
            await db.execute(
                select(SessionRow.spawner_state)
                .where(SessionRow.workspace_id == workspace_id)
                .order_by(SessionRow.started_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        previous = (last or {}).get("profile")
        names = [p["name"] for p in allowed]
        if previous in names:
            return str(previous)
        return next((p["name"] for p in allowed if p.get("default")), names[0])

    async def _start(self, workspace_id: str, profile: str | None = None) -> LiveSession:
        settings = self.hub.settings
        token = new_secret("rsa")
        async with self.hub.db.session() as db:
            ws = await db.get(Workspace, workspace_id)
            if ws is None:
                raise ApiError(404, "not_found", "The workspace does not exist.")
            project = await db.get(Project, ws.project_id)
            owner = await db.get(User, project.owner_id) if project else None
            if owner is None:
                raise ApiError(500, "no_owner", "The workspace has no owner.")
            profile = await self._pick_profile(db, workspace_id, owner, profile)
            row = SessionRow(
                workspace_id=workspace_id,
                owner_id=owner.id,
                state="starting",
                spawner=self.spawner.name,
                spawner_state={},
                token_hash=hash_token(token),
            )
            db.add(row)
            await db.commit()
            sid, owner_name, owner_id = row.id, owner.name, owner.id
        live = LiveSession(
            id=sid,
            workspace_id=workspace_id,
            owner_id=owner.id,
            owner_name=owner_name,
            state="starting",
            spawner_state={},
            log=EventLog(self.log_dir(sid) / "events.jsonl", settings.event_fsync),
        )
        self.live[workspace_id] = live
        self.by_id[sid] = live

        async def progress(message: str) -> None:  # start-up steps (pod events) to clients
            if live.state == "starting":
                await self._announce(live, message)

        env = {
            # PGHOST … DATABASE_URL of the owner's database (hub/userdb.py); never logged.
            # … and SPARK_REMOTE with the owner's Spark user and this session's id (hub/spark.py).
            **await self.hub.userdb.session_env(owner_id),
            **await self.hub.spark.session_env(
                owner_name, sid, user_id=owner_id, workspace_id=workspace_id
            ),
        }
        identity = await self.hub.identities.for_user(owner_id)
        spec = SessionSpec(
            session_id=sid,
            workspace_id=workspace_id,
            user=owner_name,
            token=token,
            hub_agent_url=f"ws://{_connect_host(settings.host)}:{self.hub_port}/agent/ws",
            session_dir=self.session_dir(sid),
            log_path=self.log_dir(sid) / "agent.log",
            redial_timeout_s=settings.agent_redial_timeout_s,
            max_file_bytes=settings.max_file_bytes,
            languages=settings.session_languages,
            env=env,
            uid=identity.uid,
            gid=identity.gid,
            reach=loopback_ports(env),
            profile=profile,
            progress=progress,
        )
        try:
            live.spawner_state = await self.spawner.start(spec)
            if profile is not None:
                live.spawner_state.setdefault("profile", profile)
        except SpawnError as exc:
            await self._finish(live, None, f"the session could not start: {exc}", dead=True)
            raise ApiError(
                503, "session_start_failed", f"The session could not start: {exc}"
            ) from exc
        async with self.hub.db.session() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == sid)
                .values(spawner_state=live.spawner_state)
            )
            await db.commit()
        await self._announce(live, f"starting a session ({self.spawner.name} spawner)")

        async def announce(message: str) -> None:
            await self._announce(live, message)

        # spark = 'kubernetes': the session's Spark driver, owned by its pod (never raises)
        await self.hub.spark.session_started(
            owner_name, sid, live.spawner_state, workspace_id=workspace_id, announce=announce
        )
        live.monitor = self._spawn(self._monitor(live))
        self._spawn(self._start_deadline(live))
        log.info("started session %s for workspace %s", sid, workspace_id)
        return live

    hub_port: int = 8000  # set by the app from the bound socket

    async def _start_deadline(self, live: LiveSession) -> None:
        # A spawner may need longer (Kubernetes: scheduling, image pulls).
        timeout = getattr(self.spawner, "start_timeout_s", None)
        try:
            await asyncio.wait_for(
                live.ready.wait(), timeout or self.hub.settings.session_start_timeout_s
            )
        except TimeoutError:
            if live.alive and not live.ready.is_set():
                live.stop_reason = "the session's agent did not connect in time"
                await self.spawner.stop(live.spawner_state, grace_s=2)

    async def _monitor(self, live: LiveSession) -> None:
        code, reason = await self.spawner.wait(live.spawner_state)
        # A requested stop is clean when the agent exited 0 — or was ended by our SIGTERM
        # before it had installed its handler (a stop right after start).
        # An agent that exits 0 unasked (SIGTERM from an operator or the OS) stopped cleanly
        # too: its kernels were shut down.
        clean = code == 0 or (live.state == "stopping" and code in (None, -15, 128 + 15))
        if clean and not live.stop_reason:
            live.stop_reason = "the agent was stopped outside the hub (exit code 0)"
        if not clean:
            if live.stop_reason:
                reason = f"{live.stop_reason} ({reason})"
            last = await asyncio.to_thread(_last_log_line, self.log_dir(live.id) / "agent.log")
            if last and code not in (-9, 128 + 9):
                reason = f"{reason}; last agent log line: {last}"
        await self._finish(live, code, live.stop_reason if clean else reason, dead=not clean)

    async def _finish(
        self, live: LiveSession, code: int | None, reason: str | None, dead: bool
    ) -> None:
        if live.ended.is_set():
            return
        live.state = "dead" if dead else "stopped"
        live.exit_code, live.reason = code, reason
        live.agent = None
        event = P.SessionEvent(state="dead" if dead else "stopped", message=reason, exit_code=code)
        seq = live.log.last_seq + 1
        await live.log.append(
            [(seq, P.dump(P.EventEnvelope(session_id=live.id, seq=seq, event=event)))]
        )
        # Requests that were waiting or running will never finish: say so.
        for rid in list(live.running):
            seq = live.log.last_seq + 1
            done = P.DoneEvent(
                request_id=rid,
                status="failed",
                error_code="session_ended",
                message=f"The session ended: {reason}.",
            )
            await live.log.append(
                [(seq, P.dump(P.EventEnvelope(session_id=live.id, seq=seq, event=done)))]
            )
        for execution in live.running.values():
            execution.status = "failed"
        if live.running:
            self._finished.extend(live.running.values())
        live.running.clear()
        live.pending.clear()
        self._fail_calls(live, "the session ended")
        live.ended.set()
        await live.log.sync()
        live.log.close()
        await self._announce(live, reason)
        if self.live.get(live.workspace_id) is live:
            del self.live[live.workspace_id]
        async with self.hub.db.session() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == live.id)
                .values(state=live.state, exit_code=code, reason=reason, ended_at=datetime.now(UTC))
            )
            row = await db.get(SessionRow, live.id)
            started = aware(row.started_at) if row is not None else None
            if started is not None:
                seconds = (datetime.now(UTC) - started).total_seconds()
                db.add(Usage(user_id=live.owner_id, session_id=live.id, seconds=seconds))
            await db.commit()
        await self.hub.spark.session_ended(live.id)  # its Kubernetes Spark driver, if any
        log.info("session %s %s: %s (exit %s)", live.id, live.state, reason, code)

    async def stop(
        self, live: LiveSession, reason: str = "stopped on request", grace_s: float = 15
    ) -> None:
        if not live.alive:
            return
        live.state = "stopping"
        live.stop_reason = reason
        await self._announce(live, reason)
        async with self.hub.db.session() as db:
            await db.execute(
                update(SessionRow).where(SessionRow.id == live.id).values(state="stopping")
            )
            await db.commit()
        if live.agent is not None:
            await self._send_agent(live, P.dump(P.StopMessage(reason=reason)))
            try:
                await asyncio.wait_for(live.ended.wait(), grace_s)
            except TimeoutError:
                pass
        if not live.ended.is_set():
            await self.spawner.stop(live.spawner_state, grace_s=5)
            await asyncio.wait_for(live.ended.wait(), 10)

    async def _cull_loop(self) -> None:
        settings = self.hub.settings
        while True:
            await asyncio.sleep(settings.cull_interval_s)
            if settings.idle_timeout_s <= 0:
                continue
            now = time.monotonic()
            for live in list(self.live.values()):
                idle = now - live.last_activity
                if (
                    live.state == "running"
                    and not self.clients.get(live.workspace_id)
                    and not live.running
                    and idle > settings.idle_timeout_s
                ):
                    self._spawn(self.stop(live, reason=f"idle for {int(idle)} s"))

    async def _announce(self, live: LiveSession, message: str | None = None) -> None:
        msg = P.SessionStateMessage(session_id=live.id, state=live.state, message=message)
        await self.broadcast(live.workspace_id, P.dump(msg))

    # ------------------------------------------------------------------ calls
    async def call(
        self,
        workspace_id: str,
        language: str,
        method: str,
        params: dict[str, Any],
        timeout_s: float = 150,
        *,
        may_run_code: bool = False,
    ) -> P.CallResult:
        """Ask the running session a question (environment, data view, help, plot render).
        ``may_run_code``: the caller is the owner or an editor (see ``P.CallMessage``).
        Raises ``ApiError``: 409 without a running session, the agent's own error otherwise."""
        live = self.live.get(workspace_id)
        if live is None or not live.alive or live.state == "stopping":
            raise ApiError(
                409,
                "session_not_running",
                "The workspace has no running session; open the workspace (or POST "
                f"/api/workspaces/{workspace_id}/session) to start one.",
            )
        if live.agent is None:
            try:
                await asyncio.wait_for(live.ready.wait(), self.hub.settings.session_start_timeout_s)
            except TimeoutError:
                raise ApiError(
                    503, "session_unavailable", "The session is not connected; try again."
                ) from None
        msg = P.CallMessage(
            call_id=uuid.uuid4().hex,
            language=language,  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
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
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - a socket that just went away
            raise ApiError(
                503, "session_unavailable", f"The session is not connected: {exc}"
            ) from None
        finally:
            live.calls.pop(msg.call_id, None)
        live.last_activity = time.monotonic()
        return result

    def _fail_calls(self, live: LiveSession, why: str) -> None:
        for fut in live.calls.values():
            if not fut.done():
                fut.set_exception(
                    ApiError(503, "session_unavailable", f"No answer: {why}; try again.")
                )
        live.calls.clear()

    async def _settings(self, workspace_id: str) -> dict[str, Any]:
        async with self.hub.db.session() as db:
            ws = await db.get(Workspace, workspace_id)
            return dict(ws.settings or {}) if ws is not None else {}

    async def settings_changed(self, workspace_id: str, settings: dict[str, Any]) -> None:
        live = self.live.get(workspace_id)
        if live is not None and live.alive:
            await self._send_agent(live, P.dump(P.SettingsMessage(settings=settings)))

    # ------------------------------------------------------------------ files
    async def file_saved(self, workspace_id: str, f: File, data: bytes, from_session: bool) -> None:
        live = self.live.get(workspace_id)
        if live is not None and live.alive and not from_session:
            put = P.FilePut(
                path=f.path, content_b64=base64.b64encode(data).decode(), sha256=f.sha256
            )
            await self._send_agent(live, P.dump(put))
        msg = P.FilesChanged(
            workspace_id=workspace_id,
            changed=[{"path": f.path, "version": f.version, "size": f.size, "sha256": f.sha256}],
        )
        await self.broadcast(workspace_id, P.dump(msg))

    async def file_deleted(self, workspace_id: str, path: str, from_session: bool) -> None:
        live = self.live.get(workspace_id)
        if live is not None and live.alive and not from_session:
            await self._send_agent(live, P.dump(P.FileDelete(path=path)))
        await self.broadcast(
            workspace_id, P.dump(P.FilesChanged(workspace_id=workspace_id, deleted=[path]))
        )

    async def broadcast(self, workspace_id: str, text: str) -> None:
        for c in list(self.clients.get(workspace_id, ())):
            await c.send_text(text)

    # ------------------------------------------------------------------ agent link
    async def _send_agent(self, live: LiveSession, text: str) -> None:
        """Send to the agent, or queue until it (re)connects: nothing is dropped."""
        async with live.agent_lock:
            if live.agent is None:
                live.pending.append(text)
                return
            try:
                await live.agent.send_text(text)
            except Exception:  # noqa: BLE001 - the agent will re-dial; keep the message
                live.pending.append(text)
                live.agent = None

    async def agent_socket(self, ws: WebSocket) -> None:
        auth = ws.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        async with self.hub.db.session() as db:
            row = (
                (
                    await db.execute(
                        select(SessionRow).where(SessionRow.token_hash == hash_token(token))
                    )
                ).scalar_one_or_none()
                if token
                else None
            )
        if row is None:
            await ws.close(code=4401, reason="invalid session token")
            return
        await ws.accept()
        try:
            hello = P.parse_agent_message(await ws.receive_text())
        except (P.MessageError, WebSocketDisconnect):
            await ws.close(code=4400, reason="expected hello")
            return
        live = self.by_id.get(row.id)
        if not isinstance(hello, P.AgentHello) or hello.session_id != row.id:
            await ws.close(code=4400, reason="expected hello for this session")
            return
        if live is None or not live.alive:
            await ws.send_text(P.dump(P.StopMessage(reason="this session has ended")))
            await ws.close()
            return
        async with live.agent_lock:
            if live.agent is not None:
                # Never swap one agent for another: a second connection with this token is
                # someone else's (a stolen token) until the first one is gone. The real
                # agent, re-dialling after a drop, gets in once the hub has seen it close.
                log.warning("session %s: refused a second agent connection", live.id)
                await ws.close(code=4409, reason="an agent is already connected")
                return
            manifest: dict[str, str] = {}
            async with self.hub.db.session() as db:
                files = (
                    (await db.execute(select(File).where(File.workspace_id == live.workspace_id)))
                    .scalars()
                    .all()
                )
            manifest = {f.path: f.sha256 for f in files}
            settings = await self._settings(live.workspace_id)
            await ws.send_text(
                P.dump(
                    P.AgentWelcome(
                        acked_seq=live.log.last_seq, manifest=manifest, settings=settings
                    )
                )
            )
            if not hello.resumed:
                for f in files:
                    data = await self.hub.blobs.get(f.sha256)
                    put = P.FilePut(
                        path=f.path, content_b64=base64.b64encode(data).decode(), sha256=f.sha256
                    )
                    await ws.send_text(P.dump(put))
            while live.pending:
                await ws.send_text(live.pending.pop(0))
            live.agent = ws
            live.languages = list(hello.languages)
        if live.state == "starting":
            live.state = "running"
            async with self.hub.db.session() as db:
                await db.execute(
                    update(SessionRow).where(SessionRow.id == live.id).values(state="running")
                )
                await db.commit()
            await self._announce(live, "the session is ready")
        live.ready.set()
        try:
            while True:
                raw = await ws.receive_text()
                try:
                    msg = P.parse_agent_message(raw)
                except P.MessageError as exc:
                    log.warning("session %s sent a bad message: %s", live.id, exc.message)
                    continue
                try:
                    await self._from_agent(live, ws, msg)
                except ApiError as exc:
                    log.warning("session %s: %s", live.id, exc.message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if live.agent is ws:
                live.agent = None
                self._fail_calls(live, "the session's agent disconnected")

    async def _from_agent(self, live: LiveSession, ws: WebSocket, msg: Any) -> None:
        if isinstance(msg, P.AgentEvents):
            await self._agent_events(live, msg.events)
            if not live.acking:
                live.acking = True
                self._spawn(self._ack(live, ws))
        elif isinstance(msg, P.FileFromAgent):
            try:
                data = base64.b64decode(msg.content_b64, validate=True)
            except (binascii.Error, ValueError):
                log.warning("session %s sent undecodable file %s", live.id, msg.path)
                return
            async with self.hub.db.session() as db:
                await save_file(
                    self.hub,
                    db,
                    live.workspace_id,
                    msg.path,
                    data,
                    "session",
                    None,
                    require_base=False,
                )
        elif isinstance(msg, P.CallResult):
            fut = live.calls.pop(msg.call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif isinstance(msg, P.FileDeletedByAgent):
            async with self.hub.db.session() as db:
                try:
                    await delete_file(self.hub, db, live.workspace_id, msg.path, from_session=True)
                except ApiError:
                    pass

    async def _agent_events(self, live: LiveSession, envelopes: list[P.EventEnvelope]) -> None:
        lines: list[tuple[int, str]] = []
        expected = live.log.last_seq + 1
        for env in sorted(envelopes, key=lambda e: e.seq):
            if env.seq < expected or env.session_id != live.id:
                continue  # already durable (a resend after a re-dial)
            if env.seq > expected:
                log.warning("session %s skipped from seq %d to %d", live.id, expected, env.seq)
                break
            ev = env.event
            if isinstance(ev, P.PlotEvent):
                await self._store_plot(live, ev)
            elif isinstance(ev, P.DoneEvent):
                execution = live.running.pop(ev.request_id, None)
                if execution is not None:
                    execution.status, execution.duration_ms = ev.status, ev.duration_ms
                    self._finished.append(execution)
            live.last_activity = time.monotonic()
            lines.append((env.seq, P.dump(env)))
            expected += 1
        if lines:
            await live.log.append(lines)

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
        except Exception:  # noqa: BLE001 - the agent re-dials and resends what is unacked
            return
        finally:
            live.acking = False

    async def _store_plot(self, live: LiveSession, ev: P.PlotEvent) -> None:
        data = b""
        if ev.content_b64:
            try:
                data = base64.b64decode(ev.content_b64)
            except (binascii.Error, ValueError):
                data = b""
        ev.content_b64 = None
        ev.url = f"/api/workspaces/{live.workspace_id}/plots/{ev.plot_id}"
        if not data:
            return
        sha = await self.hub.blobs.put(data)
        async with self.hub.db.session() as db:
            if await db.get(Plot, ev.plot_id) is None:
                db.add(
                    Plot(
                        id=ev.plot_id,
                        workspace_id=live.workspace_id,
                        session_id=live.id,
                        request_id=ev.request_id,
                        mime=ev.mime,
                        sha256=sha,
                        size=len(data),
                        width=ev.width,
                        height=ev.height,
                    )
                )
                await db.commit()

    async def _record_loop(self) -> None:
        """Execution records are written in batches, off the request path."""
        while True:
            await asyncio.sleep(1.0)
            await self._flush_records()

    async def _flush_records(self) -> None:
        rows, self._finished = self._finished, []
        if rows:
            async with self.hub.db.session() as db:
                db.add_all(rows)
                await db.commit()

    # ------------------------------------------------------------------ client link
    async def client_socket(
        self,
        ws: WebSocket,
        workspace_id: str,
        user: str,
        can_write: bool,
        current_role: RoleCheck | None = None,
    ) -> None:
        """Serve one client socket (already accepted and authorised). ``current_role`` is
        asked again at every (re)attach, so a socket never outlives its caller's access."""
        conn = ClientConn(
            ws=ws,
            user=user,
            workspace_id=workspace_id,
            can_write=can_write,
            current_role=current_role,
        )
        since = _int(ws.query_params.get("since"), 0)
        wanted_session = ws.query_params.get("session")
        self.clients.setdefault(workspace_id, set()).add(conn)
        await self._presence(workspace_id)
        live: LiveSession | None = None
        try:
            live = await self._attach(conn, since if wanted_session else 0, wanted_session)
            while True:
                raw = await ws.receive_text()
                try:
                    req = P.parse_client_request(raw)
                except P.MessageError as exc:
                    await conn.send_text(
                        P.dump(
                            P.ProtocolError(
                                request_id=exc.request_id, code=exc.code, message=exc.message
                            )
                        )
                    )
                    continue
                if live is None or not live.alive:
                    live = await self._attach(conn, 0, None)
                await self._client_request(conn, live, req)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except ApiError as exc:
            await conn.send_text(P.dump(P.ProtocolError(code=exc.code, message=exc.message)))
            if not conn.closed:
                conn.closed = True
                code = 4000 + exc.status if exc.status in (403, 404) else 4500
                with contextlib.suppress(Exception):
                    await ws.close(code=code, reason=_close_reason(exc))
        finally:
            if conn.pump:
                conn.pump.cancel()
            self.clients.get(workspace_id, set()).discard(conn)
            if live is not None:
                live.last_activity = time.monotonic()
            await self._presence(workspace_id)

    async def _attach(
        self, conn: ClientConn, since: int, wanted_session: str | None
    ) -> LiveSession:
        # Asked again here (not only at the handshake): access removed while this socket
        # was being set up, or while its session was being replaced, ends it.
        if conn.current_role is not None:
            role = await conn.current_role()
            if role is None:
                raise ApiError(403, "not_a_member", "You no longer have access to this workspace.")
            conn.can_write = role in ("owner", "editor")
        live = await self.ensure_session(conn.workspace_id)
        if wanted_session != live.id:
            # A session that has ended: replay its tail first, so the client learns how
            # it ended, then continue with the new one. Only a session of this very
            # workspace: any other id is treated as unknown (no replay, no oracle).
            old = self.by_id.get(wanted_session or "")
            if old is not None and old.workspace_id != conn.workspace_id:
                old = None
            if old is not None and old is not live and since < old.log.last_seq:
                reader = LogReader(old.log, since)
                for _seq, text in reader.read_available(64 << 20):
                    await conn.send_text(text)
                reader.close()
            since = 0
        since = min(since, live.log.last_seq)
        if conn.pump:
            conn.pump.cancel()
        welcome = P.WelcomeMessage(
            workspace_id=conn.workspace_id,
            session_id=live.id,
            state=live.state,
            since=since,
            user=conn.user,
        )
        await conn.send_text(P.dump(welcome))
        conn.pump = asyncio.create_task(self._pump(conn, live, since))
        return live

    async def _pump(self, conn: ClientConn, live: LiveSession, since: int) -> None:
        """Tail the session's event log to one client, from ``since`` on."""
        reader = LogReader(live.log, since)
        try:
            while True:
                batch = reader.read_available()
                for _seq, text in batch:
                    if not await conn.send_text(text):
                        return
                if batch:
                    continue
                if live.log.closed:
                    for _seq, text in reader.read_available(64 << 20):
                        await conn.send_text(text)
                    return
                await live.log.wait_changed(timeout=5)
        finally:
            reader.close()

    async def _presence(self, workspace_id: str) -> None:
        users = sorted({c.user for c in self.clients.get(workspace_id, ())})
        await self.broadcast(workspace_id, P.dump(P.PresenceMessage(users=users)))

    async def access_changed(
        self, user: str, workspace_id: str | None = None, role: str | None = None
    ) -> int:
        """A user's access changed: in ``workspace_id`` (every workspace when None). With a
        ``role`` their open sockets there keep going with that role's rights; without one
        (membership removed, user disabled or demoted, workspace deleted) they are closed
        with 4403. Returns how many sockets were closed."""
        closed = 0
        targets = [workspace_id] if workspace_id is not None else list(self.clients)
        for wid in targets:
            for conn in list(self.clients.get(wid, ())):
                if conn.user != user:
                    continue
                if role is not None:
                    conn.can_write = role in ("owner", "editor")
                    continue
                await self._close_client(conn, "You no longer have access to this workspace.")
                closed += 1
        return closed

    async def close_clients(self, workspace_id: str, why: str) -> None:
        """Close every socket of a workspace (it was deleted)."""
        for conn in list(self.clients.get(workspace_id, ())):
            await self._close_client(conn, why)

    async def _close_client(self, conn: ClientConn, why: str) -> None:
        conn.can_write = False  # a request already read is refused from now on
        conn.closed = True
        if conn.pump:
            conn.pump.cancel()
        self.clients.get(conn.workspace_id, set()).discard(conn)
        reason = _close_reason(ApiError(403, "not_a_member", why))
        with contextlib.suppress(Exception):
            async with conn.send_lock:
                await conn.ws.send_text(P.dump(P.ProtocolError(code="not_a_member", message=why)))
                await conn.ws.close(code=4403, reason=reason)
        await self._presence(conn.workspace_id)

    async def _client_request(self, conn: ClientConn, live: LiveSession, req: Any) -> None:
        def error(code: str, message: str) -> P.ProtocolError:
            return P.ProtocolError(request_id=req.id, code=code, message=message)

        if not conn.can_write and not isinstance(req, P.PingRequest):
            # A viewer sends nothing to the session: completion and is_complete are
            # answered by the kernel (R's `$` completion evaluates the object before it,
            # IPython imports modules to complete them), so they are refused like code.
            if isinstance(req, P.InterruptRequest | P.RestartRequest):
                code, text = "forbidden", "Viewers of a workspace cannot interrupt or restart it."
            else:
                code = VIEWER_CANNOT_RUN_CODE
                text = (
                    "Viewers of a workspace cannot run code in it, and completion runs code "
                    "in the session: ask the owner to make you an editor."
                )
            await conn.send_text(P.dump(error(code, text)))
            return
        if isinstance(req, P.ExecuteRequest):
            if req.path is not None:
                try:
                    req.path = clean_path(req.path)
                except ApiError as exc:
                    await conn.send_text(P.dump(error(exc.code, exc.message)))
                    return
                async with self.hub.db.session() as db:
                    f = (
                        await db.execute(
                            select(File).where(
                                File.workspace_id == live.workspace_id, File.path == req.path
                            )
                        )
                    ).scalar_one_or_none()
                if f is None:
                    await conn.send_text(
                        P.dump(
                            error(
                                "file_not_found",
                                f"There is no file '{req.path}' in this workspace.",
                            )
                        )
                    )
                    return
                if req.path.lower().endswith((".rmd", ".qmd", ".rnw")) and req.mode != "console":
                    await conn.send_text(
                        P.dump(
                            error(
                                "unsupported_file",
                                f"'{req.path}' is a document: render it (a 'render' request, "
                                "or `rsparkhub render`) instead of running it as a script.",
                            )
                        )
                    )
                    return
                if req.language is None:
                    req.language = P.language_for_path(req.path)
                if req.language is None:
                    await conn.send_text(
                        P.dump(
                            error(
                                "unknown_language",
                                f"Cannot tell the language of '{req.path}'; say language r, python or bash.",
                            )
                        )
                    )
                    return
            elif req.code is None:
                await conn.send_text(
                    P.dump(error("invalid_message", "An execute request needs 'code' or 'path'."))
                )
                return
            elif req.mode != "console":
                await conn.send_text(
                    P.dump(error("invalid_message", f"Mode '{req.mode}' runs a file: give 'path'."))
                )
                return
            if req.language is None:
                req.language = "r"
            if req.id in live.running:
                await conn.send_text(
                    P.dump(error("duplicate_id", f"Request id '{req.id}' is already running."))
                )
                return
            exec_row = Execution(
                session_id=live.id,
                request_id=req.id,
                user=conn.user,
                language=req.language,
                mode=req.mode,
                path=req.path,
            )
            live.running[req.id] = exec_row
        elif isinstance(req, P.RenderRequest):
            try:
                req.path = clean_path(req.path)
                req.output = clean_path(req.output) if req.output else None
            except ApiError as exc:
                await conn.send_text(P.dump(error(exc.code, exc.message)))
                return
            async with self.hub.db.session() as db:
                exists = (
                    await db.execute(
                        select(File.id).where(
                            File.workspace_id == live.workspace_id, File.path == req.path
                        )
                    )
                ).first()
            if exists is None:
                await conn.send_text(
                    P.dump(
                        error("file_not_found", f"There is no file '{req.path}' in this workspace.")
                    )
                )
                return
            if req.id in live.running:
                await conn.send_text(
                    P.dump(error("duplicate_id", f"Request id '{req.id}' is already running."))
                )
                return
            live.running[req.id] = Execution(
                session_id=live.id,
                request_id=req.id,
                user=conn.user,
                language=P.language_for_path(req.path) or "r",
                mode="render",
                path=req.path,
            )
        live.last_activity = time.monotonic()
        await self._send_agent(live, P.dump(P.ForwardedRequest(user=conn.user, request=req)))


def _last_log_line(path: Path) -> str | None:
    """The last line of an agent log, to explain an unexpected exit."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 4096))
            lines = [
                ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()
            ]
    except OSError:
        return None
    return lines[-1][:300] if lines else None


def _close_reason(exc: ApiError) -> str:
    """A WebSocket close reason: ``code: sentence`` within the 123-byte limit."""
    return f"{exc.code}: {exc.message}".encode()[:120].decode(errors="ignore")


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
