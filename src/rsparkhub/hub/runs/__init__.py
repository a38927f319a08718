"""Run records: what each Run, Source and Render of a workspace file ran with and produced.

Owns the ``runs``, ``run_outputs`` and ``run_environments`` tables (migration 0007) and
nothing else: the session machinery calls it, it never calls back. ``RunRecords`` hears
every event a session's agent sends (``Recorder.agent_events``, before the event enters
the log) and every file the session's code writes (``AgentLink``):

* ``input`` of a ``run``/``source``/``render`` request → a record: who, when, the command,
  the file's version and sha256, a manifest of every workspace file then (path, version,
  sha256 — a JSON blob in the content-addressed store, named by ``inputs_sha256``), the
  session's spawner, profile and image;
* ``environment`` (sent by the agent for each such request, ``runs_protocol``) → the
  snapshot (R/Python versions, every package version, OS) stored once as a blob and a
  ``run_environments`` row, its ``content`` taken out of the event before anyone sees it;
* ``stream``/``result``/``error`` of a running record → its console transcript (hashed;
  kept as a blob up to ``MAX_TRANSCRIPT_BYTES``);
* ``plot``, files written or deleted by code while it runs, ``document`` → its outputs;
* ``done`` → status, error code, duration, transcript.

Files written while two recorded requests run at once (a clean render beside a Run) are
counted as outputs of both: the agent does not say which request wrote a file. Reading
the records is ``queries.py``'s job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from rsparkhub import protocol as P
from rsparkhub.filetypes import language_for_path
from rsparkhub.hub.blobs import BlobStore
from rsparkhub.hub.db.engine import Database
from rsparkhub.hub.db.models import File, Run, RunEnvironment, RunOutput
from rsparkhub.runs_protocol import EnvironmentEvent, canonical, environment_id, summary

if TYPE_CHECKING:  # hub/sessions imports this module
    from rsparkhub.hub.sessions.live import LiveSession

log = logging.getLogger("rsparkhub.runs")

RECORDED_MODES = ("run", "source", "render")
MAX_TRANSCRIPT_BYTES = 16 << 20  # longer transcripts are hashed, not kept
MAX_WAITING = 10_000  # requests asked for and not started yet, remembered for their ``via``


@dataclass
class _Active:
    """A record whose request is still running (in memory: transcript so far)."""

    run_id: str
    session_id: str
    request_id: str
    started: datetime
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = True  # False for a record taken over after a hub restart

    def add(self, text: str) -> None:
        data = text.encode()
        self.digest.update(data)
        self.size += len(data)
        if self.size <= MAX_TRANSCRIPT_BYTES:
            self.parts.append(data)


def transcript_text(ev: P.Event) -> str:
    """The part of an event a console transcript shows."""
    if isinstance(ev, P.StreamEvent):
        return ev.text
    if isinstance(ev, P.ResultEvent):
        text = ev.data.get("text/plain")
        return str(text).rstrip("\n") + "\n" if text else ""
    if isinstance(ev, P.ErrorEvent):
        return ("\n".join(ev.traceback) or f"{ev.ename}: {ev.evalue}") + "\n"
    return ""


def command_of(ev: P.InputEvent, via: str | None, request: dict[str, Any]) -> str:
    """``run fit.R``, ``render report.Rmd --in-session``; what was typed for a run asked for
    by ``rsparkhub run``/``render``."""
    flags = ""
    if ev.mode == "render":
        flags += " --in-session" if request.get("in_session") else ""
        flags += f" -o {request['output']}" if request.get("output") else ""
    if via == "cli":
        if ev.mode == "render":
            return f"rsparkhub render {ev.path}{flags}"
        return f"rsparkhub run {ev.path}" + (" --mode source" if ev.mode == "source" else "")
    return f"{ev.mode} {ev.path}{flags}"


class RunRecords:
    def __init__(self, db: Database, blobs: BlobStore, spawner: str) -> None:
        self.db = db
        self.blobs = blobs
        self.spawner = spawner
        self._active: dict[tuple[str, str], _Active] = {}  # (session id, request id)
        # requests asked for, not started yet: (via, the request without its id, the user)
        self._asked: OrderedDict[tuple[str, str], tuple[str, dict[str, Any], str]] = OrderedDict()

    def requested(
        self, session_id: str, req: P.ExecuteRequest | P.RenderRequest, via: str, user: str
    ) -> None:
        """A client asked for a recorded request (the relay): ``via`` is ide, cli or api."""
        self._asked[(session_id, req.id)] = (via, req.model_dump(exclude={"id"}), user)
        while len(self._asked) > MAX_WAITING:
            self._asked.popitem(last=False)

    # ------------------------------------------------------------------ hub start

    async def startup(self, alive: set[str]) -> None:
        """After a hub restart: records of adopted sessions go on (their transcript so far
        is lost: ``transcript_complete`` false); those of sessions that are gone failed."""
        async with self.db.session() as db:
            rows = (await db.execute(select(Run).where(Run.status == "running"))).scalars().all()
            for run in rows:
                if run.session_id in alive:
                    self._active[(run.session_id, run.request_id)] = _Active(
                        run.id, run.session_id, run.request_id, run.started_at, complete=False
                    )
                else:
                    run.status, run.error_code = "failed", "session_ended"
                    run.message = "The session ended while the hub was down."
                    run.transcript_complete = False
            await db.commit()

    # ------------------------------------------------------------------ events

    async def on_event(self, live: LiveSession, ev: P.Event) -> None:
        """One event of ``live``'s stream, before it enters the log. Never raises: a
        record that cannot be written is logged, the output still flows."""
        try:
            await self._on_event(live, ev)
        except Exception:  # noqa: BLE001
            log.exception("session %s: a run record could not be written", live.id)

    async def _on_event(self, live: LiveSession, ev: P.Event) -> None:
        if isinstance(ev, P.InputEvent):
            if ev.mode in RECORDED_MODES and ev.path:
                await self._start(live, ev)
            return
        rid = getattr(ev, "request_id", None)
        if isinstance(ev, EnvironmentEvent):
            await self._environment(live, ev)
            return
        active = self._active.get((live.id, rid)) if rid else None
        if active is None and isinstance(ev, P.DoneEvent):
            active = await self._never_started(live, ev)
        if active is None:
            return
        text = transcript_text(ev)
        if text:
            active.add(text)
        elif isinstance(ev, P.PlotEvent):
            await self._add(
                RunOutput(
                    run_id=active.run_id,
                    workspace_id=live.workspace_id,
                    kind="plot",
                    plot_id=ev.plot_id,
                    mime=ev.mime,
                    detail={"width": ev.width, "height": ev.height},
                )
            )
        elif isinstance(ev, P.DocumentEvent):
            await self._document(live, active, ev)
        elif isinstance(ev, P.DoneEvent):
            await self._finish(active, ev)

    async def _never_started(self, live: LiveSession, done: P.DoneEvent) -> _Active | None:
        """A recorded request that ended without starting (no kernel for its language, the
        session stopped first): recorded too, from the request, so that it can end."""
        asked = self._asked.get((live.id, done.request_id))
        if asked is None:
            return None
        _via, request, user = asked
        path = str(request.get("path") or "")
        render = request.get("type") == "render"
        language = request.get("language") or language_for_path(path) or "r"
        await self._start(
            live,
            P.InputEvent(
                request_id=done.request_id,
                user=user,
                language=language,
                mode="render" if render else request.get("mode", "run"),
                path=path,
            ),
        )
        return self._active.get((live.id, done.request_id))

    async def _start(self, live: LiveSession, ev: P.InputEvent) -> None:
        via, request, _user = self._asked.pop((live.id, ev.request_id), (None, None, None))
        if request is None:  # asked for before a hub restart: what the input event says
            request = (
                {"type": "render", "path": ev.path}
                if ev.mode == "render"
                else {"type": "execute", "path": ev.path, "mode": ev.mode, "language": ev.language}
            )
        async with self.db.session() as db:
            files = (
                await db.execute(
                    select(File.path, File.version, File.sha256, File.size)
                    .where(File.workspace_id == live.workspace_id)
                    .order_by(File.path)
                )
            ).all()
            manifest = [{"path": p, "version": v, "sha256": s, "size": n} for p, v, s, n in files]
            inputs = await self.blobs.put(canonical({"files": manifest}))
            own = next((f for f in manifest if f["path"] == ev.path), None)
            state = live.spawner_state or {}
            run = Run(
                workspace_id=live.workspace_id,
                session_id=live.id,
                request_id=ev.request_id,
                user=ev.user,
                kind=ev.mode,
                language=ev.language,
                path=ev.path or "",
                command=command_of(ev, via, request),
                via=via,
                request=request,
                file_version=own["version"] if own else None,
                file_sha256=own["sha256"] if own else None,
                inputs_sha256=inputs,
                input_count=len(manifest),
                spawner=self.spawner,
                profile=state.get("profile"),
                image=state.get("image"),
                status="running",
                transcript_bytes=0,
                transcript_complete=True,
            )
            db.add(run)
            await db.commit()
            self._active[(live.id, ev.request_id)] = _Active(
                run.id, live.id, ev.request_id, run.started_at
            )

    async def _environment(self, live: LiveSession, ev: EnvironmentEvent) -> None:
        # Taken out first: whatever happens below, the log and the clients keep only the id.
        content, ev.content = ev.content, None
        env_id = ev.environment_id
        if content is not None:
            data = canonical(content)
            env_id = environment_id(content)  # the hub's own hash is what counts
            ev.environment_id = env_id
            async with self.db.session() as db:
                if await db.get(RunEnvironment, env_id) is None:
                    await self.blobs.put(data)
                    db.add(RunEnvironment(id=env_id, summary=summary(content), size=len(data)))
                    await db.commit()
        async with self.db.session() as db:
            await db.execute(
                update(Run)
                .where(Run.session_id == live.id, Run.request_id == ev.request_id)
                .values(environment_id=env_id)
            )
            await db.commit()

    async def _document(self, live: LiveSession, active: _Active, ev: P.DocumentEvent) -> None:
        async with self.db.session() as db:
            f = (
                await db.execute(
                    select(File).where(
                        File.workspace_id == live.workspace_id, File.path == ev.output
                    )
                )
            ).scalar_one_or_none()
            db.add(
                RunOutput(
                    run_id=active.run_id,
                    workspace_id=live.workspace_id,
                    kind="document",
                    path=ev.output,
                    version=f.version if f else None,
                    sha256=f.sha256 if f else None,
                    size=f.size if f else None,
                    detail={"format": ev.format, "engine": ev.engine, "source": ev.path},
                )
            )
            await db.commit()

    async def _finish(self, active: _Active, ev: P.DoneEvent) -> None:
        self._active.pop((active.session_id, active.request_id), None)
        sha: str | None = None
        if active.complete:
            sha = active.digest.hexdigest()
            if active.size <= MAX_TRANSCRIPT_BYTES:
                await self.blobs.put(b"".join(active.parts))
        async with self.db.session() as db:
            run = await db.get(Run, active.run_id)
            if run is None:  # the workspace was deleted meanwhile
                return
            run.status = ev.status
            run.error_code = ev.error_code
            run.message = ev.message
            run.duration_ms = ev.duration_ms
            run.finished_at = datetime.now(UTC)
            run.transcript_sha256 = sha
            run.transcript_bytes = active.size
            run.transcript_complete = active.complete
            await db.commit()

    async def _add(self, row: RunOutput) -> None:
        async with self.db.session() as db:
            db.add(row)
            await db.commit()

    # ------------------------------------------------------------------ files from code

    async def file_written(
        self, live: LiveSession, path: str, f: File | None, deleted: bool = False
    ) -> None:
        """Code in ``live`` wrote (or deleted) ``path``: an output of what runs there now."""
        runs = [a for (sid, _), a in self._active.items() if sid == live.id]
        if not runs:
            return
        try:
            async with self.db.session() as db:
                for a in runs:
                    db.add(
                        RunOutput(
                            run_id=a.run_id,
                            workspace_id=live.workspace_id,
                            kind="deleted" if deleted else "file",
                            path=path,
                            version=f.version if f is not None else None,
                            sha256=f.sha256 if f is not None else None,
                            size=f.size if f is not None else None,
                            detail={},
                        )
                    )
                await db.commit()
        except Exception:  # noqa: BLE001 - the file is saved; only its record is missing
            log.exception("session %s: the output %s could not be recorded", live.id, path)


def manifest_files(data: bytes) -> list[dict[str, object]]:
    """The files of an inputs manifest blob."""
    files = json.loads(data).get("files", [])
    return list(files) if isinstance(files, list) else []
