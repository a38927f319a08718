"""How a session's kernel processes are launched and connected, and which are installed.

iopub is ZMQ PUB/SUB, which *drops* messages for a subscriber whose queue is full (the
high-water mark, 1000 messages by default on each side) instead of blocking the kernel.
Output must be neither lost nor held in memory without bound, so for ipykernel-based kernels
(Python, bash) the kernel's output is flow-controlled like a pipe (see ``ipykernel_cmd``):

* the kernel's iopub socket never drops (``XPUB_NODROP``) and holds at most ``IOPUB_HWM``
  messages for the agent; past that its send *waits* until the agent reads again;
* ``sys.stdout``/``sys.stderr`` (ipykernel's ``OutStream``) buffer at most
  ``KERNEL_BUFFER_BYTES`` before the writing thread waits for that text to be handed to the
  socket, and a longer single write goes out in pieces of that size;
* messages other threads hand ipykernel's iopub thread (bash_kernel's output, display data)
  wait while more than ``IOPUB_QUEUE_MSGS`` are queued there;
* IPython 9's copy of every cell's printed text (``history_manager.outputs``) is not kept;
* a ``flush()`` waits for the iopub thread at most once per ``FLUSH_GAP_S``: one called
  sooner hands the iopub thread one flush (unless one is already waiting there) and
  returns, so a loop that flushes every line costs no thread round trip per line, while
  iopub's order (the text before anything sent after the flush, ``idle`` included) holds;
* the agent's SUB socket takes at most ``IOPUB_HWM`` messages (``RCVHWM``).

So when the agent stops reading iopub (its outbox is full: the hub has not acknowledged
enough, ``outbox.Outbox.wait_for_room``), the user's ``print`` blocks, as a program writing
to a full pipe does, and the session's memory stays bounded however much is printed.
IRkernel's socket cannot be told not to drop, so an R kernel's subscriber keeps no receive
limit (``RCVHWM = 0``): R's output queues in the agent rather than being lost (R prints at
a few MB/s, slower than the agent forwards). Reading and routing the messages is
``kernels.Kernel``'s job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from traitlets import Type

from rsparkhub.protocol import LANGUAGES, Language

KERNEL_NAMES: dict[str, str] = {"r": "ir", "python": "python3", "bash": "bash"}

# The flow control above, as ipykernel's launcher patches it (its defaults have no option for
# it). Sizes: messages in flight on each side of the iopub connection, and the text one
# OutStream buffers. Any failure to patch leaves the stock behaviour (and the agent keeps
# no receive limit for a kernel it did not launch this way).
IOPUB_HWM = 16
IOPUB_QUEUE_MSGS = 64
KERNEL_BUFFER_BYTES = 256 * 1024
FLUSH_GAP_S = 0.01

_IPYKERNEL_LAUNCHER = f"""\
import sys
from pathlib import Path
if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
    del sys.path[0]
# ipykernel's debugger (debugpy: ~0.1 s of every start) serves the Jupyter debug protocol,
# which the IDE does not speak. Hidden while the kernel is made, then given back, so that
# session code can still import debugpy itself.
_no_debugpy = sys.modules.setdefault("debugpy", None) is None
from ipykernel import kernelapp as app
_init_kernel = app.IPKernelApp.init_kernel
def _init_kernel_without_debugger(self):
    try:
        _init_kernel(self)
    finally:
        if _no_debugpy and sys.modules.get("debugpy", 0) is None:
            del sys.modules["debugpy"]
