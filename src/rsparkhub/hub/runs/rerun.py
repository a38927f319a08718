"""Re-running a run record and saying whether it reproduced (``POST …/runs/{run}/rerun``,
``rsparkhub rerun``).

A re-run never touches the workspace it came from. It makes a **new workspace** in the
caller's own project ``reruns`` (made on first use), named after the workspace and the
record (``<workspace> rerun <run id> <time>``), holding exactly the recorded manifest: every
file the workspace had when the record started, at its recorded version, taken from the
content-addressed blob store — whatever the workspace holds now does not matter. A fresh
session of that workspace (a clean start, its owner the caller) is sent the recorded request
again, through the same path a client's request takes (``ClientRelay.submit``, ``via``
``rerun``), so it leaves an ordinary run record; the hub waits for it, stops the session,
compares the two records with ``reprodiff`` and stores the report on the new record
(``rerun_of``, ``rerun_report``; migration 0010). The new workspace stays, so its files,
outputs and record can be inspected (delete it like any workspace).

The request answers **202** as soon as the new workspace holds its files: the session, the
run (up to ``rerun_timeout_s``) and the comparison continue in a task of the hub's
(:class:`Reruns`), and ``GET /api/workspaces/{new workspace}/rerun`` says ``running``, then
gives the report (``done``) or why it failed (``failed``). No HTTP request is held open for
the length of someone's analysis (proxies close those), and a client that went away can ask
again. A hub restarted meanwhile forgets a running re-run: the workspace keeps what it did.

Why a workspace of the caller's, not the original one: running the old files in the
original workspace would overwrite its current files with old versions (every member would
see them change) and the re-run's writes would become new versions there; and a re-run
runs code as the caller, so it runs in a workspace the caller owns.

The environment: the recorded files include the workspace's declaration
(``requirements.txt``, ``DESCRIPTION`` …), so the re-run's session gets the same declared
environment (the same key; hub/environments/). The original workspace's overlay (what was
``pip install``-ed in its sessions) is not carried: ``rerun_env`` names both sides' keys and
the overlay packages in the report. Environment differences are reported, never a reason
for "not reproduced" on their own; an output they change is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub import protocol as P
from rsparkhub import reprodiff
from rsparkhub.hub.auth import Caller
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import Project, Run, Workspace
from rsparkhub.hub.errors import ApiError
from rsparkhub.hub.runs import rerun_env
from rsparkhub.hub.runs.outputs import RecordedOutputs, recorded_outputs
from rsparkhub.hub.runs.queries import get_run

if TYPE_CHECKING:
    from rsparkhub.hub.state import Hub

log = logging.getLogger("rsparkhub.runs")

RERUN_PROJECT = "reruns"
MAX_IGNORE = 20  # extra ignore patterns a caller may add
MAX_PATTERN = 200  # characters in one


def check_patterns(patterns: list[str]) -> list[str]:
    """The caller's extra ignore patterns, compiled once to refuse a broken one with 400."""
    if len(patterns) > MAX_IGNORE:
        raise ApiError(400, "invalid_ignore", f"At most {MAX_IGNORE} ignore patterns.")
    for p in patterns:
        if len(p) > MAX_PATTERN:
            raise ApiError(
                400, "invalid_ignore", f"An ignore pattern is limited to {MAX_PATTERN} characters."
            )
        try:
            re.compile(p)
        except re.error as exc:
            raise ApiError(
                400,
                "invalid_ignore",
                f"The ignore pattern {p!r} is not a regular expression: {exc}.",
            ) from None
    return patterns


async def _rerun_project(database: Database, user_id: str) -> str:
    """The id of the caller's project ``reruns``, made on first use (two re-runs at once:
    one makes it). In a session of its own: a rollback here expires nothing of the route's."""
    mine = select(Project.id).where(Project.owner_id == user_id, Project.name == RERUN_PROJECT)
    async with database.session() as db:
        found = (await db.execute(mine)).scalar_one_or_none()
        if found is not None:
            return str(found)
        db.add(Project(owner_id=user_id, name=RERUN_PROJECT))
        try:
            await db.commit()
        except IntegrityError:
            await db.rollback()
        return str((await db.execute(mine)).scalar_one())


