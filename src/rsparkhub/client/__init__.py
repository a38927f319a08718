"""The public Python client of rsparkhub (used by ``rsparkhub run``).

Example::

    async with HubClient("http://127.0.0.1:8000", token) as hub:
        ws = await hub.ensure_workspace("analysis")
        await hub.upload(ws["id"], {"fit.R": open("fit.R", "rb").read()})
        async with hub.attach(ws["id"]) as session:
            result = await session.run(path="fit.R", mode="source")
            print(result.stdout)

Everything here is typed; errors from the hub raise ``HubError`` with the HTTP status, the
machine-readable code and the hub's sentence.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from rsparkhub import __version__
from rsparkhub import protocol as P

__all__ = ["HubClient", "HubError", "Attachment", "ExecutionResult"]


class HubError(Exception):
    def __init__(
        self, status: int, code: str, message: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


@dataclass
class ExecutionResult:
    """Everything one execution produced, in order."""

    request_id: str
    events: list[P.Event] = field(default_factory=list)
    done: P.DoneEvent | None = None

    @property
    def ok(self) -> bool:
        return self.done is not None and self.done.status == "ok"

    @property
    def stdout(self) -> str:
        return "".join(
            e.text for e in self.events if isinstance(e, P.StreamEvent) and e.name == "stdout"
        )

    @property
    def stderr(self) -> str:
        return "".join(
            e.text for e in self.events if isinstance(e, P.StreamEvent) and e.name == "stderr"
        )

    @property
    def plots(self) -> list[P.PlotEvent]:
        return [e for e in self.events if isinstance(e, P.PlotEvent)]

    @property
    def results(self) -> list[P.ResultEvent]:
        return [e for e in self.events if isinstance(e, P.ResultEvent)]

    @property
    def errors(self) -> list[P.ErrorEvent]:
        return [e for e in self.events if isinstance(e, P.ErrorEvent)]


class HubClient:
    """REST calls and session attachment for one hub and one API token."""

    def __init__(
        self, url: str, token: str, timeout: float = 60, agent: str = "rsparkhub-client"
    ) -> None:
        """``agent`` names the program in the User-Agent (run records say where a run was
        asked for: ``rsparkhub-cli`` is the ``rsparkhub`` command's)."""
        self.url = url.rstrip("/")
        self.token = token
        self.user_agent = f"{agent}/{__version__}"
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": self.user_agent},
            timeout=timeout,
        )

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                body = resp.json()
                err = body.get("error", {})
                raise HubError(
                    resp.status_code, err.get("code", "error"), err.get("message", resp.text), err
                )
            except (ValueError, AttributeError):
                raise HubError(resp.status_code, "error", resp.text) from None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.content

    # ------------------------------------------------------------- projects & workspaces
    async def ensure_project(self, name: str) -> dict[str, Any]:
        for p in await self.request("GET", "/api/projects"):
            if p["name"] == name:
                return p
        return await self.request("POST", "/api/projects", json={"name": name})

    async def ensure_workspace(self, name: str, project: str = "default") -> dict[str, Any]:
        """The caller's workspace ``name`` in ``project``, created if missing."""
        p = await self.ensure_project(project)
        for w in await self.request("GET", f"/api/projects/{p['id']}/workspaces"):
            if w["name"] == name:
                return w
        return await self.request(
            "POST", f"/api/projects/{p['id']}/workspaces", json={"name": name}
        )

    async def find_workspace(self, name: str, project: str = "default") -> dict[str, Any]:
        """The caller's workspace ``name`` in ``project`` (``HubError`` 404 if missing)."""
        for p in await self.request("GET", "/api/projects"):
            if p["name"] == project:
                for w in await self.request("GET", f"/api/projects/{p['id']}/workspaces"):
                    if w["name"] == name:
                        return w
        raise HubError(404, "not_found", f"You have no workspace {name!r} in project {project!r}.")

    async def runs(
        self, workspace_id: str, path: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Run records of the workspace (or of one file: ran it or wrote it), newest first."""
        params: dict[str, Any] = {"limit": limit}
        if path is not None:
            params["path"] = path
        return await self.request("GET", f"/api/workspaces/{workspace_id}/runs", params=params)

    async def run_record(self, workspace_id: str, run_id: str) -> dict[str, Any]:
        """One run record with its outputs and inputs (every file's version when it ran)."""
        return await self.request("GET", f"/api/workspaces/{workspace_id}/runs/{run_id}")

    async def run_environment(self, workspace_id: str, run_id: str) -> dict[str, Any]:
        """The environment a run ran with: OS, R/Python versions, every package version."""
        path = f"/api/workspaces/{workspace_id}/runs/{run_id}/environment"
        return await self.request("GET", path)

    async def rerun(
        self,
        workspace_id: str,
        run_id: str,
        ignore: list[str] | None = None,
        timeout: float = 3900.0,
        poll_s: float = 0.5,
    ) -> dict[str, Any]:
        """Re-run a record in a fresh session with its recorded file versions and compare:
        ``reproduced``, ``differences`` (each with its cause), the re-run's record id. The
        hub answers at once (202) and works on; this polls its ``status_url`` until the
        report is there (``HubError`` with the hub's code when the re-run failed)."""
        path = f"/api/workspaces/{workspace_id}/runs/{run_id}/rerun"
        started = await self.request("POST", path, json={"ignore": ignore or []})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.request("GET", started["status_url"])
            if state["state"] == "done":
                return dict(state)
            if state["state"] == "failed":
                err = state["error"]
                raise HubError(409, err["code"], err["message"], state)
            if loop.time() > deadline:
                raise HubError(
                    0,
                    "rerun_timeout",
                    f"no report within {timeout:.0f} s; see {started['status_url']}",
                )
            await asyncio.sleep(poll_s)

    async def export(self, workspace_id: str, run_id: str | None = None) -> bytes:
        """The export bundle (a zip) of one run, or of the workspace's last runs."""
        params = {"run": run_id} if run_id else {}
        data = await self.request(
            "GET", f"/api/workspaces/{workspace_id}/export", params=params, timeout=600
        )
        return bytes(data)

    async def upload(self, workspace_id: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
        """Upload files (path → bytes); existing files get a new version."""
        out: list[dict[str, Any]] = []
        for path, data in files.items():
            folder, _, name = path.rpartition("/")
            out += await self.request(
                "POST",
                f"/api/workspaces/{workspace_id}/upload",
                params={"folder": folder},
                files=[("files", (name, data))],
            )
        return out

    async def list_files(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self.request("GET", f"/api/workspaces/{workspace_id}/files")

    async def read_file(self, workspace_id: str, path: str, version: int | None = None) -> bytes:
        params = {"version": version} if version else {}
        return await self.request(
            "GET", f"/api/workspaces/{workspace_id}/files/{path}", params=params
        )

    async def save_text(
        self, workspace_id: str, path: str, content: str, base_version: int | None
    ) -> dict[str, Any]:
        return await self.request(
            "PUT",
            f"/api/workspaces/{workspace_id}/text/{path}",
            json={"content": content, "base_version": base_version},
        )

    async def plot_bytes(self, url: str) -> bytes:
        return await self.request("GET", url)

    async def stop_session(self, workspace_id: str) -> Any:
        return await self.request("DELETE", f"/api/workspaces/{workspace_id}/session")

    async def update_workspace(
        self, workspace_id: str, *, name: str | None = None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if settings is not None:
            body["settings"] = settings
        return await self.request("PATCH", f"/api/workspaces/{workspace_id}", json=body)

    async def share(
        self, workspace_id: str, user: str, role: Literal["viewer", "editor"] = "viewer"
    ) -> dict[str, Any]:
        """Share a workspace you own with ``user``, or change their role (their open
        sockets get the new role at once)."""
        body = {"user": user, "role": role}
        return await self.request("PUT", f"/api/workspaces/{workspace_id}/members", json=body)

    async def unshare(self, workspace_id: str, user: str) -> dict[str, Any]:
        """Stop sharing a workspace with ``user``: their open sockets are closed (4403)."""
        path = f"/api/workspaces/{workspace_id}/members/{quote(user, safe='')}"
        return await self.request("DELETE", path)

    async def start_session(self, workspace_id: str, profile: str | None = None) -> Any:
        """Start the workspace's session (no-op if running), with a profile if given."""
        body = {"profile": profile} if profile is not None else None
        return await self.request("POST", f"/api/workspaces/{workspace_id}/session", json=body)

    async def profiles(self) -> list[dict[str, Any]]:
        """The session profiles the caller may start sessions with (``name``, ``default`` …)."""
        return await self.request("GET", "/api/profiles")

    # ------------------------------------------------------------- inside the session
    async def environment(
        self, workspace_id: str, language: P.Language = "r", hidden: bool = False
    ) -> dict[str, Any]:
        """``{"version", "variables": [...]}``: the session's variables (see docs/protocol.md)."""
        return await self.request(
            "GET",
            f"/api/workspaces/{workspace_id}/environment",
            params={"language": language, "hidden": str(hidden).lower()},
        )

    async def children(
        self,
        workspace_id: str,
        path: list[str | int],
        language: P.Language = "r",
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        return await self.request(
            "POST",
            f"/api/workspaces/{workspace_id}/environment/children",
            json={"language": language, "path": path, "offset": offset, "limit": limit},
        )

    async def delete_variable(
        self, workspace_id: str, name: str, language: P.Language = "r"
    ) -> dict[str, Any]:
        return await self.request(
            "DELETE",
            f"/api/workspaces/{workspace_id}/environment/{name}",
            params={"language": language},
        )

    async def clear_environment(
        self, workspace_id: str, language: P.Language = "r", hidden: bool = False
    ) -> dict[str, Any]:
        return await self.request(
            "DELETE",
            f"/api/workspaces/{workspace_id}/environment",
            params={"language": language, "hidden": str(hidden).lower()},
        )

    async def open_view(
        self,
        workspace_id: str,
        name: str | None = None,
        *,
        expr: str | None = None,
        language: P.Language = "r",
    ) -> dict[str, Any]:
        """A data view of a data frame / matrix (by variable name or expression)."""
        body: dict[str, Any] = {"language": language}
        body.update({"name": name} if name is not None else {"expr": expr})
        return await self.request("POST", f"/api/workspaces/{workspace_id}/views", json=body)

    async def view_rows(
        self,
        workspace_id: str,
        view_id: str,
        *,
        language: P.Language = "r",
        offset: int = 0,
        limit: int = 100,
        sort: list[dict[str, Any]] | None = None,
        filters: list[dict[str, Any]] | None = None,
        search: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "language": language,
            "offset": offset,
            "limit": limit,
            "sort": sort or [],
            "filters": filters or [],
        }
        if search is not None:
            body["search"] = search
        return await self.request(
            "POST", f"/api/workspaces/{workspace_id}/views/{view_id}/rows", json=body
        )

    async def close_view(
        self, workspace_id: str, view_id: str, language: P.Language = "r"
    ) -> dict[str, Any]:
        return await self.request(
            "DELETE",
            f"/api/workspaces/{workspace_id}/views/{view_id}",
            params={"language": language},
        )

    async def help(
        self,
        workspace_id: str,
        topic: str,
        *,
        language: P.Language = "r",
        package: str | None = None,
    ) -> dict[str, Any]:
        """``{"kind": "page", "topic", "package", "title", "html"}`` (sanitized HTML), or
        ``{"kind": "choices", "topic", "matches": [{"topic", "package", "page", "title", "url"}]}``
        when an R topic names pages in several packages and no package is given."""
        params = {"topic": topic, "language": language}
        if package:
            params["package"] = package
        return await self.request("GET", f"/api/workspaces/{workspace_id}/help", params=params)

    async def help_search(
        self, workspace_id: str, query: str, *, language: P.Language | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"q": query, "limit": limit}
        if language:
            params["language"] = language
        body = await self.request(
            "GET", f"/api/workspaces/{workspace_id}/help/search", params=params
        )
        return body["results"]

    async def render_plot(
        self,
        workspace_id: str,
        plot_id: str,
        *,
        format: str = "png",
        width: int = 800,
        height: int = 600,
        res: int = 96,
    ) -> bytes:
        """The plot drawn again at this size and format (png, svg, pdf)."""
        return await self.request(
            "GET",
            f"/api/workspaces/{workspace_id}/plots/{plot_id}/render",
            params={"format": format, "width": width, "height": height, "res": res},
        )

    # ------------------------------------------------------------- sessions
    @asynccontextmanager
    async def attach(
        self,
        workspace_id: str,
        since: int = 0,
        session_id: str | None = None,
        reconnect_s: float = 60,
    ) -> AsyncIterator[Attachment]:
        """Attach to the workspace's session (starting it if needed).

        If the connection drops (network, hub restart), the attachment reconnects for up to
        ``reconnect_s`` seconds, resuming the stream where it stopped: no event is lost or
        repeated. Set ``reconnect_s=0`` to get the ``ConnectionClosed`` error instead.
        """
        ws_url = self.url.replace("http://", "ws://").replace("https://", "wss://")

        async def dial(since: int, session_id: str | None) -> ClientConnection:
            query = f"?since={since}" + (f"&session={session_id}" if session_id else "")
            return await connect(
                f"{ws_url}/api/workspaces/{workspace_id}/ws{query}",
                additional_headers={"Authorization": f"Bearer {self.token}"},
                user_agent_header=self.user_agent,
                max_size=P.MAX_FRAME_BYTES,
            )

        att = Attachment(await dial(since, session_id), dial, reconnect_s)
        try:
            await att._read_welcome()
            yield att
        finally:
            await att.conn.close()


class Attachment:
    """One client socket on a workspace: send requests, read the session's stream."""

    def __init__(
        self,
        conn: ClientConnection,
        dial: Callable[[int, str | None], Awaitable[ClientConnection]] | None = None,
        reconnect_s: float = 0,
    ) -> None:
        self.conn = conn
        self._dial = dial
        self.reconnect_s = reconnect_s
        self.reconnects = 0
        self._backlog: list[str | bytes] = []  # events read while waiting for a welcome
        self.session_id = ""
        self.last_seq = 0
        self.welcome: P.WelcomeMessage | None = None
        self.side: list[dict[str, Any]] = []  # files_changed, presence, protocol errors

    async def _read_welcome(self) -> None:
        while True:
            raw = await self.conn.recv()
            msg = json.loads(raw)
            if msg.get("type") == "welcome":
                self.welcome = P.WelcomeMessage.model_validate(msg)
                self.session_id = self.welcome.session_id
                self.last_seq = self.welcome.since
                return
            if msg.get("type") == "event":
                self._backlog.append(raw)  # the tail of an ended session, replayed first
            else:
                self.side.append(msg)

    async def send(self, request: Any) -> None:
        try:
            await self.conn.send(P.dump(request))
        except ConnectionClosed:
            await self._reconnect()
            await self.conn.send(P.dump(request))

    async def _reconnect(self) -> None:
        if self._dial is None or self.reconnect_s <= 0:
            raise
        deadline = asyncio.get_running_loop().time() + self.reconnect_s
        delay = 0.2
        while True:
            try:
                self.conn = await self._dial(self.last_seq, self.session_id or None)
                await self._read_welcome_resumed()
                self.reconnects += 1
                return
            except (OSError, EOFError, InvalidHandshake, ConnectionClosed):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _read_welcome_resumed(self) -> None:
        # Keep last_seq: a resumed welcome for the same session starts at our position.
        old_session, old_seq = self.session_id, self.last_seq
        await self._read_welcome()
        if self.session_id == old_session:
            self.last_seq = max(old_seq, self.last_seq)

    async def _recv(self, timeout: float | None) -> str | bytes:
        if self._backlog:
            return self._backlog.pop(0)
        while True:
            try:
                return await asyncio.wait_for(self.conn.recv(), timeout)
            except ConnectionClosed:
                await self._reconnect()

    async def messages(self, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every message from the hub, raw, tracking the session and seq."""
        while True:
            raw = await self._recv(timeout)
            msg = json.loads(raw)
            if msg.get("type") == "event":
                if msg["session_id"] == self.session_id:
                    self.last_seq = msg["seq"]
            elif msg.get("type") == "welcome":
                self.session_id = msg["session_id"]
                self.last_seq = msg["since"]
            yield msg

    async def execute(
        self,
        code: str | None = None,
        *,
        path: str | None = None,
        language: P.Language | None = None,
        mode: P.ExecMode = "console",
        timeout: float | None = 600,
    ) -> AsyncIterator[P.Event]:
        """Send one execution and yield its events until (and including) ``done``."""
        rid = uuid.uuid4().hex
        request = P.ExecuteRequest(id=rid, code=code, path=path, language=language, mode=mode)
        async for ev in self._events_of(request, timeout):
            yield ev

    async def render(
        self,
        path: str,
        *,
        output: str | None = None,
        in_session: bool = False,
        timeout: float | None = 900,
    ) -> AsyncIterator[P.Event]:
        """Render a document of the workspace; yields the render log (stream events), then
        a ``document`` event naming the output file (or an ``error``), then ``done``."""
        request = P.RenderRequest(
            id=uuid.uuid4().hex, path=path, output=output, in_session=in_session
        )
        async for ev in self._events_of(request, timeout):
            yield ev

    async def _events_of(self, request: Any, timeout: float | None) -> AsyncIterator[P.Event]:
        rid = request.id
        await self.send(request)
        async for msg in self.messages(timeout):
            if msg.get("type") == "protocol_error" and msg.get("request_id") == rid:
                raise HubError(400, msg["code"], msg["message"], msg)
            if msg.get("type") != "event":
                self.side.append(msg)
                continue
            ev = P.parse_event(msg["event"])
            if getattr(ev, "request_id", None) == rid:
                yield ev
                if isinstance(ev, P.DoneEvent):
                    return
            elif isinstance(ev, P.SessionEvent) and ev.state in ("dead", "stopped"):
                yield ev
            else:
                self.side.append(msg)  # e.g. view_released, other clients' output

    async def run(self, code: str | None = None, **kwargs: Any) -> ExecutionResult:
        """Execute and collect every event of the request."""
        result = ExecutionResult(request_id="")
        async for ev in self.execute(code, **kwargs):
            result.events.append(ev)
            if isinstance(ev, P.DoneEvent):
                result.done = ev
                result.request_id = ev.request_id
        return result

    async def request(self, request: Any, timeout: float = 60) -> P.ReplyEvent:
        """Send a request answered by a single reply (complete, is_complete, ping …)."""
        await self.send(request)
        async for msg in self.messages(timeout):
            if msg.get("type") == "protocol_error" and msg.get("request_id") == request.id:
                raise HubError(400, msg["code"], msg["message"], msg)
            if (
                msg.get("type") == "event"
                and msg["event"].get("request_id") == request.id
                and msg["event"]["type"] == "reply"
            ):
                return P.ReplyEvent.model_validate(msg["event"])
        raise HubError(0, "closed", "the connection closed")
