"""Client requests forwarded by the hub: what runs when, and what each one answers.

``Executor.dispatch`` takes a validated client request (``protocol`` has already resolved
its language and checked its shape). Executions and in-session renders run one at a time
in FIFO order (``worker``); clean-process renders run beside them (``renders.Renderer``);
completions, interrupts, restarts and pings are answered at once. Every request ends with
exactly one ``done`` or ``reply``: failures become ``done``/``reply`` with an error code,
and an unexpected exception of one request is logged with its traceback and reported as
``internal_error`` for that request (the worker carries on with the next).

After each execution the working directory is scanned (``FileSync.scan_and_send``) and
``done`` waits for the hub's acks of those files (``FileSync.settled``, bounded), so a
client that sees ``done`` finds them in the workspace (``files_changed`` comes first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Coroutine
from typing import Any, Literal

from rsparkhub import protocol as P
from rsparkhub.agent.completion import bash_completion_is_safe
from rsparkhub.agent.display import Display, Emit, Execution
from rsparkhub.agent.filesync import FileSync
from rsparkhub.agent.introspect import Introspector
from rsparkhub.agent.kernels import KernelError
from rsparkhub.agent.modes import ModeError, Step, plan
from rsparkhub.agent.pool import KernelPool
from rsparkhub.agent.renders import Renderer
from rsparkhub.agent.workdir import PathOutsideWorkdir

log = logging.getLogger("rsparkhub.agent.execution")

Queued = tuple[str, P.ExecuteRequest | P.RenderRequest]  # (user, request)
DoneStatus = Literal["ok", "error", "aborted", "failed"]


class Executor:
    def __init__(
        self, emit: Emit, kernels: KernelPool, introspector: Introspector, files: FileSync
    ) -> None:
        self.emit = emit
        self.kernels = kernels
        self.introspector = introspector
        self.files = files
        self.workdir = files.workdir
        self.display = Display(emit, introspector)
        self.renderer = Renderer(
            emit=emit,
            fail=self.fail,
            files=files,
            kernels=kernels,
            introspector=introspector,
            set_current=self._set_current,
        )
        self.current: Execution | None = None  # what an interrupt applies to
        self._queue: asyncio.Queue[Queued] = asyncio.Queue()
        self._spark_interrupt: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _set_current(self, ex: Execution) -> None:
        self.current = ex

    @property
    def idle(self) -> bool:
        return self.current is None and self._queue.empty()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_all(self) -> None:
        for task in [*self._tasks, *self.renderer.cancel_all()]:
            task.cancel()

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, user: str, req: P.ClientRequest) -> None:
        if isinstance(req, P.ExecuteRequest):
            if req.lang not in self.kernels.languages:
                self.fail(
                    req.id,
                    "language_unavailable",
                    f"No {req.lang} kernel is installed on this server.",
                )
            else:
                self._queue.put_nowait((user, req))
        elif isinstance(req, P.RenderRequest):
            if req.in_session:
                self._queue.put_nowait((user, req))  # in the R kernel, in turn with executions
            else:
                self._emit_input(user, req)
                self.renderer.start_clean(req)
        elif isinstance(req, P.PingRequest):
            self.emit(P.ReplyEvent(request_id=req.id, content={"pong": True}))
        elif isinstance(req, P.InterruptRequest):
            self.spawn(self._guard(req.id, self._interrupt(req)), f"interrupt-{req.id}")
        elif isinstance(req, P.RestartRequest):
            self.spawn(self._guard(req.id, self._restart(req)), f"restart-{req.id}")
        elif isinstance(req, P.FocusRequest):
            pass  # presence, kept by the hub: never forwarded
        else:
            self.spawn(self._guard(req.id, self._complete(req)), f"complete-{req.id}")

    def _emit_input(self, user: str, req: P.ExecuteRequest | P.RenderRequest) -> None:
        if isinstance(req, P.RenderRequest):
            self.emit(
                P.InputEvent(
                    request_id=req.id, user=user, language=req.lang, mode="render", path=req.path
                )
            )
            return
        code = req.code if req.mode == "console" else None
        self.emit(
            P.InputEvent(
                request_id=req.id,
                user=user,
                language=req.lang,
                mode=req.mode,
                code=code[: P.MAX_INPUT_ECHO] if code is not None else None,
                path=req.path,
                truncated=code is not None and len(code) > P.MAX_INPUT_ECHO,
            )
        )

    def fail(self, request_id: str, code: str, message: str, started: float | None = None) -> None:
        duration = 0.0 if started is None else (time.monotonic() - started) * 1000
        self.emit(
            P.DoneEvent(
                request_id=request_id,
                status="failed",
                duration_ms=duration,
                error_code=code,
                message=message,
            )
        )

    async def _guard(self, request_id: str, coro: Coroutine[Any, Any, None]) -> None:
        """One request's error boundary: its failure becomes its reply."""
        try:
            await coro
        except KernelError as exc:
            self.emit(
                P.ReplyEvent(
                    request_id=request_id, ok=False, error_code=exc.code, message=exc.message
                )
            )
        except Exception as exc:
            log.exception("request %s failed", request_id)
            self.emit(
                P.ReplyEvent(
                    request_id=request_id, ok=False, error_code="internal_error", message=str(exc)
                )
            )

    # ------------------------------------------------------------------ interrupt, restart, complete

    async def _interrupt(self, req: P.InterruptRequest) -> None:
        if req.language is None and self.renderer.running:
            self.renderer.interrupt_all()  # renders in their own process stop too
        cur = self.current
        target: P.Language | None = req.language
        if cur is not None and (target is None or target == cur.language):
            cur.interrupted = True
            target = cur.language
        if cur is not None and os.environ.get("SPARK_REMOTE"):
            # The session's Spark operations run in the Spark server, not in the kernel.
            # The next execution waits for this: cancelling "all operations" of the Spark
            # session late would otherwise cancel the user's next query.
            if self._spark_interrupt is None or self._spark_interrupt.done():
                self._spark_interrupt = asyncio.create_task(
                    _interrupt_spark(), name=f"spark-interrupt-{req.id}"
                )
                self._tasks.add(self._spark_interrupt)
                self._spark_interrupt.add_done_callback(self._tasks.discard)
        kernel = self.kernels.running(target) if target else None
        if kernel is None:
            self.emit(P.ReplyEvent(request_id=req.id, content={"interrupted": False}))
            return
        await kernel.interrupt()
        self.emit(
            P.ReplyEvent(request_id=req.id, content={"interrupted": True, "language": target})
        )

    async def _restart(self, req: P.RestartRequest) -> None:
        cur = self.current
        if cur is not None and cur.language == req.language:
            cur.interrupted = True
        await self.kernels.restart(req.language)
        self.emit(P.ReplyEvent(request_id=req.id, content={"language": req.language}))

    async def _complete(self, req: P.CompleteRequest | P.IsCompleteRequest) -> None:
        if (
            isinstance(req, P.CompleteRequest)
            and req.language == "bash"
            and not bash_completion_is_safe(req.code, req.cursor_pos)
        ):
            # bash_kernel would expand the word ($(…), `…`, …): nothing to offer for it
            pos = min(req.cursor_pos, len(req.code))
            nothing = {"matches": [], "cursor_start": pos, "cursor_end": pos}
            self.emit(P.ReplyEvent(request_id=req.id, content=nothing))
            return
        kernel = await self.kernels.get(req.language)
        if isinstance(req, P.CompleteRequest):
            msg_type = "complete_request"
            content: dict[str, Any] = {"code": req.code, "cursor_pos": req.cursor_pos}
            keys: tuple[str, ...] = ("matches", "cursor_start", "cursor_end")
        else:
            msg_type = "is_complete_request"
            content = {"code": req.code}
            keys = ("status", "indent")
        try:
            reply = await kernel.shell_request(msg_type, content, limit_s=2.0)
        except TimeoutError:
            self.emit(
                P.ReplyEvent(
                    request_id=req.id,
                    ok=False,
                    error_code="busy",
                    message=f"The {req.language} kernel is busy.",
                )
            )
            return
        out = {k: reply[k] for k in keys if k in reply}
        ok = reply.get("status") != "error" or msg_type == "is_complete_request"
        self.emit(P.ReplyEvent(request_id=req.id, ok=ok, content=out))

    # ------------------------------------------------------------------ executions

    async def worker(self) -> None:
        """Run queued executions and in-session renders one at a time, in order."""
        while True:
            user, req = await self._queue.get()
            if self._spark_interrupt is not None:
                with contextlib.suppress(Exception):  # it logged its own outcome
                    await asyncio.shield(self._spark_interrupt)
                self._spark_interrupt = None
            started = time.monotonic()
            self._emit_input(user, req)
            try:
                if isinstance(req, P.RenderRequest):
                    await self.renderer.render(req, started)
                else:
                    await self._execute(req, started)
            except asyncio.CancelledError:
                self.fail(req.id, "shutting_down", "The session is stopping.", started)
                raise
            except Exception as exc:  # this request's boundary: reported, the next one runs
                log.exception("execution %s failed", req.id)
                self.fail(req.id, "internal_error", str(exc), started)
            finally:
                self.current = None

    async def _execute(self, req: P.ExecuteRequest, started: float) -> None:
        lang = req.lang
        abs_path: str | None = None
        if req.path is not None:
            try:
                p = self.workdir.resolve(req.path)
            except PathOutsideWorkdir as exc:
                self.fail(req.id, "invalid_path", str(exc), started)
                return
            if req.mode != "console" and not await asyncio.to_thread(p.is_file):
                self.fail(
                    req.id, "file_not_found", f"No file {req.path!r} in the session.", started
                )
                return
            abs_path = str(p)
        try:
            if req.mode == "console":
                steps = plan(lang, req.mode, req.code, abs_path)  # no I/O
            else:
                steps = await asyncio.to_thread(plan, lang, req.mode, req.code, abs_path)
        except ModeError as exc:
            self.fail(req.id, exc.code, exc.message, started)
            return
        ex = Execution(req.id, lang)
        self.current = ex  # an interrupt from now on applies to this execution
        async with self.introspector.locks[lang]:
            await self._run_steps(req, ex, steps, started)

    async def _run_steps(
        self, req: P.ExecuteRequest, ex: Execution, steps: list[Step], started: float
    ) -> None:
        lang = ex.language
        try:
            kernel = await self.kernels.get(lang)
        except KernelError as exc:
            self.fail(req.id, exc.code, exc.message, started)
            return
        handler = self.display.iopub_handler(ex)
        status: DoneStatus = "ok"
        error_code: str | None = None
        message: str | None = None
        last = max((i for i, step in enumerate(steps) if step.code), default=-1)
        diff = self.introspector.diff_expressions(lang)
        diff_reply: dict[str, Any] | None = None  # the reply that carries the diff
        for i, step in enumerate(steps):
            if ex.interrupted:  # interrupted before it started (e.g. while the kernel started)
                status = "aborted"
                break
            if step.echo:
                self.emit(P.StreamEvent(request_id=req.id, name="stdout", text=step.echo))
            if not step.code:  # echo only (the comments after a bash script's last command)
                continue
            try:
                reply = await kernel.execute(
                    step.code, handler, user_expressions=diff[0] if diff and i == last else None
                )
                if diff and i == last:
                    diff_reply = reply
            except KernelError as exc:
                if exc.code == "kernel_died":
                    await self.kernels.mark_dead(lang)
                status = "aborted" if exc.code == "kernel_restarted" else "error"
                error_code, message = exc.code, exc.message
                break
            self.display.page_payloads(req.id, reply)
            rstatus = reply.get("status")
            if rstatus == "ok":
                status = "ok"
                continue
            if rstatus == "abort" or ex.interrupted or reply.get("ename") == "KeyboardInterrupt":
                status = "aborted"
                break
            status = "error"
            # a failing command in a bash transcript does not stop the script
            if not (lang == "bash" and req.mode == "source" and i + 1 < len(steps)):
                break
        diffed = False
        if diff is not None:
            if diff_reply is not None:
                diffed = await self.introspector.diff_from_reply(lang, req.id, diff_reply, diff[1])
            else:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(diff[1].unlink, missing_ok=True)
        if error_code != "kernel_died" and not diffed:
            await self.introspector.refresh(lang, req.id)
        await self.files.scan_and_send()
        await self.files.settled()
        self.emit(
            P.DoneEvent(
                request_id=req.id,
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                plot_ids=ex.plot_ids,
                error_code=error_code,
                message=message,
            )
        )


async def _interrupt_spark() -> None:
    from rsparkhub.agent.spark import interrupt_spark

    log.info("spark: %s", await interrupt_spark())
