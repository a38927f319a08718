"""Document renders of the session (``RenderRequest``).

``Renderer`` renders a document by default in a clean separate process (``documents.render``,
concurrently with the console: ``start_clean``), or, ``in_session``, R Markdown in the R
kernel's global environment (queued with executions by ``execution.Executor``). The log goes
out as stderr (without pandoc's command line, which rmarkdown echoes with ``quiet = FALSE``:
clients show a render's log as ordinary text, and the command is noise there), the result as a workspace file (sent before the ``document`` event, so
``files_changed`` comes first), then ``done``. The document machinery itself lives in
``documents``; this module only runs it for a request and reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent import documents
from rsparkhub.agent.display import Emit, Execution, strip_ansi
from rsparkhub.agent.filesync import FileSync
from rsparkhub.agent.introspect import Introspector
from rsparkhub.agent.kernels import KernelError
from rsparkhub.agent.pool import KernelPool
from rsparkhub.agent.workdir import PathOutsideWorkdir

OnLog = Callable[[str], None]
Fail = Callable[[str, str, str, float], None]

# rmarkdown's echo of the pandoc call: "/usr/bin/pandoc +RTS -K512m -RTS x.knit.md --to …"
_PANDOC_ECHO = re.compile(r'^\s*"?\S*pandoc(\.exe)?"?\s+(\+RTS\b|\S+\.(knit\.)?md\b)')


def is_pandoc_echo(line: str) -> bool:
    """Whether a render log line is rmarkdown's echo of the pandoc command it runs."""
    return _PANDOC_ECHO.match(line) is not None


class Renderer:
    def __init__(
        self,
        *,
        emit: Emit,
        fail: Fail,
        files: FileSync,
        kernels: KernelPool,
        introspector: Introspector,
        set_current: Callable[[Execution], None],
    ) -> None:
        self.emit = emit
        self.fail = fail
        self.files = files
        self.workdir = files.workdir
        self.kernels = kernels
        self.introspector = introspector
        self.set_current = set_current
        self.running: dict[str, asyncio.Task[None]] = {}  # clean-process renders
        self._interrupted: set[str] = set()

    def start_clean(self, req: P.RenderRequest) -> None:
        task = asyncio.create_task(self.render(req, time.monotonic()), name=f"render-{req.id}")
        self.running[req.id] = task
        task.add_done_callback(functools.partial(self._ended, req.id))

    def _ended(self, request_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(request_id, None)

    def interrupt_all(self) -> None:
        """Stop the clean-process renders (an interrupt of "whatever runs")."""
        self._interrupted.update(self.running)
        for task in self.running.values():
            task.cancel()

    def cancel_all(self) -> list[asyncio.Task[None]]:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        return tasks

    async def render(self, req: P.RenderRequest, started: float) -> None:
        def on_log(line: str) -> None:
            if is_pandoc_echo(line):
                return
            self.emit(P.StreamEvent(request_id=req.id, name="stderr", text=line + "\n"))

        try:
            if req.in_session:
                result = await self._render_in_session(req, on_log)
            else:
                result = await self._render_clean(req, on_log)
        except asyncio.CancelledError:
            if req.id not in self._interrupted:
                self.fail(req.id, "shutting_down", "The session is stopping.", started)
                raise
            self._interrupted.discard(req.id)
            self.emit(
                P.DoneEvent(
                    request_id=req.id,
                    status="aborted",
                    duration_ms=_ms_since(started),
                    message="The render was interrupted.",
                )
            )
            return
        except documents.RenderError as exc:
            where = ""
            if exc.chunk or exc.line:
                where = f" (chunk {exc.chunk or '?'}, line {exc.line or '?'} of {req.path})"
            self.emit(
                P.ErrorEvent(
                    request_id=req.id,
                    ename="RenderError",
                    evalue=exc.message + where,
                    traceback=exc.log.splitlines()[-30:],
                )
            )
            await self.files.scan_and_send()
            await self.files.settled()
            self.emit(
                P.DoneEvent(
                    request_id=req.id,
                    status="error",
                    duration_ms=_ms_since(started),
                    error_code=exc.code,
                    message=exc.message + where,
                )
            )
            return
        await self.files.scan_and_send()  # the output reaches the hub (files_changed) first
        await self.files.settled()
        duration = _ms_since(started)
        self.emit(
            P.DocumentEvent(
                request_id=req.id,
                path=req.path,
                output=result.output,
                format=result.format,
                engine=result.engine,
                duration_ms=duration,
            )
        )
        self.emit(P.DoneEvent(request_id=req.id, status="ok", duration_ms=duration))

    async def _render_clean(self, req: P.RenderRequest, on_log: OnLog) -> documents.RenderResult:
        return await documents.render(
            self.workdir.root,
            req.path,
            output=req.output,
            on_log=on_log,
            env=self.kernels.kernel_env(),
        )

    async def _render_in_session(
        self, req: P.RenderRequest, on_log: OnLog
    ) -> documents.RenderResult:
        started = time.monotonic()
        try:
            source = self.workdir.resolve(req.path)
            target = self.workdir.resolve(req.output or str(Path(req.path).with_suffix(".html")))
        except PathOutsideWorkdir as exc:
            raise documents.RenderError("path_outside_workdir", str(exc)) from None
        text = await asyncio.to_thread(source.read_text, encoding="utf-8", errors="replace")
        if documents.choose_engine(source, text) != "rmarkdown":
            raise documents.RenderError(
                "unsupported_file",
                f"Only R Markdown renders in the session's R environment; render "
                f"'{req.path}' without in_session.",
            )
        status_file = self.kernels.runtime_dir / f"render-{uuid.uuid4().hex}.status"
        # KaTeX's files where the R kernel can read them: math typeset offline
        katex = await asyncio.to_thread(documents.katex_arguments, self.kernels.runtime_dir)
        code = documents.r_in_session_code(str(source), str(target), str(status_file), katex)
        ex = Execution(req.id, "r")
        self.set_current(ex)
        log_lines: list[str] = []

        def handle(msg: dict[str, Any]) -> None:
            content = msg.get("content") or {}
            if msg.get("msg_type") == "stream" and content.get("text"):
                text = strip_ansi(str(content["text"]))
                log_lines.append(text)
                for line in text.splitlines():
                    on_log(line)

        async with self.introspector.locks["r"]:
            try:
                kernel = await self.kernels.get("r")
                reply = await kernel.execute(code, handle)
            except KernelError as exc:
                raise documents.RenderError("render_failed", exc.message) from None
            finally:
                await self.introspector.refresh("r", req.id)
        if reply.get("status") != "ok":
            failure = await asyncio.to_thread(
                documents.session_failure, str(source), str(status_file), "".join(log_lines)
            )
            with contextlib.suppress(OSError):
                status_file.unlink()
            if ex.interrupted or reply.get("status") == "abort":
                raise documents.RenderError("render_failed", "The render was interrupted.")
            raise failure or documents.RenderError(
                "render_failed", str(reply.get("evalue") or "The render failed.")
            )
        return documents.RenderResult(
            output=target.relative_to(self.workdir.root).as_posix(),
            format="html",
            engine="rmarkdown",
            log="".join(log_lines),
            duration_s=time.monotonic() - started,
        )


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
