"""The agent of one workspace session: the hub link, request dispatch and lifecycle.

``Agent(config).run()`` connects to the hub's ``/agent/ws`` (``Authorization: Bearer``
with the session token), says ``hello``, applies the ``welcome`` (drops acknowledged
events, resends the rest), then serves ``ForwardedRequest``s until ``stop``/SIGTERM
(exit 0) or until the hub stayed unreachable for ``redial_timeout`` seconds (exit 3).
Kernels keep running and events keep buffering while the link is down.

Executions run one at a time in FIFO order (``_exec_worker``); completions, interrupts,
restarts and pings are answered concurrently. After each execution and every 2 s while idle
the working directory is scanned and files written by code are sent as
``FileFromAgent``/``FileDeletedByAgent`` (not sequenced, no ack).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect, unix_connect

from rsparkhub import protocol as P
from rsparkhub.agent import documents
from rsparkhub.agent.completion import bash_completion_is_safe
from rsparkhub.agent.introspect import (
    HELP_MIME,
    PLOT_MIME,
    CallError,
    Introspector,
    decode_mime_json,
)
from rsparkhub.agent.kernels import Kernel, KernelError, KernelPool
from rsparkhub.agent.modes import ModeError, plan
from rsparkhub.agent.outbox import Outbox
from rsparkhub.agent.workdir import PathOutsideWorkdir, Workdir, sha256_bytes

log = logging.getLogger("rsparkhub.agent")

EXIT_OK = 0
EXIT_HUB_UNREACHABLE = 3

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
OVERSTRIKE_RE = re.compile(r".\x08")
IMAGE_MIMES = ("image/png", "image/svg+xml")
DROP_RESULT_MIMES = ("text/latex", "text/markdown")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def png_size(data: bytes) -> tuple[int | None, int | None]:
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None, None


@dataclass
class AgentConfig:
    hub_url: str
    session_id: str
    workdir: Path
    token: str | None = None
    # A unix socket the hub listens on (bound into the sandbox): the link goes there
    # instead of over TCP (no network hop, no Nagle/delayed-ACK stalls in pasta).
    hub_socket: Path | None = None
    redial_timeout: float = 600.0
    max_file_bytes: int = 50 * 1024 * 1024
    scan_interval: float = 2.0
    max_unacked_bytes: int = 64 * 1024 * 1024
    languages: list[P.Language] | None = None  # None: every installed kernelspec


@dataclass
class _Execution:
    request_id: str
    language: str
    plot_ids: list[str] = field(default_factory=list)
    interrupted: bool = False


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.workdir_path = Path(config.workdir).resolve()
        self.workdir = Workdir(self.workdir_path, config.max_file_bytes)
        self.outbox = Outbox(config.session_id, max_unacked_bytes=config.max_unacked_bytes)
        session_dir = self.workdir_path.parent
        self.kernels = KernelPool(
            self.workdir_path,
            runtime_dir=session_dir / "runtime",
            pid_file=session_dir / "agent-kernels.pid",
            on_status=self._on_kernel_status,
            wait_for_room=self.outbox.wait_for_room,
            languages=config.languages,
            on_started=self._kernel_started,
        )
        self.introspector = Introspector(self.kernels, self.kernels.runtime_dir, self.emit)
        self.settings: dict[str, Any] = {}
        self._image_restored = False
        self.ws: ClientConnection | None = None
        self.welcomed = False  # a welcome was received at least once
        self.welcomed_recently = False  # ... on the connection that just ended
        self._send_lock = asyncio.Lock()
        self._fs_lock = asyncio.Lock()
        self._queue: asyncio.Queue[tuple[str, P.ExecuteRequest | P.RenderRequest]] = asyncio.Queue()
        self._current: _Execution | None = None
        self._spark_interrupt: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._exit_code = EXIT_OK
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renders: dict[str, asyncio.Task[None]] = {}  # clean-process renders running
        self._interrupted_renders: set[str] = set()

    # ================================================================== lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, self._stop.set)
            # SIGINT is for kernels only; a handler (not SIG_IGN) so kernels don't inherit it
            loop.add_signal_handler(signal.SIGINT, lambda: None)
        self.workdir_path.mkdir(parents=True, exist_ok=True)
        os.environ["JUPYTER_RUNTIME_DIR"] = str(self.kernels.runtime_dir)
        self.kernels.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.kernels.write_pid_file()
        async with self._fs_lock:
            await asyncio.to_thread(self.workdir.baseline)
        link = asyncio.create_task(self._link_loop(), name="link")
        worker = asyncio.create_task(self._exec_worker(), name="exec-worker")
        scanner = asyncio.create_task(self._idle_scanner(), name="idle-scanner")
        await self._stop.wait()
        worker.cancel()
        scanner.cancel()
        for t in [*self._tasks, *self._renders.values()]:
            t.cancel()
        if self._exit_code == EXIT_OK and self.settings.get("save_r_image"):
            await self._save_image()
        await self.kernels.shutdown_all()
        if self._exit_code == EXIT_OK:
            await self._say_stopped()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await link
        return self._exit_code

    async def _say_stopped(self) -> None:
        seq = self.outbox.emit(P.SessionEvent(state="stopped"))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self.outbox.acked_seq < seq:
            if self.ws is None:
                break
            await asyncio.sleep(0.02)

    def stop(self, exit_code: int = EXIT_OK) -> None:
        self._exit_code = exit_code
        self._stop.set()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ================================================================== R image

    async def _save_image(self) -> None:
        """Clean stop with ``save_r_image``: the R global environment goes to ``.RData``
        in the workspace (synced to the hub before the agent exits)."""
        if self._current is not None and self._current.language == "r":
            with contextlib.suppress(Exception):
                await self.kernels.running("r").interrupt()  # type: ignore[union-attr]
        try:
            saved = await asyncio.wait_for(
                self.introspector.save_image(self.workdir_path / ".RData"), 60
            )
        except (CallError, TimeoutError) as exc:
            msg = exc.message if isinstance(exc, CallError) else "timed out"
            self.emit(
                P.StreamEvent(name="stderr", text=f"Warning: the R image was not saved: {msg}\n")
            )
            return
        if saved is None:
            return
        bad = saved.get("unsaveable") or []
        if bad:
            self.emit(
                P.StreamEvent(
                    name="stderr",
                    text="Warning: saved the R image (.RData), but these objects hold external "
                    "pointers (connections, handles) and will not work after a restore: "
                    + ", ".join(str(b) for b in bad)
                    + "\n",
                )
            )
        await self._scan_and_send()

    async def _restore_image(self, kernel: Kernel) -> None:
        if self._image_restored or not self.settings.get("save_r_image"):
            return
        self._image_restored = True
        image = self.workdir_path / ".RData"
        if not await asyncio.to_thread(image.is_file):
            return
        try:
            loaded = await self.introspector.load_image(kernel, image)
        except CallError as exc:
            self.emit(
                P.StreamEvent(
                    name="stderr", text=f"Warning: could not restore the R image: {exc.message}\n"
                )
            )
            return
        names = loaded.get("loaded") or []
        self.emit(
            P.StreamEvent(
                request_id=self._current.request_id if self._current else None,
                name="stdout",
                text=f"[Restored {len(names)} object(s) from the saved R image (.RData)]\n",
            )
        )

    async def _kernel_started(self, kernel: Kernel) -> None:
        await self.introspector.kernel_started(kernel, self._restore_image)

    # ================================================================== events

    def emit(self, event: Any) -> int:
        return self.outbox.emit(event)

    def _on_kernel_status(self, language: str, state: str, message: str | None) -> None:
        self.emit(P.StatusEvent(language=language, state=state, message=message))  # type: ignore[arg-type]

    # ================================================================== hub link

    async def _link_loop(self) -> None:
        backoff = 0.2
        down_since = time.monotonic()
        headers = {}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        while not self._stop.is_set():
            try:
                options: dict[str, Any] = {
                    "additional_headers": headers,
                    "max_size": P.MAX_FRAME_BYTES,
                    "compression": None,
                    "open_timeout": 10,
                }
                dial = (
                    unix_connect(self.config.hub_socket, self.config.hub_url, **options)
                    if self.config.hub_socket is not None
                    else connect(self.config.hub_url, proxy=None, **options)
                )
                async with dial as ws:
                    if await self._serve_link(ws):
                        backoff = 0.2
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                log.info("hub link: %s", exc)
            except Exception:
                log.exception("hub link failed")
            self.ws = None
            if self._stop.is_set():
                return
            if self.welcomed_recently:
                down_since = time.monotonic()
                self.welcomed_recently = False
            if time.monotonic() - down_since > self.config.redial_timeout:
                log.error("hub unreachable for %.0f s; exiting", self.config.redial_timeout)
                self.stop(EXIT_HUB_UNREACHABLE)
                return
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    async def _serve_link(self, ws: ClientConnection) -> bool:
        """One connection: hello, welcome, then the receive loop. True if welcomed."""
        hello = P.AgentHello(
            session_id=self.config.session_id,
            pid=os.getpid(),
            languages=list(self.kernels.languages),
            first_unacked_seq=self.outbox.first_unacked_seq,
            resumed=self.welcomed,
        )
        await ws.send(P.dump(hello))
        welcome: P.AgentWelcome | None = None
        while welcome is None:
            raw = await asyncio.wait_for(ws.recv(), timeout=60)
            try:
                msg = P.parse_hub_to_agent(raw)
            except P.MessageError as exc:
                log.warning("ignoring unparseable hub message before welcome: %s", exc.message)
                continue
            if isinstance(msg, P.AgentWelcome):
                welcome = msg
                self.settings = dict(msg.settings)
            else:
                log.warning("ignoring %s before welcome", msg.type)
        self.outbox.rewind(welcome.acked_seq)
        self.welcomed = True
        self.welcomed_recently = True
        self.ws = ws
        sender = asyncio.create_task(self._send_loop(ws), name="send-loop")
        try:
            async for raw in ws:
                await self._on_hub_message(raw)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self.ws = None
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        return True

    async def _send_loop(self, ws: ClientConnection) -> None:
        while True:
            await self.outbox.pending.wait()
            batch = self.outbox.take_batch()
            if not batch:
                continue
            data = P.AgentEvents(events=batch).model_dump_json()
            try:
                async with self._send_lock:
                    await ws.send(data)
            except websockets.exceptions.ConnectionClosed:
                return

    async def _send_direct(self, msg: Any) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            async with self._send_lock:
                await ws.send(P.dump(msg))
            return True
        except websockets.exceptions.ConnectionClosed:
            return False

    async def _on_hub_message(self, raw: str | bytes) -> None:
        try:
            msg = P.parse_hub_to_agent(raw)
        except P.MessageError as exc:
            print(f"rsparkhub-agent: ignoring hub message: {exc.message}", file=sys.stderr)
            return
        try:
            if isinstance(msg, P.AckMessage):
                self.outbox.ack(msg.seq)
            elif isinstance(msg, P.FilePut):
                await self._file_put(msg)
            elif isinstance(msg, P.FileDelete):
                async with self._fs_lock:
                    await asyncio.to_thread(self.workdir.delete, msg.path)
            elif isinstance(msg, P.StopMessage):
                log.info("stop requested: %s", msg.reason)
                self.stop(EXIT_OK)
            elif isinstance(msg, P.ForwardedRequest):
                self._dispatch(msg.user, msg.request)
            elif isinstance(msg, P.CallMessage):
                self._spawn(self._answer_call(msg), f"call-{msg.call_id}")
            elif isinstance(msg, P.SettingsMessage):
                self.settings = dict(msg.settings)
            elif isinstance(msg, P.AgentWelcome):
                log.warning("unexpected second welcome; rewinding")
                self.outbox.rewind(msg.acked_seq)
        except PathOutsideWorkdir as exc:
            log.warning("refused: %s", exc)
        except Exception:
            log.exception("handling hub message %s failed", getattr(msg, "type", "?"))

    async def _file_put(self, msg: P.FilePut) -> None:
        try:
            content = base64.b64decode(msg.content_b64, validate=True)
        except ValueError:
            log.warning("file_put %s: invalid base64", msg.path)
            return
        async with self._fs_lock:
            await asyncio.to_thread(self.workdir.put, msg.path, content, msg.sha256)

    async def _answer_call(self, msg: P.CallMessage) -> None:
        content: bytes | None = None
        try:
            result, content = await self.introspector.call(
                msg.language, msg.method, msg.params, may_run_code=msg.may_run_code
            )
            reply = P.CallResult(call_id=msg.call_id, ok=True, result=result)
        except CallError as exc:
            reply = P.CallResult(
                call_id=msg.call_id, ok=False, error_code=exc.code, message=exc.message
            )
        except Exception as exc:
            log.exception("call %s failed", msg.method)
            reply = P.CallResult(
                call_id=msg.call_id, ok=False, error_code="internal_error", message=str(exc)
            )
        if content is not None:
            reply.content_b64 = base64.b64encode(content).decode()
        await self._send_direct(reply)

    # ================================================================== dispatch

    def _dispatch(self, user: str, req: Any) -> None:
        if isinstance(req, P.ExecuteRequest):
            lang = req.language or (P.language_for_path(req.path) if req.path else None)
            if lang is None:
                self._fail(req.id, "unknown_language", "Say which language to run this in.")
            elif lang not in self.kernels.languages:
                self._fail(
                    req.id,
                    "language_unavailable",
                    f"No {lang} kernel is installed on this server.",
                )
            else:
                self._queue.put_nowait((user, req))
        elif isinstance(req, P.RenderRequest):
            if req.in_session:
                self._queue.put_nowait((user, req))  # in the R kernel, in turn with executions
            else:
                self._emit_input(user, req)
                task = asyncio.create_task(self._render(req, time.monotonic()))
                self._renders[req.id] = task
                task.add_done_callback(functools.partial(self._render_ended, req.id))
        elif isinstance(req, P.PingRequest):
            self.emit(P.ReplyEvent(request_id=req.id, content={"pong": True}))
        elif isinstance(req, P.InterruptRequest):
            self._spawn(self._guard(req.id, self._interrupt(req)), f"interrupt-{req.id}")
        elif isinstance(req, P.RestartRequest):
            self._spawn(self._guard(req.id, self._restart(req)), f"restart-{req.id}")
        elif isinstance(req, P.CompleteRequest | P.IsCompleteRequest):
            self._spawn(self._guard(req.id, self._complete(req)), f"complete-{req.id}")
        else:
            self.emit(
                P.ReplyEvent(
                    request_id=getattr(req, "id", "?"),
                    ok=False,
                    error_code="unsupported",
                    message=f"Unsupported request {getattr(req, 'type', '?')!r}.",
                )
            )

    def _emit_input(self, user: str, req: P.ExecuteRequest | P.RenderRequest) -> None:
        if isinstance(req, P.RenderRequest):
            lang = P.language_for_path(req.path)
            self.emit(
                P.InputEvent(
                    request_id=req.id, user=user, language=lang, mode="render", path=req.path
                )
            )
            return
        code = req.code if req.mode == "console" else None
        truncated = code is not None and len(code) > P.MAX_INPUT_ECHO
        self.emit(
            P.InputEvent(
                request_id=req.id,
                user=user,
                language=req.language or (P.language_for_path(req.path) if req.path else None),
                mode=req.mode,
                code=code[: P.MAX_INPUT_ECHO] if code is not None else None,
                path=req.path,
                truncated=truncated,
            )
        )

    def _fail(self, request_id: str, code: str, message: str, started: float | None = None) -> None:
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

    async def _guard(self, request_id: str, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
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

    async def _interrupt(self, req: P.InterruptRequest) -> None:
        if req.language is None and self._renders:
            # renders in their own process: an interrupt of "whatever runs" stops them
            self._interrupted_renders.update(self._renders)
            for task in self._renders.values():
                task.cancel()
        cur = self._current
        target: str | None = req.language
        if cur is not None and (target is None or target == cur.language):
            cur.interrupted = True
            target = cur.language
        if cur is not None and os.environ.get("SPARK_REMOTE"):
            # the session's Spark operations run in the Spark server, not in the kernel
            # The next execution waits for it: cancelling "all operations" of the Spark
            # session late would otherwise cancel the user's next query.
            if self._spark_interrupt is None or self._spark_interrupt.done():
                self._spark_interrupt = asyncio.create_task(
                    self._interrupt_spark(), name=f"spark-interrupt-{req.id}"
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

    async def _interrupt_spark(self) -> None:
        from rsparkhub.agent.spark import interrupt_spark

        log.info("spark: %s", await interrupt_spark())

    async def _restart(self, req: P.RestartRequest) -> None:
        cur = self._current
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

    # ================================================================== executions

    async def _exec_worker(self) -> None:
        while True:
            user, req = await self._queue.get()
            if self._spark_interrupt is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._spark_interrupt)
                self._spark_interrupt = None
            started = time.monotonic()
            self._emit_input(user, req)
            try:
                if isinstance(req, P.RenderRequest):
                    await self._render(req, started)
                else:
                    await self._execute(req, started)
            except asyncio.CancelledError:
                self._fail(req.id, "shutting_down", "The session is stopping.", started)
                raise
            except Exception as exc:
                log.exception("execution %s failed", req.id)
                self._fail(req.id, "internal_error", str(exc), started)
            finally:
                self._current = None

    async def _execute(self, req: P.ExecuteRequest, started: float) -> None:
        lang = req.language or (P.language_for_path(req.path) if req.path else None)
        assert lang is not None
        abs_path: str | None = None
        if req.path is not None:
            try:
                p = self.workdir.resolve(req.path)
            except PathOutsideWorkdir as exc:
                self._fail(req.id, "invalid_path", str(exc), started)
                return
            if req.mode != "console" and not await asyncio.to_thread(p.is_file):
                self._fail(
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
            self._fail(req.id, exc.code, exc.message, started)
            return
        ex = _Execution(req.id, lang)
        self._current = ex  # an interrupt from now on applies to this execution
        async with self.introspector.locks[lang]:
            await self._run_steps(req, ex, steps, started)

    async def _run_steps(
        self, req: P.ExecuteRequest, ex: _Execution, steps: list[Any], started: float
    ) -> None:
        lang = ex.language
        try:
            kernel = await self.kernels.get(lang)  # type: ignore[arg-type]
        except KernelError as exc:
            self._fail(req.id, exc.code, exc.message, started)
            return
        handler = self._iopub_handler(ex)
        status = "ok"
        error_code: str | None = None
        message: str | None = None
        for i, step in enumerate(steps):
            if ex.interrupted:  # interrupted before it started (e.g. while the kernel started)
                status = "aborted"
                break
            if step.echo:
                self.emit(P.StreamEvent(request_id=req.id, name="stdout", text=step.echo))
            try:
                reply = await kernel.execute(step.code, handler)
            except KernelError as exc:
                if exc.code == "kernel_died":
                    await self.kernels.mark_dead(lang)
                status = "aborted" if exc.code == "kernel_restarted" else "error"
                error_code, message = exc.code, exc.message
                break
            self._page_payloads(req.id, reply)
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
        if error_code != "kernel_died":
            await self.introspector.refresh(lang, req.id)
        await self._scan_and_send()
        self.emit(
            P.DoneEvent(
                request_id=req.id,
                status=status,  # type: ignore[arg-type]
                duration_ms=round((time.monotonic() - started) * 1000, 3),
                plot_ids=ex.plot_ids,
                error_code=error_code,
                message=message,
            )
        )

    # ================================================================== documents

    async def _render(self, req: P.RenderRequest, started: float) -> None:
        """Render a document: by default in a clean separate process (concurrently with the
        console); ``in_session`` R Markdown in the R kernel's global environment (queued
        with executions). The log goes out as stderr, the result as a workspace file."""

        def on_log(line: str) -> None:
            self.emit(P.StreamEvent(request_id=req.id, name="stderr", text=line + "\n"))

        try:
            if req.in_session:
                result = await self._render_in_session(req, on_log)
            else:
                result = await self._render_clean(req, on_log)
        except asyncio.CancelledError:
            if req.id not in self._interrupted_renders:
                self._fail(req.id, "shutting_down", "The session is stopping.", started)
                raise
            self._interrupted_renders.discard(req.id)
            self.emit(
                P.DoneEvent(
                    request_id=req.id,
                    status="aborted",
                    duration_ms=round((time.monotonic() - started) * 1000, 3),
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
            await self._scan_and_send()
            self.emit(
                P.DoneEvent(
                    request_id=req.id,
                    status="error",
                    duration_ms=round((time.monotonic() - started) * 1000, 3),
                    error_code=exc.code,
                    message=exc.message + where,
                )
            )
            return
        await self._scan_and_send()  # the output reaches the hub (files_changed) first
        duration = round((time.monotonic() - started) * 1000, 3)
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

    def _render_ended(self, request_id: str, _task: asyncio.Task[None]) -> None:
        self._renders.pop(request_id, None)

    async def _render_clean(self, req: P.RenderRequest, on_log: Any) -> documents.RenderResult:
        return await documents.render(
            self.workdir_path,
            req.path,
            output=req.output,
            on_log=on_log,
            env=self.kernels.kernel_env(),
        )

    async def _render_in_session(self, req: P.RenderRequest, on_log: Any) -> documents.RenderResult:
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
        code = documents.r_in_session_code(str(source), str(target), str(status_file))
        ex = _Execution(req.id, "r")
        self._current = ex
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
            output=target.relative_to(self.workdir_path).as_posix(),
            format="html",
            engine="rmarkdown",
            log="".join(log_lines),
            duration_s=time.monotonic() - started,
        )

    def _page_payloads(self, request_id: str, reply: dict[str, Any]) -> None:
        for payload in reply.get("payload") or []:
            if not isinstance(payload, dict) or payload.get("source") != "page":
                continue
            data = payload.get("data") or {}
            if self._help_event(request_id, data):
                continue
            out: dict[str, Any] = {}
            if isinstance(data.get("text/plain"), str):
                out["text/plain"] = OVERSTRIKE_RE.sub("", strip_ansi(data["text/plain"]))
            if isinstance(data.get("text/html"), str):
                out["text/html"] = data["text/html"]
            if out:
                self.emit(P.ResultEvent(request_id=request_id, data=out))

    def _iopub_handler(self, ex: _Execution) -> Any:
        rid = ex.request_id

        def handle(msg: dict[str, Any]) -> None:
            mtype = msg.get("msg_type")
            content = msg.get("content") or {}
            if mtype == "stream":
                name = content.get("name")
                text = content.get("text") or ""
                if name in ("stdout", "stderr") and text:
                    self.emit(P.StreamEvent(request_id=rid, name=name, text=text))
            elif mtype in ("execute_result", "display_data"):
                self._display(ex, content)
            elif mtype == "error":
                self.emit(
                    P.ErrorEvent(
                        request_id=rid,
                        ename=str(content.get("ename") or "Error"),
                        evalue=strip_ansi(str(content.get("evalue") or "")),
                        traceback=[
                            line
                            for line in (strip_ansi(str(t)) for t in content.get("traceback") or [])
                            if not _is_helper_frame(line)
                        ],
                    )
                )
            elif mtype == "status":
                state = content.get("execution_state")
                if state in ("busy", "idle"):
                    self.emit(P.StatusEvent(language=ex.language, state=state))  # type: ignore[arg-type]

        return handle

    def _help_event(self, request_id: str, data: dict[str, Any]) -> bool:
        """A help request of user code (``?mean``, ``help(len)``, ``??words``)."""
        info = decode_mime_json(data.get(HELP_MIME)) if HELP_MIME in data else None
        if info is None:
            return False
        language = info.get("language") if info.get("language") in P.LANGUAGES else "r"
        kind = "search" if info.get("kind") == "search" else "topic"
        self.emit(
            P.HelpEvent(
                request_id=request_id,
                language=language,  # type: ignore[arg-type]
                kind=kind,  # type: ignore[arg-type]
                topic=_str_or_none(info.get("topic")),
                package=_str_or_none(info.get("package")),
                query=_str_or_none(info.get("query")),
            )
        )
        return True

    def _display(self, ex: _Execution, content: dict[str, Any]) -> None:
        data = content.get("data") or {}
        metadata = content.get("metadata") or {}
        if self._help_event(ex.request_id, data):
            return
        plot_info = decode_mime_json(data.get(PLOT_MIME)) if PLOT_MIME in data else None
        if plot_info is None and isinstance(metadata.get(PLOT_MIME), dict):
            plot_info = metadata[PLOT_MIME]
        plot_key = str(plot_info["key"]) if plot_info and plot_info.get("key") else None
        data = {k: v for k, v in data.items() if k != PLOT_MIME}
        images = [m for m in IMAGE_MIMES if m in data]
        for mime in images:
            raw = data[mime]
            if mime == "image/png":
                if not isinstance(raw, str):
                    continue
                b64 = raw.replace("\n", "")
                try:
                    width, height = png_size(
                        base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4))
                    )
                except ValueError:
                    width, height = None, None
            else:
                text = "".join(raw) if isinstance(raw, list) else str(raw)
                b64 = base64.b64encode(text.encode()).decode()
                width = height = None
            meta_raw = metadata.get(mime)
            meta = meta_raw if isinstance(meta_raw, dict) else {}
            width = width or _int(meta.get("width"))
            height = height or _int(meta.get("height"))
            plot_id = uuid.uuid4().hex
            ex.plot_ids.append(plot_id)
            if plot_key is not None:
                self.introspector.plot_made(plot_id, ex.language, plot_key)
            self.emit(
                P.PlotEvent(
                    request_id=ex.request_id,
                    plot_id=plot_id,
                    renderable=plot_key is not None,
                    mime=mime,
                    width=width,
                    height=height,
                    content_b64=b64,
                )
            )
        rest = {
            k: v
            for k, v in data.items()
            if not k.startswith("image/") and k not in DROP_RESULT_MIMES
        }
        if images and set(rest) <= {"text/plain"}:
            return  # the text/plain of a figure is just "<Figure ...>" / "plot without title"
        if rest:
            self.emit(P.ResultEvent(request_id=ex.request_id, data=rest))

    # ================================================================== workdir scan

    async def _scan_and_send(self) -> None:
        if self.ws is None:
            return  # not now: the next scan after reconnecting reports it
        async with self._fs_lock:
            try:
                changes, deleted = await asyncio.to_thread(self.workdir.scan)
            except Exception:
                log.exception("workdir scan failed")
                return
            for change in changes:
                if not self.workdir.is_new_content(change):
                    self.workdir.commit_change(change)  # touched, same content
                    continue
                msg = P.FileFromAgent(
                    path=change.path,
                    content_b64=base64.b64encode(change.content).decode(),
                    sha256=change.sha256 or sha256_bytes(change.content),
                )
                if not await self._send_direct(msg):
                    return
                self.workdir.commit_change(change)
            for rel in deleted:
                if not await self._send_direct(P.FileDeletedByAgent(path=rel)):
                    return
                self.workdir.commit_deleted(rel)

    async def _idle_scanner(self) -> None:
        while True:
            await asyncio.sleep(self.config.scan_interval)
            if self._current is None and self._queue.empty():
                try:
                    await self._scan_and_send()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("idle scan failed")


def _is_helper_frame(line: str) -> bool:
    """Traceback entries of the agent's own run/source helper (not the user's code)."""
    return "__import__('_rsparkhub')" in line or line.startswith("File <string>:")


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value not in (None, "") else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
