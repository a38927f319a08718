"""Projects and workspaces: create, list, rename, delete, import a zip, export a zip."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rsparkhub.examples import example, examples
from rsparkhub.hub.access import project_for, user_role, workspace_for, workspace_role
from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep, OwnedWorkspace, ReadableWorkspace
from rsparkhub.hub.api.headers import attachment
from rsparkhub.hub.db.models import Project, User, Workspace, WorkspaceMember
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.files import read_zip
from rsparkhub.hub.paths import clean_name
from rsparkhub.hub.quotas import mb

router = APIRouter(tags=["projects"])


class NameBody(BaseModel):
    name: str = Field(min_length=1, max_length=128)


class NewWorkspace(NameBody):
    model_config = ConfigDict(extra="forbid")
    example: str | None = Field(default=None, max_length=128)  # a bundled example's name


async def _commit_unique(db: DbDep, kind: str, name: str) -> None:
    """Commit; a name that is already taken becomes a 409 the user can act on."""
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        where = (
            "You already have a project"
            if kind == "project"
            else "The project already has a workspace"
        )
        raise ApiError(409, f"{kind}_exists", f"{where} named '{name}'.") from None


def project_info(p: Project) -> dict[str, object]:
    return {"id": p.id, "name": p.name, "owner_id": p.owner_id}


class WorkspaceSettings(BaseModel):
    """Per-workspace options. ``save_r_image``: save the R global environment to ``.RData``
    when the session stops cleanly and restore it when the R kernel next starts."""

    model_config = ConfigDict(extra="forbid")
    save_r_image: bool = False


class WorkspacePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=128)
    settings: WorkspaceSettings | None = None


def settings_of(w: Workspace) -> dict[str, object]:
    return WorkspaceSettings.model_validate(w.settings or {}).model_dump()


def workspace_info(w: Workspace, role: str | None = None) -> dict[str, object]:
    return {
        "id": w.id,
        "name": w.name,
        "project_id": w.project_id,
        "role": role,
        "settings": settings_of(w),
    }


@router.get("/api/projects", summary="Projects the caller owns")
async def list_projects(caller: CallerDep, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(
        select(Project).where(Project.owner_id == caller.user.id).order_by(Project.name)
    )
    return [project_info(p) for p in rows.scalars()]


@router.post("/api/projects", status_code=201, summary="Create a project")
async def create_project(body: NameBody, caller: CallerDep, db: DbDep) -> dict[str, object]:
    p = Project(owner_id=caller.user.id, name=clean_name(body.name, "project name"))
    db.add(p)
    await _commit_unique(db, "project", body.name)
    return project_info(p)


@router.get("/api/projects/{project_id}", summary="One project")
async def get_project(project_id: str, caller: CallerDep, db: DbDep) -> dict[str, object]:
    return project_info(await project_for(db, caller, project_id, "read"))


@router.patch("/api/projects/{project_id}", summary="Rename a project")
async def rename_project(
    project_id: str, body: NameBody, caller: CallerDep, db: DbDep
) -> dict[str, object]:
    p = await project_for(db, caller, project_id, "owner")
    p.name = clean_name(body.name, "project name")
    await _commit_unique(db, "project", body.name)
    return project_info(p)


@router.delete("/api/projects/{project_id}", summary="Delete a project and its workspaces")
async def delete_project(
    project_id: str, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, bool]:
    p = await project_for(db, caller, project_id, "owner")
    workspace_ids = [
        w.id
        for w in (await db.execute(select(Workspace).where(Workspace.project_id == p.id))).scalars()
    ]
    for wid in workspace_ids:
        live = hub.sessions.running(wid)
        if live:
            await hub.sessions.stop(live, "the project was deleted")
    await db.delete(p)
    await db.commit()
    for wid in workspace_ids:
        await hub.sessions.close_clients(wid, "The workspace was deleted.")
        await hub.collab.workspace_deleted(wid)
        await hub.sessions.workspace_deleted(wid)
    return {"ok": True}


@router.get("/api/projects/{project_id}/workspaces", summary="Workspaces of a project")
async def list_project_workspaces(
    project_id: str, caller: CallerDep, db: DbDep
) -> list[dict[str, object]]:
    p = await project_for(db, caller, project_id, "read")
    out = []
    for w in (
        await db.execute(
            select(Workspace).where(Workspace.project_id == p.id).order_by(Workspace.name)
        )
    ).scalars():
        role = await workspace_role(db, caller, w)
        if role:
            out.append(workspace_info(w, role))
    return out


@router.get("/api/workspaces", summary="Every workspace the caller can open")
async def list_workspaces(caller: CallerDep, db: DbDep) -> list[dict[str, object]]:
    owned = await db.execute(
        select(Workspace, Project)
        .join(Project, Project.id == Workspace.project_id)
        .where(Project.owner_id == caller.user.id)
    )
    out = [{**workspace_info(w, "owner"), "project": p.name} for w, p in owned.all()]
    shared = await db.execute(
        select(Workspace, Project, WorkspaceMember)
        .join(Project, Project.id == Workspace.project_id)
        .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
        .where(WorkspaceMember.user_id == caller.user.id, Project.owner_id != caller.user.id)
    )
    out += [{**workspace_info(w, m.role), "project": p.name} for w, p, m in shared.all()]
    return sorted(out, key=lambda x: (str(x["project"]), str(x["name"])))


@router.post("/api/projects/{project_id}/workspaces", status_code=201, summary="Create a workspace")
async def create_workspace(
    project_id: str, body: NewWorkspace, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    p = await project_for(db, caller, project_id, "owner")
    files: list[tuple[str, bytes]] = []
    if body.example is not None:
        ex = example(body.example)
        if ex is None:
            names = ", ".join(e.name for e in examples())
            raise ApiError(
                404, "example_not_found", f"No example '{body.example}' (there are: {names})."
            )
        files = await asyncio.to_thread(ex.files)
    w = Workspace(project_id=p.id, name=clean_name(body.name, "workspace name"))
    db.add(w)
    await _commit_unique(db, "workspace", body.name)
    for path, content in files:
        await hub.files.save(db, w.id, path, content, caller.name, None)
    return {**workspace_info(w, "owner"), "files": len(files)}


@router.get("/api/examples", summary="The example workspaces shipped with the hub")
async def list_examples(_: CallerDep) -> list[dict[str, object]]:
    return [
        {
            "name": e.name,
            "title": e.title,
            "description": e.description,
            "files": e.paths(),
        }
        for e in examples()
    ]


@router.get("/api/workspaces/{workspace_id}", summary="One workspace")
async def get_workspace(w: ReadableWorkspace, caller: CallerDep, db: DbDep) -> dict[str, object]:
    return workspace_info(w, await workspace_role(db, caller, w))


@router.patch(
    "/api/workspaces/{workspace_id}",
    summary="Rename a workspace (owner) or change its settings (editor)",
)
async def update_workspace(
    workspace_id: str, body: WorkspacePatch, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object]:
    w = await workspace_for(db, caller, workspace_id, "owner" if body.name else "write")
    if body.name is not None:
        w.name = clean_name(body.name, "workspace name")
    if body.settings is not None:
        w.settings = body.settings.model_dump()
    await _commit_unique(db, "workspace", body.name or w.name)
    if body.settings is not None:
        await hub.sessions.settings_changed(w.id, settings_of(w))
    return workspace_info(w, await workspace_role(db, caller, w))


@router.delete(
    "/api/workspaces/{workspace_id}", summary="Delete a workspace, its files and its session"
)
async def delete_workspace(
    workspace_id: str, w: OwnedWorkspace, hub: HubDep, db: DbDep
) -> dict[str, bool]:
    live = hub.sessions.running(w.id)
    if live:
        await hub.sessions.stop(live, "the workspace was deleted")
    await db.delete(w)
    await db.commit()
    await hub.sessions.close_clients(workspace_id, "The workspace was deleted.")
    await hub.collab.workspace_deleted(workspace_id)
    await hub.sessions.workspace_deleted(workspace_id)
    return {"ok": True}


class MemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=64)
    # viewer: files and output; editor: also run code and save; owner: also share, rename
    # and delete the workspace (the project's owner is always owner)
    role: Literal["viewer", "editor", "owner"]


@router.get(
    "/api/workspaces/{workspace_id}/members",
    summary="Who has access to a workspace: the project's owner and the members, with roles",
)
async def list_members(w: ReadableWorkspace, db: DbDep) -> list[dict[str, object]]:
    project = await db.get(Project, w.project_id)
    assert project is not None
    owner = await db.get(User, project.owner_id)
    out: list[dict[str, object]] = []
    if owner is not None:
        out.append({"user": owner.name, "role": "owner", "project_owner": True})
    rows = await db.execute(
        select(WorkspaceMember, User)
        .join(User, User.id == WorkspaceMember.user_id)
        .where(WorkspaceMember.workspace_id == w.id)
        .order_by(User.name)
    )
    out += [{"user": u.name, "role": m.role, "project_owner": False} for m, u in rows.all()]
    return out


@router.put(
    "/api/workspaces/{workspace_id}/members",
    summary="Share a workspace with a user, or change their role (owner)",
)
async def add_member(
    workspace_id: str, w: OwnedWorkspace, body: MemberBody, hub: HubDep, db: DbDep
) -> dict[str, object]:
    user = (await db.execute(select(User).where(User.name == body.user))).scalar_one_or_none()
    if user is None:
        raise ApiError(
            404,
            "user_not_found",
            f"There is no user named '{body.user}'. Check the spelling, or ask an "
            "administrator to add them.",
        )
    project = await db.get(Project, w.project_id)
    if project is not None and project.owner_id == user.id:
        raise ApiError(
            400,
            "project_owner",
            f"'{user.name}' owns the project of this workspace and always has the owner role.",
        )
    m = await db.get(WorkspaceMember, (w.id, user.id))
    if m is None:
        db.add(WorkspaceMember(workspace_id=w.id, user_id=user.id, role=body.role))
    else:
        m.role = body.role
    await db.commit()
    # Their open sockets get the new role at once (an editor made viewer runs no more code).
    role = await user_role(db, user, w)
    await hub.sessions.access_changed(user.name, w.id, role)
    hub.collab.access_changed(user.name, w.id, role)
    return {"user": user.name, "role": body.role}


@router.delete(
    "/api/workspaces/{workspace_id}/members/{user_name}",
    summary="Stop sharing a workspace with a user; closes their open sockets (owner)",
)
async def remove_member(
    w: OwnedWorkspace, user_name: str, hub: HubDep, db: DbDep
) -> dict[str, object]:
    user = (await db.execute(select(User).where(User.name == user_name))).scalar_one_or_none()
    m = await db.get(WorkspaceMember, (w.id, user.id)) if user is not None else None
    if user is None or m is None:
        raise not_found(f"The member '{user_name}'")
    await db.delete(m)
    await db.commit()
    # The owner (and an admin) keep their access through ownership: their sockets stay.
    role = await user_role(db, user, w)
    closed = await hub.sessions.access_changed(user.name, w.id, role)
    closed += hub.collab.access_changed(user.name, w.id, role)
    return {"user": user.name, "removed": True, "sockets_closed": closed}


@router.get("/api/workspaces/{workspace_id}/zip", summary="Download the workspace as a zip")
async def download_zip(w: ReadableWorkspace, hub: HubDep, db: DbDep) -> Response:
    data = await hub.files.zip(db, w.id)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": attachment(f"{w.name}.zip", fallback="workspace")},
    )


@router.post(
    "/api/projects/{project_id}/import", status_code=201, summary="Import a zip as a new workspace"
)
async def import_zip(
    project_id: str,
    name: str,
    file: UploadFile,
    request: Request,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
) -> dict[str, object]:
    p = await project_for(db, caller, project_id, "owner")
    data = await file.read(hub.settings.max_upload_bytes + 1)
    if len(data) > hub.settings.max_upload_bytes:
        raise ApiError(
            413,
            "upload_too_large",
            f"Uploads are limited to {mb(hub.settings.max_upload_bytes)}.",
        )
    entries = read_zip(data, hub.settings.max_workspace_bytes)
    w = Workspace(project_id=p.id, name=clean_name(name, "workspace name"))
    db.add(w)
    await _commit_unique(db, "workspace", name)
    try:
        for path, content in entries:
            await hub.files.save(db, w.id, path, content, caller.name, None)
    except ApiError:
        await db.delete(w)
        await db.commit()
        raise
    return {**workspace_info(w, "owner"), "files": len(entries)}
