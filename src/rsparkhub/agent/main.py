"""The agent of one workspace session: its parts, their wiring and its lifecycle.

``Agent(config).run()`` builds the session's parts and runs until ``stop``/SIGTERM (exit 0),
until the hub stayed unreachable for ``redial_timeout`` seconds (exit 3), or until one of
its vital loops failed unexpectedly (logged with the traceback, exit 1). Kernels keep
running and events keep buffering while the link is down.

The parts, one job each:

* ``link.HubLink`` — dialling, hello/welcome, the event send loop, re-dialling;
* ``outbox.Outbox`` — the sequenced, acknowledged event stream;
* ``filesync.FileSync`` — files in both directions: changes written by code go out as
  ``FileFromAgent``/``FileDeletedByAgent`` with an ``fseq`` and stay in flight until the
  hub's ``FileAck`` (a refusal becomes a ``file_refused`` event); after a re-dial the tree
  is brought together with the welcome's manifest;
* ``execution.Executor`` — client requests (executions one at a time in FIFO order,
  renders, completions, interrupts, restarts, pings);
* ``introspect.Introspector`` — calls about the session's state (``CallMessage``);
* ``rimage.RImage`` — the saved R image;
* ``environment.EnvironmentAnnouncer`` — the environment snapshot each run record names;
* ``prestart.Prestart`` — the kernel the hub expects to be used, started ahead.

This module routes the hub's messages to them; it holds no request or file logic itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsparkhub import protocol as P
from rsparkhub.agent import handout
from rsparkhub.agent.environment import EnvironmentAnnouncer, EnvironmentProbe
from rsparkhub.agent.execution import Executor
from rsparkhub.agent.filesync import FileSync
from rsparkhub.agent.introspect import CallError, Introspector
from rsparkhub.agent.kernels import Kernel, KernelError
from rsparkhub.agent.link import HubLink
from rsparkhub.agent.outbox import DEFAULT_MAX_UNACKED_BYTES, Outbox
from rsparkhub.agent.packages import packages
from rsparkhub.agent.pool import KernelPool
from rsparkhub.agent.prestart import Prestart
from rsparkhub.agent.rimage import RImage
from rsparkhub.agent.workdir import PathOutsideWorkdir, Workdir

log = logging.getLogger("rsparkhub.agent")

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1
EXIT_HUB_UNREACHABLE = 3
STOPPED_ACK_WAIT_S = 2.0


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
    max_unacked_bytes: int = DEFAULT_MAX_UNACKED_BYTES
    languages: list[P.Language] | None = None  # None: every installed kernelspec
    prestart: list[P.Language] | None = None  # kernels to start before their first request
    # A pooled agent (agent/handout.py): the fd its hand-out comes through; ``prestart``'s
    # kernels start at once, and nothing dials the hub before the hand-out.
    handout_fd: int | None = None


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.workdir_path = Path(config.workdir).resolve()
        self.outbox = Outbox(config.session_id, max_unacked_bytes=config.max_unacked_bytes)
        self.files = FileSync(Workdir(self.workdir_path, config.max_file_bytes), self.outbox)
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
        self.executor = Executor(self.emit, self.kernels, self.introspector, self.files)
        probe = EnvironmentProbe(self.kernels.languages, self.kernels.kernel_env, self.workdir_path)
        self.environment = EnvironmentAnnouncer(probe, self.outbox.emit)
        ahead = [x for x in config.prestart or [] if x in self.kernels.languages]
        self.prestart = Prestart(ahead, self.kernels.get)
        self.settings: dict[str, Any] = {}
        self.pooled: set[str] = set()  # kernels started before a hand-out, until welcomed
        self.image = RImage(
            emit=self.emit,
            files=self.files,
            kernels=self.kernels,
            introspector=self.introspector,
            settings=lambda: self.settings,
            current=lambda: self.executor.current,
        )
        self.link = HubLink(
            hub_url=config.hub_url,
            session_id=config.session_id,
            outbox=self.outbox,
            languages=list(self.kernels.languages),
            on_welcome=self._welcomed,
            on_message=self._on_hub_message,
            on_down=self.files.disconnected,
            token=config.token,
            hub_socket=config.hub_socket,
            redial_timeout=config.redial_timeout,
        )
        self._stop = asyncio.Event()
        self._exit_code = EXIT_OK
        self._calls: set[asyncio.Task[None]] = set()

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
        await self.files.baseline()
        if self.config.handout_fd is not None and not await self._handed_out():
            await self.kernels.shutdown_all()
            return self._exit_code
        self.environment.warm()
        link = self._vital(self._link(), "link")
        worker = self._vital(self.executor.worker(), "exec-worker")
        scanner = self._vital(self._idle_scanner(), "idle-scanner")
        await self._stop.wait()
        worker.cancel()
        scanner.cancel()
        self.executor.cancel_all()
        self.environment.cancel_all()
        self.prestart.cancel()
        for task in self._calls:
            task.cancel()
        if self._exit_code == EXIT_OK and self.image.enabled:
            await self.image.save()
        await self.kernels.shutdown_all()
        if self._exit_code == EXIT_OK:
            await self._say_stopped()
        await self.link.close()
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link
        return self._exit_code

    def stop(self, exit_code: int = EXIT_OK) -> None:
        if not self._stop.is_set():
            self._exit_code = exit_code
        self._stop.set()

    def _vital(self, coro: Any, name: str) -> asyncio.Task[None]:
        """A loop the agent cannot work without: if it fails, the agent exits non-zero."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._vital_ended)
        return task

    def _vital_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("%s failed; exiting", task.get_name(), exc_info=exc)
            self.stop(EXIT_INTERNAL_ERROR)

    async def _handed_out(self) -> bool:
        """A pooled agent: start the pool's kernels, wait for the hand-out, take on the
        workspace's environment (kernels included). False: the hub dropped the entry, or
        the agent was stopped, before it was handed out."""
        fd = self.config.handout_fd
        assert fd is not None
        for language in self.prestart.languages:
            with contextlib.suppress(KernelError):
                await self.kernels.get(language)
        try:
            got = await handout.read(fd, self._stop)
        except handout.HandoutError as exc:
            log.error("bad hand-out: %s", exc)
            self._exit_code = EXIT_INTERNAL_ERROR
            return False
        if got is None:
            return False
        before = self.kernels.kernel_env()
        os.environ.update(got.env)
        changed, removed = handout.changes(before, self.kernels.kernel_env())
        anew: list[P.Language] = []
        for kernel in list(self.kernels.kernels.values()):
            code = handout.reset_code(kernel.language, changed, removed)
            reply = await kernel.execute(code, None, silent=True, store_history=False)
            if reply.get("status") != "ok":  # then it starts anew for the workspace
                log.info("the pooled %s kernel starts anew: %s", kernel.language,
                         reply.get("evalue"))  # fmt: skip
                await self.kernels.discard(kernel.language)
                anew.append(kernel.language)
        self.pooled = set(self.kernels.kernels)
        wanted = [x for x in got.prestart if x in self.kernels.languages]
        self.prestart.languages = [*wanted, *(x for x in anew if x not in wanted)]
        self.link.token = got.token
        return True

    async def _link(self) -> None:
        if not await self.link.run(self._stop):
            self.stop(EXIT_HUB_UNREACHABLE)

    async def _say_stopped(self) -> None:
        seq = self.outbox.emit(P.SessionEvent(state="stopped"))
        deadline = time.monotonic() + STOPPED_ACK_WAIT_S
        while time.monotonic() < deadline and self.outbox.acked_seq < seq:
            if not self.link.connected:
                break
            await asyncio.sleep(0.02)

    async def _idle_scanner(self) -> None:
        while True:
            await asyncio.sleep(self.config.scan_interval)
            if self.executor.idle:
                await self.files.scan_and_send()

    # ================================================================== events

    def emit(self, event: Any) -> int:
        seq = self.outbox.emit(event)
        self.environment.seen(event)  # a recorded run names its environment next
        return seq

    def _on_kernel_status(self, language: str, state: str, message: str | None) -> None:
        self.emit(P.StatusEvent(language=language, state=state, message=message))  # type: ignore[arg-type]

    async def _kernel_started(self, kernel: Kernel) -> None:
        await self.introspector.kernel_started(kernel, self.image.restore)

    # ================================================================== the hub's messages

    async def _welcomed(self, welcome: P.AgentWelcome, resumed: bool) -> None:
        self.settings = dict(welcome.settings)
        for language in sorted(self.pooled):  # first welcome of a pooled agent
            if handout.restart_for(language, welcome.manifest):
                await self.kernels.discard(language)
                if language not in self.prestart.languages:
                    self.prestart.languages.append(language)  # type: ignore[arg-type]
        self.pooled = set()
        self.prestart.welcomed(welcome.manifest, resumed)
        # a fresh start: the hub puts every file; a re-dial: resync from the manifest
        await self.files.connected(self.link.send, welcome.manifest if resumed else None)

    async def _on_hub_message(self, msg: P.HubToAgent) -> None:
        try:
            if isinstance(msg, P.AckMessage):
                self.outbox.ack(msg.seq)
            elif isinstance(msg, P.FileAck):
                await self.files.acked(msg)
            elif isinstance(msg, P.FilePut):
                try:
                    await self.files.put(msg)
                finally:
                    self.prestart.file_put(msg.path)
            elif isinstance(msg, P.FileDelete):
                await self.files.delete(msg)
            elif isinstance(msg, P.StopMessage):
                log.info("stop requested: %s", msg.reason)
                self.stop(EXIT_OK)
            elif isinstance(msg, P.ForwardedRequest):
                self.executor.dispatch(msg.user, msg.request)
            elif isinstance(msg, P.CallMessage):
                task = asyncio.create_task(self._answer_call(msg), name=f"call-{msg.call_id}")
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            elif isinstance(msg, P.SettingsMessage):
                self.settings = dict(msg.settings)
        except PathOutsideWorkdir as exc:
            log.warning("refused: %s", exc)

    async def _packages(self, may_run_code: bool) -> dict[str, Any]:
        """The Packages pane's list, from the environment snapshot run records use. Taking
        a new snapshot starts R and Python (R reads the workspace's ``.Rprofile``), so a
        viewer gets the last one taken (at session start, or for a run) instead."""
        probe = self.environment.probe
        snapshot = probe.cached()
        if may_run_code or snapshot is None:
            if not may_run_code and snapshot is None:
                raise CallError(
                    "not_ready",
                    "The session has not listed its packages yet; try again in a moment.",
                )
            _id, snapshot = await probe.current()
        return await asyncio.to_thread(packages, snapshot, dict(os.environ))  # reads dirs

    async def _answer_call(self, msg: P.CallMessage) -> None:
        content: bytes | None = None
        try:
            if msg.method == "packages":
                result = await self._packages(msg.may_run_code)
            else:
                result, content = await self.introspector.call(
                    msg.language, msg.method, msg.params, may_run_code=msg.may_run_code
                )
            reply = P.CallResult(call_id=msg.call_id, ok=True, result=result)
        except CallError as exc:
            reply = P.CallResult(
                call_id=msg.call_id, ok=False, error_code=exc.code, message=exc.message
            )
        except Exception as exc:  # this call's boundary: its failure becomes its answer
            log.exception("call %s failed", msg.method)
            reply = P.CallResult(
                call_id=msg.call_id, ok=False, error_code="internal_error", message=str(exc)
            )
        if content is not None:
            reply.content_b64 = base64.b64encode(content).decode()
        await self.link.send(reply)
