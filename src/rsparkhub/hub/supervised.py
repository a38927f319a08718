"""What the hub's own long-running local servers share: the per-user Spark Connect servers
(``hub/spark_embedded.py``) and the embedded PostgreSQL cluster (``hub/postgres.py``).

Owns: choosing and remembering a loopback port (:class:`PortFile`, :func:`free_port`,
:func:`port_taken`, :func:`port_open`), the restart delay of a supervisor
(:class:`Backoff`), and a server's log (:class:`RotatingLog`, :func:`log_tail`). Must not:
start or stop a process (the sandbox launcher and ``pg_ctl`` do), or know which server it
serves.

Everything here is blocking and small: callers run it in a thread (``asyncio.to_thread``)
when it touches the file system or the network.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

LOOPBACK = "127.0.0.1"
MIN_PORT = 1024


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the kernel's choice; it may be taken again
    before the caller binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_taken(port: int, host: str = LOOPBACK) -> bool:
    """Whether something listens on the port. Connections lingering in TIME_WAIT do not
    count (servers bind with SO_REUSEADDR, and so does this check)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether a connection to ``host:port`` is accepted within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PortFile:
    """A server's loopback port, chosen once and kept in a file (one number and a newline),
    so that what was handed out with it (a session's ``SPARK_REMOTE``, PGPORT) stays
    right across the server's restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int | None:
        """The remembered port, or None (no file, or not a usable port number)."""
        try:
            port = int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None
        return port if MIN_PORT <= port <= 65535 else None

    def choose(self, taken: Collection[int] = (), attempts: int = 100) -> int:
        """A new free port (none of ``taken``), remembered. Raises OSError when none is
        found."""
        for _ in range(attempts):
            port = free_port()
            if port not in taken:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.path.write_text(f"{port}\n")
                return port
        raise OSError("no free loopback port")

    def read_or_choose(self, taken: Collection[int] = ()) -> int:
        """The remembered port, or a new one (remembered)."""
        port = self.read()
        return port if port is not None else self.choose(taken)

    def usable(self, taken: Collection[int] = ()) -> tuple[int, int | None]:
        """The port to start on: the remembered one unless another program listens on
        it, then a new one (remembered). Returns it and the replaced port (or None)."""
        port = self.read()
        if port is not None and port not in taken and not port_taken(port):
            return port, None
        return self.choose(taken), port


class Backoff:
    """The delay before a supervisor starts a server again: ``initial`` seconds, doubled
    at each failure up to ``maximum``; back to ``initial`` once a server ran for
    ``stable_s`` seconds."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, stable_s: float = 300.0):
        self.initial, self.maximum, self.stable_s = initial, maximum, stable_s
        self.delay = initial

    def ran(self, seconds: float) -> None:
        """A server ran for ``seconds`` before it ended."""
        if seconds > self.stable_s:
            self.delay = self.initial

    def next(self) -> float:
        """The delay to wait now; the following one is longer."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.maximum)
        return delay


class RotatingLog:
    """The hub's copy of a server's output, appended to ``path`` and rotated past
    ``max_bytes`` (one old copy, ``<name>.1``). Blocking: call it from a thread."""

    def __init__(self, path: Path, max_bytes: int = 8 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fh: BinaryIO | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._fh is None:
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open between writes
            self._size = self._fh.tell()
        if self._size + len(data) > self.max_bytes:
            self._fh.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._fh = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        self._fh.write(data)
        self._fh.flush()
        self._size += len(data)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a server's log ("" when there is none), for an error
    message that says why a server did not start."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
