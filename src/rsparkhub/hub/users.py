"""User accounts shared by the API and the CLI: creation with name validation, and the
first-start bootstrap (an admin plus a one-time login link, never a default password)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.auth import hash_password, issue_token, validate_password
from rsparkhub.hub.db.models import User
from rsparkhub.hub.errors import ApiError

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
        validate_password(password)
        await db.commit()  # no database connection is held while argon2 runs (see auth.py)
    user = User(
        name=name,
        password_hash=await hash_password(password) if password else None,
        is_admin=is_admin,
    )
    db.add(user)
    await db.commit()
    return user


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
