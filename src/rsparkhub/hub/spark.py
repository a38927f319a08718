"""Spark for sessions: a Spark Connect server the hub starts and supervises (``spark =
'embedded'``), an external one (``'external'``), per-session drivers on Kubernetes
(``'kubernetes'``, next to the Kubernetes spawner's session pods, see ``spark_k8s.py``), or
none (``'off'``).

* **Embedded server**: ``python -m rsparkhub.agent.spark server`` (a process group of its
  own) starts the driver JVM of the pip ``pyspark`` package (Java 17+) through py4j, started
  in the background at the first session start. Everything it listens on is bound to
  127.0.0.1: gRPC (a port chosen once, ``DATA_DIR/spark/port``), the driver and block
  manager (``spark.driver.bindAddress``), the web UI (``SPARK_LOCAL_IP``; a fresh free port
  at each start) and py4j. Log: ``DATA_DIR/spark/server.log``.
* **The first statement runs in the user's database**: each user has a database ``u_<name>``
  located in ``warehouse/u_<name>`` (Hive catalog, embedded Derby metastore in
  ``DATA_DIR/spark/metastore``), so ``saveAsTable("t")`` lands there and survives session,
  hub and server restarts. The hub creates each hub session's server-side Spark session
  itself, with that database current, *before* the session's kernel can reach it: when the
  server is up, session start waits for this (tens of milliseconds; the first one also
  opens the metastore); when the server is (re)starting, the server opens its gRPC port
  only after every live session has been prepared. A kernel that asks before the port is
  open is refused and retried by the Spark client (in session kernels at most every 2 s,
  see ``agent/pykernel.py``). ``spark.stop()``
  in a session releases its server-side session for good: Spark refuses that id
  afterwards (``INVALID_HANDLE.SESSION_CLOSED``) until the hub session restarts.
* **Isolation**: ``SPARK_REMOTE=sc://127.0.0.1:PORT/;user_id=<user>;session_id=<uuid>``: one
  server-side session per hub session (temporary views, settings, current database). The
  uuid is derived from the hub session id with a secret in ``DATA_DIR/spark/secret``, so it
  is stable across hub restarts and not guessable.
* **No authentication**: Spark Connect does not authenticate its clients. Anyone who can
  open a TCP connection to the port can run any query as any ``user_id`` and read or drop
  every user's tables (the warehouse files all belong to the hub's OS user). The embedded
  server listens on loopback only, which keeps other machines out — not other programs or
  OS users on this machine, and not a hostile session. The user ids separate well-behaved
  users' state; they are not a security boundary. An external server's URL should be
  reachable only from the session network.
* **Supervision**: when the server dies it is restarted with backoff (1 s … 30 s) and the
  live sessions are prepared again before it opens. What a user then sees, from pyspark's
  own rules: a query running at the crash fails; the first request of an existing ``spark``
  object after the restart fails with ``[INVALID_HANDLE.SESSION_CHANGED] … The existing
  Spark server driver instance has restarted`` (a request sent while the server is down
  is retried by the client until it is back, then gets this error), which also marks that
  object stopped, so the next ``SparkSession.builder.getOrCreate()`` returns a new,
  working session — in the user's database, without temporary views or cached data
  (tables stay). Calling ``getOrCreate()`` *before* that first error returns the old object
  (pyspark cannot know yet), whose first request then fails the same way. The hub stops
  the server's process group at shutdown; the server also exits when the hub's pipe closes,
  and a stale server of a crashed hub (``server.pid``) is killed at start.
* **Web UI**: the embedded server's UI (``spark.ui.proxyBase`` = the hub's
  ``/spark-ui/_shared``, kill links off) is served only through the hub's authenticated
  proxy (``hub/api/spark.py``); it shows every user's queries, so only administrators may
  open it. :meth:`SparkService.ui_target` says where a UI is.
* **Kubernetes drivers** (``spark = 'kubernetes'``): the session manager calls
  :meth:`SparkService.session_started` once the session's pod exists (and for every session
  adopted after a hub restart) and :meth:`SparkService.session_ended` when it ends (both are
  no-ops in the other modes). The first creates the session's driver pod and Service with
  the session pod as owner (``spark_k8s.create_driver``, idempotent, so an adopted session
  keeps its driver); the second deletes them (``delete_driver``, idempotent). A driver that
  cannot be created does not stop the session: its clients are told why, the hub logs it,
  ``GET /api/spark`` repeats it, and Spark calls in the session fail to connect. The UI of a
  user's most recently started session with a driver is ``/spark-ui/<user>/`` (the user and
  administrators). The Spark session id in ``SPARK_REMOTE`` is derived as above.

Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from rsparkhub.config import Settings
from rsparkhub.hub import spark_k8s as sk
from rsparkhub.hub.userdb import role_name

log = logging.getLogger("rsparkhub.spark")

SERVER_MODULE = "rsparkhub.agent.spark"
SHARED_UI = "_shared"  # /spark-ui/_shared/: the embedded server's UI
START_TIMEOUT_S = 180.0
PREPARE_TIMEOUT_S = 120.0  # the first prepare also creates the Derby metastore
OPEN_TIMEOUT_S = 120.0
MAX_BACKOFF_S = 30.0


class SparkUnavailable(Exception):
    """Spark is off or cannot run here; the message says why."""


@dataclass(eq=False)
class _Driver:
    """What the hub knows of one session's Kubernetes driver (``spark = 'kubernetes'``)."""

    user: str
    order: int  # later sessions have larger numbers
    created: bool = False
    error: str | None = None  # why it could not be created
    removed: bool = False  # what a failed creation left was deleted again
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def spark_home() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("pyspark")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise SparkUnavailable(
            "the pyspark package is not installed (pip install 'pyspark[connect]')"
        )
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-submit").exists():
        raise SparkUnavailable(f"pyspark at {home} has no bin/spark-submit")
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def public_url(url: str) -> str:
    """A Spark Connect URL without its parameters (``token=…`` is a secret): scheme, host
    and port only."""
    parts = urlsplit(url.split(";", 1)[0])
    return f"{parts.scheme}://{parts.netloc}"


