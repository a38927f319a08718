"""Sessions and plots over HTTP: start, stop and inspect a workspace's session; the plot
history; health and doctor."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import select

from rsparkhub.hub.api.deps import (
    AdminDep,
    CallerDep,
    DbDep,
    HubDep,
    ReadableWorkspace,
    WritableWorkspace,
)
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import Execution, Plot, Project, User, Workspace
from rsparkhub.hub.db.models import Session as SessionRow
from rsparkhub.hub.errors import ApiError, not_found
from rsparkhub.hub.spawners.base import profiles_for

router = APIRouter(tags=["sessions"])


def session_info(row: SessionRow, hub: HubDep) -> dict[str, object]:
    live = hub.sessions.get(row.id)
    return {
        "id": row.id,
        "workspace_id": row.workspace_id,
        "state": live.state if live else row.state,
        "started_at": iso(row.started_at),
        "ended_at": iso(row.ended_at),
        "exit_code": live.exit_code if live and not live.alive else row.exit_code,
        "reason": live.reason if live and not live.alive else row.reason,
        "languages": live.languages if live else [],
        "running": len(live.running) if live else 0,
        "last_seq": live.log.last_seq if live else None,
        "clients": hub.sessions.client_count(row.workspace_id),
        "memory_bytes": hub.sessions.spawner.memory(live.spawner_state)
        if live and live.alive
        else None,
        "profile": (live.spawner_state if live else row.spawner_state or {}).get("profile"),
    }


async def _latest(db: DbDep, workspace_id: str) -> SessionRow | None:
    q = (
        select(SessionRow)
        .where(SessionRow.workspace_id == workspace_id)
        .order_by(SessionRow.started_at.desc())
        .limit(1)
    )
    return (await db.execute(q)).scalar_one_or_none()


@router.get(
    "/api/workspaces/{workspace_id}/session", summary="The workspace's current or last session"
)
async def get_session(w: ReadableWorkspace, hub: HubDep, db: DbDep) -> dict[str, object] | None:
    row = await _latest(db, w.id)
    return session_info(row, hub) if row else None


class StartSession(BaseModel):
    """Optional body of a session start: the profile to run with (``GET /api/profiles``);
    ``rebuild``: retry a declared environment whose build failed recently (the Packages
    pane's **Restart to rebuild**; hub/environments/)."""

    model_config = ConfigDict(extra="forbid")
    profile: str | None = Field(default=None, min_length=1, max_length=63)
    rebuild: StrictBool = False


@router.get("/api/profiles", summary="Session profiles the caller may start sessions with")
async def list_profiles(caller: CallerDep, hub: HubDep) -> list[dict[str, object]]:
    return profiles_for(hub.sessions.spawner, caller.user.name, caller.user.is_admin)


@router.post(
    "/api/workspaces/{workspace_id}/session",
    summary="Start the workspace's session (no-op if running), optionally with a profile",
)
async def start_session(
    w: WritableWorkspace,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    body: StartSession | None = None,
) -> dict[str, object]:
    wid = w.id
    profile = body.profile if body is not None else None
    if profile is not None:
        names = [
            str(p["name"])
            for p in profiles_for(hub.sessions.spawner, caller.user.name, caller.user.is_admin)
        ]
        if profile not in names:
            raise ApiError(
                422,
                "unknown_profile",
                f"There is no session profile '{profile}' you may use; pick one of "
                f"{', '.join(names) or 'none'} (GET /api/profiles).",
            )
    # A start can take a while (a pod to create): hold no database connection meanwhile,
    # or concurrent starts exhaust the pool.
    await db.rollback()
    if body is not None and body.rebuild:
        hub.sessions.lifecycle.environments.rebuild_next(wid)
    live = await hub.sessions.ensure_session(wid, profile=profile)
    row = await db.get(SessionRow, live.id)
    assert row is not None
    return session_info(row, hub)


@router.delete(
    "/api/workspaces/{workspace_id}/session",
    summary="Stop the workspace's session (kernels shut down, agent exits 0)",
)
async def stop_session(
    w: WritableWorkspace, caller: CallerDep, hub: HubDep, db: DbDep
) -> dict[str, object] | None:
    workspace = w.id
    live = hub.sessions.running(workspace)
    if live is not None:
        await hub.sessions.stop(live, f"stopped by {caller.name}")
    db.expire_all()
    row = await _latest(db, workspace)
    return session_info(row, hub) if row else None


@router.get("/api/sessions", summary="Running sessions: all for admins, the caller's own otherwise")
async def list_sessions(caller: CallerDep, hub: HubDep, db: DbDep) -> list[dict[str, object]]:
    q = (
        select(SessionRow, User.name, Workspace.name)
        .join(User, User.id == SessionRow.owner_id)
        .join(Workspace, Workspace.id == SessionRow.workspace_id)
        .where(SessionRow.state.in_(("starting", "running", "stopping")))
    )
    if not caller.user.is_admin:
        q = q.join(Project, Project.id == Workspace.project_id).where(
            Project.owner_id == caller.user.id
        )
    out = []
    for row, owner, wname in (await db.execute(q)).all():
        out.append({**session_info(row, hub), "owner": owner, "workspace": wname})
    return out


@router.get(
    "/api/workspaces/{workspace_id}/executions",
    summary="Recent runs in the workspace, newest first",
)
async def list_executions(
    workspace_id: str, w: ReadableWorkspace, db: DbDep, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, object]]:
    q = (
        select(Execution)
        .join(SessionRow, SessionRow.id == Execution.session_id)
        .where(SessionRow.workspace_id == w.id)
        .order_by(Execution.created_at.desc())
        .limit(limit)
    )
    return [
        {
            "id": e.id,
            "session_id": e.session_id,
            "request_id": e.request_id,
            "user": e.user,
            "language": e.language,
            "mode": e.mode,
            "path": e.path,
            "status": e.status,
            "duration_ms": e.duration_ms,
            "created_at": iso(e.created_at),
        }
        for e in (await db.execute(q)).scalars()
    ]


