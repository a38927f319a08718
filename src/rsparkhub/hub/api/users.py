"""Administration of user accounts (admins only)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from rsparkhub.hub.api.auth_routes import user_info
from rsparkhub.hub.api.deps import AdminDep, DbDep, HubDep
from rsparkhub.hub.auth import hash_password, validate_password
from rsparkhub.hub.db.models import User
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.identities import shared_uid_warning
from rsparkhub.hub.userdb import UserDbUnavailable
from rsparkhub.hub.users import create_user

log = logging.getLogger("rsparkhub.users")

router = APIRouter(tags=["users"])


@router.get("/api/users", summary="All users (admin)")
async def list_users(_: AdminDep, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(select(User).order_by(User.name))
    return [user_info(u) for u in rows.scalars()]


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, max_length=1024)
    is_admin: bool = False


@router.post("/api/users", status_code=201, summary="Create a user (admin)")
async def add_user(body: NewUser, _: AdminDep, db: DbDep, hub: HubDep) -> dict[str, object]:
    user = await create_user(db, body.name, body.password, body.is_admin)
    count = (await db.execute(select(func.count()).select_from(User))).scalar_one()
    info = user_info(user)
    warning = shared_uid_warning(hub.settings, count)
    if warning:
        log.warning("%s", warning)
        info["warning"] = warning
    return info


class UserPatch(BaseModel):
    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.patch(
    "/api/users/{name}", summary="Disable/enable a user, grant admin, reset a password (admin)"
)
async def patch_user(
    name: str, body: UserPatch, caller: AdminDep, db: DbDep, hub: HubDep
) -> dict[str, object]:
    user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
    if user is None:
        raise not_found(f"The user '{name}'")
    if user.id == caller.user.id and (body.disabled or body.is_admin is False):
        raise ApiError(
            400, "cannot_demote_self", "You cannot disable yourself or remove your own admin role."
        )
    if body.disabled is not None:
        user.disabled = body.disabled
    if body.is_admin is not None:
        user.is_admin = body.is_admin
    if body.password is not None:
        validate_password(body.password)
        user.password_hash = await hash_password(body.password)
    await db.commit()
    if user.disabled or body.is_admin is False:
        # A disabled user's sockets close; a former admin's too (they reconnect, if they
        # still may, with their own role instead of an admin's).
        await hub.sessions.access_changed(user.name)
    if body.disabled is not None and hub.userdb.enabled:
        # Disabling revokes the PostgreSQL role's login and ends its connections.
        try:
            await hub.userdb.set_login(db, user, enabled=not user.disabled)
        except UserDbUnavailable as exc:
            state = "disabled" if user.disabled else "enabled"
            raise ApiError(
                503,
                "user_databases_unavailable",
                f"The user is {state} in the hub, but their PostgreSQL role could not be "
                f"changed (PostgreSQL not available: {exc}); it is changed when the "
                "database server is next reached.",
            ) from None
    return user_info(user)
