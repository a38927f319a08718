"""Login, logout, the one-time login link, the caller's own account and API tokens."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep
from rsparkhub.hub.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    hash_password,
    hash_token,
    issue_token,
    user_for_secret,
    verify_password,
)
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import ApiToken, User
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.passwords import check_password
from rsparkhub.hub.users import revoke_tokens

router = APIRouter(tags=["auth"])


class LoginBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def user_info(u: User) -> dict[str, object]:
    return {
        "id": u.id,
        "name": u.name,
        "is_admin": u.is_admin,
        "disabled": u.disabled,
        "has_password": bool(u.password_hash),
    }


def _set_login_cookies(hub: HubDep, response: Response, secret: str) -> None:
    s = hub.settings
    max_age = int(s.login_session_hours * 3600)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=s.cookie_secure,
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=max_age,
        httponly=False,
        samesite="strict",
        secure=s.cookie_secure,
        path="/",
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post(
    "/api/login",
    summary="Log in with a password (sets the session and CSRF cookies); failed attempts "
    "are limited per account and address (429 too_many_attempts, Retry-After)",
)
async def login(
    body: LoginBody, request: Request, hub: HubDep, db: DbDep, response: Response
) -> dict[str, object]:
    address = client_address(request)
    hub.login_limits.begin(body.name, address)
    user = (await db.execute(select(User).where(User.name == body.name))).scalar_one_or_none()
    await db.commit()  # no database connection is held while argon2 runs (see auth.py)
    ok = await verify_password(user.password_hash if user else None, body.password)
    if user is None or not ok or user.disabled:
        raise ApiError(
            401, "login_failed", "Wrong user name or password, or the account is disabled."
        )
    hub.login_limits.succeeded(body.name, address)
    secret, _ = await issue_token(
        db, user, "login", lifetime=timedelta(hours=hub.settings.login_session_hours)
    )
    await db.commit()
    _set_login_cookies(hub, response, secret)
    hub.sessions.lifecycle.warm.want(user.id)  # their first session starts warm too
    return {"user": user_info(user)}


@router.get("/login/{token}", include_in_schema=False)
async def one_time_login(token: str, request: Request, hub: HubDep, db: DbDep) -> Response:
    """A one-time login link (the first start's, a new user's, a password reset's): logs the
    user in once, then stops working. A user without a password is asked by the web page
    to choose one before anything else."""
    user = await user_for_secret(db, token, ("onetime",))
    if user is None:
        if "text/html" in request.headers.get("accept", ""):
            # A browser following the link gets the login page with the explanation.
            return RedirectResponse("/#/link-invalid", status_code=303)
        raise ApiError(
            401,
            "invalid_login_link",
            "This login link is invalid or was already used. Ask an admin for a new one (rsparkhub login-link).",
        )
    await db.execute(
        update(ApiToken).where(ApiToken.token_hash == hash_token(token)).values(revoked=True)
    )
    secret, _ = await issue_token(
        db, user, "login", lifetime=timedelta(hours=hub.settings.login_session_hours)
    )
    await db.commit()
    response = RedirectResponse("/", status_code=303)
    _set_login_cookies(hub, response, secret)
    return response


@router.post("/api/logout", summary="End the browser session")
async def logout(
    request: Request, caller: CallerDep, hub: HubDep, db: DbDep, response: Response
) -> dict[str, bool]:
    """Ends this browser session; its open workspace windows close (4401)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        revoked = await revoke_tokens(db, ApiToken.token_hash == hash_token(cookie))
        await db.commit()
        await hub.sessions.signed_out(revoked)
        hub.collab.signed_out(revoked)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return {"ok": True}


@router.get("/api/me", summary="The caller's account")
async def me(caller: CallerDep) -> dict[str, object]:
    return user_info(caller.user)


class PasswordBody(BaseModel):
    new_password: str = Field(min_length=1, max_length=1024)
    old_password: str | None = Field(default=None, max_length=1024)


@router.post(
    "/api/me/password",
    summary="Set or change the caller's password (checked against the password policy)",
)
async def set_password(
    body: PasswordBody, request: Request, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, bool]:
    """The current password is needed once one is set (guesses count as failed logins);
    the new one must pass hub/passwords.py. Other browser sessions of the user are logged
    out; API tokens stay valid."""
    user = await db.get(User, caller.user.id)
    assert user is not None
    await db.commit()  # no database connection is held while argon2 runs (see auth.py)
    if user.password_hash:
        address = client_address(request)
        hub.login_limits.begin(user.name, address)
        if not await verify_password(user.password_hash, body.old_password or ""):
            raise ApiError(403, "wrong_password", "The current password is wrong.")
        hub.login_limits.succeeded(user.name, address)
    check_password(body.new_password, user.name)
    user.password_hash = await hash_password(body.new_password)
    current = hash_token(request.cookies.get(SESSION_COOKIE, ""))
    revoked = await revoke_tokens(
        db, ApiToken.user_id == user.id, ApiToken.kind == "login", ApiToken.token_hash != current
    )
    await db.commit()
    await hub.sessions.signed_out(revoked)
    hub.collab.signed_out(revoked)
    return {"ok": True}


class TokenBody(BaseModel):
    name: str = Field(default="", max_length=128)
    expires_in_days: float | None = Field(default=None, gt=0, le=3650)


def token_info(t: ApiToken) -> dict[str, object]:
    return {
        "id": t.id,
        "name": t.name,
        "created_at": iso(t.created_at),
        "expires_at": iso(t.expires_at),
        "revoked": t.revoked,
    }


@router.get("/api/tokens", summary="The caller's API tokens (without their secrets)")
async def list_tokens(caller: CallerDep, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(
        select(ApiToken)
        .where(ApiToken.user_id == caller.user.id, ApiToken.kind == "api")
        .order_by(ApiToken.created_at)
    )
    return [token_info(t) for t in rows.scalars()]


@router.post(
    "/api/tokens", status_code=201, summary="Create an API token; the secret is shown once"
)
async def create_token(
    body: TokenBody, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    days = body.expires_in_days or hub.settings.token_default_days
    secret, row = await issue_token(db, caller.user, "api", body.name, timedelta(days=days))
    await db.commit()
    return {**token_info(row), "token": secret}


@router.delete("/api/tokens/{token_id}", summary="Revoke an API token")
async def revoke_token(token_id: str, caller: CallerDep, hub: HubDep, db: DbDep) -> dict[str, bool]:
    """The token stops working at once, and the sockets opened with it close (4401)."""
    row = await db.get(ApiToken, token_id)
    if row is None or row.user_id != caller.user.id or row.kind != "api":
        raise not_found("The token")
    row.revoked = True
    await db.commit()
    await hub.sessions.signed_out({row.id})
    hub.collab.signed_out({row.id})
    return {"ok": True}
