"""User accounts shared by the API and the CLI: creation with name validation, one-time
login links (a new user's first login, a password reset), and the first-start bootstrap (an
admin plus a one-time login link, never a default password)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.auth import hash_password, issue_token
from rsparkhub.hub.db.models import ApiToken, User
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.passwords import check_password

_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,63}$")
# Names the hub writes itself: a file's history records code-written versions as by
# "session" (hub/sessions/agent_link.py), so no person may be called that.
RESERVED_NAMES = frozenset({"session"})


async def create_user(
    db: AsyncSession, name: str, password: str | None, is_admin: bool = False
) -> User:
    if not _NAME.match(name):
        raise ApiError(
            400,
            "invalid_name",
            "User names are 1-64 characters: lower-case letters, digits, '_', '.', '-', starting with a letter or '_'.",
        )
    if name in RESERVED_NAMES:
        raise ApiError(
            400,
            "reserved_name",
            f"'{name}' is reserved: file histories use it for files written by code. "
            "Pick another name.",
        )
    if (await db.execute(select(User).where(User.name == name))).scalar_one_or_none():
        raise ApiError(409, "user_exists", f"A user named '{name}' already exists.")
    if password is not None:
        check_password(password, name)
        await db.commit()  # no database connection is held while argon2 runs (see auth.py)
    user = User(
        name=name,
        password_hash=await hash_password(password) if password else None,
        is_admin=is_admin,
    )
    db.add(user)
    await db.commit()
    return user


async def reset_password(db: AsyncSession, user: User, base_url: str) -> tuple[str, set[str]]:
    """Forget the user's password, end their browser sessions and earlier login links, and
    return a new one-time link (whoever opens it logs in and chooses a new password) and the
    ids of the tokens revoked. API tokens stay valid (a script's token is not a password)."""
    user.password_hash = None
    revoked = await revoke_tokens(
        db, ApiToken.user_id == user.id, ApiToken.kind.in_(("login", "onetime"))
    )
    return await one_time_link(db, user, base_url), revoked


async def revoke_tokens(db: AsyncSession, *where: ColumnElement[bool]) -> set[str]:
    """Revoke the tokens matching ``where``; their ids (to close the sockets opened with
    them: ``Sessions.signed_out``). The caller commits."""
    rows = await db.execute(
        update(ApiToken)
        .where(*where, ApiToken.revoked.is_(False))
        .values(revoked=True)
        .returning(ApiToken.id)
    )
    return set(rows.scalars())


async def one_time_link(db: AsyncSession, user: User, base_url: str) -> str:
    secret, _ = await issue_token(db, user, "onetime", "first login", timedelta(days=1))
    await db.commit()
    return f"{base_url}/login/{secret}"


async def bootstrap_admin(db: AsyncSession, name: str, base_url: str) -> str | None:
    """On first start (no users at all) create the admin; return its one-time login URL."""
    count = (await db.execute(select(func.count()).select_from(User))).scalar_one()
    if count:
        return None
    user = await create_user(db, name, None, is_admin=True)
    return await one_time_link(db, user, base_url)
