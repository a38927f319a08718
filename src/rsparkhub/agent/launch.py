"""How a session's kernel processes are launched and connected, and which are installed.

iopub is ZMQ PUB/SUB, which *drops* messages for a subscriber whose queue is full (the
high-water mark, 1000 messages by default on each side) instead of blocking the kernel.
This module removes both limits: for ipykernel-based kernels the kernel's iopub socket gets
no send limit (``SNDHWM = 0``, through a small launcher, see ``ipykernel_cmd``) and the
agent's SUB socket no receive limit (``RCVHWM = 0``, set before it connects). A kernel
printing faster than the agent forwards then queues in memory (the agent's ZMQ I/O thread)
rather than losing output. Reading and routing the messages is ``kernels.Kernel``'s job.
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

# ipykernel_launcher, but the kernel's iopub PUB socket never drops (SNDHWM 0, set before
# it binds: a ZMQ connection takes its limits when it is created). ipykernel has no option
# for it. Any failure to patch leaves the stock behaviour.
_IPYKERNEL_LAUNCHER = """\
import sys
from pathlib import Path
if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
    del sys.path[0]
from ipykernel import kernelapp as app
try:
    import zmq
    _bind = app.IPKernelApp._bind_socket
    def _bind_socket(self, s, port):
        if s.socket_type in (zmq.PUB, zmq.XPUB):
            s.sndhwm = 0
        return _bind(self, s, port)
    app.IPKernelApp._bind_socket = _bind_socket
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
    """``AsyncKernelClient`` whose iopub SUB socket queues without limit (RCVHWM 0)."""

    def connect_iopub(self, identity: bytes | None = None) -> zmq.Socket[Any]:
        # as jupyter_client's connect_iopub, with the limit set before connect()
        sock = self.context.socket(zmq.SUB)
        sock.linger = 1000
        sock.rcvhwm = 0
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

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return ipykernel_cmd(list(super().format_kernel_cmd(extra_arguments)))


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