app.IPKernelApp.init_kernel = _init_kernel_without_debugger
try:
    import threading
    import zmq
    from ipykernel import iostream as _io

    _bind = app.IPKernelApp._bind_socket
    def _bind_socket(self, s, port):
        if s.socket_type in (zmq.PUB, zmq.XPUB):
            s.sndhwm = {IOPUB_HWM}
            s.setsockopt(zmq.XPUB_NODROP, 1)
        return _bind(self, s, port)

    def _io_thread_of(pt):
        t = getattr(pt, "thread", None)
        if t is None or not t.is_alive() or t.ident == threading.get_ident():
            return None
        return t

    def _wait_for(pt, t):
        # set once everything scheduled so far has run, and whatever that scheduled too
        done = threading.Event()
        pt.schedule(lambda: pt.schedule(done.set))
        while not done.wait(0.5) and t.is_alive():
            pass

    _send = _io.IOPubThread.send_multipart
    def send_multipart(self, *args, **kwargs):
        _send(self, *args, **kwargs)
        t = _io_thread_of(self)
        if t is not None and len(self._events) > {IOPUB_QUEUE_MSGS}:
            _wait_for(self, t)

    import time
    _flush_sync = _io.OutStream.flush
    def flush(self):
        pt = self.pub_thread
        if _io_thread_of(pt) is None:
            return _flush_sync(self)
        if time.monotonic() - self.__dict__.get("_rsh_synced", -1.0) >= {FLUSH_GAP_S}:
            _flush_sync(self)
            self._rsh_synced = time.monotonic()
            return
        if self.__dict__.get("_rsh_queued"):
            return  # the flush waiting on the iopub thread will send this text too
        self._rsh_queued = True
        def queued():
            self._rsh_queued = False
            self._flush()
        pt.schedule(queued)

    _write = _io.OutStream.write
    def _drain(self, n):
        # counted per write (cheap); the buffers are measured once that many chars came
        self._rsh_written = getattr(self, "_rsh_written", 0) + n
        if self._rsh_written < {KERNEL_BUFFER_BYTES}:
            return
        self._rsh_written = 0
        pt = self.pub_thread
        t = _io_thread_of(pt)
        if t is None:
            return
        with self._buffer_lock:
            size = sum(b.tell() for b in self._buffers.values())
        if size >= {KERNEL_BUFFER_BYTES}:
            pt.schedule(self._flush)
            _wait_for(pt, t)
    def write(self, string):
        if not isinstance(string, str) or len(string) <= {KERNEL_BUFFER_BYTES}:
            n = _write(self, string)
            _drain(self, len(string) if isinstance(string, str) else 0)
            return n
        for i in range(0, len(string), {KERNEL_BUFFER_BYTES}):
            _write(self, string[i : i + {KERNEL_BUFFER_BYTES}])
            _drain(self, {KERNEL_BUFFER_BYTES})
        return len(string)

    # IPython 9 keeps a copy of everything a cell prints (history_manager.outputs, for
    # %notebook), so the kernel would grow by the output's size: not kept
    import contextlib
    from IPython.core.interactiveshell import InteractiveShell
    if hasattr(InteractiveShell, "_tee"):
        InteractiveShell._tee = lambda self, channel: contextlib.nullcontext()

    app.IPKernelApp._bind_socket = _bind_socket
    _io.IOPubThread.send_multipart = send_multipart
    _io.OutStream.write = write
    _io.OutStream.flush = flush
except Exception:
    pass
"""

# What each ipykernel-based kernel module runs after the patch above.
_LAUNCH = {
    "ipykernel_launcher": "app.launch_new_instance()\n",
    "bash_kernel": (
        "from bash_kernel.kernel import BashKernel\n"
        "app.IPKernelApp.launch_instance(kernel_class=BashKernel)\n"
    ),
}


def ipykernel_cmd(cmd: list[str]) -> list[str]:
    """``python … -m ipykernel_launcher|bash_kernel …`` through the patched launcher above
    (both are ipykernel applications). IRkernel's ``R …`` gets ``--no-restore --no-save``:
    R would otherwise load a ``.RData`` of the working directory by itself — whether the
    saved image is restored is the workspace's ``save_r_image`` setting (see the agent)."""
    if cmd and Path(cmd[0]).name == "R" and "--no-restore" not in cmd:
        return [cmd[0], "--no-restore", "--no-save", *cmd[1:]]
    for i in range(len(cmd) - 1):
        if cmd[i] == "-m" and cmd[i + 1] in _LAUNCH:
            code = _IPYKERNEL_LAUNCHER + _LAUNCH[cmd[i + 1]]
            return [*cmd[:i], "-c", code, *cmd[i + 2 :]]
    return cmd


class NoDropKernelClient(AsyncKernelClient):
    """``AsyncKernelClient`` whose iopub SUB socket takes ``iopub_hwm`` messages (0: no
    limit), set before it connects."""

    iopub_hwm = 0

    def connect_iopub(self, identity: bytes | None = None) -> zmq.Socket[Any]:
        # as jupyter_client's connect_iopub, with the limit set before connect()
        sock = self.context.socket(zmq.SUB)
        sock.linger = 1000
        sock.rcvhwm = self.iopub_hwm
        if identity:
            sock.identity = identity
        if getattr(self, "curve_publickey", None) is not None:
            sock.curve_secretkey = self.curve_secretkey
            sock.curve_publickey = self.curve_publickey
            sock.curve_serverkey = self.curve_publickey
        sock.connect(self._make_url("iopub"))
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        return sock


class NoDropKernelManager(AsyncKernelManager):
    # AsyncKernelManager's own default ignores client_class, so set the factory itself
    client_factory = Type(klass=AsyncKernelClient, default_value=NoDropKernelClient)

    flow_controlled = False  # launched through the patched ipykernel launcher

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = list(super().format_kernel_cmd(extra_arguments))
        patched = ipykernel_cmd(cmd)
        self.flow_controlled = any(a.startswith(_IPYKERNEL_LAUNCHER) for a in patched)
        return patched

    def client(self, **kwargs: Any) -> AsyncKernelClient:  # type: ignore[override]
        kc = super().client(**kwargs)
        if isinstance(kc, NoDropKernelClient):
            kc.iopub_hwm = IOPUB_HWM if self.flow_controlled else 0
        return kc


def available_languages() -> list[Language]:
    """Languages whose kernelspec is installed."""
    ksm = KernelSpecManager()
    found: list[Language] = []
    for lang in LANGUAGES:
        try:
            ksm.get_kernel_spec(KERNEL_NAMES[lang])
        except (NoSuchKernel, Exception):  # noqa: B014 - a broken spec counts as missing
            continue
        found.append(lang)
    return found