async def _rerun_workspace(
    hub: Hub, db: AsyncSession, caller: Caller, ws: Workspace, run: Run
) -> Workspace:
    project_id = await _rerun_project(hub.db, caller.user.id)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H%M%S")
    name = f"{ws.name[:60]} rerun {run.id[:12]} {stamp} {uuid.uuid4().hex[:4]}"
    new = Workspace(project_id=project_id, name=name)
    db.add(new)
    await db.commit()
    return new


def _request_of(run: Run, request_id: str) -> P.ExecuteRequest | P.RenderRequest:
    request = run.request or (
        {"type": "render", "path": run.path}
        if run.kind == "render"
        else {"type": "execute", "path": run.path, "mode": run.kind, "language": run.language}
    )
    req = P.parse_client_request(json.dumps({**request, "id": request_id}))
    assert isinstance(req, P.ExecuteRequest | P.RenderRequest)
    return req


async def _wait_for_record(hub: Hub, session_id: str, request_id: str) -> Run:
    """The re-run's record once finished, with its environment (which may follow ``done``
    by a moment; a record without one after 10 s is taken as it is)."""
    limit = hub.settings.rerun_timeout_s  # the recorded request, once the session took it
    deadline = time.monotonic() + limit
    finished_at: float | None = None
    while True:
        async with hub.db.session() as db:
            run = (
                await db.execute(
                    select(Run).where(Run.session_id == session_id, Run.request_id == request_id)
                )
            ).scalar_one_or_none()
        if run is not None and run.status != "running":
            finished_at = finished_at or time.monotonic()
            if run.environment_id or time.monotonic() - finished_at > 10:
                return run
        if time.monotonic() > deadline:
            raise ApiError(
                504,
                "rerun_timeout",
                f"The re-run did not finish within {limit:g} s (rerun_timeout_s); its "
                "session was stopped and its workspace keeps what it did so far.",
            )
        await asyncio.sleep(0.25)


@dataclass
class _Job:
    """A re-run in progress (or failed) in its workspace: what ``status`` says of it."""

    workspace_id: str
    workspace: str
    run_id: str
    task: asyncio.Task[None] | None = None
    error: dict[str, str] | None = None


