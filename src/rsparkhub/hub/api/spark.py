"""Spark for the caller (``GET /api/spark``) and the Spark web UI through the hub.

``GET|HEAD /spark-ui/{owner}/{path}`` is an authenticated reverse proxy (browser cookie or
API token) to the web UI of a user's Spark driver, which listens inside that user's
sandbox (embedded: the user's own Spark Connect server, its UI port forwarded to the
host's loopback for the hub alone) or inside the cluster (Kubernetes drivers) and is never
reachable otherwise:

* ``owner = <user>``: that user's own driver. Who may open it is the mode's rule
  (``SparkService.may_open_ui``): embedded, the user alone — administrators included, so
  that another user's page (their SQL, rendered in the hub's origin) never runs in an
  administrator's browser; Kubernetes, the user and administrators. Others get 403
  ``forbidden`` before anything is said about the UI.
* 401 without a login, 404 ``not_found`` for a name no user can have, 404 ``spark_off``
  when there is no such UI right now (Spark off, an external server, the user's server or
  driver not running: ``SparkService.ui_missing`` says which), 502
  ``spark_ui_unreachable`` when it does not answer. The route is outside the OpenAPI
  schema (a browser page, not an API); tests/test_spark_ui.py checks who may call it.

Spark renders links under ``spark.ui.proxyBase`` (set to the hub path by the hub), so
pages are streamed unchanged; only a redirect's ``Location`` (Jetty makes it absolute, to
the loopback address) is mapped back under ``/spark-ui/{owner}``. Only GET and HEAD pass
(the kill links are off: ``spark.ui.killEnabled = false``). Request headers are an
allow-list: the hub's cookies, tokens and CSRF header never reach Spark; response headers
are an allow-list too (no ``Set-Cookie``, no hop-by-hop headers) plus a CSP of our own.
Spark's pages need inline scripts, so the CSP allows them on this path: the UI runs in
the hub's origin, and its safety against script injection rests on Spark escaping the
user-supplied text it shows (SQL, job descriptions) — the reason an embedded server's UI
is for its own user only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from rsparkhub.hub.api.deps import CallerDep, HubDep, get_hub
from rsparkhub.hub.auth import Caller, authenticate
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.spark import SparkService
from rsparkhub.hub.users import _NAME as USER_NAME

router = APIRouter(tags=["spark"])

UI_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
# What a browser may tell Spark (nothing that identifies or authenticates it to the hub).
REQUEST_HEADERS = (
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "if-modified-since",
    "if-none-match",
    "range",
)
# What Spark may tell the browser (end-to-end headers only; no cookies, no framing rules).
RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "vary",
)


@router.get(
    "/api/spark",
    summary="Spark for you: mode, state, your database, and your Spark UI if you may open one",
)
async def my_spark(caller: CallerDep, hub: HubDep) -> dict[str, object]:
    return await hub.spark.describe_for(caller.name, caller.user.is_admin)


def forward_request_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """The browser's headers Spark gets: the allow-list, never Cookie/Authorization."""
    return {k.lower(): v for k, v in headers if k.lower() in REQUEST_HEADERS}


def forward_response_headers(
    headers: list[tuple[str, str]], target: str, mount: str
) -> dict[str, str]:
    """Spark's headers the browser gets, with a redirect mapped under ``mount``."""
    out = {k.lower(): v for k, v in headers if k.lower() in RESPONSE_HEADERS}
    for k, v in headers:
        if k.lower() == "location":
            out["location"] = map_location(v, target, mount)
    out["content-security-policy"] = UI_CSP
    out["x-frame-options"] = "SAMEORIGIN"
    out["cache-control"] = "private, no-cache"
    out["referrer-policy"] = "same-origin"
    return out


def map_location(location: str, target: str, mount: str) -> str:
    """Jetty's redirects name the UI's own address (``http://127.0.0.1:PORT/jobs/``) or a
    bare path: both become a path under the hub's ``mount`` (a path ``target`` itself has,
    as a ``spark_kubernetes_ui_url`` may, is taken off first). Anything else (another
    host) is not followed: it becomes the UI's root."""
    parts = urlsplit(location)
    base = urlsplit(target)
    if parts.scheme or parts.netloc:
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            return mount + "/"
    path = parts.path or "/"
    if not path.startswith("/"):
        return location  # relative: the browser resolves it against the proxied URL
    prefix = base.path.rstrip("/")
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :] or "/"
    if not (path == mount or path.startswith(mount + "/")):
        path = mount + path
    return path + (f"?{parts.query}" if parts.query else "")


async def _caller(request: Request) -> Caller:
    # Authenticated here rather than with a dependency, so that no database session is
    # held while a page streams.
    async with get_hub(request).db.session() as db:
        caller = await authenticate(request, db)
    if caller is None:
        raise ApiError(
            401, "unauthorized", "Log in or send an API token (Authorization: Bearer …)."
        )
    return caller


def authorize_ui(spark: SparkService, caller: Caller, owner: str) -> str:
    """Who may open which UI; the UI's base URL, or an ApiError."""
    if not USER_NAME.match(owner):
        raise ApiError(404, "not_found", "There is no such Spark UI.")
    if not spark.may_open_ui(caller.name, caller.user.is_admin, owner):
        raise ApiError(
            403, "forbidden", f"A Spark driver's UI is open to {spark.ui_audience} only."
        )
    target = spark.ui_target(owner)
    if target is None:
        raise ApiError(404, "spark_off", spark.ui_missing(owner))
    return target


@router.api_route("/spark-ui/{owner}", methods=["GET", "HEAD"], include_in_schema=False)
async def spark_ui_root(owner: str, request: Request) -> Response:
    caller = await _caller(request)
    authorize_ui(get_hub(request).spark, caller, owner)
    return Response(status_code=307, headers={"location": f"{quote(owner, safe='')}/"})


@router.api_route("/spark-ui/{owner}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def spark_ui(owner: str, path: str, request: Request) -> Response:
    import httpx

    hub = get_hub(request)
    caller = await _caller(request)
    target = authorize_ui(hub.spark, caller, owner)
    # the path exactly as the browser sent it (still percent-encoded), after /spark-ui/OWNER/
    raw = request.scope.get("raw_path") or request.url.path.encode()
    rest = raw.decode("latin-1").split("/", 3)[3] if raw.count(b"/") >= 3 else ""
    query = request.url.query
    url = f"{target}/{rest}" + (f"?{query}" if query else "")
    mount = urlsplit(hub.settings.base_url).path.rstrip("/") + f"/spark-ui/{owner}"
    client = hub.spark.http()
    # the server answers only what the hub signs (its UI filter), never the browser
    headers = {
        **forward_request_headers(request.headers.items()),
        **await hub.spark.ui_headers(owner),
    }
    upstream_req = client.build_request(request.method, url, headers=headers)
    try:
        upstream = await client.send(upstream_req, stream=True)
    except httpx.HTTPError as exc:
        raise ApiError(
            502,
            "spark_ui_unreachable",
            f"The Spark UI did not answer ({type(exc).__name__}); the Spark server may be "
            "restarting: try again in a moment.",
        ) from None
    headers = forward_response_headers(upstream.headers.multi_items(), target, mount)
    if request.method == "HEAD" or upstream.status_code in (204, 304):
        await upstream.aclose()
        return Response(status_code=upstream.status_code, headers=headers)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return StreamingResponse(body(), status_code=upstream.status_code, headers=headers)
