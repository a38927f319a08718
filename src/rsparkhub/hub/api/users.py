"""Administration of user accounts (admins only): list, add (with a one-time login link to
hand over), disable/enable, make/unmake admin, reset a password (a new one-time link), and
each user's sessions."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from rsparkhub.hub.api.auth_routes import user_info
from rsparkhub.hub.api.deps import AdminDep, DbDep, HubDep
from rsparkhub.hub.api.sessions import session_info
from rsparkhub.hub.auth import hash_password
from rsparkhub.hub.db.models import Project, User, Workspace
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.identities import shared_uid_warning
from rsparkhub.hub.passwords import check_password
from rsparkhub.hub.userdb import UserDbUnavailable
from rsparkhub.hub.users import create_user, one_time_link, reset_password

log = logging.getLogger("rsparkhub.users")

router = APIRouter(tags=["users"])


def link_base(request: Request, hub: HubDep) -> str:
    """Where the user will open a login link: the configured public URL, else the address
    the admin reaches the hub at."""
    return (hub.settings.public_url or str(request.base_url)).rstrip("/")


async def _user(db: DbDep, name: str) -> User:
    user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
    if user is None:
        raise not_found(f"The user '{name}'")
    return user


@router.get("/api/users", summary="All users (admin)")
async def list_users(_: AdminDep, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(select(User).order_by(User.name))
    return [user_info(u) for u in rows.scalars()]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, max_length=1024)
    is_admin: bool = False


@router.post(
    "/api/users",
    status_code=201,
    summary="Create a user (admin); without a password the answer has a one-time login_link",
)
async def add_user(
    body: NewUser, request: Request, _: AdminDep, db: DbDep, hub: HubDep
) -> dict[str, object]:
    user = await create_user(db, body.name, body.password, body.is_admin)
    count = (await db.execute(select(func.count()).select_from(User))).scalar_one()
    info = user_info(user)
    if body.password is None:
        # The new user opens it, is logged in once and chooses a password.
        info["login_link"] = await one_time_link(db, user, link_base(request, hub))
    warning = shared_uid_warning(hub.settings, count)
    if warning:
        log.warning("%s", warning)
        info["warning"] = warning
    return info


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


@router.patch(
    "/api/users/{name}", summary="Disable/enable a user, grant admin, reset a password (admin)"
)
async def patch_user(
    name: str, body: UserPatch, caller: AdminDep, db: DbDep, hub: HubDep
) -> dict[str, object]:
    user = await _user(db, name)
    if user.id == caller.user.id and (body.disabled or body.is_admin is False):
        raise ApiError(
            400, "cannot_demote_self", "You cannot disable yourself or remove your own admin role."
        )
    if body.disabled is not None:
        user.disabled = body.disabled
    if body.is_admin is not None:
        user.is_admin = body.is_admin
    if body.password is not None:
        check_password(body.password, user.name)
        await db.commit()  # no database connection is held while argon2 runs (see auth.py)
        user.password_hash = await hash_password(body.password)
    await db.commit()
    if user.disabled or body.is_admin is False:
        # A disabled user's sockets close; a former admin's too (they reconnect, if they
        # still may, with their own role instead of an admin's).
        await hub.sessions.access_changed(user.name)
        hub.collab.access_changed(user.name)
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


@router.post(
    "/api/users/{name}/login-link",
    summary="Reset a user's password: a new one-time login link (admin)",
)
async def reset_login(
    name: str, request: Request, caller: AdminDep, db: DbDep, hub: HubDep
) -> dict[str, object]:
    """The password is forgotten, the user's browser sessions and earlier links end (their
    open workspace windows close), API tokens stay; whoever opens the link chooses a new
    password."""
    user = await _user(db, name)
    if user.id == caller.user.id:
        raise ApiError(
            400,
            "cannot_reset_self",
            "You cannot reset your own password here: change it under Account.",
        )
    link, revoked = await reset_password(db, user, link_base(request, hub))
    await hub.sessions.signed_out(revoked)
    hub.collab.signed_out(revoked)
    return {**user_info(user), "login_link": link}


@router.get("/api/users/{name}/sessions", summary="A user's sessions, newest first (admin)")
async def user_sessions(
    name: str,
    _: AdminDep,
    db: DbDep,
    hub: HubDep,
    limit: int = Query(20, ge=1, le=200),
) -> list[dict[str, object]]:
    user = await _user(db, name)
    q = (
        select(SessionRow, Workspace.name, Project.name)
        .join(Workspace, Workspace.id == SessionRow.workspace_id)
        .join(Project, Project.id == Workspace.project_id)
        .where(SessionRow.owner_id == user.id)
        .order_by(SessionRow.started_at.desc())
        .limit(limit)
    )
    return [
        {**session_info(row, hub), "owner": user.name, "workspace": wname, "project": pname}
        for row, wname, pname in (await db.execute(q)).all()
    ]
