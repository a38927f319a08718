"""Reading run records for the API: a workspace's or a file's records, newest first, each
with its outputs; one record with its inputs (every workspace file's version when it
started) and its environment. Writing them is ``RunRecords``' job (``__init__.py``)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import iso
from rsparkhub.hub.db.models import Plot, Run, RunEnvironment, RunOutput
from rsparkhub.hub.errors import ApiError


def no_such_run() -> ApiError:
    return ApiError(
        404,
        "run_not_found",
        "This workspace has no run record with that id; list them with GET "
        "/api/workspaces/{id}/runs (or `rsparkhub runs`).",
    )


def output_info(o: RunOutput, plot: Plot | None) -> dict[str, Any]:
    w = o.workspace_id
    url: str | None = None
    if o.kind == "plot" and o.plot_id:
        url = f"/api/workspaces/{w}/plots/{o.plot_id}"
    elif o.kind in ("file", "document") and o.path and o.version:
        url = f"/api/workspaces/{w}/files/{quote(o.path)}?version={o.version}"
    return {
        "kind": o.kind,
        "path": o.path,
        "version": o.version,
        "plot_id": o.plot_id,
        "mime": o.mime or (plot.mime if plot else None),
        "sha256": o.sha256 or (plot.sha256 if plot else None),
        "size": o.size if o.size is not None else (plot.size if plot else None),
        "url": url,
        **({"detail": o.detail} if o.detail else {}),
    }


def run_info(run: Run, env: RunEnvironment | None, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": run.id,
        "workspace_id": run.workspace_id,
        "session_id": run.session_id,
        "request_id": run.request_id,
        "user": run.user,
        "kind": run.kind,
        "language": run.language,
        "path": run.path,
        "command": run.command,
        "via": run.via,
        "request": run.request,
        "file_version": run.file_version,
        "file_sha256": run.file_sha256,
        "inputs_sha256": run.inputs_sha256,
        "input_count": run.input_count,
        "environment": {
            "id": run.environment_id,
            "spawner": run.spawner,
            "profile": run.profile,
            "image": run.image,
            **(env.summary if env is not None else {}),
        },
        "status": run.status,
        "error_code": run.error_code,
        "message": run.message,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_ms": run.duration_ms,
        "transcript": {
            "sha256": run.transcript_sha256,
            "bytes": run.transcript_bytes,
            "complete": run.transcript_complete,
        },
        "outputs": outputs,
        "rerun_of": run.rerun_of,
        "rerun": run.rerun_report,
    }


async def _outputs(db: AsyncSession, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in run_ids}
    if not run_ids:
        return out
    rows = (
        await db.execute(
            select(RunOutput, Plot)
            .outerjoin(Plot, Plot.id == RunOutput.plot_id)
            .where(RunOutput.run_id.in_(run_ids))
            .order_by(RunOutput.created_at, RunOutput.id)
        )
    ).all()
    for o, plot in rows:
        out[o.run_id].append(output_info(o, plot))
    return out


async def _environments(db: AsyncSession, runs: list[Run]) -> dict[str, RunEnvironment]:
    ids = {r.environment_id for r in runs if r.environment_id}
    if not ids:
        return {}
    rows = (await db.execute(select(RunEnvironment).where(RunEnvironment.id.in_(ids)))).scalars()
    return {e.id: e for e in rows}


async def list_runs(
    db: AsyncSession, workspace_id: str, path: str | None, limit: int, before: str | None
) -> list[dict[str, Any]]:
    """Newest first. With ``path``: the records that ran that file or wrote it."""
    q = select(Run).where(Run.workspace_id == workspace_id)
    if path is not None:
        wrote = select(RunOutput.run_id).where(
            RunOutput.workspace_id == workspace_id, RunOutput.path == path
        )
        q = q.where(or_(Run.path == path, Run.id.in_(wrote)))
    if before is not None:
        anchor = await db.get(Run, before)
        if anchor is None or anchor.workspace_id != workspace_id:
            raise no_such_run()
        q = q.where(Run.started_at < anchor.started_at)
    runs = list(
        (await db.execute(q.order_by(Run.started_at.desc(), Run.id).limit(limit))).scalars()
    )
    outputs = await _outputs(db, [r.id for r in runs])
    envs = await _environments(db, runs)
    return [run_info(r, envs.get(r.environment_id or ""), outputs[r.id]) for r in runs]


async def get_run(db: AsyncSession, workspace_id: str, run_id: str) -> Run:
    run = await db.get(Run, run_id)
    if run is None or run.workspace_id != workspace_id:
        raise no_such_run()
    return run


async def show_run(
    db: AsyncSession, blobs: BlobStore, workspace_id: str, run_id: str
) -> dict[str, Any]:
    """One record with its outputs and ``inputs``: every workspace file when it started."""
    run = await get_run(db, workspace_id, run_id)
    outputs = await _outputs(db, [run.id])
    envs = await _environments(db, [run])
    info = run_info(run, envs.get(run.environment_id or ""), outputs[run.id])
    inputs: list[dict[str, Any]] = []
    if run.inputs_sha256 and blobs.exists(run.inputs_sha256):
        inputs = json.loads(await blobs.get(run.inputs_sha256)).get("files", [])
    info["inputs"] = inputs
    return info


async def environment_of(
    db: AsyncSession, blobs: BlobStore, workspace_id: str, run_id: str
) -> dict[str, Any]:
    """The full environment snapshot a record names (every package and its version)."""
    run = await get_run(db, workspace_id, run_id)
    if not run.environment_id or not blobs.exists(run.environment_id):
        raise ApiError(
            404,
            "environment_not_recorded",
            "This run has no environment snapshot: the session did not report one (it "
            "ended first, or could not read its packages; see the session's log).",
        )
    snapshot: dict[str, Any] = json.loads(await blobs.get(run.environment_id))
    return {"id": run.environment_id, **snapshot}


async def transcript_of(
    db: AsyncSession, blobs: BlobStore, workspace_id: str, run_id: str
) -> bytes:
    run = await get_run(db, workspace_id, run_id)
    if not run.transcript_sha256 or not blobs.exists(run.transcript_sha256):
        why = (
            "it is still running"
            if run.status == "running"
            else "it was not kept (longer than 16 MiB, or the hub restarted while it ran)"
        )
        raise ApiError(
            404,
            "transcript_not_kept",
            f"This run's console transcript is not available: {why}. Its output is in "
            "the session's console.",
        )
    return await blobs.get(run.transcript_sha256)
