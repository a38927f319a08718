"""Sessions: one per workspace, and the relay between its agent and its clients.

``Sessions`` is what the rest of the hub sees: a small query API (``running``, ``get``,
``client_count``) and the operations routes need. Behind it, one owner per job:

* ``Lifecycle`` (lifecycle.py) — start, stop, end, adopt after a hub restart, cull idle;
* ``AgentLink`` (agent_link.py) — the agent's socket: events, files from code, calls;
* ``ClientRelay`` (relay.py) — the clients' sockets: replay, live tail, requests;
* ``Recorder`` (recorder.py) — events, plot images and execution records made durable,
  every event shown to the run records (``hub/runs``) on the way;
* ``Clients`` (clients.py) and ``Registry`` (live.py) — who is connected, which session
  is whose; ``CredentialWatch`` (credentials.py) closes sockets whose token is revoked; ``FileFanout`` (fanout.py) tells sessions and clients about file changes.

Durability rule: an event is acknowledged to the agent only after it is in the event log
(its plot image stored before it enters the log); clients read only from the event log. A hub crash therefore
loses nothing acknowledged, and a client reconnecting with ``since`` gets every event
exactly once. docs/architecture.md follows one request and one save through these parts.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fastapi import WebSocket

from rsparkhub import protocol as P
from rsparkhub.config import Settings
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.files import Files
from rsparkhub.hub.identities import Identities
from rsparkhub.hub.runs import RunRecords
from rsparkhub.hub.sessions.agent_link import AgentLink
from rsparkhub.hub.sessions.clients import Clients, RoleCheck
from rsparkhub.hub.sessions.credentials import CredentialWatch
from rsparkhub.hub.sessions.fanout import FileFanout
from rsparkhub.hub.sessions.lifecycle import Lifecycle
from rsparkhub.hub.sessions.live import LiveSession, Registry, loopback_ports
from rsparkhub.hub.sessions.recorder import Recorder
from rsparkhub.hub.sessions.relay import VIEWER_CANNOT_RUN_CODE, ClientRelay
from rsparkhub.hub.spark import SparkService
from rsparkhub.hub.spawners.base import Spawner
from rsparkhub.hub.userdb import UserDatabases

log = logging.getLogger("rsparkhub.sessions")

__all__ = [
    "VIEWER_CANNOT_RUN_CODE",
    "Clients",
    "FileFanout",
    "LiveSession",
    "Registry",
    "Sessions",
    "loopback_ports",
]


class Sessions:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        spawner: Spawner,
        registry: Registry,
        clients: Clients,
        files: Files,
        userdb: UserDatabases,
        spark: SparkService,
        identities: Identities,
    ) -> None:
        self.settings = settings
        self.spawner = spawner
        self.registry = registry
        self.clients = clients
        self.runs = RunRecords(db, blobs, spawner.name)
        self.recorder = Recorder(db, blobs, self.runs)
        self.lifecycle = Lifecycle(
            settings, db, spawner, registry, clients, self.recorder, userdb, spark, identities
        )
        self.agents = AgentLink(db, blobs, registry, self.recorder, self.lifecycle, files)
        self.relay = ClientRelay(db, registry, clients, self.lifecycle, self.runs)
        self.credentials = CredentialWatch(db, clients, settings.credential_check_s)

    # ------------------------------------------------------------------ process
    async def startup(self) -> None:
        """Adopt the sessions a previous hub process left running."""
        self.recorder.start()
        self.credentials.start()
        await self.lifecycle.startup()
        await self.runs.startup(
            {live.id for live in self.registry.current_sessions() if live.alive}
        )

    async def shutdown(self) -> None:
        """Hub shutdown: sessions keep running (the next hub adopts them), or are stopped
        cleanly first with ``stop_sessions_on_exit``. Either way the operator is told."""
        running = [live for live in self.registry.current_sessions() if live.alive]
        if running and self.settings.stop_sessions_on_exit:
            log.warning("stopping %d session(s) before the hub exits", len(running))
            results = await asyncio.gather(
                *(self.lifecycle.stop(live, "the hub is shutting down") for live in running),
                return_exceptions=True,
            )
            for live, result in zip(running, results, strict=True):
                if isinstance(result, BaseException):
                    log.error("stopping session %s failed: %r", live.id, result, exc_info=result)
        elif running:
            log.warning(
                "%d session(s) keep running; the next `rsparkhub serve` with this data "
                "directory adopts them. To stop them with the hub, run `rsparkhub serve "
                "--stop-sessions` (or set stop_sessions_on_exit) and stop it again.",
                len(running),
            )
        for conn in self.clients.all():
            conn.stop_pump()
        await self.credentials.close()
        await self.agents.close()
        await self.recorder.close()
        await self.lifecycle.shutdown()

    # ------------------------------------------------------------------ queries
    def running(self, workspace_id: str) -> LiveSession | None:
        """The workspace's current session (starting, running or stopping), if any."""
        return self.registry.current(workspace_id)

    def get(self, session_id: str) -> LiveSession | None:
        return self.registry.get(session_id)

    def current_sessions(self) -> list[LiveSession]:
        return self.registry.current_sessions()

    @property
    def by_id(self) -> dict[str, LiveSession]:
        return self.registry.by_id

    def client_count(self, workspace_id: str) -> int:
        return self.clients.count(workspace_id)

    def session_dir(self, session_id: str) -> Path:
        return self.lifecycle.session_dir(session_id)

    # ------------------------------------------------------------------ operations
    async def ensure_session(self, workspace_id: str, profile: str | None = None) -> LiveSession:
        return await self.lifecycle.ensure_session(workspace_id, profile)

    async def stop(self, live: LiveSession, reason: str = "stopped on request") -> None:
        await self.lifecycle.stop(live, reason)

    async def workspace_deleted(self, workspace_id: str) -> None:
        """A deleted workspace's package overlay goes with it (its sessions are stopped)."""
        await self.lifecycle.environments.remove_overlay(workspace_id)

    async def call(
        self,
        workspace_id: str,
        language: P.Language,
        method: P.CallMethod,
        params: dict[str, Any],
        timeout_s: float = 150,
        *,
        may_run_code: bool = False,
    ) -> P.CallResult:
        """Ask the running session a question. Raises ``ApiError``: 409 without a running
        session, 503/504 when it does not answer."""
        live = self.registry.current(workspace_id)
        if live is None or not live.accepting:
            raise ApiError(
                409,
                "session_not_running",
                "The workspace has no running session; open the workspace (or POST "
                f"/api/workspaces/{workspace_id}/session) to start one.",
            )
        return await self.agents.call(
            live,
            language,
            method,
            params,
            timeout_s,
            self.settings.session_start_timeout_s,
            may_run_code=may_run_code,
        )

    async def settings_changed(self, workspace_id: str, settings: dict[str, Any]) -> None:
        live = self.registry.current(workspace_id)
        if live is not None and live.alive:
            await live.send_agent(P.dump(P.SettingsMessage(settings=settings)))

    async def access_changed(
        self, user: str, workspace_id: str | None = None, role: str | None = None
    ) -> int:
        return await self.clients.access_changed(user, workspace_id, role)

    async def signed_out(self, token_ids: set[str]) -> int:
        """These login or API tokens were revoked: close the sockets opened with them."""
        return await self.clients.signed_out(token_ids)

    async def close_clients(self, workspace_id: str, why: str) -> None:
        await self.clients.close_workspace(workspace_id, why)

    # ------------------------------------------------------------------ sockets
    async def client_socket(
        self,
        ws: WebSocket,
        workspace_id: str,
        user: str,
        can_write: bool,
        current_role: RoleCheck | None = None,
        token_id: str = "",
    ) -> None:
        await self.relay.serve(ws, workspace_id, user, can_write, current_role, token_id)

    async def agent_socket(self, ws: WebSocket) -> None:
        await self.agents.serve(ws)
