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
from datetime import UTC, datetime
from typing import Any

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
from rsparkhub.hub.runs.outputs import recorded_outputs
from rsparkhub.hub.runs.queries import get_run
from rsparkhub.hub.state import Hub

log = logging.getLogger("rsparkhub.runs")

RERUN_PROJECT = "reruns"
RERUN_TIMEOUT_S = 3600.0  # the recorded request, once the session took it
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
    deadline = time.monotonic() + RERUN_TIMEOUT_S
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
                f"The re-run did not finish within {RERUN_TIMEOUT_S:.0f} s; its workspace "
                "keeps what it did so far.",
            )
        await asyncio.sleep(0.25)


async def rerun(
    hub: Hub, db: AsyncSession, caller: Caller, ws: Workspace, run_id: str, ignore: list[str]
) -> dict[str, Any]:
    """Re-run ``run_id`` of ``ws`` and compare; the report. The caller is an editor or the
    owner of ``ws`` (the route's ``WritableWorkspace``: a re-run runs code, viewers get 403)."""
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
    request_id = f"rerun-{uuid.uuid4().hex[:16]}"
    req = _request_of(original, request_id)
    live = await hub.sessions.ensure_session(target.id)
    try:
        problem = await hub.sessions.relay.submit(live, caller.name, req, "rerun")
        if problem is not None:
            raise ApiError(409, problem[0], problem[1])
        after_run = await _wait_for_record(hub, live.id, request_id)
    finally:
        await hub.sessions.stop(live, "the re-run finished")
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
    if (original.profile, original.image) != (after_run.profile, after_run.image):
        notes.append(
            f"the original ran with profile {original.profile} (image {original.image}), the "
            f"re-run with {after_run.profile} (image {after_run.image})"
        )
    report["notes"] = notes
    # which declared environment each side had; packages from the original's overlay
    rerun_env.explain(report, before.environment, after.environment)
    result = {
        "run_id": original.id,
        "rerun_id": after_run.id,
        "workspace_id": target.id,
        "workspace": target.name,
        "command": original.command,
        "status": after_run.status,
        **report,
    }
    row = await db.get(Run, after_run.id)
    if row is not None:
        row.rerun_of = original.id
        row.rerun_report = result
        await db.commit()
    return result
