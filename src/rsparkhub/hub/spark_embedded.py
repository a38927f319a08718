"""``spark = 'embedded'``: a Spark Connect server of their own for each user.

Owns: each user's server — started on first use, under the user's own uid in a sandbox of
its own (``hub.sandboxes``), seeing only the user's Spark directory; supervised while the
user has a live session; stopped when idle — plus the class-data archive that makes those
starts fast, and what ``GET /api/spark`` and ``doctor`` say about them. Must not: start a
process outside ``Sandboxes.spawn``, or read or write inside a user's Spark directory as
the hub (it belongs to the user: the server cleans its own scratch space).

* **One server per user, none shared.** ``python -m rsparkhub.agent.spark server DIR``
  (agent/spark.py) starts the driver JVM (pip ``pyspark``, Java 17+) through py4j, then the
  Spark Connect service. Its sandbox (cgroup ``spark-<user id>``) runs as the user's uid
  with no capabilities, in a network namespace of its own: the gRPC port and the web UI's
  port are forwarded from the host's loopback (``Network.from_host``), nothing else
  reaches in, and inside it sees the system directories, Python and pyspark (read-only),
  the class-data archive (read-only) and ``DATA_DIR/spark/users/<user id>/data`` (its
  only writable directory besides a private /tmp): the warehouse, the Derby metastore,
  ``spark.local.dir``, Java's temp directory, Ivy and Derby's logs. Limits: memory
  ``spark_memory_mb`` (JVM, Python UDF workers, /tmp), 2048 processes and threads.
* **Ports and addresses**: each user's gRPC port is chosen once (a free loopback port that
  no other user has) and kept in ``users/<id>/port`` (the hub's, not the user's), so a
  session's ``SPARK_REMOTE=sc://127.0.0.1:PORT/;user_id=<name>;session_id=<uuid>`` stays
  right across server restarts; the session's sandbox forwards exactly that port
  (``sessions.loopback_ports``). The session id is derived from the hub session id with
  ``DATA_DIR/spark/secret``: every hub session is its own server-side Spark session.
* **Your database**: the server's catalog (Hive, Derby metastore in the user's directory)
  has the user's database ``u_<name>`` as its default database, so every Spark session
  starts in it and ``saveAsTable`` lands in ``warehouse/u_<name>``, kept across sessions
  and restarts. The first server of a user creates it before its port opens.
* **Files**: the server reads and writes files for its user's code (``spark.read.csv``,
  ``rspark_read_csv``, ``write.parquet``), so it sees the working directory of each of the
  user's live sessions at the very path the session knows it by
  (``DATA_DIR/sessions/<id>/work``), and no other session's: each one is bind-mounted, when
  the session starts, under a shared mount of the user's own
  (``/run/rsparkhub/spark-files/<user id>``) that the server's sandbox shows read-only at
  ``DATA_DIR/sessions`` — so sessions started while the server runs show up in it too.
  (A root hub only: an unprivileged hub cannot mount, and its users' servers see only
  their own Spark directory.)
* **Start**: in the background when a session starts in a workspace whose files mention
  Spark (``spark``, ``SparkSession``, ``rspark_`` …: ``workspace_uses_spark``), otherwise
  at first use: while a user with a live session has no server, the hub itself listens on
  the user's port, and the first connection (the kernel's pyspark client) starts the
  server; the client is refused meanwhile and retries (every ≤ 2 s in session kernels).
* **Supervision and idle stop**: a server that dies while its user has a live session is
  restarted with backoff (1 s … 30 s). One with no live session of its user and no running
  Spark operation for ``spark_idle_timeout_s`` is stopped (stdin closed, then its cgroup
  killed); the next use starts it again. The hub stops every server at shutdown; a server
  of a crashed hub is killed (by its cgroup) before its user's next start.
* **Web UI**: each server's UI (``spark.ui.proxyBase`` = ``/spark-ui/<user>``, kill links
  off) is reachable only through the hub's checked proxy (hub/api/spark.py), and only by
  its own user: administrators do not open other users' UIs, which show their SQL and
  run in the hub's origin (a hostile page there would act as the admin).
* **Class-data archive** (AppCDS): the JVM's start is mostly class loading. Once per Java
  and pyspark install the hub makes an archive of the classes a server loads (a training
  server with no user and no port, under ``nobody``, then
  ``-XX:ArchiveClassesAtExit``), kept in ``spark_class_archive_dir``; every server maps it
  read-only (``-XX:SharedArchiveFile``). Servers start without it until it exists.

Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from rsparkhub.config import Settings
from rsparkhub.hub.sandbox import Identity, Limits, Network, SandboxSpec
from rsparkhub.hub.sandbox.mounts import is_mount, mount, umount
from rsparkhub.hub.spark import (
    SERVER_MODULE,
    SparkService,
    SparkUnavailable,
    _free_port,
    _java_version,
    _pyspark_version,
    spark_home,
)
from rsparkhub.hub.userdb import role_name

if TYPE_CHECKING:
    from rsparkhub.hub.sandbox import Sandboxes
    from rsparkhub.hub.state import Hub

log = logging.getLogger("rsparkhub.spark")

START_TIMEOUT_S = 180.0  # JVM and SparkContext up (a first start also makes the metastore)
OPEN_TIMEOUT_S = 180.0
STOP_GRACE_S = 15.0
MAX_BACKOFF_S = 30.0
TRAIN_TIMEOUT_S = 600.0
MAX_LOG_BYTES = 8 << 20  # server.log is rotated past this (one old copy kept)
MAX_LINE = 64 << 10
# What marks a workspace as using Spark: its source files mention it.
SPARK_WORDS = re.compile(rb"spark|rspark_", re.IGNORECASE)
SCAN_EXTENSIONS = (".py", ".r", ".rmd", ".qmd", ".ipynb", ".sql", ".md")
SCAN_MAX_FILES = 200
SCAN_MAX_BYTES = 1 << 20
FILES_ROOT = Path("/run/rsparkhub/spark-files")  # users' session directories, for their servers


@dataclass(eq=False)
class _Server:
    """What the hub knows of one user's server."""

    user_id: str
    user: str  # name
    port: int
    sessions: set[str] = field(default_factory=set)  # live hub sessions of the user
    state: str = "down"  # down | starting | running | stopping
    proc: asyncio.subprocess.Process | None = None
    ui_port: int | None = None
    jvm_pid: int | None = None
    task: asyncio.Task[None] | None = None  # the supervisor, while there is a server
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Server | None = None  # the hub's listener on the port while down
    waiters: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    calls: int = 0
    stop_requested: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    started_s: float | None = None  # how long the last start took
    restarts: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        return f"spark-{self.user_id}"


