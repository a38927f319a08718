"""The hub's ASGI application: routes, error handlers, security headers, the web page,
and the websocket endpoints (workspace, shared document, agent). ``create_app(settings)`` is the only entry point."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import mimetypes
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from rsparkhub import __version__
from rsparkhub.config import Settings
from rsparkhub.hub.access import user_role, workspace_for, workspace_role
from rsparkhub.hub.api import (
    apidocs,
    auth_routes,
    databases,
    environments,
    files,
    introspection,
    projects,
    publications,
    runs,
    sessions,
    spark,
    users,
)
from rsparkhub.hub.auth import Caller, authenticate
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.collab import Collab
from rsparkhub.hub.datadir import make_private
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import User, Workspace
from rsparkhub.hub.errors import (
    ApiError,
    api_error_handler,
    http_error_handler,
    internal_error_handler,
    validation_error_handler,
)
from rsparkhub.hub.files import Files
from rsparkhub.hub.identities import Identities
from rsparkhub.hub.login_limits import LoginLimiter
from rsparkhub.hub.paths import clean_path
from rsparkhub.hub.postgres import postgres_traverses_data_dir
from rsparkhub.hub.sandbox import Sandboxes, sandboxes_for
from rsparkhub.hub.security_headers import SecurityHeaders
from rsparkhub.hub.sessions import Clients, FileFanout, Registry, Sessions
from rsparkhub.hub.sessions.lifecycle import spark_owner
from rsparkhub.hub.spark import SparkHub, build_spark
from rsparkhub.hub.spawners.base import Spawner
from rsparkhub.hub.spawners.local import LocalSpawner
from rsparkhub.hub.state import Hub
from rsparkhub.hub.userdb import UserDatabases

log = logging.getLogger("rsparkhub.hub")
DIST = Path(__file__).resolve().parent.parent / "web" / "dist"


def build_spawner(settings: Settings, sandboxes: Sandboxes | None = None) -> Spawner:
    """The spawner ``settings.spawner`` names: local processes or Kubernetes pods."""
    if settings.spawner == "kubernetes":
        from rsparkhub.hub.spawners.kubernetes import KubernetesSpawner

        return KubernetesSpawner.from_settings(settings)
    return LocalSpawner(settings, sandboxes)


def build_hub(settings: Settings) -> Hub:
    # DATA_DIR is 0711 only while a root hub's PostgreSQL cluster (run by the postgres
    # account) is one an older hub set up inside it; a new one lives outside (postgres.py).
    make_private(settings.data_dir, traversable=postgres_traverses_data_dir(settings))
    sandboxes = sandboxes_for(settings)
    spawner = build_spawner(settings, sandboxes)
    db = Database(settings.db_url)
    blobs = BlobStore(settings.data_dir / "blobs")
    userdb = UserDatabases(settings, db)
    identities = Identities(settings, db)
    registry, clients = Registry(), Clients()
    spark = build_spark(
        settings,
        SparkHub(db, blobs, sandboxes, identities, registry),
        # spark = 'kubernetes': drivers are created with the spawner's API client
        kubernetes_api=getattr(spawner, "core", None),
    )
    # Shared documents see every file change first (to merge it), then the sessions' fan-out.
    collab = Collab(settings.data_dir, db, blobs, FileFanout(registry, clients))
    files = Files(settings, blobs, collab)
    collab.files = files
    sessions = Sessions(
        settings, db, blobs, spawner, registry, clients, files, userdb, spark, identities
    )
    hub = Hub(
        settings=settings,
        db=db,
        blobs=blobs,
        files=files,
        collab=collab,
        sessions=sessions,
        userdb=userdb,
        spark=spark,
        sandboxes=sandboxes,
        identities=identities,
        login_limits=LoginLimiter(
            settings.login_attempts_per_account,
            settings.login_attempts_per_address,
            settings.login_attempts_window_s,
        ),
    )
    return hub


def create_app(settings: Settings) -> FastAPI:
    hub = build_hub(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await hub.db.upgrade()
        await hub.sessions.startup()
        hub.collab.start(settings.credential_check_s)
        warmup: asyncio.Task[object] | None = None
        if hub.sessions.current_sessions() and hub.userdb.enabled:
            # Adopted sessions use their databases at once: start the embedded server now.
            warmup = asyncio.create_task(_start_user_databases(hub))
        # Adopted sessions keep their SPARK_REMOTE: their users' Spark servers (embedded)
        # come back when they use them.
        for live in hub.sessions.current_sessions():
            hub.spark.register(spark_owner(live))
        # What start-up built (modules, the app, its routes and models) lives as long as
        # the hub: out of the collector's sight, a full collection walks only what requests
        # made since. Without this each one took 50-80 ms of the event loop, about twice a
        # second under load: most of GET /api/me's p99 (bench/rest_latency.py).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if warmup is not None:
                warmup.cancel()
            await hub.collab.close()
            await hub.reruns.close()
            await hub.sessions.shutdown()
            await hub.userdb.close()
            await hub.spark.close()
            await hub.db.dispose()

    app = FastAPI(
        title="rsparkhub",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (api/apidocs.py)
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.hub = hub
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)
    for module in (
        auth_routes,
        users,
        databases,
        projects,
        files,
        sessions,
        introspection,
        spark,
        publications,
        runs,
        environments,
        apidocs,
    ):
        app.include_router(module.router)

    app.add_middleware(SecurityHeaders, max_upload_bytes=settings.max_upload_bytes)

    async def open_socket(
        websocket: WebSocket, workspace_id: str
    ) -> tuple[Caller, Workspace, str | None] | None:
        """The caller of a browser or API socket to a workspace and their role there, or
        None after refusing it (cookie from another site, no credential, not a member)."""
        async with hub.db.session() as db:
            try:
                caller = await authenticate(websocket, db)
                if caller is None:
                    raise ApiError(401, "unauthorized", "Log in or send an API token.")
                if caller.via == "cookie" and not _same_origin(websocket, settings.public_url):
                    raise ApiError(
                        403, "bad_origin", "Cross-site websocket connections are refused."
                    )
                ws = await workspace_for(db, caller, workspace_id, "read")
                role = await workspace_role(db, caller, ws)
            except ApiError as exc:
                # Accept, then close with 4000 + the HTTP status and the sentence as the
                # reason: a refusal before accept reaches clients only as a bare HTTP 403.
                await websocket.accept()
                reason = f"{exc.code}: {exc.message}".encode()[:120].decode(errors="ignore")
                await websocket.close(code=4000 + exc.status, reason=reason)
                return None
        return caller, ws, role

    @app.websocket("/api/workspaces/{workspace_id}/ws")
    async def client_ws(websocket: WebSocket, workspace_id: str) -> None:
        opened = await open_socket(websocket, workspace_id)
        if opened is None:
            return
        caller, ws, role = opened
        await websocket.accept()
        user_id, workspace_row_id = caller.user.id, ws.id

        async def current_role() -> str | None:
            async with hub.db.session() as db:
                user = await db.get(User, user_id)
                workspace = await db.get(Workspace, workspace_row_id)
                if user is None or user.disabled or workspace is None:
                    return None
                return await user_role(db, user, workspace)

        await hub.sessions.client_socket(
            websocket,
            ws.id,
            caller.name,
            can_write=role in ("owner", "editor"),
            current_role=current_role,
            token_id=caller.token_id,
        )

    @app.websocket("/api/workspaces/{workspace_id}/doc/{path:path}")
    async def doc_ws(websocket: WebSocket, workspace_id: str, path: str) -> None:
        """A shared document (docs/protocol.md, "Document sockets")."""
        opened = await open_socket(websocket, workspace_id)
        if opened is None:
            return
        caller, ws, role = opened
        await websocket.accept()
        try:
            clean = clean_path(path)
        except ApiError as exc:
            await websocket.close(code=4000 + exc.status, reason=f"{exc.code}: {exc.message}"[:120])
            return
        await hub.collab.serve(
            websocket,
            ws.id,
            clean,
            caller.name,
            can_write=role in ("owner", "editor"),
            token_id=caller.token_id,
        )

    @app.websocket("/agent/ws")
    async def agent_ws(websocket: WebSocket) -> None:
        await hub.sessions.agent_socket(websocket)

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> FileResponse | HTMLResponse:
        page = DIST / "index.html"  # the IDE (web/), built by scripts/install.sh
        if not page.is_file():
            return HTMLResponse(
                "<!doctype html><title>rsparkhub</title><p>The web client is not built: run "
                "<code>scripts/install.sh</code> (it needs Node.js 20.19 or newer).</p>",
                status_code=503,
            )
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    gzipped: dict[Path, bytes] = {}

    @app.get("/assets/{name}", include_in_schema=False)
    async def assets(name: str, request: Request) -> Response:
        path = (DIST / "assets" / name).resolve()
        if path.parent != (DIST / "assets").resolve() or not path.is_file():
            raise ApiError(404, "not_found", "No such file.")
        # names carry a content hash: cache for a year
        headers = {
            "Cache-Control": "public, max-age=31536000, immutable",
            "Vary": "Accept-Encoding",
        }
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if "gzip" in request.headers.get("accept-encoding", "") and path.suffix in (
            ".js",
            ".css",
            ".svg",
            ".map",
        ):
            body = gzipped.get(path)
            if body is None:  # compressed once per process: the files never change
                body = await asyncio.to_thread(lambda: gzip.compress(path.read_bytes(), 6))
                gzipped[path] = body
            return Response(body, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
        return FileResponse(path, media_type=media, headers=headers)

    return app


async def _start_user_databases(hub: Hub) -> object:
    from rsparkhub.hub.userdb import UserDbUnavailable

    try:
        return await hub.userdb.server()
    except UserDbUnavailable as exc:
        log.warning("PostgreSQL not available: %s", exc)
        return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, the default port filled in; None if it is
    not one (e.g. the ``null`` origin of a sandboxed page)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return None
        return scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:  # a malformed port
        return None


def _same_origin(ws: WebSocket, public_url: str | None = None) -> bool:
    """A browser's socket must come from a page of this hub: the Origin's scheme, host and
    port equal those the request was made to (ws → http, wss → https), or ``public_url``'s
    (the hub behind a TLS proxy sees ws while the page is https)."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True  # not a browser
    seen = _origin_of(origin)
    if seen is None:
        return False
    scheme = "https" if ws.url.scheme in ("wss", "https") else "http"
    own = {_origin_of(f"{scheme}://{ws.headers.get('host', '')}")}
    if public_url:
        own.add(_origin_of(public_url))
    return seen in own - {None}
