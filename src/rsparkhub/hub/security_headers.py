"""The headers every HTTP response of the hub carries (nosniff, referrer policy, the
Content-Security-Policy, no framing), and the refusal of a request whose declared body is
larger than ``max_upload_bytes`` before any route reads it.

A plain ASGI middleware, not Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``):
that one runs every request's app in a task of its own and passes the response through a
memory stream, which cost about a tenth of the hub's CPU per ``GET /api/me`` and added to
its tail latency (bench/RESULTS.md, "REST tail latency"). Headers a route set itself win.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rsparkhub.hub.errors import error_body
from rsparkhub.hub.quotas import mb

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_upload_bytes:
            # Refused before any route reads (and parses) the body.
            response = JSONResponse(
                error_body(
                    "request_too_large",
                    f"Requests are limited to {mb(self.max_upload_bytes)} (max_upload_bytes).",
                ),
                status_code=413,
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
