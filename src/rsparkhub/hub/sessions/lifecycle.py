"""Sessions start, stop and end: one per workspace, started on demand with a profile,
stopped on request or when idle, recorded when they die, adopted after a hub restart.

Owns the ``sessions`` rows and the ``Registry``'s membership; the spawner runs the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from rsparkhub import protocol as P
from rsparkhub.config import Settings
from rsparkhub.hub.auth import hash_token, new_secret
from rsparkhub.hub.db.engine import Database, aware
from rsparkhub.hub.db.models import Project, Usage, User, Workspace
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.environments import Environments, Prepared, build_sandboxes
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.eventlog import EventLog
from rsparkhub.hub.files import latest_language
from rsparkhub.hub.identities import Identities
from rsparkhub.hub.sandbox import Identity
from rsparkhub.hub.sessions.clients import Clients
from rsparkhub.hub.sessions.live import GONE, LiveSession, Registry, loopback_ports, session_dir
from rsparkhub.hub.sessions.recorder import Recorder
from rsparkhub.hub.sessions.warm import WarmPool
from rsparkhub.hub.spark import SessionOwner, SparkService
from rsparkhub.hub.spawners.base import SessionSpec, Spawner, SpawnError, profiles_for
from rsparkhub.hub.supervised import log_tail
from rsparkhub.hub.userdb import SessionDatabase, UserDatabases

log = logging.getLogger("rsparkhub.sessions")


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        spawner: Spawner,
        registry: Registry,
        clients: Clients,
        recorder: Recorder,
        userdb: UserDatabases,
        spark: SparkService,
        identities: Identities,
    ) -> None:
        self.settings = settings
        self.db = db
        self.spawner = spawner
        self.registry = registry
        self.clients = clients
        self.recorder = recorder
        self.userdb = userdb
        self.spark = spark
        self.identities = identities
        # Declared environments are built by the hub in its sandboxes (the local
        # spawner's, or on Kubernetes the hub pod's own; docs/environments.md).
        self.environments = Environments(
            settings,
            db,
            recorder.blobs,
            build_sandboxes(settings, spawner),
            getattr(spawner, "limits", None),
        )
        self._start_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.warm = WarmPool(self)
        self._cull_task: asyncio.Task[None] | None = None

    def session_dir(self, session_id: str) -> Path:
        return session_dir(self.settings.data_dir, session_id)

    def log_dir(self, session_id: str) -> Path:
        return self.settings.data_dir / "logs" / session_id

    def spec(
        self,
        sid: str,
        workspace_id: str,
        user: str,
        token: str,
        env: dict[str, str],
        identity: Identity,
        **more: Any,
    ) -> SessionSpec:
        """A session's spec with this hub's settings (a started or a pooled session)."""
        settings = self.settings
        return SessionSpec(
            session_id=sid,
            workspace_id=workspace_id,
            user=user,
            token=token,
            hub_agent_url=f"ws://{connect_host(settings.host)}:{settings.port}/agent/ws",
            session_dir=self.session_dir(sid),
            log_path=self.log_dir(sid) / "agent.log",
            redial_timeout_s=settings.agent_redial_timeout_s,
            max_file_bytes=settings.max_file_bytes,
            languages=settings.session_languages,
            env=env,
            uid=identity.uid,
            gid=identity.gid,
            reach=loopback_ports(env),
            **more,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def startup(self) -> None:
        """Adopt the sessions a previous hub process left running."""
        async with self.db.session() as db:
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
                    log=EventLog(self.log_dir(row.id) / "events.jsonl", self.settings.event_fsync),
                )
                if await self.spawner.poll(live.spawner_state):
                    log.info("adopting session %s of workspace %s", row.id, row.workspace_id)
                    self.registry.add(live)
                    # its Spark driver (spark = 'kubernetes') is kept, or made again if gone
                    self._spawn(self.spark.session_started(spark_owner(live), live.spawner_state))
                    live.monitor = self._spawn(self._monitor(live))
                else:
                    self.registry.add(live, current=False)
                    await self._finish(
                        live, None, "the session ended while the hub was down", dead=True
                    )
        reconcile = getattr(self.spawner, "reconcile", None)
        if reconcile is not None:  # remove what no live session owns (e.g. orphaned pods)
            try:
                await reconcile({live.id for live in self.registry if live.alive})
            except SpawnError as exc:
                log.warning("could not clean up after the last hub: %s", exc)
        self._cull_task = asyncio.create_task(self._cull_loop())

    async def shutdown(self) -> None:
        """Hub shutdown: sessions keep running (the next hub adopts them); pooled ones,
        never handed out, stop."""
        if self._cull_task:
            self._cull_task.cancel()
        await self.warm.close()
        for task in list(self._tasks):
            task.cancel()
        for live in self.registry:
            if live.agent is not None:
                try:
                    await live.agent.close(code=1012)
                except GONE:
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
            live = self.registry.current(workspace_id)
            if live is not None and live.accepting:
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
        return str(next((p["name"] for p in allowed if p.get("default")), names[0]))

    async def _start(self, workspace_id: str, profile: str | None = None) -> LiveSession:
        settings = self.settings
        async with self.db.session() as db:
            ws = await db.get(Workspace, workspace_id)
            if ws is None:
                raise ApiError(404, "not_found", "The workspace does not exist.")
            project = await db.get(Project, ws.project_id)
            owner = await db.get(User, project.owner_id) if project else None
            if owner is None:
                raise ApiError(500, "no_owner", "The workspace has no owner.")
            profile = await self._pick_profile(db, workspace_id, owner, profile)
            ahead = (
                await latest_language(db, workspace_id)
                if settings.session_prestart_kernel
                else None
            )
            # a session of the owner's warm pool, if one can serve (hub/sessions/warm.py)
            warm = await self.warm.take(owner.id)
            token = warm.token if warm is not None else new_secret("rsa")
            row = SessionRow(
                **({"id": warm.sid} if warm is not None else {}),
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
        self.registry.add(live)

        async def progress(message: str) -> None:  # start-up steps (pod events) to clients
            if live.state == "starting":
                await self._announce(live, message)

        async def build_progress(message: str) -> None:
            """An environment build's line: kept, so that a client that attaches later
            (or reloads) sees how the build went in its console."""
            live.build_lines.append(message)
            await self.clients.tell(live.workspace_id, live.id, live.state, message)

        try:
            database, spark_env, prepared, spec = await self._prepare(
                live, token, ahead, profile, progress, build_progress
            )
        except BaseException:
            if warm is not None:  # never handed out: it stops
                self._spawn(self.warm.drop(warm))
            raise
        try:
            if warm is not None:
                live.spawner_state = await self.warm.hand_out(warm, spec)
            else:
                live.spawner_state = await self.spawner.start(spec)
            if profile is not None:
                live.spawner_state.setdefault("profile", profile)
            # what it mounts, so no garbage collection removes it while it runs
            live.spawner_state["environments"] = prepared.used
        except SpawnError as exc:
            await self._finish(live, None, f"the session could not start: {exc}", dead=True)
            raise ApiError(
                503, "session_start_failed", f"The session could not start: {exc}"
            ) from exc
        async with self.db.session() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == sid)
                .values(spawner_state=live.spawner_state)
            )
            await db.commit()
        await self._announce(live, f"starting a session ({self.spawner.name} spawner)")
        # A service the session goes without is said to its users, not only in the log.
        notices = [database.missing, await spark_missing(self.spark, spark_env)]
        for missing in (*notices, *prepared.notices):
            if missing is not None:
                live.notices.append(missing)  # also told to clients that attach later
                await self.clients.tell(live.workspace_id, live.id, live.state, missing)

        async def announce(message: str) -> None:
            await self._announce(live, message)

        # spark = 'kubernetes': the session's Spark driver, owned by its pod (never raises)
        await self.spark.session_started(spark_owner(live), live.spawner_state, announce)
        live.monitor = self._spawn(self._monitor(live))
        self._spawn(self._start_deadline(live))
        self.warm.want(owner_id)  # the owner's next session starts warm
        log.info("started session %s for workspace %s", sid, workspace_id)
        return live

    async def _prepare(
        self,
        live: LiveSession,
        token: str,
        ahead: str | None,
        profile: str | None,
        progress: Callable[[str], Awaitable[None]],
        build_progress: Callable[[str], Awaitable[None]],
    ) -> tuple[SessionDatabase, dict[str, str], Prepared, SessionSpec]:
        """What a session starts with: its database, Spark, environments, and its spec."""
        workspace_id, owner_id = live.workspace_id, live.owner_id
        # PGHOST … DATABASE_URL of the owner's database (hub/userdb.py); never logged.
        database = await self.userdb.session_database(owner_id)
        # … and SPARK_REMOTE with the owner's Spark user and this session's id (hub/spark.py).
        spark_env = await self.spark.session_env(spark_owner(live))
        # The workspace's declared environments (built now if no session built them
        # before) and its overlay; progress and failures go to the session's clients.
        prepared = await self.environments.prepare(workspace_id, build_progress)
        for built in prepared.built:
            log.info("built environment %s for workspace %s", built, workspace_id)
        env = {**database.env, **spark_env, **prepared.env}
        identity = await self.identities.for_user(owner_id)
        spec = self.spec(
            live.id,
            workspace_id,
            live.owner_name,
            token,
            env,
            identity,
            prestart=(ahead,) if ahead else (),
            profile=profile,
            progress=progress,
            ro_binds=prepared.ro_binds,
            binds=prepared.binds,
            keep_overlays=await self.environments.user_overlays(owner_id),
        )
        return database, spark_env, prepared, spec

    async def agent_ready(self, live: LiveSession) -> None:
        """The session's agent connected (first, or again after a re-dial)."""
        if live.state == "starting":
            live.state = "running"
            async with self.db.session() as db:
                await db.execute(
                    update(SessionRow).where(SessionRow.id == live.id).values(state="running")
                )
                await db.commit()
            await self._announce(live, "the session is ready")
        live.ready.set()

    async def _start_deadline(self, live: LiveSession) -> None:
        # A spawner may need longer (Kubernetes: scheduling, image pulls).
        timeout = getattr(self.spawner, "start_timeout_s", None)
        try:
            await asyncio.wait_for(
                live.ready.wait(), timeout or self.settings.session_start_timeout_s
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
        # A stop asked before the agent ever connected is clean whatever the code: it had
        # run nothing and had nothing to save, so stop() ended it at once.
        clean = code == 0 or (
            live.state == "stopping" and (code in (None, -15, 128 + 15) or live.stopped_unconnected)
        )
        if clean and not live.stop_reason:
            live.stop_reason = "the agent was stopped outside the hub (exit code 0)"
        if not clean:
            if live.stop_reason:
                reason = f"{live.stop_reason} ({reason})"
            last = (await asyncio.to_thread(log_tail, self.log_dir(live.id) / "agent.log", 1))[:300]
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
        await self.recorder.hub_event(live, event)
        # Requests that were waiting or running will never finish: say so.
        for rid in list(live.running):
            done = P.DoneEvent(
                request_id=rid,
                status="failed",
                error_code="session_ended",
                message=f"The session ended: {reason}.",
            )
            await self.recorder.hub_event(live, done)
        for execution in live.running.values():
            execution.status = "failed"
        if live.running:
            self.recorder.finished(list(live.running.values()))
        live.running.clear()
        live.pending.clear()
        live.fail_calls("the session ended")
        live.ended.set()
        await live.log.sync()
        live.log.close()
        await self._announce(live, reason)
        self.registry.retire(live)
        async with self.db.session() as db:
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
        await self.spark.session_ended(live.id)  # its Kubernetes Spark driver, if any
        log.info("session %s %s: %s (exit %s)", live.id, live.state, reason, code)

    async def stop(
        self, live: LiveSession, reason: str = "stopped on request", grace_s: float = 15
    ) -> None:
        if not live.alive:
            return
        live.state = "stopping"
        live.stop_reason = reason
        await self._announce(live, reason)
        async with self.db.session() as db:
            await db.execute(
                update(SessionRow).where(SessionRow.id == live.id).values(state="stopping")
            )
            await db.commit()
        # Graceful first: the agent stops its kernels, flushes its outbox and exits 0, and
        # the spawner's wait() sees it end (a pod Succeeded with exit code 0). Only on
        # timeout does the spawner end it (a Kubernetes pod deleted: the 1.20 kubelet can
        # lose the exit code then, kubernetes#104107). An agent that is re-dialling (it
        # has connected before) gets the message queued for its return.
        if live.agent is not None or live.ready.is_set():
            # (a full queue or the timeout: the spawner ends it below)
            with contextlib.suppress(ApiError, TimeoutError):
                await live.send_agent(P.dump(P.StopMessage(reason=reason)))
                await asyncio.wait_for(live.ended.wait(), grace_s)
        if not live.ended.is_set():
            # An agent that never connected has run no code and holds nothing: end it soon
            # (before its exec it may not even be there to take a SIGTERM). Not 0 s: a pod
            # deleted with grace 0 leaves the API before its containers have stopped.
            live.stopped_unconnected = not live.ready.is_set()
            await self.spawner.stop(
                live.spawner_state, grace_s=1 if live.stopped_unconnected else 5
            )
            await asyncio.wait_for(live.ended.wait(), 10)
        # `ended` is set part-way through _finish: wait for the rest of it (the session's
        # row and final notices), or a hub shutting down closes the database under it and
        # the next hub finds the session "ended while the hub was down".
        monitor = live.monitor
        if monitor is not None and monitor is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(monitor), 10)

    async def _cull_loop(self) -> None:
        settings = self.settings
        while True:
            await asyncio.sleep(settings.cull_interval_s)
            if settings.idle_timeout_s <= 0:
                continue
            now = time.monotonic()
            for live in self.registry.current_sessions():
                idle = now - live.last_activity
                if (
                    live.state == "running"
                    and not self.clients.count(live.workspace_id)
                    and not live.running
                    and idle > settings.idle_timeout_s
                ):
                    self._spawn(self.stop(live, reason=f"idle for {int(idle)} s"))

    async def _announce(self, live: LiveSession, message: str | None = None) -> None:
        msg = P.SessionStateMessage(session_id=live.id, state=live.state, message=message)
        await self.clients.broadcast(live.workspace_id, P.dump(msg))


async def spark_missing(spark: SparkService, env: dict[str, str]) -> str | None:
    """The start message of a session that goes without Spark although the hub offers it
    (its session_env gave no SPARK_REMOTE), or None."""
    if not spark.enabled or "SPARK_REMOTE" in env:
        return None
    why = "Spark is not available on this hub"
    with contextlib.suppress(Exception):  # doctor's own sentence, when it has one
        described = await spark.describe()
        if not described.get("ok") and described.get("detail"):
            why += f": {str(described['detail']).splitlines()[0][:400]}"
    return (
        f"No Spark in this session (SPARK_REMOTE is not set): {why}. An administrator can "
        "see the details with `rsparkhub doctor` or in the hub's log; the next session "
        "tries again."
    )


def spark_owner(live: LiveSession) -> SessionOwner:
    return SessionOwner(live.id, live.owner_name, live.owner_id, live.workspace_id)


def connect_host(host: str) -> str:
    """Where the hub's own bind address is reached from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
