"""The client sockets (``/api/workspaces/{id}/ws``): attach a client to its workspace's
session, tail the session's event log to it from ``since`` on, and pass its requests to
the agent.

Requests arrive validated by ``protocol.py`` (shapes, paths, languages, modes); the relay
adds only what needs the hub's state: may this caller run code, does the file exist, is the
request id already running. Durability: clients read only from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket
from sqlalchemy import select

from rsparkhub import protocol as P
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import Execution, File
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.eventlog import LogReader
from rsparkhub.hub.runs import RECORDED_MODES, RunRecords
from rsparkhub.hub.sessions.clients import ClientConn, Clients, RoleCheck, close_reason
from rsparkhub.hub.sessions.lifecycle import Lifecycle
from rsparkhub.hub.sessions.live import GONE, LiveSession, Registry

log = logging.getLogger("rsparkhub.sessions")

VIEWER_CANNOT_RUN_CODE = "viewer_cannot_run_code"
REPLAY_BYTES = 64 << 20  # an ended session's tail, replayed to a client in one read


class ClientRelay:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        clients: Clients,
        lifecycle: Lifecycle,
        runs: RunRecords,
    ) -> None:
        self.db = db
        self.registry = registry
        self.clients = clients
        self.lifecycle = lifecycle
        self.runs = runs

    async def serve(
        self,
        ws: WebSocket,
        workspace_id: str,
        user: str,
        can_write: bool,
        current_role: RoleCheck | None = None,
        token_id: str = "",
    ) -> None:
        """Serve one client socket (already accepted and authorised). ``current_role`` is
        asked again at every (re)attach, so a socket never outlives its caller's access."""
        conn = ClientConn(
            ws=ws,
            user=user,
            workspace_id=workspace_id,
            can_write=can_write,
            current_role=current_role,
            token_id=token_id,
        )
        since = _int(ws.query_params.get("since"), 0)
        wanted_session = ws.query_params.get("session")
        self.clients.add(conn)
        await self.clients.presence(workspace_id)
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
                if isinstance(req, P.FocusRequest):  # any member; the session never sees it
                    conn.set_focus(req.path)
                    await self.clients.presence(workspace_id)
                    continue
                if live is None or not live.alive:
                    live = await self._attach(conn, 0, None)
                try:
                    await self._request(conn, live, req)
                except ApiError as exc:  # the session could not take it (nothing was sent)
                    await conn.send_text(
                        P.dump(
                            P.ProtocolError(request_id=req.id, code=exc.code, message=exc.message)
                        )
                    )
        except GONE:
            pass
        except ApiError as exc:
            await conn.send_text(P.dump(P.ProtocolError(code=exc.code, message=exc.message)))
            if not conn.closed:
                conn.closed = True
                code = 4000 + exc.status if exc.status in (403, 404) else 4500
                with contextlib.suppress(*GONE):
                    await ws.close(code=code, reason=close_reason(exc))
        finally:
            conn.stop_pump()
            self.clients.discard(conn)
            if live is not None:
                live.touch()
            await self.clients.presence(workspace_id)

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
        live = await self.lifecycle.ensure_session(conn.workspace_id)
        if wanted_session != live.id:
            # A session that has ended: replay its tail first, so the client learns how
            # it ended, then continue with the new one. Only a session of this very
            # workspace: any other id is treated as unknown (no replay, no oracle).
            old = self.registry.get(wanted_session or "")
            if old is not None and old.workspace_id != conn.workspace_id:
                old = None
            if old is not None and old is not live and since < old.log.last_seq:
                reader = LogReader(old.log, since)
                try:
                    tail = await asyncio.to_thread(reader.read_available, REPLAY_BYTES)
                finally:
                    reader.close()
                for _seq, text in tail:
                    await conn.send_text(text)
            since = 0
        since = min(since, live.log.last_seq)
        conn.stop_pump()
        welcome = P.WelcomeMessage(
            workspace_id=conn.workspace_id,
            session_id=live.id,
            state=live.state,
            since=since,
            user=conn.user,
        )
        await conn.send_text(P.dump(welcome))
        # said at start: a client that attaches later hears it too
        for notice in (*live.build_lines, *live.notices):
            await conn.tell(live.id, live.state, notice)
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
                    rest = await asyncio.to_thread(reader.read_available, REPLAY_BYTES)
                    for _seq, text in rest:
                        await conn.send_text(text)
                    return
                await live.log.wait_changed(timeout=5)
        finally:
            reader.close()

    async def _request(self, conn: ClientConn, live: LiveSession, req: P.ClientRequest) -> None:
        def refuse(code: str, message: str) -> P.ProtocolError:
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
            await conn.send_text(P.dump(refuse(code, text)))
            return
        if isinstance(req, P.ExecuteRequest | P.RenderRequest):
            problem = await self.submit(live, conn.user, req, asked_via(conn.ws))
            if problem is not None:
                await conn.send_text(P.dump(refuse(*problem)))
            return
        live.touch()
        await live.send_agent(P.dump(P.ForwardedRequest(user=conn.user, request=req)))

    async def submit(
        self, live: LiveSession, user: str, req: P.ExecuteRequest | P.RenderRequest, via: str
    ) -> tuple[str, str] | None:
        """Pass a request that runs something to ``live``'s agent, with the hub's part:
        the checks, the running execution and the run record's ``via``. Returns why the hub
        cannot take it (code, sentence), or None once it is sent. A client's requests and
        a re-run (``hub/runs/rerun.py``, ``via`` rerun) both come through here."""
        problem = await self._check_run(live, req)
        if problem is not None:
            return problem
        mode = req.mode if isinstance(req, P.ExecuteRequest) else "render"
        live.running[req.id] = Execution(
            session_id=live.id,
            request_id=req.id,
            user=user,
            language=req.lang,
            mode=mode,
            path=req.path,
        )
        if mode in RECORDED_MODES:
            self.runs.requested(live.id, req, via, user)
        live.touch()
        try:
            await live.send_agent(P.dump(P.ForwardedRequest(user=user, request=req)))
        except ApiError:
            live.running.pop(req.id, None)
            raise
        return None

    async def _check_run(
        self, live: LiveSession, req: P.ExecuteRequest | P.RenderRequest
    ) -> tuple[str, str] | None:
        """Why the hub cannot take a request that runs something, or None."""
        if req.id in live.running:
            return "duplicate_id", f"Request id '{req.id}' is already running."
        if isinstance(req, P.ExecuteRequest) and req.path is None:
            return None
        async with self.db.session() as db:
            exists = (
                await db.execute(
                    select(File.id).where(
                        File.workspace_id == live.workspace_id, File.path == req.path
                    )
                )
            ).first()
        if exists is None:
            return "file_not_found", f"There is no file '{req.path}' in this workspace."
        return None


def asked_via(ws: WebSocket) -> str:
    """Where a client's requests come from, for run records (what the client says, not a
    security boundary): ``cli`` for ``rsparkhub run``/``render`` (their User-Agent), ``ide``
    for a browser's login cookie, ``api`` for any other holder of an API token."""
    if ws.headers.get("user-agent", "").startswith("rsparkhub-cli/"):
        return "cli"
    return "api" if "authorization" in ws.headers else "ide"


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default
