"""HTTP errors as values: a status, a machine-readable code and a sentence a user can act
on. Every error response of the API has the body ``{"error": {"code", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # e.g. Retry-After of a 429
        self.extra = extra


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} does not exist or you have no access to it.")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def api_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.code, exc.message, **exc.extra), status_code=exc.status, headers=exc.headers
    )


async def validation_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = exc.errors()
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    msg = f"Invalid request: {where}: {first.get('msg', 'invalid value')}."
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errs[:20]]
    return JSONResponse(error_body("invalid_request", msg, details=details), status_code=422)


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
    code = codes.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    if exc.status_code == 404 and message == "Not Found":
        message = "There is no such page or API route."
    return JSONResponse(error_body(code, message), status_code=exc.status_code)


async def internal_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: a 500 with the standard body; details go to the log only."""
    import logging

    logging.getLogger("rsparkhub.hub").exception("unhandled error", exc_info=exc)
    return JSONResponse(
        error_body(
            "internal_error", "The hub failed to handle this request; the error is in its log."
        ),
        status_code=500,
    )