@dataclass
class Reruns:
    """The hub's re-runs still running, and those that failed, by their new workspace.
    Finished ones are read from their record (``rerun_report``); a failure is kept for
    ``status`` until the hub stops (it is also in the hub's log)."""

    jobs: dict[str, _Job] = field(default_factory=dict)

    def start(self, job: _Job, work: Coroutine[Any, Any, None]) -> None:
        self.jobs[job.workspace_id] = job
        job.task = asyncio.create_task(self._run(job, work), name=f"rerun-{job.workspace_id}")

    async def _run(self, job: _Job, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            self.jobs.pop(job.workspace_id, None)
        except ApiError as exc:
            job.error = {"code": exc.code, "message": exc.message}
        except Exception as exc:  # noqa: BLE001 - reported to whoever asks, and logged
            log.exception("the re-run in workspace %s failed", job.workspace_id)
            job.error = {
                "code": "rerun_failed",
                "message": f"The re-run failed on the hub ({type(exc).__name__}); its "
                "workspace keeps what it did so far, and the hub's log says more.",
            }
        finally:
            job.task = None

    async def close(self) -> None:
        """Hub shutdown: running re-runs end (their sessions are stopped with the hub's)."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def rerun(
    hub: Hub, db: AsyncSession, caller: Caller, ws: Workspace, run_id: str, ignore: list[str]
) -> dict[str, Any]:
    """Start re-running ``run_id`` of ``ws``: its new workspace, with the recorded files;
    the rest runs in a task (``_finish``). The caller is an editor or the owner of ``ws``
    (the route's ``WritableWorkspace``: a re-run runs code, viewers get 403)."""
    original = await get_run(db, ws.id, run_id)
    if original.status == "running":
        raise ApiError(409, "run_running", "This run is still running; re-run it once it ended.")
    before = await recorded_outputs(db, hub.blobs, original)
    if not before.inputs:
        raise ApiError(
            409,
            "inputs_not_recorded",
            "This record has no manifest of the workspace's files, so its inputs cannot be "
            "restored; run the file again to make a record that can be re-run.",
        )
    contents: list[tuple[str, bytes]] = []
    for f in before.inputs:
        sha = str(f["sha256"])
        if not hub.blobs.exists(sha):
            raise ApiError(
                409,
                "inputs_missing",
                f"The recorded version of '{f['path']}' is no longer in the blob store; this "
                "record cannot be re-run.",
            )
        contents.append((str(f["path"]), await hub.blobs.get(sha)))

    target = await _rerun_workspace(hub, db, caller, ws, original)
    for path, data in contents:
        await hub.files.save(db, target.id, path, data, caller.name, None)
    original_info = {
        "run_id": original.id,
        "command": original.command,
        "profile": original.profile,
        "image": original.image,
    }
    req = _request_of(original, f"rerun-{uuid.uuid4().hex[:16]}")
    job = _Job(target.id, target.name, original.id)
    hub.reruns.start(job, _finish(hub, caller.name, job, original_info, req, before, ignore))
    return _running(job)


def _running(job: _Job) -> dict[str, Any]:
    return {
        "state": "running",
        "run_id": job.run_id,
        "workspace_id": job.workspace_id,
        "workspace": job.workspace,
        "status_url": f"/api/workspaces/{job.workspace_id}/rerun",
    }


async def _finish(
    hub: Hub,
    user: str,
    job: _Job,
    original: dict[str, Any],
    req: P.ExecuteRequest | P.RenderRequest,
    before: RecordedOutputs,
    ignore: list[str],
) -> None:
    """The re-run itself: a fresh session, the recorded request, the comparison; the report
    stored on the new record."""
    live = await hub.sessions.ensure_session(job.workspace_id)
    try:
        problem = await hub.sessions.relay.submit(live, user, req, "rerun")
        if problem is not None:
            raise ApiError(409, problem[0], problem[1])
        after_run = await _wait_for_record(hub, live.id, req.id)
    finally:
        await hub.sessions.stop(live, "the re-run finished")
    async with hub.db.session() as db:
        after = await recorded_outputs(db, hub.blobs, after_run)
    settings = reprodiff.Settings(ignore=[*reprodiff.DEFAULT_IGNORE, *ignore])
    # decoding PNGs in Python takes a while: off the event loop
    compared = await asyncio.to_thread(
        reprodiff.compare, before.for_diff(), after.for_diff(), settings
    )
    report = compared.to_dict()
    notes = []
    if before.transcript is None:
        notes.append("the original transcript was not kept, so it was not compared")
    if (original["profile"], original["image"]) != (after_run.profile, after_run.image):
        notes.append(
            f"the original ran with profile {original['profile']} (image {original['image']}), "
            f"the re-run with {after_run.profile} (image {after_run.image})"
        )
    report["notes"] = notes
    # which declared environment each side had; packages from the original's overlay
    rerun_env.explain(report, before.environment, after.environment)
    result = {
        "run_id": original["run_id"],
        "rerun_id": after_run.id,
        "workspace_id": job.workspace_id,
        "workspace": job.workspace,
        "command": original["command"],
        "status": after_run.status,
        **report,
    }
    async with hub.db.session() as db:
        row = await db.get(Run, after_run.id)
        if row is not None:
            row.rerun_of = original["run_id"]
            row.rerun_report = result
            await db.commit()


async def status(hub: Hub, db: AsyncSession, ws: Workspace) -> dict[str, Any]:
    """``GET /api/workspaces/{id}/rerun``: the re-run made in workspace ``ws``."""
    job = hub.reruns.jobs.get(ws.id)
    if job is not None and job.error is not None:
        return {"state": "failed", "run_id": job.run_id, "workspace_id": ws.id,
                "workspace": ws.name, "error": job.error}  # fmt: skip
    report = (
        await db.execute(
            select(Run.rerun_report)
            .where(Run.workspace_id == ws.id, Run.rerun_of.is_not(None))
            .order_by(Run.started_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if report is not None:
        return {"state": "done", **report}
    if job is not None:
        return _running(job)
    raise ApiError(
        404,
        "no_rerun",
        "No re-run is running or finished in this workspace (a hub restarted during a re-run "
        "forgets it; the workspace keeps its files and any record). Re-run the record again.",
    )
