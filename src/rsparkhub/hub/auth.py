"""Who is calling: passwords (argon2), API tokens and browser login sessions (both stored
as sha256 of a random secret), CSRF for cookie-authenticated writes, and the FastAPI
dependencies every route uses to get the current user. Authorization of *objects*
(workspaces, files …) lives in ``access.py``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection, Request

from rsparkhub.hub.db.engine import aware
from rsparkhub.hub.db.models import ApiToken, User
from rsparkhub.hub.errors import ApiError

SESSION_COOKIE = "rsparkhub_session"
CSRF_COOKIE = "rsparkhub_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")


# argon2 costs about 0.1 s of CPU on purpose, in several threads (its lanes). On the event
# loop a burst of wrong logins stalls every other request; in as many threads as there are
# logins, at normal priority, it starves them of CPU instead. So hashing runs off the loop,
# at most two at a time, in threads of lower priority (on Linux niceness is per thread, and
# argon2's own threads inherit it). Callers end their database transaction first: a pooled
# connection held while a hash waits its turn is one that other requests wait for.
def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


_HASHING = ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="argon2", initializer=_lower_priority
)


async def hash_password(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _hasher.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, _verify, stored, password)


def _verify(stored: str | None, password: str) -> bool:
    if not stored:
        # Spend the same time as a real check: no telling unknown users from wrong passwords.
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    db: AsyncSession, user: User, kind: str, name: str = "", lifetime: timedelta | None = None
) -> tuple[str, ApiToken]:
    prefix = {"api": "rsh", "login": "rss", "onetime": "rso"}[kind]
    secret = new_secret(prefix)
    row = ApiToken(
        user_id=user.id,
        kind=kind,
        name=name,
        token_hash=hash_token(secret),
        expires_at=(datetime.now(UTC) + lifetime) if lifetime else None,
    )
    db.add(row)
    await db.flush()
    return secret, row


async def credential_for_secret(
    db: AsyncSession, secret: str, kinds: tuple[str, ...]
) -> tuple[ApiToken, User] | None:
    """The token a secret names and its user, if the token is of one of ``kinds``, not
    revoked, not expired, and its user not disabled."""
    # One query for the token and its user: every authenticated request runs this.
    found = (
        await db.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_token(secret))
        )
    ).one_or_none()
    if found is None:
        return None
    row, user = found
    if row.revoked or row.kind not in kinds or not _unexpired(row) or user.disabled:
        return None
    return row, user


async def user_for_secret(db: AsyncSession, secret: str, kinds: tuple[str, ...]) -> User | None:
    found = await credential_for_secret(db, secret, kinds)
    return None if found is None else found[1]


async def valid_token_ids(db: AsyncSession, token_ids: set[str]) -> set[str]:
    """Which of these tokens still authenticate (the same rules as ``credential_for_secret``):
    open sockets are checked against this, so a revoked, expired or disabled credential
    does not keep one going."""
    if not token_ids:
        return set()
    rows = await db.execute(
        select(ApiToken)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.id.in_(token_ids), ApiToken.revoked.is_(False), User.disabled.is_(False))
    )
    return {row.id for row in rows.scalars() if _unexpired(row)}


def _unexpired(row: ApiToken) -> bool:
    expires = aware(row.expires_at)
    return expires is None or expires > datetime.now(UTC)


@dataclass
class Caller:
    user: User
    via: str  # "token" | "cookie"
    token_id: str  # the ApiToken row that authenticated the caller (API token or login)

    @property
    def name(self) -> str:
        return self.user.name


async def authenticate(request: HTTPConnection, db: AsyncSession) -> Caller | None:
    """The caller of an HTTP request or websocket handshake, or None."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found = await credential_for_secret(db, auth[7:].strip(), ("api",))
        if found is None:
            raise ApiError(401, "invalid_token", "The API token is invalid, expired or revoked.")
        return Caller(found[1], "token", found[0].id)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await credential_for_secret(db, cookie, ("login",))
        if found is not None:
            return Caller(found[1], "cookie", found[0].id)
    return None


def check_csrf(request: Request) -> None:
    """Cookie-authenticated writes must echo the CSRF cookie in a header (double submit)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not hmac.compare_digest(cookie, header):
        raise ApiError(
            403,
            "csrf_failed",
            "Missing or wrong CSRF token: send the rsparkhub_csrf cookie's value in the "
            "X-CSRF-Token header.",
        )
