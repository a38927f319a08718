"""Run records over HTTP: a workspace's (or one file's) records, one record with its inputs
and outputs, its environment snapshot and its console transcript. Every member reads them
(viewers too); they are written by the session machinery (``hub/runs``). A re-run
(``hub/runs/rerun.py``) runs code, so it needs an editor or the owner; its progress and
report are read in its own new workspace (the caller's) by that workspace's members."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from rsparkhub.hub.api.deps import CallerDep, DbDep, HubDep, ReadableWorkspace, WritableWorkspace
from rsparkhub.hub.api.headers import attachment
from rsparkhub.hub.paths import clean_path
from rsparkhub.hub.runs import export, queries, rerun

router = APIRouter(tags=["runs"])


@router.get(
    "/api/workspaces/{workspace_id}/runs",
    summary="Run records of the workspace (or, with path, of one file), newest first",
)
async def list_runs(
    w: ReadableWorkspace,
    db: DbDep,
    path: str | None = Query(None, description="Only records that ran or wrote this file."),
    limit: int = Query(50, ge=1, le=500),
    before: str | None = Query(None, description="A record id: only records older than it."),
) -> list[dict[str, Any]]:
    return await queries.list_runs(
        db, w.id, clean_path(path) if path is not None else None, limit, before
    )


@router.get(
    "/api/workspaces/{workspace_id}/runs/{run_id}",
    summary="One run record: command, file versions, environment, status, outputs, inputs",
)
async def show_run(w: ReadableWorkspace, run_id: str, hub: HubDep, db: DbDep) -> dict[str, Any]:
    return await queries.show_run(db, hub.blobs, w.id, run_id)


@router.get(
    "/api/workspaces/{workspace_id}/runs/{run_id}/environment",
    summary="The environment a run ran with: OS, R/Python versions, every package version",
)
async def run_environment(
    w: ReadableWorkspace, run_id: str, hub: HubDep, db: DbDep
) -> dict[str, Any]:
    return await queries.environment_of(db, hub.blobs, w.id, run_id)


@router.get(
    "/api/workspaces/{workspace_id}/runs/{run_id}/transcript",
    summary="A run's console transcript (text/plain)",
)
async def run_transcript(w: ReadableWorkspace, run_id: str, hub: HubDep, db: DbDep) -> Response:
    data = await queries.transcript_of(db, hub.blobs, w.id, run_id)
    return Response(data, media_type="text/plain; charset=utf-8")


class RerunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ignore: list[str] = Field(
        default_factory=list,
        description="Regular expressions masked in text before comparing, added to "
        "reprodiff.DEFAULT_IGNORE (timestamps, addresses, durations).",
    )


@router.post(
    "/api/workspaces/{workspace_id}/runs/{run_id}/rerun",
    summary="Start re-running a record in a fresh session with its recorded file versions",
    description="Answers 202 once the re-run's new workspace (project `reruns`) holds the "
    "recorded files: `{state: running, workspace_id, status_url}`. The session, the run and "
    "the comparison continue on the hub; poll `status_url` "
    "(`GET /api/workspaces/{new workspace}/rerun`) for the report.",
    status_code=202,
)
async def rerun_run(
    w: WritableWorkspace,
    run_id: str,
    caller: CallerDep,
    hub: HubDep,
    db: DbDep,
    body: RerunBody | None = None,
) -> dict[str, Any]:
    ignore = rerun.check_patterns(body.ignore if body else [])
    return await rerun.rerun(hub, db, caller, w, run_id, ignore)


@router.get(
    "/api/workspaces/{workspace_id}/rerun",
    summary="The re-run made in this workspace: running, done (with the report) or failed",
)
async def rerun_status(w: ReadableWorkspace, hub: HubDep, db: DbDep) -> dict[str, Any]:
    return await rerun.status(hub, db, w)


@router.get(
    "/api/workspaces/{workspace_id}/export",
    summary="A bundle (zip) that re-runs one record, or the last run of each file, without the hub",
    response_class=Response,
)
async def export_runs(
    w: ReadableWorkspace,
    hub: HubDep,
    db: DbDep,
    run: str | None = Query(None, description="A run id; without it, the last run of each file."),
) -> Response:
    data = await export.export_bundle(db, hub.blobs, w, run)
    name = f"{w.name}-{run[:12] if run else 'runs'}.zip"
    return Response(
        data, media_type="application/zip", headers={"Content-Disposition": attachment(name)}
    )
