"""What a session produces, made durable: events into the session's event log, plot
images into the blob store and the ``plots`` table, finished executions into the
``executions`` table; every event is shown to the run records (``hub/runs``) first.

The log append is a buffered write (the agent's ack waits for its fsync). A batch that
carries plots stores their images and rows *before* its events reach the log: clients read
only from the log, so a plot event a client sees always names a plot it can fetch.
Finished executions are written by a background task in batches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass

from rsparkhub import protocol as P
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import Execution, Plot
from rsparkhub.hub.runs import RunRecords
from rsparkhub.hub.sessions.live import LiveSession

log = logging.getLogger("rsparkhub.sessions")

RECORD_INTERVAL_S = 1.0


@dataclass(frozen=True)
class _PlotImage:
    workspace_id: str
    session_id: str
    event: P.PlotEvent  # without its image (url filled in)
    data: bytes


class Recorder:
    def __init__(self, db: Database, blobs: BlobStore, runs: RunRecords) -> None:
        self.db = db
        self.blobs = blobs
        self.runs = runs
        self._finished: list[Execution] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._record_loop(), name="execution-records")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.flush()

    # ------------------------------------------------------------------ events

    async def agent_events(self, live: LiveSession, envelopes: list[P.EventEnvelope]) -> None:
        """Append the agent's events that are next in seq order (a resend after a re-dial
        repeats some: they are skipped)."""
        lines: list[tuple[int, str]] = []
        plots: list[_PlotImage] = []
        expected = live.log.last_seq + 1
        for env in sorted(envelopes, key=lambda e: e.seq):
            if env.seq < expected or env.session_id != live.id:
                continue  # already durable
            if env.seq > expected:
                log.warning("session %s skipped from seq %d to %d", live.id, expected, env.seq)
                break
            ev = env.event
            await self.runs.on_event(live, ev)  # may take content out (an environment)
            if isinstance(ev, P.PlotEvent):
                image = self._plot(live, ev)
                if image is not None:
                    plots.append(image)
            elif isinstance(ev, P.DoneEvent):
                execution = live.running.pop(ev.request_id, None)
                if execution is not None:
                    execution.status, execution.duration_ms = ev.status, ev.duration_ms
                    self._finished.append(execution)
            lines.append((env.seq, P.dump(env)))
            expected += 1
        if plots:
            try:
                await self._store_plots(plots)
            except Exception:  # noqa: BLE001 - logged loudly; the output must still flow
                log.exception("storing %d plot images failed", len(plots))
        if lines:
            live.touch()
            await live.log.append(lines)

    async def hub_event(self, live: LiveSession, event: P.Event) -> None:
        """An event the hub writes on the session's behalf (only once its agent is gone)."""
        await self.runs.on_event(live, event)
        seq = live.log.last_seq + 1
        await live.log.append(
            [(seq, P.dump(P.EventEnvelope(session_id=live.id, seq=seq, event=event)))]
        )

    def finished(self, executions: list[Execution]) -> None:
        self._finished.extend(executions)

    # ------------------------------------------------------------------ plots

    def _plot(self, live: LiveSession, ev: P.PlotEvent) -> _PlotImage | None:
        """The event's image taken out (the log keeps only its url)."""
        data = b""
        if ev.content_b64:
            try:
                data = base64.b64decode(ev.content_b64)
            except (binascii.Error, ValueError):
                log.warning("session %s sent an undecodable plot %s", live.id, ev.plot_id)
        ev.content_b64 = None
        ev.url = f"/api/workspaces/{live.workspace_id}/plots/{ev.plot_id}"
        return _PlotImage(live.workspace_id, live.id, ev, data) if data else None

    async def _store_plots(self, batch: list[_PlotImage]) -> None:
        rows: list[Plot] = []
        for p in batch:
            sha = await self.blobs.put(p.data)
            ev = p.event
            rows.append(
                Plot(
                    id=ev.plot_id,
                    workspace_id=p.workspace_id,
                    session_id=p.session_id,
                    request_id=ev.request_id,
                    mime=ev.mime,
                    sha256=sha,
                    size=len(p.data),
                    width=ev.width,
                    height=ev.height,
                )
            )
        async with self.db.session() as db:
            for row in rows:
                if await db.get(Plot, row.id) is None:  # a resend after a re-dial
                    db.add(row)
            await db.commit()

    # ------------------------------------------------------------------ executions

    async def _record_loop(self) -> None:
        while True:
            await asyncio.sleep(RECORD_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        rows, self._finished = self._finished, []
        if rows:
            async with self.db.session() as db:
                db.add_all(rows)
                await db.commit()
