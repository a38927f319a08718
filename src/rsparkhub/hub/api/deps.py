"""FastAPI dependencies shared by every route: the hub, a database session, and the
authenticated caller (with the CSRF check for cookie-authenticated writes). A route that
forgets ``current_caller`` is caught by tests/test_authz.py, which enumerates routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.access import workspace_for
from rsparkhub.hub.auth import SAFE_METHODS, Caller, authenticate, check_csrf
from rsparkhub.hub.db.models import Workspace
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.state import Hub


def get_hub(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_hub(request).db.session() as db:
        yield db


HubDep = Annotated[Hub, Depends(get_hub)]
DbDep = Annotated[AsyncSession, Depends(get_db)]


async def current_caller(request: Request, db: DbDep) -> Caller:
    caller = await authenticate(request, db)
    if caller is None:
        raise ApiError(
            401, "unauthorized", "Log in or send an API token (Authorization: Bearer …)."
        )
    if caller.via == "cookie" and request.method not in SAFE_METHODS:
        check_csrf(request)
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


async def admin_caller(caller: CallerDep) -> Caller:
    if not caller.user.is_admin:
        raise ApiError(403, "admin_only", "Only administrators can do this.")
    return caller


AdminDep = Annotated[Caller, Depends(admin_caller)]


# The workspace of a route's ``{workspace_id}``, once the caller's role in it allows the
# route: 404 when it does not exist or the caller is not a member, 403 when the role is
# too low. Routes take one of these instead of checking access themselves.
async def _readable(workspace_id: str, caller: CallerDep, db: DbDep) -> Workspace:
    return await workspace_for(db, caller, workspace_id, "read")


async def _writable(workspace_id: str, caller: CallerDep, db: DbDep) -> Workspace:
    return await workspace_for(db, caller, workspace_id, "write")


async def _owned(workspace_id: str, caller: CallerDep, db: DbDep) -> Workspace:
    return await workspace_for(db, caller, workspace_id, "owner")


ReadableWorkspace = Annotated[Workspace, Depends(_readable)]
WritableWorkspace = Annotated[Workspace, Depends(_writable)]
OwnedWorkspace = Annotated[Workspace, Depends(_owned)]