class EmbeddedSpark(SparkService):
    """The hub's Spark service with ``spark = 'embedded'`` (``hub.spark``)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.users_dir = self.base / "users"
        self.archive_dir = (settings.spark_class_archive_dir or self.base / "cds").resolve()
        self._servers: dict[str, _Server] = {}  # by user id
        self._session_user: dict[str, str] = {}  # hub session id -> user id
        self._ports_lock = asyncio.Lock()
        self._idle_task: asyncio.Task[None] | None = None
        self._archive_task: asyncio.Task[None] | None = None
        self._archive: Path | None = None  # the class-data archive, once it exists
        self._archive_path: Path | None = None  # where it is (or will be)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ------------------------------------------------------------------ hub wiring
    @property
    def _hub(self) -> Hub:
        if self.hub is None:
            raise SparkUnavailable("the Spark service is not attached to a hub")
        return self.hub

    @property
    def _sandboxes(self) -> Sandboxes:
        return self._hub.sandboxes

    def _spawn_task(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def database(self, user: str) -> str | None:
        return role_name(user)

    def user_dir(self, user_id: str) -> Path:
        """The hub's directory of a user's server (port, log); ``data/`` in it is the
        user's own (the sandbox's only writable directory)."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", user_id):
            raise ValueError(f"not a user id: {user_id!r}")
        return self.users_dir / user_id

    # ------------------------------------------------------------------ ports
    def _port_on_file(self, user_id: str) -> int | None:
        try:
            port = int((self.user_dir(user_id) / "port").read_text().strip())
        except (OSError, ValueError):
            return None
        return port if 1024 <= port <= 65535 else None

    def _taken_ports(self, user_id: str) -> set[int]:
        taken = {s.port for s in self._servers.values() if s.user_id != user_id}
        with contextlib.suppress(OSError):
            for d in self.users_dir.iterdir():
                if d.name != user_id and (p := self._port_on_file(d.name)) is not None:
                    taken.add(p)
        return taken

    def _new_port(self, user_id: str) -> int:
        taken = self._taken_ports(user_id)
        for _ in range(100):
            port = _free_port()
            if port not in taken:
                d = self.user_dir(user_id)
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                (d / "port").write_text(f"{port}\n")
                return port
        raise SparkUnavailable("no free loopback port for a Spark server")

    async def _server(self, user_id: str, user: str) -> _Server:
        srv = self._servers.get(user_id)
        if srv is not None:
            return srv
        async with self._ports_lock:
            srv = self._servers.get(user_id)
            if srv is None:
                port = await asyncio.to_thread(self._port_on_file, user_id)
                if port is None:
                    port = await asyncio.to_thread(self._new_port, user_id)
                srv = self._servers[user_id] = _Server(user_id=user_id, user=user, port=port)
        return srv

    def _by_name(self, user: str) -> _Server | None:
        return next((s for s in self._servers.values() if s.user == user), None)

    # ------------------------------------------------------------------ sessions
    def remote(self, user: str, hub_session_id: str, port: int | None = None) -> str:
        sid = self.spark_session_id(hub_session_id)
        return f"sc://127.0.0.1:{port}/;user_id={quote(user, safe='')};session_id={sid}"

    async def session_env(
        self,
        user: str,
        hub_session_id: str,
        *,
        user_id: str | None = None,
        workspace_id: str | None = None,
    ) -> dict[str, str]:
        """SPARK_REMOTE for a new session of ``user``, pointing at the user's own server
        (at once: the server starts in the background when the workspace uses Spark, or at
        the session's first Spark call), or {} and a warning when Spark cannot run here."""
        if user_id is None:
            log.warning("session %s without Spark: no user id", hub_session_id)
            return {}
        try:
            spark_home()
            await asyncio.to_thread(self._secret_bytes)
            srv = await self._server(user_id, user)
        except (SparkUnavailable, OSError) as exc:
            log.warning("session without Spark: %s", exc)
            self._last_error = str(exc)
            return {}
        self._attach(srv, hub_session_id, workspace_id)
        return {"SPARK_REMOTE": self.remote(user, hub_session_id, srv.port)}

    def register(
        self,
        hub_session_id: str,
        user: str,
        *,
        user_id: str | None = None,
        workspace_id: str | None = None,
    ) -> None:
        """A live session adopted at hub start (its SPARK_REMOTE names its user's port)."""
        if user_id is None:
            return

        async def go() -> None:
            try:
                srv = await self._server(user_id, user)
            except (SparkUnavailable, OSError) as exc:
                log.warning("spark: %s", exc)
                return
            self._attach(srv, hub_session_id, workspace_id)

        self._spawn_task(go(), f"spark-register-{hub_session_id}")

    def _attach(self, srv: _Server, hub_session_id: str, workspace_id: str | None) -> None:
        srv.sessions.add(hub_session_id)
        self._session_user[hub_session_id] = srv.user_id
        self._ensure_idle_loop()
        if srv.task is not None:
            return  # starting or running
        if workspace_id is not None:
            self._spawn_task(self._start_if_used(srv, workspace_id), f"spark-scan-{srv.name}")
        self._spawn_task(self._listen(srv), f"spark-wake-{srv.name}")

    async def _start_if_used(self, srv: _Server, workspace_id: str) -> None:
        try:
            used = await workspace_uses_spark(self._hub, workspace_id)
        except Exception:  # noqa: BLE001 - then it starts at first use
            log.warning("spark: could not look at workspace %s", workspace_id, exc_info=True)
            return
        if used and srv.sessions and srv.task is None:
            log.info("spark: workspace %s uses Spark: starting %s's server", workspace_id,
                     srv.user)  # fmt: skip
            self._start(srv)

    async def session_started(
        self,
        user: str,
        hub_session_id: str,
        spawner_state: Mapping[str, Any],
        *,
        workspace_id: str | None = None,
        announce: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """The session runs (or was adopted): its working directory becomes visible to its
        user's server, at the same path."""
        live = self._hub.sessions.by_id.get(hub_session_id)
        user_id = live.owner_id if live is not None else None
        if user_id is not None and self._files_root() is not None:
            work = self._hub.sessions.session_dir(hub_session_id) / "work"
            try:
                await asyncio.to_thread(self._expose, user_id, hub_session_id, work)
            except (OSError, subprocess.CalledProcessError) as exc:
                log.warning("spark: session %s's files are not visible to Spark: %s",
                            hub_session_id, exc)  # fmt: skip

    async def session_ended(self, hub_session_id: str) -> None:
        await super().session_ended(hub_session_id)
        if self._files_root() is not None:
            try:
                await asyncio.to_thread(self._hide, hub_session_id)
            except Exception:  # noqa: BLE001 - never in the way of a session's end
                log.warning("spark: could not unmount session %s's files", hub_session_id,
                            exc_info=True)  # fmt: skip
        user_id = self._session_user.pop(hub_session_id, None)
        srv = self._servers.get(user_id) if user_id else None
        if srv is None:
            return
        srv.sessions.discard(hub_session_id)
        if not srv.sessions:
            srv.idle_since = time.monotonic()
            await self._unlisten(srv)

    # ------------------------------------------------------------------ sessions' files
    def _files_root(self) -> Path | None:
        """Where the mounts of users' session directories live (a root hub with sandboxes
        only: without sandboxes the server sees the host's paths; an unprivileged hub
        cannot mount, and its users' servers see no session files)."""
        sbx = self.hub.sandboxes if self.hub is not None else None
        if sbx is None or not sbx.bwrap or not sbx.root:
            return None
        return FILES_ROOT

    def _files_dir(self, user_id: str) -> Path:
        """``/run/rsparkhub/spark-files/<user id>``: a shared mount (so that mounts made
        under it later show up in the user's running server), holding at
        ``<session id>/work`` a bind of each live session's working directory. The server
        sees it, read-only, at DATA_DIR/sessions: each working directory at the path its
        session knows it by."""
        d = FILES_ROOT / user_id
        with _MOUNTS:
            if not is_mount(d):  # once: binding a shared mount onto itself doubles it
                for p in (FILES_ROOT.parent, FILES_ROOT, d):
                    p.mkdir(mode=0o711, exist_ok=True)
                    p.chmod(0o711)  # searchable, not listable: reached by path only
                mount("--bind", str(d), str(d))
                mount("--make-private", str(d))  # a peer group of its own …
                mount("--make-shared", str(d))  # … that its sandboxes receive from
        return d

    def _expose(self, user_id: str, hub_session_id: str, work: Path) -> None:
        if not work.is_dir():
            return
        target = self._files_dir(user_id) / hub_session_id / "work"
        with _MOUNTS:
            if is_mount(target):
                return
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            target.parent.chmod(0o755)
            mount("--bind", str(work), str(target))
            mount("--make-private", str(target))

    def _hide(self, hub_session_id: str) -> None:
        with _MOUNTS, contextlib.suppress(OSError):
            for d in FILES_ROOT.iterdir():
                target = d / hub_session_id
                if target.is_dir():
                    umount(target / "work")
                    with contextlib.suppress(OSError):
                        (target / "work").rmdir()
                        target.rmdir()

    def _drop_files(self, user_id: str) -> None:
        """Hub shutdown: its servers are gone, so are their views of the sessions (an
        adopted session is shown again at the next start)."""
        d = FILES_ROOT / user_id
        with _MOUNTS, contextlib.suppress(OSError):
            for sub in d.iterdir():
                umount(sub / "work")
                with contextlib.suppress(OSError):
                    (sub / "work").rmdir()
                    sub.rmdir()
            umount(d)
            d.rmdir()

    def _files_binds(self, srv: _Server) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
        """The read-only view of the user's sessions, and a writable bind of each working
        directory already in it (bubblewrap makes what a read-only bind holds read-only;
        what arrives later through the shared mount stays writable)."""
        if self._files_root() is None:
            return [], []
        try:
            d = self._files_dir(srv.user_id)
        except (OSError, subprocess.CalledProcessError) as exc:
            log.warning("spark: %s's server will not see their sessions' files: %s", srv.user,
                        exc)  # fmt: skip
            return [], []
        inside = self.settings.data_dir.resolve() / "sessions"
        rw = [(sub / "work", str(inside / sub.name / "work"))
              for sub in sorted(d.iterdir()) if is_mount(sub / "work")]  # fmt: skip
        return [(d, str(inside))], rw

    # ------------------------------------------------------------------ wake-up listener
    async def _listen(self, srv: _Server) -> None:
        """While the user has a live session and no server, the hub holds the user's port:
        the first connection starts the server (and is closed: the client retries)."""
        if srv.wake is not None or srv.task is not None or not srv.sessions or self._closing:
            return

        async def woken(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()
            if srv.task is None and srv.sessions:
                log.info("spark: first use by %s: starting their server", srv.user)
                self._start(srv)

        try:
            server = await asyncio.start_server(woken, "127.0.0.1", srv.port)
        except OSError as exc:
            log.warning("spark: cannot listen on %s's port %d (%s): starting the server now",
                        srv.user, srv.port, exc)  # fmt: skip
            self._start(srv)
            return
        if srv.task is not None or not srv.sessions:  # raced with a start or an end
            server.close()
            return
        srv.wake = server

    async def _unlisten(self, srv: _Server) -> None:
        wake, srv.wake = srv.wake, None
        if wake is not None:
            wake.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(wake.wait_closed(), 2)

    # ------------------------------------------------------------------ supervision
    def _start(self, srv: _Server) -> None:
        if srv.task is None and not self._closing:
            srv.stop_requested = False
            srv.state = "starting"
            srv.task = self._spawn_task(self._supervise(srv), f"spark-server-{srv.name}")

    async def _supervise(self, srv: _Server) -> None:
        backoff = 1.0
        try:
            while not self._closing and not srv.stop_requested:
                t0 = time.monotonic()
                try:
                    await self._start_once(srv)
                except SparkUnavailable as exc:
                    srv.last_error = str(exc)
                    self._last_error = str(exc)
                    if not srv.sessions:
                        log.warning("spark: %s's server did not start: %s", srv.user, exc)
                        break
                    log.warning("spark: %s's server did not start: %s; retrying in %.0f s",
                                srv.user, exc, backoff)  # fmt: skip
                else:
                    srv.last_error = None
                    srv.started_s = time.monotonic() - t0
                    log.info("the Spark Connect server of %s is up after %.1f s (port %d)",
                             srv.user, srv.started_s, srv.port)  # fmt: skip
                    srv.state = "running"
                    srv.ready.set()
                    if self._archive is None and self._archive_task is None:
                        # made once, now that this server is up (not competing with it)
                        self._archive_task = self._spawn_task(self._make_archive(),
                                                              "spark-archive")  # fmt: skip
                    assert srv.proc is not None
                    rc = await srv.proc.wait()
                    await self._cleanup(srv)
                    if self._closing or srv.stop_requested:
                        break
                    srv.restarts += 1
                    if time.monotonic() - t0 > 300:
                        backoff = 1.0
                    if not srv.sessions:
                        log.warning("the Spark Connect server of %s died (exit %s); it starts "
                                    "again at its next use", srv.user, rc)  # fmt: skip
                        break
                    log.warning("the Spark Connect server of %s died (exit %s); restarting "
                                "in %.0f s", srv.user, rc, backoff)  # fmt: skip
                srv.state = "starting"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            await self._cleanup(srv)
            srv.state = "down"
            srv.task = None
            srv.idle_since = time.monotonic()
            if srv.sessions and not self._closing:
                self._spawn_task(self._listen(srv), f"spark-wake-{srv.name}")

    async def _cleanup(self, srv: _Server) -> None:
        srv.ready.clear()
        srv.ui_port = srv.jvm_pid = None
        proc, srv.proc = srv.proc, None
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        await asyncio.to_thread(self._sandboxes.kill, srv.name)
        if proc is not None:
            # without cgroups (sandbox = 'none'), its process group is all there is
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        gone = SparkUnavailable("the Spark Connect server exited")
        for fut in srv.waiters.values():
            if not fut.done():
                fut.set_exception(gone)
        srv.waiters.clear()

    async def stop_server(self, srv: _Server, why: str) -> None:
        """Stop a user's server: stdin closed (the driver stops, Derby closes), then after
        STOP_GRACE_S its whole cgroup is killed."""
        task = srv.task
        if task is None:
            return
        srv.stop_requested = True
        srv.state = "stopping"
        log.info("stopping the Spark Connect server of %s: %s", srv.user, why)
        proc = srv.proc
        if proc is not None and proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()  # the server stops its driver and exits
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        except TimeoutError:
            task.cancel()  # its cleanup kills the cgroup
        except Exception:  # noqa: BLE001 - logged by the supervisor
            pass
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    # ------------------------------------------------------------------ one start
    def _confs(self, srv: _Server, data: Path, ui_port: int) -> dict[str, str]:
        s = self.settings
        base_path = urlsplit(s.base_url).path.rstrip("/")
        java_opts = [
            f"-Dderby.system.home={data}",
            f"-Djava.io.tmpdir={data / 'tmp'}",
            f"-Duser.home={data / 'home'}",
        ]
        if self._archive is not None:
            java_opts += [f"-XX:SharedArchiveFile={self._archive}", "-Xlog:cds=off",
                          "-Xlog:cds+dynamic=off"]  # fmt: skip
        return {
            "spark.master": s.spark_master,
            "spark.app.name": f"rsparkhub-{srv.user}",
            "spark.driver.memory": s.spark_driver_memory,
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(srv.port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "true",
            "spark.ui.port": str(ui_port),
            "spark.ui.proxyBase": f"{base_path}/spark-ui/{quote(srv.user, safe='')}",
            "spark.ui.killEnabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(data / "warehouse"),
            "spark.sql.catalog.spark_catalog.defaultDatabase": role_name(srv.user),
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={data / 'metastore_db'};create=true",
            "spark.driver.extraJavaOptions": " ".join(java_opts),
            "spark.local.dir": str(data / "tmp"),
            "spark.jars.ivy": str(data / "ivy"),
            "spark.connect.session.manager.defaultSessionTimeout": "7d",
        }  # fmt: skip

    def _env(self, home: Path, data: Path, user: str) -> dict[str, str]:
        """The server's whole environment: nothing of the hub's (no secrets, no URLs)."""
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(data / "home"),
            "TMPDIR": str(data / "tmp"),
            "SPARK_HOME": str(home),
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_USER": role_name(user),
            "HADOOP_USER_NAME": role_name(user),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if os.environ.get("JAVA_HOME"):
            env["JAVA_HOME"] = os.environ["JAVA_HOME"]
        return env

    def _prepare_dirs(self, srv: _Server) -> tuple[Path, Path]:
        """The hub's directory of the user's server and the user's own ``data/`` in it
        (made here, handed over to the user's uid by the sandbox)."""
        d = self.user_dir(srv.user_id)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = d / "data"
        if data.is_symlink():  # never: its parent is the hub's; refuse to follow one
            raise SparkUnavailable(f"{data} is a symbolic link")
        data.mkdir(mode=0o700, exist_ok=True)
        return d, data

    async def _start_once(self, srv: _Server) -> None:
        """Start the user's server in its sandbox and wait until its port is open."""
        home = spark_home()
        await self._unlisten(srv)
        identity = await self._hub.identities.for_user(srv.user_id)
        d, data = await asyncio.to_thread(self._prepare_dirs, srv)
        first = not await asyncio.to_thread((data / "metastore_db").exists)
        await asyncio.to_thread(self._sandboxes.kill, srv.name)  # a crashed hub's server
        if self._sandboxes.cgroups.version == "none":
            await asyncio.to_thread(_kill_strays, data)
        await self._find_archive()
        if await asyncio.to_thread(_port_taken, srv.port):
            old, srv.port = srv.port, await asyncio.to_thread(self._new_port, srv.user_id)
            log.warning("spark: %s's port %d is taken by another program; using %d (new "
                        "sessions only)", srv.user, old, srv.port)  # fmt: skip
        ui_port = _free_port()
        nonce = secrets.token_hex(12)
        files_ro, files_rw = await asyncio.to_thread(self._files_binds, srv)
        r, w = os.pipe()
        spec = SandboxSpec(
            name=srv.name,
            identity=identity,
            argv=[sys.executable, "-m", SERVER_MODULE, "server", str(data)],
            env=self._env(home, data, srv.user),
            chdir=str(data),
            binds=[(data, str(data)), *files_rw],
            ro_binds=[*self._sandboxes.runtime_binds(), *self._archive_binds(), *files_ro],
            masked=[str(self.settings.data_dir.resolve())],
            network=Network(
                from_host=(srv.port, ui_port),
                outbound=self.settings.session_network == "internet",
            ),
            limits=self._limits(),
            stdout=w,
            stdin_pipe=True,
        )
        loop = asyncio.get_running_loop()
        started: asyncio.Future[dict[str, Any]] = loop.create_future()
        opened: asyncio.Future[dict[str, Any]] = loop.create_future()
        try:
            proc = await self._sandboxes.spawn(spec)
        except (OSError, ValueError, RuntimeError) as exc:
            os.close(r)
            raise SparkUnavailable(f"the Spark Connect server's sandbox failed: {exc}") from None
        finally:
            os.close(w)
        srv.proc = proc
        reader = self._spawn_task(
            self._read(srv, r, d / "server.log", nonce, started, opened), f"spark-log-{srv.name}"
        )
        reader.add_done_callback(lambda _t: _fail(started, opened))
        log.info("starting the Spark Connect server of %s (uid %d) on 127.0.0.1:%d%s",
                 srv.user, identity.uid, srv.port,
                 "" if self._archive else " (no class-data archive yet)")  # fmt: skip
        config = {
            "nonce": nonce,
            "confs": self._confs(srv, data, ui_port),
            "database": role_name(srv.user),
            "location": str(data / "warehouse" / role_name(srv.user)),
            "create_database": first,
        }
        try:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(config) + "\n").encode())
            await proc.stdin.drain()
            msg = await asyncio.wait_for(started, START_TIMEOUT_S)
            if msg.get("event") != "started":
                raise SparkUnavailable(f"the Spark driver did not start: {msg.get('detail')}")
            srv.jvm_pid = msg.get("jvm_pid")
            jvm_s = msg.get("seconds")
            srv.ui_port = urlsplit(str(msg.get("ui_url") or "")).port or ui_port
            msg = await asyncio.wait_for(opened, OPEN_TIMEOUT_S)
            if msg.get("event") != "open":
                raise SparkUnavailable(f"Spark Connect did not open: {msg.get('detail')}")
            log.info("spark: %s's server: driver up after %s s, port open after %s s%s",
                     srv.user, jvm_s, msg.get("seconds"),
                     " (its database made first)" if first else "")  # fmt: skip
        except (SparkUnavailable, TimeoutError, ConnectionError) as exc:
            why = "it did not start in time" if isinstance(exc, TimeoutError) else str(exc)
            await self._cleanup(srv)
            raise SparkUnavailable(
                f"the Spark Connect server failed to start ({why}; exit code "
                f"{proc.returncode}); see {d / 'server.log'}"
            ) from None

    def _limits(self) -> Limits:
        s = self.settings
        return Limits(
            memory_mb=s.spark_memory_mb,
            pids=2048,  # a driver has a few hundred threads; every thread counts
            cpu_weight=s.session_cpu_weight,
            cpu_quota=s.session_cpu_quota,
            tmp_mb=s.session_tmp_mb,
        )

    async def _read(
        self,
        srv: _Server,
        fd: int,
        log_path: Path,
        nonce: str,
        started: asyncio.Future[dict[str, Any]],
        opened: asyncio.Future[dict[str, Any]],
    ) -> None:
        """The server's output: its own messages (``@rsparkhub:<nonce> {json}``) are
        dispatched, everything else goes to the hub's copy of its log. Ends with the pipe."""
        prefix = f"@rsparkhub:{nonce} ".encode()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE * 2)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
        )
        out = _Log(log_path)
        try:
            pending = b""
            while True:
                chunk = await reader.read(MAX_LINE)
                if not chunk:
                    break
                pending += chunk
                lines = pending.split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_LINE:  # a line with no end: to the log as it is
                    lines.append(pending)
                    pending = b""
                text: list[bytes] = []
                for line in lines:
                    if line.startswith(prefix):
                        self._dispatch(srv, line[len(prefix) :], started, opened)
                    elif line:
                        text.append(line)
                if text:
                    await asyncio.to_thread(out.write, b"\n".join(text) + b"\n")
        finally:
            transport.close()
            await asyncio.to_thread(out.close)

    def _dispatch(
        self,
        srv: _Server,
        raw: bytes,
        started: asyncio.Future[dict[str, Any]],
        opened: asyncio.Future[dict[str, Any]],
    ) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        event = msg.get("event")
        if event in ("started", "failed") and not started.done():
            started.set_result(msg)
        if event in ("open", "failed") and not opened.done():
            opened.set_result(msg)
        if event == "catalog":
            if msg.get("error"):
                log.warning("spark: %s's catalog: %s", srv.user, msg["error"])
            else:
                log.info("spark: %s's catalog opened in %.1f s", srv.user,
                         float(msg.get("seconds") or 0))  # fmt: skip
        fut = srv.waiters.get(str(msg.get("id")))
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def _call(self, srv: _Server, cmd: str, timeout: float = 30) -> dict[str, Any]:
        proc = srv.proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise SparkUnavailable("the Spark Connect server is not running")
        srv.calls += 1
        cid = str(srv.calls)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        srv.waiters[cid] = fut
        try:
            proc.stdin.write((json.dumps({"id": cid, "cmd": cmd}) + "\n").encode())
            await proc.stdin.drain()
            return await asyncio.wait_for(fut, timeout)
        except (ConnectionError, BrokenPipeError) as exc:
            raise SparkUnavailable(f"the Spark Connect server went away: {exc}") from None
        finally:
            srv.waiters.pop(cid, None)

    # ------------------------------------------------------------------ idle stop
    def _ensure_idle_loop(self) -> None:
        if self._idle_task is None and not self._closing:
            self._idle_task = self._spawn_task(self._idle_loop(), "spark-idle")

    async def _idle_loop(self) -> None:
        timeout = self.settings.spark_idle_timeout_s
        every = max(0.5, min(30.0, timeout / 4))
        while not self._closing:
            await asyncio.sleep(every)
            for srv in list(self._servers.values()):
                if srv.state != "running" or srv.sessions:
                    continue
                try:
                    running = int((await self._call(srv, "activity")).get("running") or 0)
                except (SparkUnavailable, TimeoutError):
                    continue
                now = time.monotonic()
                if running:
                    srv.idle_since = now
                elif now - srv.idle_since >= timeout:
                    self._spawn_task(
                        self.stop_server(srv, f"idle for {now - srv.idle_since:.0f} s"),
                        f"spark-stop-{srv.name}",
                    )

    # ------------------------------------------------------------------ class-data archive
    def _archive_binds(self) -> list[tuple[Path, str]]:
        if self._archive is None:
            return []
        return [(self._archive.parent, str(self._archive.parent))]

    async def _archive_key(self) -> str:
        java = await _java_version() or "?"
        home = spark_home()
        text = "\n".join([java, _pyspark_version(home), str(home.resolve()), sys.version])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    async def _find_archive(self) -> Path | None:
        """The class-data archive of this Java and pyspark, if it was made already."""
        if self._archive is None and self._archive_path is None:
            try:
                key = await self._archive_key()
            except (SparkUnavailable, OSError):
                return None
            self._archive_path = self.archive_dir / f"spark-{key}.jsa"
        if self._archive is None and self._archive_path is not None:
            if await asyncio.to_thread(self._archive_path.is_file):
                self._archive = self._archive_path
        return self._archive

    async def _make_archive(self) -> None:
        """Make the class-data archive (once per Java and pyspark install)."""
        try:
            path = self._archive_path
            if await self._find_archive() is not None or path is None:
                return
            t0 = time.monotonic()
            await self._train(path)
            log.info("spark: made the class-data archive %s in %.0f s", path,
                     time.monotonic() - t0)  # fmt: skip
            self._archive = path
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - servers start without it
            log.warning("spark: no class-data archive (servers start slower): %s", exc)

    def _train_identity(self) -> Identity:
        """An account of no user's: ``nobody`` for a root hub, else the hub's own."""
        if os.geteuid() == 0:
            return Identity(65534, 65534)
        return self._sandboxes.identity_for_hub()

    async def _train(self, path: Path) -> None:
        """A server with no user and no forwarded port, run once with
        ``-XX:ArchiveClassesAtExit``; its archive is then the hub's (read-only to all)."""
        home = spark_home()
        work = self.archive_dir / f"train-{secrets.token_hex(6)}"
        await asyncio.to_thread(_make_private_dir, work)
        data = work / "data"
        await asyncio.to_thread(data.mkdir, 0o700)
        name = f"spark-train-{work.name[6:]}"
        srv = _Server(user_id="train", user="rsparkhub", port=_free_port())
        nonce = secrets.token_hex(12)
        r, w = os.pipe()
        out_path = data / "classes.jsa"
        spec = SandboxSpec(
            name=name,
            identity=self._train_identity(),
            argv=[
                sys.executable,
                "-m",
                SERVER_MODULE,
                "server",
                str(data),
                "--train",
                str(out_path),
            ],  # fmt: skip
            env=self._env(home, data, "rsparkhub"),
            chdir=str(data),
            binds=[(data, str(data))],
            ro_binds=self._sandboxes.runtime_binds(),
            masked=[str(self.settings.data_dir.resolve())],
            network=Network(outbound=False),
            limits=Limits(
                memory_mb=self.settings.spark_memory_mb,
                pids=2048,
                cpu_weight=20,
                tmp_mb=self.settings.session_tmp_mb,
            ),  # fmt: skip
            stdout=w,
            stdin_pipe=True,
        )
        loop = asyncio.get_running_loop()
        started: asyncio.Future[dict[str, Any]] = loop.create_future()
        opened: asyncio.Future[dict[str, Any]] = loop.create_future()
        try:
            try:
                proc = await self._sandboxes.spawn(spec)
            finally:
                os.close(w)
            reader = self._spawn_task(
                self._read(srv, r, self.archive_dir / "train.log", nonce, started, opened), name
            )
            db = role_name(srv.user)
            config = {
                "nonce": nonce,
                "confs": self._confs(srv, data, _free_port()),
                "database": db,
                "location": str(data / "warehouse" / db),
                "create_database": True,
            }
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(config) + "\n").encode())
            await proc.stdin.drain()
            rc = await asyncio.wait_for(proc.wait(), TRAIN_TIMEOUT_S)
            await asyncio.wait_for(reader, 10)
            if rc != 0:
                raise SparkUnavailable(f"the training server exited with {rc}; see "
                                       f"{work / 'train.log'}")  # fmt: skip
            await asyncio.to_thread(_adopt_archive, out_path, path)
        finally:
            await asyncio.to_thread(self._sandboxes.kill, name)
            await asyncio.to_thread(shutil.rmtree, work, True)

    # ------------------------------------------------------------------ shutdown
    async def close(self) -> None:
        """Hub shutdown: stop every user's server."""
        self._closing = True
        for task in (self._idle_task, self._archive_task):
            if task is not None:
                task.cancel()
        servers = list(self._servers.values())
        await asyncio.gather(*(self._unlisten(s) for s in servers))
        await asyncio.gather(*(self.stop_server(s, "the hub is stopping") for s in servers))
        if self._files_root() is not None:
            for s in servers:
                with contextlib.suppress(OSError, subprocess.CalledProcessError):
                    await asyncio.to_thread(self._drop_files, s.user_id)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().close()

    # ------------------------------------------------------------------ state, UI
    async def state_for(self, user: str) -> str:
        srv = self._by_name(user)
        if srv is None:
            return "down"
        return {"running": "running", "starting": "starting"}.get(srv.state, "down")

    async def state(self) -> str:
        states = [s.state for s in self._servers.values()]
        if "running" in states:
            return "running"
        return "starting" if "starting" in states else "down"

    def ui_target(self, owner: str) -> str | None:
        srv = self._by_name(owner)
        if srv is not None and srv.ready.is_set() and srv.ui_port:
            return f"http://127.0.0.1:{srv.ui_port}"
        return None

    def may_open_ui(self, caller: str, is_admin: bool, owner: str) -> bool:
        return caller == owner  # administrators included: see the module docstring

    async def describe_for(self, user: str, is_admin: bool) -> dict[str, Any]:
        srv = self._by_name(user)
        state = await self.state_for(user)
        port = srv.port if srv is not None else None  # known once a session has started
        remote = f"sc://127.0.0.1:{port}/;user_id={quote(user, safe='')}" if port else None
        ui_url = f"/spark-ui/{quote(user, safe='')}/" if self.ui_target(user) else None
        detail = (
            "A Spark Connect server of your own on the hub's machine, under your own account "
            "in a sandbox: it sees only your Spark directory, and only your sessions reach "
            f"it. Your sessions start in your database {role_name(user)}; its web UI is at "
            "ui_url while it runs (yours only). "
        )
        if state == "running":
            detail += "It is running."
        elif state == "starting":
            detail += "It is starting."
        elif srv is not None and srv.last_error:
            detail += f"Not running: {srv.last_error}"
        else:
            detail += (
                "Not running: it starts with your first Spark call (or with a session of a "
                "workspace that uses Spark) and stops after "
                f"{self.settings.spark_idle_timeout_s:.0f} s without sessions or queries."
            )
        return {
            "mode": "embedded",
            "state": state,
            "remote": remote,
            "database": role_name(user),
            "ui_url": ui_url,
            "detail": detail,
        }

    # ------------------------------------------------------------------ doctor
    async def describe(self) -> dict[str, Any]:
        """For doctor: Java, pyspark, the archive and the users' servers. Starts nothing."""
        mode = "embedded"
        try:
            home = spark_home()
        except SparkUnavailable as exc:
            return {"ok": False, "mode": mode, "detail": str(exc)}
        java = await _java_version()
        if java is None:
            return {"ok": False, "mode": mode,
                    "detail": "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"}  # fmt: skip
        version = _pyspark_version(home)
        running = [s for s in self._servers.values() if s.state == "running"]
        if self.hub is None:
            servers = "per-user servers are started by the running hub (GET /api/doctor)"
        else:
            mem = []
            for s in running:
                rss = await asyncio.to_thread(self._sandboxes.memory, s.name)
                mem.append(f"{s.user} {rss / 2**20:.0f} MiB" if rss else s.user)
            servers = f"{len(running)} running" + (f" ({', '.join(mem)})" if mem else "")
        archive = await asyncio.to_thread(self._archive_state)
        return {
            "ok": True,
            "mode": mode,
            "java": java,
            "pyspark": version,
            "servers": len(running),
            "detail": f"one Spark Connect server per user (pyspark {version}, {java}), each "
            f"under its user's uid in a sandbox, in {self.users_dir}; {servers}; idle stop "
            f"after {self.settings.spark_idle_timeout_s:.0f} s; class-data archive: {archive}",
        }

    def _archive_state(self) -> str:
        if self._archive is not None:
            return str(self._archive)
        found = sorted(self.archive_dir.glob("spark-*.jsa")) if self.archive_dir.is_dir() else []
        return str(found[-1]) if found else "not made yet (made at the first server start)"


