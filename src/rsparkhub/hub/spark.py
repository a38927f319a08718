"""Spark for sessions: a Spark Connect server the hub starts and supervises (``spark =
'embedded'``), an external one (``'external'``), or none (``'off'``).

* Embedded: the server comes from the pip ``pyspark`` package (``spark-submit --class
  …SparkConnectServer``, Java 17+), started in the background at the first session start,
  bound to 127.0.0.1 (gRPC, driver and block manager) on a port chosen once and remembered
  in ``DATA_DIR/spark/port``. Session start never waits for it: sessions get
  ``SPARK_REMOTE`` at once, and a query before the server is up fails with a connection
  error (the client retries for a while first). Log: ``DATA_DIR/spark/server.log``.
* Persistence: Hive catalog with an embedded Derby metastore in ``DATA_DIR/spark/metastore``
  and the warehouse in ``DATA_DIR/spark/warehouse``; each user has a database ``u_<name>``
  located in ``warehouse/u_<name>``, made the current database of each of their sessions'
  server-side Spark sessions once the server is up (``rsparkhub.agent.spark prepare``), so
  ``saveAsTable("t")`` lands there and survives session and server restarts.
* Isolation: ``SPARK_REMOTE=sc://127.0.0.1:PORT/;user_id=<user>;session_id=<uuid>``: one
  server-side session per hub session (temporary views, settings, current database). The
  uuid is derived from the hub session id with a secret in ``DATA_DIR/spark/secret``, so it
  is stable across hub restarts and not guessable. Spark Connect has no authentication:
  this separates users' state, it is not a security boundary against a malicious user.
* Supervision: the server is watched; when it dies it is restarted with backoff (1 s … 30 s)
  and the live sessions are prepared again; clients then get "create a new Spark Session"
  once and ``SparkSession.builder.getOrCreate()`` reconnects. The hub stops the server's
  process group at shutdown; a stale server of a crashed hub (``server.pid``) is killed at
  start. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rsparkhub.agent.spark import run_helper
from rsparkhub.config import Settings
from rsparkhub.hub.userdb import role_name

log = logging.getLogger("rsparkhub.spark")

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_TIMEOUT_S = 180.0
PREPARE_TIMEOUT_S = 180.0
MAX_BACKOFF_S = 30.0


class SparkUnavailable(Exception):
    """Spark is off or cannot run here; the message says why."""


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


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class SparkService:
    """The hub's Spark service (``hub.spark``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mode = settings.spark
        self.base = settings.data_dir / "spark"
        self.is_live: Callable[[str], bool] = lambda _sid: True
        self._sessions: dict[str, str] = {}  # hub session id -> user name
        self._secret: bytes | None = None
        self._port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._prepare_task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()
        self._closing = False
        self.ready = asyncio.Event()
        self.restarts = 0
        self._last_error: str | None = None

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

    # ------------------------------------------------------------------ sessions
    async def session_env(self, user: str, hub_session_id: str) -> dict[str, str]:
        """SPARK_REMOTE for a new session; starts the embedded server in the background.
        {} (and a warning) when Spark is off or unavailable."""
        if not self.enabled:
            return {}
        try:
            await asyncio.to_thread(self._secret_bytes)
            if self.mode == "embedded":
                spark_home()
                await asyncio.to_thread(self._port_number)
        except (SparkUnavailable, OSError) as exc:
            log.warning("session without Spark: %s", exc)
            self._last_error = str(exc)
            return {}
        self.register(hub_session_id, user)
        return {"SPARK_REMOTE": self.remote(user, hub_session_id)}

    def register(self, hub_session_id: str, user: str) -> None:
        """A live session whose server-side Spark session gets the user's database."""
        self._sessions[hub_session_id] = user
        if self.mode != "embedded":
            return
        self._pending.add(hub_session_id)
        self.ensure_started()
        if self.ready.is_set():
            self._schedule_prepare()

    def ensure_started(self) -> None:
        if self.mode == "embedded" and self._supervisor is None and not self._closing:
            self._supervisor = asyncio.create_task(self._supervise(), name="spark-supervisor")

    def _schedule_prepare(self) -> None:
        if self._prepare_task is None or self._prepare_task.done():
            self._prepare_task = asyncio.create_task(self._prepare(), name="spark-prepare")

    async def _prepare(self) -> None:
        while self._pending and self.ready.is_set():
            batch = {s for s in self._pending if self.is_live(s) and s in self._sessions}
            self._pending.clear()
            if not batch:
                return
            items = []
            for sid in sorted(batch):
                user = self._sessions[sid]
                db = role_name(user)
                loc = self.base / "warehouse" / db
                items.append({"remote": self.remote(user, sid), "database": db,
                              "location": str(loc)})  # fmt: skip
            ok, out = await run_helper("prepare", items, PREPARE_TIMEOUT_S)
            if ok:
                log.info("spark: %s", out)
            else:
                log.warning("could not prepare Spark sessions: %s", out)

    # ------------------------------------------------------------------ embedded server
    def _argv(self, home: Path, port: int) -> list[str]:
        s = self.settings
        metastore = self.base / "metastore"
        confs = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(self.base / "warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL":
                f"jdbc:derby:;databaseName={metastore};create=true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={self.base}",
            "spark.connect.session.manager.defaultSessionTimeout": "7d",
        }  # fmt: skip
        argv = [
            str(home / "bin" / "spark-submit"),
            "--class", SERVER_CLASS,
            "--name", "rsparkhub-spark-connect",
            "--master", s.spark_master,
            "--driver-memory", s.spark_driver_memory,
        ]  # fmt: skip
        for k, v in confs.items():
            argv += ["--conf", f"{k}={v}"]
        return [*argv, "spark-internal"]

    def _kill_stale(self) -> None:
        pidfile = self.base / "server.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            import psutil

            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if SERVER_CLASS in cmd and str(self.base) in cmd:
                log.warning("stopping a stale Spark Connect server (pid %d) of an earlier hub", pid)
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                proc.wait(10)
        except Exception:  # noqa: BLE001 - gone already, or not ours
            pass
        pidfile.unlink(missing_ok=True)

    async def _start_once(self) -> asyncio.subprocess.Process:
        home = spark_home()
        await asyncio.to_thread(self.base.mkdir, 0o700, True, True)
        await asyncio.to_thread(self._kill_stale)
        port = await asyncio.to_thread(self._port_number)
        if await asyncio.to_thread(_port_open, port):
            port = self._port = _free_port()
            (self.base / "port").write_text(f"{port}\n")
            log.warning("spark port taken by another program; using %d (new sessions)", port)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RSPARKHUB_", "PG"))}
        env.update(SPARK_HOME=str(home), PYSPARK_PYTHON=sys.executable,
                   SPARK_LOG_DIR=str(self.base))  # fmt: skip
        env.pop("DATABASE_URL", None)
        with open(self.base / "server.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(home, port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(self.base),
                start_new_session=True,
            )
        (self.base / "server.pid").write_text(f"{proc.pid}\n")
        log.info("starting the Spark Connect server (pid %d) on 127.0.0.1:%d", proc.pid, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise SparkUnavailable(
                    f"the Spark Connect server exited with {proc.returncode} during start; "
                    f"see {self.base / 'server.log'}"
                )
            if await asyncio.to_thread(_port_open, port):
                return proc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.5)
        self._killpg(proc)
        raise SparkUnavailable(f"the Spark Connect server did not open port {port} in time")

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
                log.warning("Spark not available: %s; retrying in %.0f s", exc, backoff)
            else:
                self._last_error = None
                log.info("the Spark Connect server is up after %.1f s", time.monotonic() - t0)
                self.ready.set()
                self._pending.update(s for s in self._sessions if self.is_live(s))
                self._schedule_prepare()
                rc = await self._proc.wait()
                self.ready.clear()
                self._killpg(self._proc)  # whatever is left of its process group
                if self._closing:
                    break
                self.restarts += 1
                up = time.monotonic() - t0
                if up > 300:
                    backoff = 1.0
                log.warning("the Spark Connect server died (exit %s); restarting in %.0f s",
                            rc, backoff)  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def close(self) -> None:
        """Hub shutdown: stop the server's process group."""
        self._closing = True
        for task in (self._prepare_task, self._supervisor):
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
        with contextlib.suppress(OSError):
            (self.base / "server.pid").unlink()

    # ------------------------------------------------------------------ doctor
    def _running_pid(self) -> int | None:
        try:
            import psutil

            pid = int((self.base / "server.pid").read_text().strip())
            if SERVER_CLASS in " ".join(psutil.Process(pid).cmdline()):
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
            return {
                "ok": True,
                "mode": mode,
                "detail": f"external: {self.settings.spark_remote_url}",
            }
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
            f"{state}",
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
