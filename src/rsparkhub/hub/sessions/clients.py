"""The client sockets open on each workspace: sending to them, presence, and closing them
when their user's access goes away or the credential they opened with is revoked. Nothing
here reads the database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import WebSocket

from rsparkhub import protocol as P
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.sessions.live import GONE

log = logging.getLogger("rsparkhub.sessions")

# The caller's role in the workspace now (owner, editor, viewer), or None once they have
# lost access (no longer a member, disabled, the workspace deleted).
RoleCheck = Callable[[], Awaitable[str | None]]

_focus_order = itertools.count(1)  # which of a user's sockets said its file last


@dataclass(eq=False)
class ClientConn:
    ws: WebSocket
    user: str
    workspace_id: str
    can_write: bool
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pump: asyncio.Task[None] | None = None
    current_role: RoleCheck | None = None
    token_id: str = ""  # the credential the socket was opened with (auth.Caller.token_id)
    closed: bool = False
    heard: set[tuple[str, str]] = field(default_factory=set)  # (session id, notice) told
    focus: str | None = None  # the file its editor shows (a ``focus`` request)
    focus_order: int = 0

    def set_focus(self, path: str | None) -> None:
        self.focus = path
        self.focus_order = next(_focus_order)

    async def tell(self, session_id: str, state: str, notice: str) -> None:
        """A session's notice (``LiveSession.notices``), once per client."""
        if (session_id, notice) in self.heard:
            return
        self.heard.add((session_id, notice))
        msg = P.SessionStateMessage(session_id=session_id, state=state, message=notice)
        await self.send_text(P.dump(msg))

    async def send_text(self, text: str) -> bool:
        """False when the client is gone (its reader ends the socket)."""
        try:
            async with self.send_lock:
                await self.ws.send_text(text)
            return True
        except GONE:
            return False

    def stop_pump(self) -> None:
        if self.pump is not None:
            self.pump.cancel()


def close_reason(exc: ApiError) -> str:
    """A WebSocket close reason: ``code: sentence`` within the 123-byte limit."""
    return f"{exc.code}: {exc.message}".encode()[:120].decode(errors="ignore")


SIGNED_OUT = (
    "You were signed out: the login or API token this page used was revoked or expired. "
    "Sign in again."
)


class Clients:
    def __init__(self) -> None:
        self._by_workspace: dict[str, set[ClientConn]] = {}

    def add(self, conn: ClientConn) -> None:
        self._by_workspace.setdefault(conn.workspace_id, set()).add(conn)

    def discard(self, conn: ClientConn) -> None:
        self._by_workspace.get(conn.workspace_id, set()).discard(conn)

    def count(self, workspace_id: str) -> int:
        return len(self._by_workspace.get(workspace_id, ()))

    def of(self, workspace_id: str) -> list[ClientConn]:
        return list(self._by_workspace.get(workspace_id, ()))

    def all(self) -> list[ClientConn]:
        return [c for conns in self._by_workspace.values() for c in conns]

    async def broadcast(self, workspace_id: str, text: str) -> None:
        for c in self.of(workspace_id):
            await c.send_text(text)

    async def tell(self, workspace_id: str, session_id: str, state: str, notice: str) -> None:
        for c in self.of(workspace_id):
            await c.tell(session_id, state, notice)

    async def presence(self, workspace_id: str) -> None:
        """Tell every client who is attached and which file each shows: of a user with
        several windows, the one that chose its file last."""
        conns = self.of(workspace_id)
        users = sorted({c.user for c in conns})
        files: dict[str, str] = {}
        for c in sorted(conns, key=lambda c: c.focus_order):
            if c.focus is not None:
                files[c.user] = c.focus
            elif c.focus_order:  # that window closed its last file
                files.pop(c.user, None)
        msg = P.PresenceMessage(users=users, files=dict(sorted(files.items())))
        await self.broadcast(workspace_id, P.dump(msg))

    async def access_changed(
        self, user: str, workspace_id: str | None = None, role: str | None = None
    ) -> int:
        """A user's access changed: in ``workspace_id`` (every workspace when None). With a
        ``role`` their open sockets there keep going with that role's rights; without one
        (membership removed, user disabled or demoted, workspace deleted) they are closed
        with 4403. Returns how many sockets were closed."""
        closed = 0
        targets = [workspace_id] if workspace_id is not None else list(self._by_workspace)
        for wid in targets:
            for conn in self.of(wid):
                if conn.user != user:
                    continue
                if role is not None:
                    conn.can_write = role in ("owner", "editor")
                    continue
                await self.close(conn, "You no longer have access to this workspace.")
                closed += 1
        return closed

    async def signed_out(self, token_ids: set[str]) -> int:
        """Close (4401) every socket opened with one of these credentials: they were revoked
        (sign-out, a password change or reset, a deleted API token) or expired."""
        closed = 0
        for conn in self.all():
            if conn.token_id and conn.token_id in token_ids:
                await self.close(conn, SIGNED_OUT, status=401, code="signed_out")
                closed += 1
        return closed

    def token_ids(self) -> set[str]:
        return {c.token_id for c in self.all() if c.token_id}

    async def close_workspace(self, workspace_id: str, why: str) -> None:
        """Close every socket of a workspace (it was deleted)."""
        for conn in self.of(workspace_id):
            await self.close(conn, why)

    async def close(
        self, conn: ClientConn, why: str, status: int = 403, code: str = "not_a_member"
    ) -> None:
        """Close with 4000 + ``status`` after a protocol error saying why."""
        conn.can_write = False  # a request already read is refused from now on
        conn.closed = True
        conn.stop_pump()
        self.discard(conn)
        reason = close_reason(ApiError(status, code, why))
        with contextlib.suppress(*GONE):
            async with conn.send_lock:
                await conn.ws.send_text(P.dump(P.ProtocolError(code=code, message=why)))
                await conn.ws.close(code=4000 + status, reason=reason)
        await self.presence(conn.workspace_id)