def _fail(*futs: asyncio.Future[dict[str, Any]]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result({"event": "failed", "detail": "the server's output ended"})


_MOUNTS = threading.Lock()  # the hub's own mounts under FILES_ROOT, one change at a time


def _kill_strays(data: Path) -> None:
    """Without cgroups: a crashed hub's server of this user (its helper names ``data`` in
    its argv, its JVM in ``-Dderby.system.home``) still holds the metastore."""
    import psutil

    marks = (str(data), f"-Dderby.system.home={data}")
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = p.info["cmdline"] or []
            if any(c in marks for c in cmd) and (
                SERVER_MODULE in cmd or "-Dderby" in " ".join(cmd)
            ):
                p.kill()


def _port_taken(port: int) -> bool:
    """Whether something listens on the port (connections of the hub's wake-up listener
    lingering in TIME_WAIT do not count: pasta binds with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _make_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=False)
    path.parent.chmod(0o755)  # the archive directory: searchable (its archive is read-only)


def _adopt_archive(made: Path, dest: Path) -> None:
    """The training server's archive becomes the hub's: a regular file (never a link),
    copied, read-only for everyone, renamed into place."""
    st = os.lstat(made)
    import stat

    if not stat.S_ISREG(st.st_mode) or st.st_size < 1 << 20:
        raise SparkUnavailable("the training server wrote no class-data archive")
    tmp = dest.with_suffix(f".tmp-{secrets.token_hex(4)}")
    fd = os.open(made, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tmp.chmod(0o444)
    os.replace(tmp, dest)


class _Log:
    """The hub's copy of a server's output, rotated past MAX_LOG_BYTES (one old copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.size = 0

    def write(self, data: bytes) -> None:
        if self.fh is None:
            self.fh = open(self.path, "ab")  # noqa: SIM115
            self.size = self.fh.tell()
        if self.size + len(data) > MAX_LOG_BYTES:
            self.fh.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self.fh = open(self.path, "ab")  # noqa: SIM115
            self.size = 0
        self.fh.write(data)
        self.fh.flush()
        self.size += len(data)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


async def workspace_uses_spark(hub: Hub, workspace_id: str) -> bool:
    """Whether a workspace's source files mention Spark (``spark``, ``SparkSession``,
    ``pyspark``, ``rspark_`` …): its sessions then start the user's server at once."""
    from rsparkhub.hub.files import list_files

    async with hub.db.session() as db:
        files = await list_files(db, workspace_id)
    checked = 0
    for f in files:
        if not f.path.lower().endswith(SCAN_EXTENSIONS) or f.size > SCAN_MAX_BYTES:
            continue
        if SPARK_WORDS.search(f.path.encode()):
            return True
        try:
            data = await hub.blobs.get(f.sha256)
        except (OSError, ValueError):
            continue
        if SPARK_WORDS.search(data):
            return True
        checked += 1
        if checked >= SCAN_MAX_FILES:
            break
    return False
