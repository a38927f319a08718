"""One running Jupyter kernel and its channels.

``Kernel`` wraps one kernel process (launched through ``launch``) and its client: a reader
task per channel routes iopub messages and shell replies by their parent ``msg_id``, so an
execution and a completion request can be in flight at the same time. Which kernels run is
``pool.KernelPool``'s job.

iopub is ZMQ PUB/SUB, which *drops* messages for a subscriber whose queue is full instead
of blocking the kernel, so nothing here may rely on the kernel waiting for us. ``launch``
takes the send and receive limits off both ends; in addition:

- the iopub reader drains every ready message in one go, checks the signature and parses
  only what it needs (content only for messages of a pending request), and merges
  consecutive stream messages of one request into a single handler call.
- an execution ends when its shell reply *and* its iopub ``status: idle`` are in. Should the
  idle never come (a kernel that dropped it), the execution ends anyway once the reply is
  in and iopub has been quiet for ``IDLE_GRACE_S``, with a warning. Messages of a request
  that has ended are discarded, never attributed to the next request.

The iopub reader waits for room in the outbox before reading further output. For Python
and bash kernels that pauses the kernel itself: their iopub socket waits instead of dropping
once ``launch.IOPUB_HWM`` messages are in flight, and ``print`` waits on it (``launch.py``),
so the session's memory stays bounded however much is printed. An R kernel's output queues
in the agent's ZMQ socket meanwhile (IRkernel's socket would drop it otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import DELIM

from rsparkhub.agent.launch import KERNEL_NAMES, NoDropKernelManager
from rsparkhub.agent.modes import KERNEL_INIT
from rsparkhub.protocol import Language

log = logging.getLogger("rsparkhub.agent.kernels")

START_TIMEOUT = 90.0
# after the shell reply: how long iopub may stay quiet before a missing idle is given up on
IDLE_GRACE_S = 2.0
# consecutive failed reads of a kernel channel before it counts as dead, and the pause between
MAX_READ_FAILURES = 20
READ_RETRY_S = 0.05
# one drain of the iopub socket reads at most this many messages / frame bytes
DRAIN_MAX_MSGS = 2000
DRAIN_MAX_BYTES = 4 * 1024 * 1024

IopubHandler = Callable[[dict[str, Any]], None]


class KernelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Pending:
    handler: IopubHandler | None
    reply: asyncio.Future[dict[str, Any]]
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    reply_at: float = 0.0  # loop time the shell reply arrived


class Kernel:
    """One running kernel and its channels."""

    def __init__(
        self,
        language: Language,
        *,
        cwd: Path,
        env: dict[str, str],
        wait_for_room: Callable[[], Awaitable[None]],
        runtime_dir: Path,
        use_ipc: bool = True,
    ) -> None:
        self.language = language
        self.runtime_dir = runtime_dir
        self.use_ipc = use_ipc
        self.kernel_name = KERNEL_NAMES[language]
        self.cwd = cwd
        self.env = env
        self.wait_for_room = wait_for_room
        self.km: AsyncKernelManager | None = None
        self.kc: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, _Pending] = {}
        self._iopub_last = 0.0  # loop time of the last iopub read
        self._iopub_held = False  # the iopub reader waits for room in the outbox
        self._late = 0  # iopub messages of requests that had already ended
        self._read_failures = 0  # consecutive failed channel reads
        self.broken: str | None = None  # why a channel reader gave up (the kernel is unusable)

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        prov = getattr(self.km, "provisioner", None)
        pid = getattr(prov, "pid", None)
        if pid is None:
            proc = getattr(prov, "process", None)
            pid = getattr(proc, "pid", None)
        return pid if isinstance(pid, int) else None

    async def start(self) -> None:
        # IPC sockets in the private runtime dir (no TCP ports other local users could
        # reach); TCP on 127.0.0.1 when the path would be too long for a Unix socket.
        ipc_base = str(self.runtime_dir / f"k-{self.language}")
        if self.use_ipc and len(ipc_base) < 96:
            self.km = NoDropKernelManager(
                kernel_name=self.kernel_name, transport="ipc", ip=ipc_base
            )
        else:
            self.km = NoDropKernelManager(kernel_name=self.kernel_name)
        await self.km.start_kernel(cwd=str(self.cwd), env=self.env)
        await self._connect()

    async def _connect(self) -> None:
        assert self.km is not None
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=START_TIMEOUT)
        except RuntimeError as exc:
            raise KernelError(
                "kernel_start_failed", f"The {self.language} kernel did not start: {exc}"
            ) from None
        self.broken = None
        self._read_failures = 0
        self._tasks = [
            asyncio.create_task(self._iopub_loop(), name=f"iopub-{self.language}"),
            asyncio.create_task(self._shell_loop(), name=f"shell-{self.language}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._reader_ended)
        init = KERNEL_INIT.get(self.language) or ""
        if init.strip():
            reply = await self.execute(init, None, silent=True, store_history=False)
            if reply.get("status") != "ok":
                log.warning("kernel init code failed for %s: %s", self.language, reply)

    async def _disconnect(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self._fail_pending(KernelError("kernel_restarted", "The kernel was restarted."))
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
            self.kc = None

    def _fail_pending(self, exc: Exception) -> None:
        for p in self._pending.values():
            if not p.reply.done():
                p.reply.set_exception(exc)
            p.idle.set()
        self._pending.clear()

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        """A channel reader ended by an unexpected error: without it no request of this
        kernel can finish, so the kernel is given up loudly (as for a dead socket)."""
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("%s kernel: %s ended", self.language, task.get_name(), exc_info=exc)
        self.broken = f"{task.get_name()} failed: {exc}"
        self._fail_pending(
            KernelError("kernel_died", f"The {self.language} kernel's channel reader failed.")
        )

    def _read_failed(self, channel: str, exc: Exception) -> bool:
        """A failed read of a channel: retried a few times (a transient error), then — a
        dead socket would fail forever — the channel is given up loudly: the kernel counts
        as dead (the pool starts a new one on next use) and waiting requests fail. True
        when the reader must end."""
        self._read_failures += 1
        fatal = isinstance(exc, zmq.ZMQError) and exc.errno in (zmq.ENOTSOCK, zmq.ETERM)
        if not fatal and self._read_failures < MAX_READ_FAILURES:
            log.warning("%s kernel: %s read failed: %s", self.language, channel, exc)
            return False
        log.error(
            "%s kernel: the %s channel failed %d time(s) in a row; giving the kernel up",
            self.language,
            channel,
            self._read_failures,
            exc_info=exc,
        )
        self.broken = f"its {channel} channel failed: {exc}"
        self._fail_pending(
            KernelError("kernel_died", f"The {self.language} kernel's {channel} channel failed.")
        )
        return True

    async def is_alive(self) -> bool:
        if self.km is None:
            return False
        if self.broken is not None:
            return False
        try:
            return bool(await self.km.is_alive())
        except Exception:
            return False

    async def interrupt(self) -> None:
        if self.km is not None:
            await self.km.interrupt_kernel()

    async def restart(self) -> None:
        assert self.km is not None
        await self._disconnect()
        await self.km.restart_kernel(now=False)
        await self._connect()

    async def shutdown(self) -> None:
        await self._disconnect()
        if self.km is None:
            return
        try:
            await asyncio.wait_for(self.km.shutdown_kernel(now=False), timeout=8)
        except Exception:
            with contextlib.suppress(Exception):
                await self.km.shutdown_kernel(now=True)
        self.km = None

    # ------------------------------------------------------------------ channels

    async def _iopub_loop(self) -> None:
        sock = self.kc.iopub_channel.socket  # zmq.asyncio.Socket
        drain: zmq.Socket[bytes] = zmq.Socket.shadow(
            sock.underlying
        )  # the same socket, for non-blocking reads
        loop = asyncio.get_running_loop()
        while True:
            self._iopub_held = True
            await self.wait_for_room()
            self._iopub_held = False
            try:
                frames = await sock.recv_multipart()
            except zmq.ZMQError as exc:
                if self._read_failed("iopub", exc):
                    return
                await asyncio.sleep(READ_RETRY_S)
                continue
            self._read_failures = 0
            batch = [frames]
            size = sum(len(f) for f in frames)
            while len(batch) < DRAIN_MAX_MSGS and size < DRAIN_MAX_BYTES:
                try:
                    frames = drain.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError as exc:
                    log.warning("iopub read failed: %s", exc)
                    break
                batch.append(frames)
                size += sum(len(f) for f in frames)
            self._iopub_last = loop.time()
            try:
                self._route_iopub(batch)
            except Exception:  # a malformed message must not end the loop
                log.exception("iopub routing failed")
            await asyncio.sleep(0)  # a full socket must not starve the other tasks

    def _parse_iopub(self, frames: list[bytes]) -> tuple[_Pending, str, bytes] | None:
        """(pending request, msg_type, packed content) of a signed message of a pending
        request; None for anything else (counted in ``_late`` if its request ended)."""
        session = self.kc.session
        try:
            i = frames.index(DELIM)
            signature, header, parent, metadata, content = frames[i + 1 : i + 6]
        except ValueError:
            log.warning("iopub: malformed message dropped")
            return None
        if session.auth is not None and not hmac.compare_digest(
            signature, session.sign([header, parent, metadata, content])
        ):
            log.warning("iopub: message with an invalid signature dropped")
            return None
        parent_id = json.loads(parent).get("msg_id") if len(parent) > 2 else None
        pending = self._pending.get(parent_id) if parent_id else None
        if pending is None:
            if parent_id:
                self._late += 1
            return None
        return pending, str(json.loads(header).get("msg_type")), content

    def _route_iopub(self, batch: list[list[bytes]]) -> None:
        """Hand a drained batch to the handlers, merging consecutive stream messages."""
        unpack = self.kc.session.unpack
        texts: list[str] = []
        run: tuple[_Pending, str] | None = None  # the request and stream name of ``texts``

        def flush() -> None:
            if run is not None and texts and run[0].handler is not None:
                content = {"name": run[1], "text": "".join(texts)}
                self._call(run[0], {"msg_type": "stream", "content": content})
            texts.clear()

        for frames in batch:
            parsed = self._parse_iopub(frames)
            if parsed is None:
                continue
            pending, msg_type, packed = parsed
            content = unpack(packed)
            if msg_type == "stream" and isinstance(content.get("text"), str):
                name = str(content.get("name"))
                if run is None or run[0] is not pending or run[1] != name:
                    flush()
                    run = (pending, name)
                texts.append(content["text"])
                continue
            flush()
            run = None
            self._call(pending, {"msg_type": msg_type, "content": content})
            if msg_type == "status" and content.get("execution_state") == "idle":
                pending.idle.set()
        flush()

    @staticmethod
    def _call(pending: _Pending, msg: dict[str, Any]) -> None:
        if pending.handler is not None:
            try:
                pending.handler(msg)
            except Exception:
                log.exception("iopub handler failed")

    async def _shell_loop(self) -> None:
        while True:
            try:
                msg = await self.kc.get_shell_msg()
            except (
                zmq.ZMQError,
                ValueError,
            ) as exc:  # ValueError: a message that fails its signature
                if self._read_failed("shell", exc):
                    return
                await asyncio.sleep(READ_RETRY_S)
                continue
            self._read_failures = 0
            parent = (msg.get("parent_header") or {}).get("msg_id")
            pending = self._pending.get(parent) if parent else None
            if pending is not None and not pending.reply.done():
                pending.reply_at = asyncio.get_running_loop().time()
                pending.reply.set_result(msg.get("content") or {})

    async def _await_pending(
        self, msg_id: str, pending: _Pending, *, wait_idle: bool, limit_s: float | None
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = None if limit_s is None else loop.time() + limit_s
        try:
            while True:
                waiters: list[Any] = [pending.reply]
                if wait_idle:
                    waiters.append(asyncio.ensure_future(pending.idle.wait()))
                step = 0.25 if pending.reply.done() else 1.0
                if deadline is not None:
                    step = min(step, max(0.0, deadline - loop.time()))
                try:
                    await asyncio.wait(waiters, timeout=step, return_when=asyncio.ALL_COMPLETED)
                finally:
                    for w in waiters[1:]:
                        w.cancel()
                if pending.reply.done() and (not wait_idle or pending.idle.is_set()):
                    return pending.reply.result()
                if pending.reply.done() and self._idle_lost(pending, loop.time()):
                    log.warning(
                        "%s kernel: no iopub idle for request %s %.1f s after its reply; "
                        "ending it without",
                        self.language,
                        msg_id,
                        IDLE_GRACE_S,
                    )
                    self._call(
                        pending, {"msg_type": "status", "content": {"execution_state": "idle"}}
                    )
                    return pending.reply.result()
                if deadline is not None and loop.time() >= deadline:
                    raise TimeoutError
                if not await self.is_alive():
                    raise KernelError("kernel_died", died_message(self.language))
        finally:
            self._pending.pop(msg_id, None)

    def _idle_lost(self, pending: _Pending, now: float) -> bool:
        """The reply is in, and iopub has been quiet (while being read) for the grace time."""
        if self._iopub_held:
            return False  # output may be waiting behind the outbox's backpressure
        return now - max(pending.reply_at, self._iopub_last) >= IDLE_GRACE_S

    def _check_usable(self) -> None:
        if self.kc is None:
            raise KernelError("kernel_not_running", f"The {self.language} kernel is not running.")
        if self.broken is not None:
            raise KernelError(
                "kernel_died", f"The {self.language} kernel is unusable: {self.broken}"
            )

    async def execute(
        self,
        code: str,
        handler: IopubHandler | None,
        *,
        silent: bool = False,
        store_history: bool = True,
        user_expressions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run code; ``handler`` gets this execution's iopub messages. Returns the reply.
        ``user_expressions`` are evaluated by the kernel after the code, in the same
        request, when it succeeded (their results are in the reply)."""
        self._check_usable()
        msg = self.kc.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": silent,
                "store_history": store_history,
                "user_expressions": user_expressions or {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        msg_id = msg["header"]["msg_id"]
        pending = _Pending(handler, asyncio.get_running_loop().create_future())
        self._pending[msg_id] = pending
        self.kc.shell_channel.send(msg)
        return await self._await_pending(msg_id, pending, wait_idle=True, limit_s=None)

    async def shell_request(
        self, msg_type: str, content: dict[str, Any], limit_s: float
    ) -> dict[str, Any]:
        """A shell request answered concurrently with executions (raises TimeoutError)."""
        self._check_usable()
        msg = self.kc.session.msg(msg_type, content)
        msg_id = msg["header"]["msg_id"]
        pending = _Pending(None, asyncio.get_running_loop().create_future())
        self._pending[msg_id] = pending
        self.kc.shell_channel.send(msg)
        return await self._await_pending(msg_id, pending, wait_idle=False, limit_s=limit_s)


# The sandbox binds the session's own memory cgroup here, read-only (hub/sandbox/launcher.py).
OOM_DIR = Path("/run/rsparkhub/cgroup")
_oom_seen: list[int] = []


def _oom_kills() -> int | None:
    for name in ("memory.events", "memory.oom_control"):  # cgroup v2, v1
        try:
            text = (OOM_DIR / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def died_message(language: str) -> str:
    """Why a kernel died, as the console says it: an out-of-memory kill of this session's
    cgroup is named as such (the kernel counts them), anything else is just "died"."""
    count = _oom_kills()
    if count is not None:
        before = _oom_seen[0] if _oom_seen else 0
        _oom_seen[:] = [count]
        if count > before:
            limit = os.environ.get("RSPARKHUB_MEMORY_LIMIT_MB")
            cap = f" ({limit} MiB)" if limit else ""
            return (
                f"The {language} kernel was killed: the session ran out of memory{cap}. "
                "Free memory (remove large objects) or ask for a larger session."
            )
    return f"The {language} kernel died."
