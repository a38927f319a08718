"""Per-user PostgreSQL databases (hub/userdb.py): the caller's own connection details, and
password rotation by an admin."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from rsparkhub.hub.api.deps import AdminDep, CallerDep, DbDep, HubDep
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import User, UserDatabase
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.userdb import UserDbUnavailable

router = APIRouter(tags=["databases"])


@router.get(
    "/api/me/database",
    summary="Your PostgreSQL database: host, port, user, database (never the password)",
)
async def my_database(caller: CallerDep, db: DbDep, hub: HubDep) -> dict[str, object]:
    mode = hub.userdb.mode
    if mode == "off":
        return {"available": False, "mode": mode, "detail": "User databases are off."}
    try:
        creds = await hub.userdb.credentials(db, caller.user)
    except UserDbUnavailable as exc:
        return {"available": False, "mode": mode, "detail": f"PostgreSQL not available: {exc}"}
    return {
        "available": True,
        "mode": mode,
        **creds.public(),
        "detail": "Sessions get PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and DATABASE_URL.",
    }


@router.post(
    "/api/users/{name}/database/rotate",
    summary="Give a user's PostgreSQL role a new password (admin)",
)
async def rotate_database_password(
    name: str, _: AdminDep, db: DbDep, hub: HubDep
) -> dict[str, object]:
    user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
    if user is None:
        raise not_found(f"The user '{name}'")
    if not hub.userdb.enabled:
        raise ApiError(
            409, "user_databases_off", "User databases are off (user_databases = 'off')."
        )
    try:
        creds = await hub.userdb.rotate(db, user)
    except UserDbUnavailable as exc:
        raise ApiError(
            503, "user_databases_unavailable", f"PostgreSQL not available: {exc}"
        ) from None
    row = await db.get(UserDatabase, user.id)
    return {
        **creds.public(),
        "password": creds.password,
        "rotated_at": iso(row.rotated_at) if row else None,
        "note": "The user's next session gets the new password; running sessions keep the "
        "old one (which no longer works for new connections) until they are restarted.",
    }
