"""One running session as the hub sees it (``LiveSession``) and the registry of them.

A ``LiveSession`` holds what the session's owners share: its event log, its agent socket
with the queue of messages waiting for it, the requests running and the calls waiting for
an answer. The ``Registry`` is the only map from workspace or session id to a session;
everything outside ``hub/sessions`` reads it through its query methods.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket, WebSocketDisconnect

from rsparkhub import protocol as P
from rsparkhub.hub.db.models import Execution
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.eventlog import EventLog

ENDED = ("stopped", "dead")
# Messages for an agent that is not connected wait (in order) up to this many; beyond it a
# request is refused with 503 instead of queueing without bound.
MAX_PENDING = 10_000
# A session keeps this many of its environment builds' progress lines for clients that
# attach later (a build says at most 4 a second; the last one says how it ended).
MAX_BUILD_LINES = 60
# What a socket that went away raises: Starlette's disconnect, its RuntimeError for a
# socket already closed, the server's OSError (uvicorn's ClientDisconnected). Loops that
# serve a socket end quietly on these and loudly on anything else.
GONE: tuple[type[BaseException], ...] = (WebSocketDisconnect, RuntimeError, OSError)


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
    pending: deque[str] = field(default_factory=deque)
    running: dict[str, Execution] = field(default_factory=dict)  # by request id, not yet stored
    acking: bool = False  # an fsync + ack to the agent is under way
    languages: list[str] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None
    stopped_unconnected: bool = False  # a stop asked before its agent ever connected
    monitor: asyncio.Task[None] | None = None
    exit_code: int | None = None
    reason: str | None = None
    calls: dict[str, asyncio.Future[P.CallResult]] = field(default_factory=dict)
    # What its users should know for as long as it runs (a service it goes without).
    notices: list[str] = field(default_factory=list)
    # The last lines of its declared environments' builds (progress while it started).
    build_lines: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_BUILD_LINES))

    @property
    def alive(self) -> bool:
        return self.state not in ENDED

    @property
    def accepting(self) -> bool:
        """Alive and not on its way out: requests and calls may go to it."""
        return self.alive and self.state != "stopping"

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    async def send_agent(self, text: str) -> None:
        """Send to the agent, or queue until it (re)connects: nothing is dropped. Raises
        503 ``session_unavailable`` when ``MAX_PENDING`` messages already wait."""
        async with self.agent_lock:
            if self.agent is not None:
                try:
                    await self.agent.send_text(text)
                    return
                except GONE:  # the agent re-dials; keep the message for it
                    self.agent = None
            if len(self.pending) >= MAX_PENDING:
                raise ApiError(
                    503,
                    "session_unavailable",
                    "The session's agent is not connected and too much is waiting for it; "
                    "try again once it is back.",
                )
            self.pending.append(text)

    def fail_calls(self, why: str) -> None:
        """Calls waiting for an answer get none: the agent went away."""
        for fut in self.calls.values():
            if not fut.done():
                fut.set_exception(
                    ApiError(503, "session_unavailable", f"No answer: {why}; try again.")
                )
        self.calls.clear()


class Registry:
    """The hub's sessions: the current one of each workspace, and every one by id (ended
    ones stay, so a client can replay how a session ended)."""

    def __init__(self) -> None:
        self._by_workspace: dict[str, LiveSession] = {}
        self._by_id: dict[str, LiveSession] = {}

    def add(self, live: LiveSession, current: bool = True) -> None:
        self._by_id[live.id] = live
        if current:
            self._by_workspace[live.workspace_id] = live

    def retire(self, live: LiveSession) -> None:
        """``live`` is no longer its workspace's current session (it ended)."""
        if self._by_workspace.get(live.workspace_id) is live:
            del self._by_workspace[live.workspace_id]

    def current(self, workspace_id: str) -> LiveSession | None:
        """The workspace's session, if one is running, starting or stopping."""
        return self._by_workspace.get(workspace_id)

    def get(self, session_id: str) -> LiveSession | None:
        return self._by_id.get(session_id)

    def current_sessions(self) -> list[LiveSession]:
        return list(self._by_workspace.values())

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._by_id.values()))

    @property
    def by_id(self) -> dict[str, LiveSession]:
        """Read-only use only (Spark's registration of adopted sessions)."""
        return self._by_id


def session_dir(data_dir: Path, session_id: str) -> Path:
    """A session's directory on the hub's machine (its working directory is ``work``)."""
    return data_dir / "sessions" / session_id


def loopback_ports(env: dict[str, str]) -> tuple[int, ...]:
    """The host loopback ports a session's services live on (its PostgreSQL database, its
    user's Spark server), read from the variables that point the session at them: the
    sandbox forwards exactly these into the session's network namespace."""
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
