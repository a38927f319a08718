"""What a session produces, made durable: events into the session's event log, plot
images into the blob store and the ``plots`` table, finished executions into the
``executions`` table.

The agent link hands over a batch and returns to its socket at once: the log append is a
buffered write, plot images and database rows are written by background tasks in batches.
``settled()`` is awaited before the agent gets its ack, so nothing acknowledged is lost.
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
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        self._finished: list[Execution] = []
        self._plots: asyncio.Queue[_PlotImage] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._record_loop(), name="execution-records"),
            asyncio.create_task(self._plot_loop(), name="plot-images"),
        ]

    async def close(self) -> None:
        await self.settled()
        for task in self._tasks:
            task.cancel()
        await self.flush()

    # ------------------------------------------------------------------ events

    async def agent_events(self, live: LiveSession, envelopes: list[P.EventEnvelope]) -> None:
        """Append the agent's events that are next in seq order (a resend after a re-dial
        repeats some: they are skipped)."""
        lines: list[tuple[int, str]] = []
        expected = live.log.last_seq + 1
        for env in sorted(envelopes, key=lambda e: e.seq):
            if env.seq < expected or env.session_id != live.id:
                continue  # already durable
            if env.seq > expected:
                log.warning("session %s skipped from seq %d to %d", live.id, expected, env.seq)
                break
            ev = env.event
            if isinstance(ev, P.PlotEvent):
                self._plot(live, ev)
            elif isinstance(ev, P.DoneEvent):
                execution = live.running.pop(ev.request_id, None)
                if execution is not None:
                    execution.status, execution.duration_ms = ev.status, ev.duration_ms
                    self._finished.append(execution)
            lines.append((env.seq, P.dump(env)))
            expected += 1
        if lines:
            live.touch()
            await live.log.append(lines)

    async def hub_event(self, live: LiveSession, event: P.Event) -> None:
        """An event the hub writes on the session's behalf (only once its agent is gone)."""
        seq = live.log.last_seq + 1
        await live.log.append(
            [(seq, P.dump(P.EventEnvelope(session_id=live.id, seq=seq, event=event)))]
        )

    def finished(self, executions: list[Execution]) -> None:
        self._finished.extend(executions)

    async def settled(self) -> None:
        """Every plot image handed over so far is stored."""
        await self._plots.join()

    # ------------------------------------------------------------------ plots

    def _plot(self, live: LiveSession, ev: P.PlotEvent) -> None:
        data = b""
        if ev.content_b64:
            try:
                data = base64.b64decode(ev.content_b64)
            except (binascii.Error, ValueError):
                log.warning("session %s sent an undecodable plot %s", live.id, ev.plot_id)
        ev.content_b64 = None
        ev.url = f"/api/workspaces/{live.workspace_id}/plots/{ev.plot_id}"
        if data:
            self._plots.put_nowait(_PlotImage(live.workspace_id, live.id, ev, data))

    async def _plot_loop(self) -> None:
        while True:
            batch = [await self._plots.get()]
            while not self._plots.empty() and len(batch) < 64:
                batch.append(self._plots.get_nowait())
            try:
                await self._store_plots(batch)
            except Exception:  # noqa: BLE001 - logged loudly; the next batch must not wait
                log.exception("storing %d plot images failed", len(batch))
            finally:
                for _ in batch:
                    self._plots.task_done()

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
