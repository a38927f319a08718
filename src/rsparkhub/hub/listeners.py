"""The sockets the hub serves on: its TCP address, and a unix socket for session agents.

Local session agents reach the hub through ``DATA_DIR/run/agent.sock``, bound read-only
into each sandbox at ``SANDBOX_DIR``: no network hop (and no TCP forward through the
session's network namespace, whose delayed ACKs cost ~40 ms per back-to-back message),
and no hole in the namespace for the hub's port. Agents still authenticate with their
session token; the socket is mode 0666 in a directory that is not listable.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

SANDBOX_DIR = "/run/rsparkhub/hub"  # where sandboxes see DATA_DIR/run
SOCKET_NAME = "agent.sock"


def agent_socket_dir(data_dir: Path) -> Path:
    return data_dir / "run"


def agent_socket_path(data_dir: Path) -> Path:
    return agent_socket_dir(data_dir) / SOCKET_NAME


def listen_agents(data_dir: Path) -> socket.socket:
    """Bind the agents' unix socket (replacing one left by an earlier hub). The path may be
    longer than a socket address allows, so bind through the directory's fd."""
    d = agent_socket_dir(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o711)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        short = f"/proc/self/fd/{fd}/{SOCKET_NAME}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(short)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(short)
        os.chmod(short, 0o666)
    finally:
        os.close(fd)
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def listen_tcp(host: str, port: int) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(info[4])
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock
