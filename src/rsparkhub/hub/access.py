"""Object-level authorization: who may read, write or own a project or workspace. Every
route that names a project, workspace, file, plot or session resolves it through here, so
"not yours" and "does not exist" look the same (404) to a caller without access."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.auth import Caller
from rsparkhub.hub.db.models import Project, User, Workspace, WorkspaceMember
from rsparkhub.hub.errors import ApiError, not_found

Need = Literal["read", "write", "owner"]
_RANK = {"viewer": 1, "editor": 2, "owner": 3}
_NEED = {"read": 1, "write": 2, "owner": 3}


async def project_for(db: AsyncSession, caller: Caller, project_id: str, need: Need) -> Project:
    project = await db.get(Project, project_id)
    if project is None:
        raise not_found("The project")
    if project.owner_id == caller.user.id or caller.user.is_admin:
        return project
    if need == "read":
        # Members of any workspace in a project may see the project itself.
        member = (
            await db.execute(
                select(WorkspaceMember)
                .join(Workspace, Workspace.id == WorkspaceMember.workspace_id)
                .where(
                    Workspace.project_id == project_id, WorkspaceMember.user_id == caller.user.id
                )
            )
        ).first()
        if member:
            return project
    raise not_found("The project")


async def workspace_role(db: AsyncSession, caller: Caller, ws: Workspace) -> str | None:
    return await user_role(db, caller.user, ws)


async def user_role(db: AsyncSession, user: User, ws: Workspace) -> str | None:
    """``user``'s role in ``ws`` (owner, editor, viewer), or None without access."""
    project = await db.get(Project, ws.project_id)
    if project is not None and project.owner_id == user.id:
        return "owner"
    if user.is_admin:
        return "owner"
    m = await db.get(WorkspaceMember, (ws.id, user.id))
    return m.role if m else None


async def workspace_for(
    db: AsyncSession, caller: Caller, workspace_id: str, need: Need
) -> Workspace:
    ws = await db.get(Workspace, workspace_id)
    if ws is None:
        raise not_found("The workspace")
    role = await workspace_role(db, caller, ws)
    if role is None:
        raise not_found("The workspace")
    if _RANK[role] < _NEED[need]:
        raise ApiError(
            403, "forbidden", f"Your role in this workspace ({role}) does not allow this."
        )
    return ws
