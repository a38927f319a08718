"""A run record's bytes, gathered from the blob store: its console transcript, plot images
(in order), the last version of each file it wrote or rendered, its inputs manifest and
its environment snapshot. What a re-run compares (``rerun.py``) and what an export bundle
ships (``export.py``); reading only, never writing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub import reprodiff
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.models import Plot, Run, RunOutput
from rsparkhub.hub.runs import manifest_files


@dataclass
class RecordedOutputs:
    run: Run
    transcript: str | None = None
    plots: list[reprodiff.Plot] = field(default_factory=list)
    files: dict[str, bytes | None] = field(default_factory=dict)  # None: bytes not kept
    file_sha256: dict[str, str | None] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # path, version, sha256, size
    documents: list[dict[str, Any]] = field(default_factory=list)  # path, engine, format
    environment: dict[str, Any] | None = None

    def for_diff(self) -> reprodiff.Outputs:
        return reprodiff.Outputs(
            status=self.run.status,
            transcript=self.transcript,
            plots=self.plots,
            files=self.files,
            inputs={str(f["path"]): str(f["sha256"]) for f in self.inputs},
            environment=self.environment,
        )


async def _blob(blobs: BlobStore, sha: str | None) -> bytes | None:
    if not sha or not blobs.exists(sha):
        return None
    return await blobs.get(sha)


async def recorded_outputs(db: AsyncSession, blobs: BlobStore, run: Run) -> RecordedOutputs:
    out = RecordedOutputs(run)
    if run.transcript_complete:
        data = await _blob(blobs, run.transcript_sha256)
        out.transcript = data.decode("utf-8", "replace") if data is not None else None
    rows = (
        await db.execute(
            select(RunOutput, Plot)
            .outerjoin(Plot, Plot.id == RunOutput.plot_id)
            .where(RunOutput.run_id == run.id)
            .order_by(RunOutput.created_at, RunOutput.id)
        )
    ).all()
    for o, plot in rows:
        if o.kind == "plot":
            data = await _blob(blobs, plot.sha256 if plot else None)
            out.plots.append(reprodiff.Plot(o.mime or "", data or b""))
        elif o.kind in ("file", "document") and o.path:
            out.files[o.path] = await _blob(blobs, o.sha256)
            out.file_sha256[o.path] = o.sha256
            if o.kind == "document":
                out.documents.append({"path": o.path, **(o.detail or {})})
        elif o.kind == "deleted" and o.path:
            out.files.pop(o.path, None)
            out.file_sha256.pop(o.path, None)
    manifest = await _blob(blobs, run.inputs_sha256)
    if manifest is not None:
        out.inputs = [dict(f) for f in manifest_files(manifest) if isinstance(f, dict)]
    env = await _blob(blobs, run.environment_id)
    out.environment = json.loads(env) if env is not None else None
    return out
