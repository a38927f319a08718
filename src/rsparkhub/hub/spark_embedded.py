"""``spark = 'embedded'``: a Spark Connect server of their own for each user.

Owns: each user's server — started on first use, under the user's own uid in a sandbox of
its own (``hub.sandboxes``), seeing only the user's Spark directory; supervised while the
user has a live session; stopped when idle — and what ``GET /api/spark`` and ``doctor``
say about them. Must not: start a
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
  session's ``SPARK_REMOTE=sc://localhost:PORT/;token=<t>;user_id=<name>;session_id=<uuid>``
  stays right across server restarts; the session's sandbox forwards exactly that port
  (``sessions.loopback_ports``). The session id is derived from the hub session id with
  ``DATA_DIR/spark/secret``: every hub session is its own server-side Spark session.
* **Authentication**: the server accepts only gRPC calls that carry its user's token
  (``spark.connect.authenticate.token``, derived from the same secret and the user id):
  a process on the host that reaches the loopback port without it is refused.
* **Your database**: the server's catalog (Hive, Derby metastore in the user's directory)
  has the user's database ``u_<name>`` as its default database, so every Spark session
  starts in it and ``saveAsTable`` lands in ``warehouse/u_<name>``, kept across sessions
  and restarts. The first server of a user creates it before its port opens.
* **Files**: the server sees the working directory of each of its user's live sessions at
  the path the session knows it by, and no other session's (``spark_embedded_files.py``).
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
* **Class-data archive** (AppCDS): made once per Java and pyspark install, mapped
  read-only by every server (``spark_embedded_archive.py``).

The modules: this one supervises (sessions, ports, wake-up, restarts, idle stop, state);
``spark_embedded_process.py`` launches one server and talks to it;
``spark_embedded_files.py`` and ``spark_embedded_archive.py`` as above;
``spark_embedded_describe.py`` says what ``GET /api/spark`` and ``doctor`` show.

Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from rsparkhub.config import Settings
from rsparkhub.hub import spark_embedded_files as files
from rsparkhub.hub.sessions.live import session_dir
from rsparkhub.hub.spark import (
    PRELOAD_ENV,
    Announce,
    Description,
    SessionOwner,
    SparkHub,
    SparkService,
    SparkUnavailable,
    ui_bearer,
)
from rsparkhub.hub.spark_embedded_archive import ClassArchive
from rsparkhub.hub.spark_embedded_describe import describe_install, describe_user
from rsparkhub.hub.spark_embedded_process import (
    UserServer,
    call,
    close_stdin,
    kill_strays,
    spark_home,
    start_server,
    terminate,
)
from rsparkhub.hub.supervised import Backoff, PortFile, port_taken
from rsparkhub.hub.userdb import role_name

if TYPE_CHECKING:
    from rsparkhub.hub.sandbox import Sandboxes

log = logging.getLogger("rsparkhub.spark")

T = TypeVar("T")

STOP_GRACE_S = 15.0
MAX_BACKOFF_S = 30.0


class EmbeddedSpark(SparkService):
    """The hub's Spark service with ``spark = 'embedded'`` (``hub.spark``)."""

    mode = "embedded"
    # Administrators included: see the module docstring.
    ui_audience = "its own user"

    def __init__(self, settings: Settings, hub: SparkHub | None = None) -> None:
        super().__init__(settings, hub)
        self.users_dir = self.base / "users"
        self.archive = ClassArchive(
            settings, (settings.spark_class_archive_dir or self.base / "cds").resolve()
        )
        self._servers: dict[str, UserServer] = {}  # by user id
        self._session_user: dict[str, str] = {}  # hub session id -> user id
        self._ports_lock = asyncio.Lock()
        self._idle_task: asyncio.Task[None] | None = None
        self._archive_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def archive_dir(self) -> Path:
        return self.archive.directory

    # ------------------------------------------------------------------ hub wiring
    @property
    def _hub(self) -> SparkHub:
        if self.hub is None:
            raise SparkUnavailable("the Spark service is not attached to a hub")
        return self.hub

    @property
    def _sandboxes(self) -> Sandboxes:
        return self._hub.sandboxes

    def _files_root(self) -> Path | None:
        return files.files_root(self.hub.sandboxes if self.hub is not None else None)

    def _spawn_task(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
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
    def _port_file(self, user_id: str) -> PortFile:
        return PortFile(self.user_dir(user_id) / "port")

    def _taken_ports(self, user_id: str) -> set[int]:
        """Every other user's port, running or remembered."""
        taken = {s.port for s in self._servers.values() if s.user_id != user_id}
        with contextlib.suppress(OSError):
            for d in self.users_dir.iterdir():
                if d.name != user_id and (p := self._port_file(d.name).read()) is not None:
                    taken.add(p)
        return taken

    def _new_port(self, user_id: str) -> int:
        try:
            return self._port_file(user_id).choose(self._taken_ports(user_id))
        except OSError:
            raise SparkUnavailable("no free loopback port for a Spark server") from None

    def _port(self, user_id: str) -> int:
        port = self._port_file(user_id).read()
        return port if port is not None else self._new_port(user_id)

    async def _server(self, user_id: str, user: str) -> UserServer:
        srv = self._servers.get(user_id)
        if srv is not None:
            return srv
        async with self._ports_lock:
            srv = self._servers.get(user_id)
            if srv is None:
                port = await asyncio.to_thread(self._port, user_id)
                token = await asyncio.to_thread(self.connect_token, user_id)
                key = await asyncio.to_thread(self.ui_subject_key, user_id)
                srv = UserServer(user_id, user, port, token, ui_key=key)
                self._servers[user_id] = srv
        return srv

    def _by_name(self, user: str) -> UserServer | None:
        return next((s for s in self._servers.values() if s.user == user), None)

    # ------------------------------------------------------------------ sessions
    def remote(self, user: str, hub_session_id: str, port: int | None = None) -> str:
        """The session's SPARK_REMOTE. ``localhost``, not 127.0.0.1: pyspark sends a token
        without TLS only to that name (gRPC's local credentials)."""
        sid = self.spark_session_id(hub_session_id)
        srv = self._by_name(user)
        token = f"token={srv.token};" if srv is not None and srv.token else ""
        return f"sc://localhost:{port}/;{token}user_id={quote(user, safe='')};session_id={sid}"

    async def session_env(self, s: SessionOwner) -> dict[str, str]:
        """SPARK_REMOTE for a new session of ``user``, pointing at the user's own server
        (at once: the server starts in the background when the workspace uses Spark, or at
        the session's first Spark call), or {} and a warning when Spark cannot run here."""
        if s.user_id is None:
            log.warning("session %s without Spark: no user id", s.hub_session_id)
            return {}
        try:
            spark_home()
            await asyncio.to_thread(self._secret_bytes)
            srv = await self._server(s.user_id, s.user)
        except (SparkUnavailable, OSError) as exc:
            return await self._without_spark(exc)
        env = await self._with_preload(
            s, {"SPARK_REMOTE": self.remote(s.user, s.hub_session_id, srv.port)}
        )
        self._attach(srv, s.hub_session_id, s.workspace_id, used=PRELOAD_ENV in env)
        return env

    def register(self, s: SessionOwner) -> None:
        """A live session adopted at hub start (its SPARK_REMOTE names its user's port)."""
        user_id = s.user_id
        if user_id is None:
            return

        async def go() -> None:
            try:
                srv = await self._server(user_id, s.user)
            except (SparkUnavailable, OSError) as exc:
                log.warning("spark: %s", exc)
                return
            self._attach(srv, s.hub_session_id, s.workspace_id)

        self._spawn_task(go(), f"spark-register-{s.hub_session_id}")

    def _attach(
        self,
        srv: UserServer,
        hub_session_id: str,
        workspace_id: str | None,
        used: bool | None = None,
    ) -> None:
        """A live session of ``srv``'s user; its server starts at once when the session's
        workspace uses Spark (``used``; None: look now, in the background)."""
        srv.sessions.add(hub_session_id)
        self._session_user[hub_session_id] = srv.user_id
        self._ensure_idle_loop()
        if srv.task is not None:
            return  # starting or running
        if used:
            self._start_used(srv, workspace_id)
        elif used is None and workspace_id is not None:
            self._spawn_task(self._start_if_used(srv, workspace_id), f"spark-scan-{srv.name}")
        self._spawn_task(self._listen(srv), f"spark-wake-{srv.name}")

    async def _start_if_used(self, srv: UserServer, workspace_id: str) -> None:
        if await self._uses_spark(workspace_id):
            self._start_used(srv, workspace_id)

    def _start_used(self, srv: UserServer, workspace_id: str | None) -> None:
        if srv.sessions and srv.task is None:
            log.info("spark: workspace %s uses Spark: starting %s's server", workspace_id,
                     srv.user)  # fmt: skip
            self._start(srv)

    async def session_started(
        self, s: SessionOwner, spawner_state: Mapping[str, Any], announce: Announce | None = None
    ) -> None:
        """The session runs (or was adopted): its working directory becomes visible to its
        user's server, at the same path."""
        live = self._hub.sessions.get(s.hub_session_id)
        user_id = live.owner_id if live is not None else None
        if user_id is not None and self._files_root() is not None:
            work = session_dir(self.settings.data_dir, s.hub_session_id) / "work"
            try:
                await asyncio.to_thread(files.expose, user_id, s.hub_session_id, work)
            except OSError as exc:
                log.warning("spark: session %s's files are not visible to Spark: %s",
                            s.hub_session_id, exc)  # fmt: skip

    async def session_ended(self, hub_session_id: str) -> None:
        await super().session_ended(hub_session_id)
        if self._files_root() is not None:
            try:
                await asyncio.to_thread(files.hide, hub_session_id)
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

    # ------------------------------------------------------------------ wake-up listener
    async def _listen(self, srv: UserServer) -> None:
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

    async def _unlisten(self, srv: UserServer) -> None:
        wake, srv.wake = srv.wake, None
        if wake is not None:
            wake.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(wake.wait_closed(), 2)

    # ------------------------------------------------------------------ supervision
    def _start(self, srv: UserServer) -> None:
        if srv.task is None and not self._closing:
            srv.stop_requested = False
            srv.state = "starting"
            srv.task = self._spawn_task(self._supervise(srv), f"spark-server-{srv.name}")

    async def _supervise(self, srv: UserServer) -> None:
        backoff = Backoff(1.0, MAX_BACKOFF_S, stable_s=300.0)
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
                                srv.user, exc, backoff.delay)  # fmt: skip
                else:
                    srv.last_error = None
                    srv.started_s = time.monotonic() - t0
                    log.info("the Spark Connect server of %s is up after %.1f s (port %d)",
                             srv.user, srv.started_s, srv.port)  # fmt: skip
                    srv.state = "running"
                    srv.ready.set()
                    if self.archive.path is None and self._archive_task is None:
                        # made once, now that this server is up (not competing with it)
                        self._archive_task = self._spawn_task(
                            self.archive.make(self._sandboxes, self._spawn_task), "spark-archive"
                        )
                    assert srv.proc is not None
                    rc = await srv.proc.wait()
                    await self._cleanup(srv)
                    if self._closing or srv.stop_requested:
                        break
                    srv.restarts += 1
                    backoff.ran(time.monotonic() - t0)
                    if not srv.sessions:
                        log.warning("the Spark Connect server of %s died (exit %s); it starts "
                                    "again at its next use", srv.user, rc)  # fmt: skip
                        break
                    log.warning("the Spark Connect server of %s died (exit %s); restarting "
                                "in %.0f s", srv.user, rc, backoff.delay)  # fmt: skip
                srv.state = "starting"
                await asyncio.sleep(backoff.next())
        finally:
            await self._cleanup(srv)
            srv.state = "down"
            srv.task = None
            srv.idle_since = time.monotonic()
            if srv.sessions and not self._closing:
                self._spawn_task(self._listen(srv), f"spark-wake-{srv.name}")

    async def _cleanup(self, srv: UserServer) -> None:
        await terminate(srv, self._sandboxes)

    async def stop_server(self, srv: UserServer, why: str) -> None:
        """Stop a user's server: stdin closed (the driver stops, Derby closes), then after
        STOP_GRACE_S its whole cgroup is killed."""
        task = srv.task
        if task is None:
            return
        srv.stop_requested = True
        srv.state = "stopping"
        log.info("stopping the Spark Connect server of %s: %s", srv.user, why)
        close_stdin(srv.proc)  # the server stops its driver and exits
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_GRACE_S)
        except TimeoutError:
            task.cancel()  # its cleanup kills the cgroup
        except Exception:  # noqa: BLE001 - logged by the supervisor
            pass
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    # ------------------------------------------------------------------ one start
    # ------------------------------------------------------------------ one start
    def _prepare_dirs(self, srv: UserServer) -> tuple[Path, Path]:
        """The hub's directory of the user's server and the user's own ``data/`` in it
        (made here, handed over to the user's uid by the sandbox)."""
        d = self.user_dir(srv.user_id)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = d / "data"
        if data.is_symlink():  # never: its parent is the hub's; refuse to follow one
            raise SparkUnavailable(f"{data} is a symbolic link")
        data.mkdir(mode=0o700, exist_ok=True)
        return d, data

    async def _start_once(self, srv: UserServer) -> None:
        """Start the user's server in its sandbox and wait until its port is open."""
        spark_home()  # pyspark is installed (else SparkUnavailable), before anything else
        await self._unlisten(srv)
        identity = await self._hub.identities.for_user(srv.user_id)
        d, data = await asyncio.to_thread(self._prepare_dirs, srv)
        first = not await asyncio.to_thread((data / "metastore_db").exists)
        await asyncio.to_thread(self._sandboxes.kill, srv.name)  # a crashed hub's server
        if self._sandboxes.cgroups.version == "none":
            await asyncio.to_thread(kill_strays, data)
        archive = await self.archive.find()
        if await asyncio.to_thread(port_taken, srv.port):
            old, srv.port = srv.port, await asyncio.to_thread(self._new_port, srv.user_id)
            log.warning("spark: %s's port %d is taken by another program; using %d (new "
                        "sessions only)", srv.user, old, srv.port)  # fmt: skip
        files_ro: files.Binds = []
        files_rw: files.Binds = []
        if self._files_root() is not None:
            files_ro, files_rw = await asyncio.to_thread(
                files.binds, srv.user_id, srv.user, self.settings.data_dir
            )
        await start_server(
            self._sandboxes,
            self.settings,
            srv,
            identity,
            d,
            first=first,
            archive=archive,
            binds=files_rw,
            ro_binds=[*self.archive.binds(), *files_ro],
            spawn_task=self._spawn_task,
        )

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
                    running = int((await call(srv, "activity")).get("running") or 0)
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
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(files.drop, s.user_id)
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

    async def ui_headers(self, owner: str) -> dict[str, str]:
        srv = self._by_name(owner)
        return {"authorization": ui_bearer(srv.ui_key)} if srv is not None and srv.ui_key else {}

    def may_open_ui(self, caller: str, is_admin: bool, owner: str) -> bool:
        return caller == owner  # administrators included: see the module docstring

    def ui_missing(self, owner: str) -> str:
        return (
            f"The Spark Connect server of '{owner}' is not running right now: it starts with "
            "their first Spark call and stops when idle (GET /api/spark shows its state). "
            "Open this page again once it runs."
        )

    async def describe_for(self, user: str, is_admin: bool) -> Description:
        return await describe_user(self, user)

    # ------------------------------------------------------------------ doctor
    async def describe(self) -> Description:
        """For doctor: Java, pyspark, the archive and the users' servers. Starts nothing."""
        return await describe_install(self)