class SparkService:
    """The hub's Spark service (``hub.spark``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mode: str = settings.spark
        self.base = settings.data_dir / "spark"
        self.is_live: Callable[[str], bool] = lambda _sid: True
        self._sessions: dict[str, str] = {}  # hub session id -> user name
        self._secret: bytes | None = None
        self._port: int | None = None
        self._ui_port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._started: asyncio.Future[dict[str, Any]] | None = None
        self._next_id = 0
        self._write_lock = asyncio.Lock()
        self._accepting = False  # the server takes "prepare" commands (its JVM is up)
        self._pending: set[str] = set()  # registered, to prepare before the server opens
        self._closing = False
        self.ready = asyncio.Event()  # the gRPC port is open
        self.restarts = 0
        self._last_error: str | None = None
        self._http: Any = None  # httpx.AsyncClient of the UI proxy, made on first use
        # --- spark = 'kubernetes'
        self.kubernetes_api: Any = None  # the Kubernetes spawner's CoreV1Api (build_hub)
        self._k8s_cfg: sk.SparkK8sConfig | None = None
        self._drivers: dict[str, _Driver] = {}  # by hub session id, while the session lives
        self._driver_order = itertools.count()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    # ------------------------------------------------------------------ files
    def _secret_bytes(self) -> bytes:
        if self._secret is None:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.base / "secret"
            if not path.exists():
                path.write_text(secrets.token_hex(32))
                path.chmod(0o600)
            self._secret = path.read_text().strip().encode()
        return self._secret

    def spark_session_id(self, hub_session_id: str) -> str:
        digest = hmac.new(self._secret_bytes(), hub_session_id.encode(), hashlib.sha256)
        return str(uuid.UUID(bytes=digest.digest()[:16], version=4))

    def _port_number(self) -> int:
        if self._port is None:
            path = self.base / "port"
            try:
                self._port = int(path.read_text().strip())
            except (OSError, ValueError):
                self._port = _free_port()
                path.write_text(f"{self._port}\n")
        return self._port

    def _port_on_file(self) -> int | None:
        try:
            return int((self.base / "port").read_text().strip())
        except (OSError, ValueError):
            return None

    def remote(self, user: str, hub_session_id: str) -> str:
        sid = self.spark_session_id(hub_session_id)
        if self.mode == "external":
            assert self.settings.spark_remote_url is not None  # checked by Settings
            base = self.settings.spark_remote_url.rstrip("/")
            sep = "" if ";" in base else "/"
            return f"{base}{sep};user_id={quote(user, safe='')};session_id={sid}"
        return (
            f"sc://127.0.0.1:{self._port_number()}/;user_id={quote(user, safe='')};session_id={sid}"
        )

    def database(self, user: str) -> str | None:
        """The database a user's sessions start in: ``u_<name>`` on the embedded server; None
        elsewhere (an external cluster's catalog is its own; its default database applies)."""
        return role_name(user) if self.mode == "embedded" else None

    def _item(self, hub_session_id: str, user: str) -> dict[str, str]:
        db = role_name(user)
        return {
            "user": user,
            "session_id": self.spark_session_id(hub_session_id),
            "database": db,
            "location": str(self.base / "warehouse" / db),
        }

    # ------------------------------------------------------------------ sessions
    async def session_env(self, user: str, hub_session_id: str) -> dict[str, str]:
        """SPARK_REMOTE for a new session, or {} (and a warning) when Spark is off or
        unavailable. Embedded: starts the server in the background when it is not running;
        when it runs, returns once the session's server-side Spark session exists with the
        user's database current (bounded: after PREPARE_TIMEOUT_S the session starts anyway)."""
        if self.mode not in ("embedded", "external", "kubernetes"):
            return {}  # off
        try:
            await asyncio.to_thread(self._secret_bytes)
            if self.mode == "kubernetes":
                # the session's own driver (created by session_started), by its Service name
                url = sk.remote_url(
                    self._k8s(), user, hub_session_id, self.spark_session_id(hub_session_id)
                )
                return {"SPARK_REMOTE": url}
            if self.mode == "embedded":
                spark_home()
                await asyncio.to_thread(self._port_number)
        except (SparkUnavailable, OSError) as exc:
            log.warning("session without Spark: %s", exc)
            self._last_error = str(exc)
            return {}
        env = {"SPARK_REMOTE": self.remote(user, hub_session_id)}
        if self.mode != "embedded":
            return env
        self._sessions[hub_session_id] = user
        self.ensure_started()
        if not self._accepting:
            # prepared by the server start before it opens its port (no await in between)
            self._pending.add(hub_session_id)
            return env
        try:
            answer = await self._call(
                "prepare", PREPARE_TIMEOUT_S, items=[self._item(hub_session_id, user)]
            )
            if not answer.get("ok"):
                log.warning("spark: could not prepare a session: %s", answer.get("failed"))
        except (SparkUnavailable, TimeoutError) as exc:
            # the restart that follows prepares it (it is registered); start the session
            log.warning("spark: could not prepare a session: %s", exc or "timed out")
        return env

    def register(self, hub_session_id: str, user: str) -> None:
        """A live session adopted at hub start: its server-side Spark session is prepared
        with the others before the (re)started server opens."""
        if self.mode != "embedded":
            return
        self._sessions[hub_session_id] = user
        self._pending.add(hub_session_id)
        self.ensure_started()
        if self._accepting and (self._flush_task is None or self._flush_task.done()):
            self._flush_task = asyncio.create_task(self._flush(), name="spark-prepare")

    def ensure_started(self) -> None:
        if self.mode == "embedded" and self._supervisor is None and not self._closing:
            self._supervisor = asyncio.create_task(self._supervise(), name="spark-supervisor")

    def _take_pending(self) -> list[dict[str, str]]:
        """The items of every pending live session (and forget the ended ones)."""
        for sid in [s for s in self._sessions if not self.is_live(s)]:
            del self._sessions[sid]
        items = [self._item(s, self._sessions[s]) for s in sorted(self._pending)
                 if s in self._sessions]  # fmt: skip
        self._pending.clear()
        return items

    async def _flush(self) -> None:
        while self._pending and self._accepting:
            items = self._take_pending()
            if items:
                await self._prepare_items(items)

    async def _prepare_items(self, items: list[dict[str, str]]) -> None:
        try:
            answer = await self._call("prepare", PREPARE_TIMEOUT_S, items=items)
        except (SparkUnavailable, TimeoutError) as exc:
            log.warning("spark: could not prepare sessions: %s", exc or "timed out")
            return
        log.info("spark: %s", answer.get("detail"))
        if answer.get("failed"):
            log.warning("spark: could not prepare: %s", "; ".join(answer["failed"]))

    # ------------------------------------------------------------------ Kubernetes drivers
    def _k8s(self) -> sk.SparkK8sConfig:
        if self._k8s_cfg is None:
            self._k8s_cfg = sk.SparkK8sConfig.from_settings(self.settings)
        return self._k8s_cfg

    async def session_started(
        self,
        user: str,
        hub_session_id: str,
        spawner_state: Mapping[str, Any],
        *,
        workspace_id: str | None = None,
        announce: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """A session's pod exists (just started, or adopted after a hub restart). With
        ``spark = 'kubernetes'``: create the session's driver pod and Service, owned by the
        session pod (``spawner_state`` ``pod`` and ``uid``) so that Kubernetes deletes them
        with it; an existing driver is kept. Never raises: a failure is logged, told to the
        session's clients through ``announce`` and shown by ``GET /api/spark``; the session
        runs on without Spark. A no-op in the other modes."""
        if self.mode != "kubernetes":
            return
        drv = self._drivers.get(hub_session_id)
        if drv is None:
            drv = _Driver(user=user, order=next(self._driver_order))
            self._drivers[hub_session_id] = drv
        async with drv.lock:
            if drv.ended or not self.is_live(hub_session_id):
                self._drivers.pop(hub_session_id, None)
                return
            cfg = self._k8s()
            name = sk.driver_name(hub_session_id)
            pod, uid = spawner_state.get("pod"), spawner_state.get("uid")
            owner = sk.Owner(name=str(pod), uid=str(uid)) if pod and uid else None
            try:
                if self.kubernetes_api is None:
                    raise sk.SparkDriverError(
                        "spark_driver_unavailable",
                        "The hub has no Kubernetes API client (spark = 'kubernetes' needs "
                        "spawner = 'kubernetes').",
                    )
                if owner is None:
                    log.warning("spark driver %s has no owner: the session state names no pod "
                                "uid; it is deleted when the session ends", name)  # fmt: skip
                await sk.create_driver(
                    self.kubernetes_api,
                    cfg,
                    user,
                    hub_session_id,
                    owner=owner,
                    workspace=workspace_id,
                    proxy_base=sk.ui_proxy_base(user, cfg.hub_base_path),
                )
            except Exception as exc:  # noqa: BLE001 - the session runs on without Spark
                why = (
                    exc.message
                    if isinstance(exc, sk.SparkDriverError)
                    else f"the Kubernetes API did not answer ({type(exc).__name__}); see "
                    "the hub log"
                )
                drv.created, drv.error = False, why
                self._last_error = why
                log.warning("session %s: no Spark driver: %s", hub_session_id, why,
                            exc_info=not isinstance(exc, sk.SparkDriverError))  # fmt: skip
                if self.kubernetes_api is not None:  # half made (a pod without its Service)
                    drv.removed = await self._delete_driver(hub_session_id)
                if announce is not None:
                    await announce(
                        f"Spark is not available in this session: its Spark driver could not "
                        f"be created. {why} Spark calls from Python and R will fail to "
                        "connect; stop and start the session to try again."
                    )
                return
            drv.created, drv.error = True, None
            self._last_error = None
            if announce is not None:
                await announce(
                    f"Spark: driver {name} created; it is ready once its pod has started "
                    f"(the Spark UI is at /spark-ui/{quote(user, safe='')}/)"
                )

    async def session_ended(self, hub_session_id: str) -> None:
        """The session ended: delete its Kubernetes driver (idempotent; errors are logged —
        Kubernetes deletes it with the session pod anyway). A no-op in the other modes."""
        drv = self._drivers.get(hub_session_id)
        if drv is None:
            return
        drv.ended = True
        async with drv.lock:  # a creation under way finishes first
            self._drivers.pop(hub_session_id, None)
            if self.kubernetes_api is not None and not drv.removed:
                await self._delete_driver(hub_session_id)

    async def _delete_driver(self, hub_session_id: str) -> bool:
        try:
            await sk.delete_driver(self.kubernetes_api, self._k8s().namespace, hub_session_id)
        except Exception as exc:  # noqa: BLE001 - owner references remove it later
            why = exc.message if isinstance(exc, sk.SparkDriverError) else repr(exc)
            log.warning("session %s: could not delete its Spark driver: %s", hub_session_id, why)
            return False
        return True

    def _live_driver(self, user: str) -> str | None:
        """The hub session id of ``user``'s most recently started session whose driver
        exists, if any."""
        best: tuple[int, str] | None = None
        for sid, drv in self._drivers.items():
            if drv.user == user and drv.created and not drv.ended:
                if best is None or drv.order > best[0]:
                    best = (drv.order, sid)
        return best[1] if best else None

    def _driver_failure(self, user: str) -> str | None:
        """Why the driver of ``user``'s latest live session could not be created, if so."""
        mine = [d for d in self._drivers.values() if d.user == user and not d.ended]
        latest = max(mine, key=lambda d: d.order, default=None)
        return latest.error if latest is not None else None

    # ------------------------------------------------------------------ the server process
    async def _call(self, cmd: str, timeout: float, **args: Any) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise SparkUnavailable("the Spark Connect server is not running")
        self._next_id += 1
        cid = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[cid] = fut
        try:
            async with self._write_lock:
                proc.stdin.write((json.dumps({"id": cid, "cmd": cmd, **args}) + "\n").encode())
                await proc.stdin.drain()
            return await asyncio.wait_for(fut, timeout)
        except (ConnectionError, BrokenPipeError) as exc:
            raise SparkUnavailable(f"the Spark Connect server went away: {exc}") from None
        finally:
            self._calls.pop(cid, None)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """The server's answers; at its end, whoever waits is told it went away."""
        assert proc.stdout is not None
        try:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                fut: asyncio.Future[dict[str, Any]] | None
                if msg.get("event") in ("started", "failed"):
                    fut = self._started
                else:
                    fut = self._calls.get(msg.get("id", -1))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        finally:
            gone = SparkUnavailable("the Spark Connect server exited")
            for fut in [self._started, *self._calls.values()]:
                if fut is not None and not fut.done():
                    fut.set_exception(gone)

    def _confs(self, port: int, ui_port: int) -> dict[str, str]:
        s = self.settings
        metastore = self.base / "metastore"
        ui_base = urlsplit(s.base_url).path.rstrip("/") + f"/spark-ui/{SHARED_UI}"
        return {
            "spark.master": s.spark_master,
            "spark.app.name": "rsparkhub-spark-connect",
            "spark.driver.memory": s.spark_driver_memory,
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "true",
            "spark.ui.port": str(ui_port),
            "spark.ui.proxyBase": ui_base,
            "spark.ui.killEnabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(self.base / "warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={metastore};create=true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={self.base}",
            "spark.connect.session.manager.defaultSessionTimeout": "7d",
        }  # fmt: skip

    def _argv(self) -> list[str]:
        # DATA_DIR/spark in argv identifies our server (stale-server check); nothing secret
        return [sys.executable, "-m", SERVER_MODULE, "server", str(self.base)]

    def _is_our_server(self, cmdline: list[str]) -> bool:
        return SERVER_MODULE in cmdline and "server" in cmdline and str(self.base) in cmdline

    def _kill_stale(self) -> None:
        pidfile = self.base / "server.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            import psutil

            proc = psutil.Process(pid)
            if self._is_our_server(proc.cmdline()):
                log.warning("stopping a stale Spark Connect server (pid %d) of an earlier hub", pid)
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                proc.wait(10)
        except Exception:  # noqa: BLE001 - gone already, or not ours
            pass
        pidfile.unlink(missing_ok=True)

    async def _start_once(self) -> asyncio.subprocess.Process:
        """Start the server process, prepare the pending sessions, open the gRPC port."""
        home = spark_home()
        await asyncio.to_thread(self.base.mkdir, 0o700, True, True)
        await asyncio.to_thread(self._kill_stale)
        port = await asyncio.to_thread(self._port_number)
        if await asyncio.to_thread(_port_open, port):
            port = self._port = _free_port()
            (self.base / "port").write_text(f"{port}\n")
            log.warning("spark port taken by another program; using %d (new sessions)", port)
        ui_port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RSPARKHUB_", "PG", "SPARK_", "PYSPARK_"))}  # fmt: skip
        env.pop("DATABASE_URL", None)
        env.update(SPARK_HOME=str(home), PYSPARK_PYTHON=sys.executable,
                   SPARK_LOG_DIR=str(self.base), SPARK_LOCAL_IP="127.0.0.1")  # fmt: skip
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        with open(self.base / "server.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
                env=env,
                cwd=str(self.base),
                start_new_session=True,
            )
        self._proc = proc
        self._reader = asyncio.create_task(self._read(proc), name="spark-server-reader")
        (self.base / "server.pid").write_text(f"{proc.pid}\n")
        log.info("starting the Spark Connect server (pid %d) on 127.0.0.1:%d", proc.pid, port)
        try:
            assert proc.stdin is not None
            proc.stdin.write((json.dumps({"confs": self._confs(port, ui_port)}) + "\n").encode())
            await proc.stdin.drain()
            started = await asyncio.wait_for(self._started, START_TIMEOUT_S)
            if started.get("event") != "started":
                raise SparkUnavailable(f"the Spark driver did not start: {started.get('detail')}")
            ui = urlsplit(str(started.get("ui_url") or ""))
            # The JVM is up: from here on a new session is prepared on demand, and every
            # session registered so far is prepared now, before the port opens.
            self._accepting = True
            items = self._take_pending()
            if items:
                await self._prepare_items(items)
            answer = await self._call("open", OPEN_TIMEOUT_S)
            if not answer.get("ok"):
                raise SparkUnavailable(f"Spark Connect did not open: {answer.get('detail')}")
            self._ui_port = ui.port
            return proc
        except (SparkUnavailable, TimeoutError, ConnectionError) as exc:
            self._accepting = False
            why = "it did not start in time" if isinstance(exc, TimeoutError) else str(exc)
            if not isinstance(exc, TimeoutError):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)  # it may be exiting on its own
            self._killpg(proc)
            await proc.wait()
            raise SparkUnavailable(
                f"the Spark Connect server failed to start ({why}; exit code {proc.returncode}); "
                f"see {self.base / 'server.log'}"
            ) from None

    @staticmethod
    def _killpg(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, sig)

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._closing:
            t0 = time.monotonic()
            try:
                self._proc = await self._start_once()
            except SparkUnavailable as exc:
                self._last_error = str(exc)
                self._pending.update(self._sessions)  # all of them, at the next attempt
                log.warning("Spark not available: %s; retrying in %.0f s", exc, backoff)
            else:
                self._last_error = None
                log.info("the Spark Connect server is up after %.1f s", time.monotonic() - t0)
                self.ready.set()
                rc = await self._proc.wait()
                self.ready.clear()
                self._accepting = False
                self._ui_port = None
                self._killpg(self._proc)  # whatever is left of its process group
                if self._closing:
                    break
                self.restarts += 1
                # every live session is prepared again before the new server opens
                self._pending.update(self._sessions)
                if time.monotonic() - t0 > 300:
                    backoff = 1.0
                log.warning("the Spark Connect server died (exit %s); restarting in %.0f s",
                            rc, backoff)  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def close(self) -> None:
        """Hub shutdown: stop the server's process group."""
        self._closing = True
        for task in (self._flush_task, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._killpg(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                self._killpg(proc)
                await proc.wait()
            log.info("stopped the Spark Connect server")
        if proc is not None:
            self._killpg(proc)  # the JVM, should it have outlived its parent
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._http is not None:
            await self._http.aclose()
        with contextlib.suppress(OSError):
            (self.base / "server.pid").unlink()

    # ------------------------------------------------------------------ state, UI
    async def state(self) -> str:
        """running | starting | down | off. Embedded: down before the first session and
        between a failure and the next attempt; external: whether its port answers."""
        if self.mode == "off":
            return "off"
        if self.mode == "embedded":
            if self.ready.is_set():
                return "running"
            proc = self._proc
            if self._supervisor is not None and proc is not None and proc.returncode is None:
                return "starting"
            if self._supervisor is not None and proc is None:
                return "starting"
            return "down"
        if self.mode == "external" and self.settings.spark_remote_url:
            parts = urlsplit(self.settings.spark_remote_url.split(";", 1)[0])
            if parts.hostname is None:
                return "down"
            up = await asyncio.to_thread(_port_open, parts.port or 15002, parts.hostname, 2.0)
            return "running" if up else "down"
        if self.mode == "kubernetes":
            return "running" if any(d.created for d in self._drivers.values()) else "down"
        return "down"

    def ui_target(self, owner: str) -> str | None:
        """The base URL (``http://HOST:PORT``) of the Spark web UI the hub proxies at
        ``/spark-ui/<owner>/``, or None when there is none right now. ``owner`` is
        ``_shared`` for the embedded server (while it runs), otherwise a user name: the
        Kubernetes mode gives the UI of that user's most recently started session's driver
        (its Service's port 4040, ``spark_kubernetes_ui_url``); in the other modes users have
        no driver UI of their own."""
        if owner == SHARED_UI:
            if self.mode == "embedded" and self.ready.is_set() and self._ui_port:
                return f"http://127.0.0.1:{self._ui_port}"
        elif self.mode == "kubernetes":
            sid = self._live_driver(owner)
            return sk.ui_url(self._k8s(), sid) if sid is not None else None
        return None

    def http(self) -> Any:
        """The UI proxy's HTTP client (loopback / cluster-internal; no proxy env)."""
        if self._http is None:
            import httpx

            # httpx logs every request at INFO: one line per page asset is noise here
            httpx_log = logging.getLogger("httpx")
            if httpx_log.level == logging.NOTSET:
                httpx_log.setLevel(logging.WARNING)

            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=5.0),
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            )
        return self._http

    async def describe_for(self, user: str, is_admin: bool) -> dict[str, Any]:
        """What ``GET /api/spark`` tells a user: no secrets, no other session's ids."""
        mode = self.mode
        if mode == "kubernetes":
            return self._describe_kubernetes_for(user)
        state = await self.state()
        remote: str | None = None
        if mode == "embedded":
            port = self._port or await asyncio.to_thread(self._port_on_file)
            if port:  # chosen at the first session start
                remote = f"sc://127.0.0.1:{port}/;user_id={quote(user, safe='')}"
        elif mode == "external" and self.settings.spark_remote_url:
            remote = f"{public_url(self.settings.spark_remote_url)}/;user_id={quote(user, safe='')}"
        ui_url = None
        owner = SHARED_UI if mode == "embedded" else user
        if (is_admin or owner == user) and self.ui_target(owner) is not None:
            ui_url = f"/spark-ui/{quote(owner, safe='')}/"
        detail = {
            "off": "Spark is off on this hub (spark = 'off'): sessions get no SPARK_REMOTE.",
            "embedded": "One Spark Connect server on the hub's machine, shared by all users; "
            "each session is its own Spark session (SPARK_REMOTE carries its ids) and starts "
            f"in your database {role_name(user)}. "
            + ("Its web UI shows every user's queries: administrators only."
               if not is_admin else "Its web UI is at ui_url while it runs."),
            "external": "An external Spark Connect server: sessions get its URL with their "
            "user and session ids; its default database applies (the hub prepares none).",
        }.get(mode, f"Spark drivers are managed by the {mode} wiring.")  # fmt: skip
        if mode == "embedded" and state == "down" and self._last_error:
            detail += f" Not running: {self._last_error}"
        elif mode == "embedded" and state == "down":
            detail += " It starts with the next session."
        return {
            "mode": mode,
            "state": state,
            "remote": remote,
            "database": self.database(user),
            "ui_url": ui_url,
            "detail": detail,
        }

    def _describe_kubernetes_for(self, user: str) -> dict[str, Any]:
        sid = self._live_driver(user)
        who = quote(user, safe="")
        detail = (
            "Each of your sessions gets its own Spark Connect driver on Kubernetes (executors "
            "as pods, added and removed with the work); it starts with the session and is "
            "deleted with it. "
        )
        if sid is not None:
            detail += (
                f"Your latest session's driver is {sk.driver_name(sid)}; its web UI is at "
                "ui_url (yours and administrators' only)."
            )
        elif (failure := self._driver_failure(user)) is not None:
            detail += f"Your latest session has no Spark driver: {failure}"
        else:
            detail += "You have no running session with a Spark driver right now."
        return {
            "mode": "kubernetes",
            "state": "running" if sid is not None else "down",
            "remote": (
                f"sc://{sk.service_host(self._k8s(), sid)}:{sk.CONNECT_PORT}/;user_id={who}"
                if sid is not None
                else None
            ),
            "database": None,
            "ui_url": f"/spark-ui/{who}/" if sid is not None else None,
            "detail": detail,
        }

    # ------------------------------------------------------------------ doctor
    def _running_pid(self) -> int | None:
        try:
            import psutil

            pid = int((self.base / "server.pid").read_text().strip())
            if self._is_our_server(psutil.Process(pid).cmdline()):
                return pid
        except Exception:  # noqa: BLE001 - no pid file, or not running
            return None
        return None

    async def describe(self) -> dict[str, Any]:
        """For doctor: Java, pyspark and the server's state. Starts nothing."""
        mode = self.mode
        if mode == "off":
            return {"ok": False, "mode": mode, "detail": "off (spark = 'off')"}
        if mode == "external":
            url = public_url(self.settings.spark_remote_url or "")
            state = await self.state()
            reach = "reachable" if state == "running" else "NOT reachable from the hub"
            return {
                "ok": state == "running",
                "mode": mode,
                "detail": f"external Spark Connect server {url} ({reach}); no authentication: "
                "keep it reachable from the session network only",
            }
        if mode == "kubernetes":
            return self._describe_kubernetes()
        if mode != "embedded":
            return {"ok": True, "mode": mode, "detail": f"{mode}: one Spark driver per session"}
        try:
            home = spark_home()
        except SparkUnavailable as exc:
            return {"ok": False, "mode": mode, "detail": str(exc)}
        java = await _java_version()
        if java is None:
            return {"ok": False, "mode": mode,
                    "detail": "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"}  # fmt: skip
        version = _pyspark_version(home)
        if self.ready.is_set():
            state = f"running on 127.0.0.1:{self._port} (restarts: {self.restarts})"
        elif self._last_error:
            state = f"not running: {self._last_error}"
        elif self._supervisor is not None:
            state = "starting"
        elif (pid := self._running_pid()) is not None:
            state = f"running (pid {pid}, started by the hub)"
        else:
            state = "started with the first session"
        return {
            "ok": True,
            "mode": mode,
            "java": java,
            "pyspark": version,
            "detail": f"embedded Spark Connect server (pyspark {version}, {java}) in {self.base}; "
            f"{state}; loopback only, no authentication",
        }

    def _describe_kubernetes(self) -> dict[str, Any]:
        cfg = self._k8s()
        drivers = sum(1 for d in self._drivers.values() if d.created)
        failed = sum(1 for d in self._drivers.values() if d.error is not None)
        detail = (
            f"one Spark Connect driver per session in namespace '{cfg.namespace}' (image "
            f"{cfg.image}, driver heap {cfg.driver_memory}, up to {cfg.max_executors} "
            f"executors of {cfg.executor_cores} cores and {cfg.executor_memory}); "
        )
        if self.kubernetes_api is None:
            detail += "drivers are created by the running hub (GET /api/doctor shows them)"
        else:
            detail += f"{drivers} live drivers"
            if failed:
                detail += f", {failed} live sessions without one"
        if self._last_error:
            detail += f"; last failure: {self._last_error}"
        return {
            "ok": self._last_error is None,
            "mode": "kubernetes",
            "namespace": cfg.namespace,
            "image": cfg.image,
            "drivers": drivers,
            "detail": detail + "; Spark Connect has no authentication: every session pod "
            "can reach every driver's port 15002 (the network policies keep all else out)",
        }


def _pyspark_version(home: Path) -> str:
    try:
        text = (home / "version.py").read_text()
        return text.split("=", 1)[1].strip().strip("\"'")
    except (OSError, IndexError):
        return "?"


async def _java_version() -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "java", "-version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except (OSError, TimeoutError):
        return None
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[0] if lines and proc.returncode == 0 else None
