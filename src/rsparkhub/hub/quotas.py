"""Disk caps, checked on every write of a file (saves from clients, files synced back from
sessions, imports): the one place where "is there room for this?" is decided.

Owns: the workspace cap (``max_workspace_bytes``) and the per-user cap (``max_user_bytes``,
the total of every workspace in the projects a user owns — the owner pays, whoever
writes). Per-user quotas set by admins will plug in here. Must not write anything.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.config import Settings
from rsparkhub.hub.db.models import File, Project, Workspace
from rsparkhub.hub.errors import ApiError

MB = 1024 * 1024


def mb(n: int) -> str:
    """A size as users read limits: ``50 MB``, ``1.5 MB`` (binary megabytes); below 0.1 MB
    (a test's or a tiny deployment's limits) in bytes."""
    value = n / MB
    if value < 0.1:
        return f"{n} bytes"
    return f"{value:.0f} MB" if value >= 10 or value == int(value) else f"{value:.1f} MB"


async def workspace_size(db: AsyncSession, workspace_id: str) -> int:
    total = await db.execute(
        select(func.coalesce(func.sum(File.size), 0)).where(File.workspace_id == workspace_id)
    )
    return int(total.scalar_one())


async def owner_of(db: AsyncSession, workspace_id: str) -> str | None:
    q = (
        select(Project.owner_id)
        .join(Workspace, Workspace.project_id == Project.id)
        .where(Workspace.id == workspace_id)
    )
    return (await db.execute(q)).scalar_one_or_none()


async def user_size(db: AsyncSession, user_id: str) -> int:
    q = (
        select(func.coalesce(func.sum(File.size), 0))
        .join(Workspace, File.workspace_id == Workspace.id)
        .join(Project, Workspace.project_id == Project.id)
        .where(Project.owner_id == user_id)
    )
    return int((await db.execute(q)).scalar_one())


async def check_room(
    db: AsyncSession, settings: Settings, workspace_id: str, path: str, old: int, new: int
) -> None:
    """Raise 413 when replacing ``old`` bytes by ``new`` bytes at ``path`` would take the
    workspace or its owner past their cap."""
    grow = new - old
    if grow <= 0:
        return
    if await workspace_size(db, workspace_id) + grow > settings.max_workspace_bytes:
        raise ApiError(
            413,
            "workspace_full",
            f"Saving '{path}' would make the workspace larger than its limit of "
            f"{mb(settings.max_workspace_bytes)}; delete files first.",
        )
    owner = await owner_of(db, workspace_id)
    if owner is not None and await user_size(db, owner) + grow > settings.max_user_bytes:
        raise ApiError(
            413,
            "user_quota_exceeded",
            f"Saving '{path}' would take the workspace owner's files past their limit of "
            f"{mb(settings.max_user_bytes)} in all workspaces; delete files first.",
        )