@router.get(
    "/api/workspaces/{workspace_id}/plots", summary="The workspace's plot history, oldest first"
)
async def list_plots(workspace_id: str, w: ReadableWorkspace, db: DbDep) -> list[dict[str, object]]:
    rows = await db.execute(select(Plot).where(Plot.workspace_id == w.id).order_by(Plot.created_at))
    return [
        {
            "id": p.id,
            "mime": p.mime,
            "size": p.size,
            "width": p.width,
            "height": p.height,
            "request_id": p.request_id,
            "session_id": p.session_id,
            "url": f"/api/workspaces/{w.id}/plots/{p.id}",
            "created_at": iso(p.created_at),
        }
        for p in rows.scalars()
    ]


async def _plot(db: DbDep, workspace_id: str, plot_id: str) -> Plot:
    p = await db.get(Plot, plot_id)
    if p is None or p.workspace_id != workspace_id:
        raise not_found("The plot")
    return p


@router.get("/api/workspaces/{workspace_id}/plots/{plot_id}", summary="A plot image")
async def get_plot(
    w: ReadableWorkspace,
    plot_id: str,
    hub: HubDep,
    db: DbDep,
    download: bool = False,
) -> Response:
    p = await _plot(db, w.id, plot_id)
    ext = {"image/png": "png", "image/svg+xml": "svg", "application/pdf": "pdf"}.get(p.mime, "bin")
    headers = {
        "Cache-Control": "private, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    if download:
        headers["Content-Disposition"] = f'attachment; filename="plot-{p.id[:8]}.{ext}"'
    return Response(await hub.blobs.get(p.sha256), media_type=p.mime, headers=headers)


@router.delete(
    "/api/workspaces/{workspace_id}/plots/{plot_id}", summary="Remove a plot from the history"
)
async def delete_plot(w: WritableWorkspace, plot_id: str, db: DbDep) -> dict[str, bool]:
    p = await _plot(db, w.id, plot_id)
    await db.delete(p)
    await db.commit()
    return {"ok": True}


@router.get("/api/health", summary="Liveness (no authentication)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/doctor", summary="What this hub can run, and why not (admin)")
async def doctor(_: AdminDep, hub: HubDep) -> dict[str, object]:
    from rsparkhub.doctor import report

    return await report(hub.settings, hub.sessions.spawner, hub.userdb, hub.spark)
