"""One embedded Spark Connect server process (``spark = 'embedded'``): how it is launched
in its sandbox, told its settings, and talked to.

Owns: the hub's record of a user's server (:class:`UserServer`), the server's Spark
settings, environment and limits, :func:`launch` (spawn, then read its output: its own
``@rsparkhub:<nonce> {json}`` messages are dispatched, the rest goes to its rotated log),
the start :func:`handshake` and :func:`call` (a command on its stdin, the answer on its
stdout). The server's side of that conversation is ``agent/spark.py``. Must not: decide
when a server runs (``spark_embedded.py`` supervises) or start anything outside
``Sandboxes.spawn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from rsparkhub.config import Settings
from rsparkhub.hub.sandbox import Child, Identity, Limits, Network, SandboxSpec
from rsparkhub.hub.spark import SparkUnavailable, ui_filter_conf
from rsparkhub.hub.supervised import RotatingLog, free_port
from rsparkhub.hub.userdb import role_name
from rsparkhub.pipe_reader import PipeReader

if TYPE_CHECKING:
    from rsparkhub.hub.sandbox import Sandboxes

log = logging.getLogger("rsparkhub.spark")

SERVER_MODULE = "rsparkhub.agent.spark"  # the server's own program (agent/spark.py)
START_TIMEOUT_S = 180.0  # JVM and SparkContext up (a first start also makes the metastore)
OPEN_TIMEOUT_S = 180.0
# HotSpot compiles a method with C2 after 5,000 calls by default: a starting driver spends
# a core on C2 for code it runs a few times only (start, session, first query). Ten times
# those thresholds cut a cold first result by ~1 s and left hot loops as fast (they reach
# C2 by their back-edge counts, unchanged): bench/RESULTS.md, section Spark. C1-only
# (TieredStopAtLevel=1) started faster still but ran a 200M-row aggregate 28x slower.
JIT_OPTS = (
    "-XX:Tier4InvocationThreshold=50000",
    "-XX:Tier4MinInvocationThreshold=20000",
    "-XX:Tier4CompileThreshold=60000",
)
MAX_LOG_BYTES = 8 << 20  # server.log is rotated past this (one old copy kept)
MAX_LINE = 64 << 10

Message = dict[str, Any]  # one of the server's messages (its JSON objects)
SpawnTask = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


def spark_home() -> Path:
    """The pip ``pyspark`` install the servers run from. Raises SparkUnavailable."""
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


def pyspark_version(home: Path) -> str:
    try:
        text = (home / "version.py").read_text()
        return text.split("=", 1)[1].strip().strip("\"'")
    except (OSError, IndexError):
        return "?"


async def java_version() -> str | None:
    """The first line of ``java -version``, or None without a working Java."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "java", "-version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    except (OSError, TimeoutError):
        return None
    lines = out.decode(errors="replace").strip().splitlines()
    return lines[0] if lines and proc.returncode == 0 else None


@dataclass(frozen=True)
class Archive:
    """A made class-data archive and the class path it was made with: unsigned copies of
    Spark's signed jars, which go before Spark's own (a JVM maps the archive only on that
    class path; HotSpot archives no class of a signed jar)."""

    path: Path
    class_path: tuple[Path, ...] = ()


@dataclass(eq=False)
class UserServer:
    """What the hub knows of one user's server."""

    user_id: str
    user: str  # name
    port: int
    token: str = ""  # Spark Connect's pre-shared token: only the user's sessions have it
    ui_key: str = ""  # its UI's key (spark.ui_key): only the hub's proxy signs with it
    sessions: set[str] = field(default_factory=set)  # live hub sessions of the user
    state: str = "down"  # down | starting | running | stopping
    proc: Child | None = None
    ui_port: int | None = None
    jvm_pid: int | None = None
    task: asyncio.Task[None] | None = None  # the supervisor, while there is a server
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Server | None = None  # the hub's listener on the port while down
    waiters: dict[str, asyncio.Future[Message]] = field(default_factory=dict)
    calls: int = 0
    stop_requested: bool = False
    idle_since: float = field(default_factory=time.monotonic)
    started_s: float | None = None  # how long the last start took
    restarts: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        return f"spark-{self.user_id}"


# ---------------------------------------------------------------------- what it is given
def server_confs(
    settings: Settings,
    srv: UserServer,
    data: Path,
    ui_port: int,
    archive: Archive | None,
    *,
    class_path: tuple[Path, ...] | None = None,
) -> dict[str, str]:
    """The server's Spark settings: everything in the user's ``data`` directory. It maps
    ``archive``, on its class path (``class_path`` instead when given: the training
    server's)."""
    class_path = class_path if class_path is not None else archive.class_path if archive else ()
    base_path = urlsplit(settings.base_url).path.rstrip("/")
    java_opts = [
        f"-Dderby.system.home={data}",
        f"-Djava.io.tmpdir={data / 'tmp'}",
        f"-Duser.home={data / 'home'}",
        *JIT_OPTS,
    ]
    if archive is not None:
        java_opts += [f"-XX:SharedArchiveFile={archive.path}", "-Xlog:cds=off",
                      "-Xlog:cds+dynamic=off"]  # fmt: skip
    return {
        "spark.master": settings.spark_master,
        "spark.app.name": f"rsparkhub-{srv.user}",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(srv.port),
        # every gRPC call must carry the user's token (sent over stdin, never in argv;
        # Spark's UI redacts it): a process that reaches the port without it is refused
        **({"spark.connect.authenticate.token": srv.token} if srv.token else {}),
        # the UI answers only requests the hub's proxy signs (sent over stdin too)
        **(ui_filter_conf(srv.ui_key) if srv.ui_key else {}),
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
        **({"spark.driver.extraClassPath": ":".join(map(str, class_path))} if class_path else {}),
    }  # fmt: skip


def server_env(home: Path, data: Path, user: str) -> dict[str, str]:
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


def server_limits(settings: Settings) -> Limits:
    return Limits(
        memory_mb=settings.spark_memory_mb,
        pids=2048,  # a driver has a few hundred threads; every thread counts
        cpu_weight=settings.session_cpu_weight,
        cpu_quota=settings.session_cpu_quota,
        tmp_mb=settings.session_tmp_mb,
    )


def server_argv(data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", SERVER_MODULE, "server", str(data), *extra]


def start_config(srv: UserServer, confs: dict[str, str], data: Path, first: bool) -> Message:
    """What the server reads first on its stdin (the nonce is added by :func:`launch`):
    its settings and the user's database, made when ``first``."""
    db = role_name(srv.user)
    return {
        "confs": confs,
        "database": db,
        "location": str(data / "warehouse" / db),
        "create_database": first,
    }


# ---------------------------------------------------------------------- start and stop
async def start_server(
    sandboxes: Sandboxes,
    settings: Settings,
    srv: UserServer,
    identity: Identity,
    home_dir: Path,
    *,
    first: bool,
    archive: Archive | None,
    binds: list[tuple[Path, str]],
    ro_binds: list[tuple[Path, str]],
    spawn_task: SpawnTask,
) -> None:
    """Start a user's server in its sandbox (as ``identity``, writing only its user's
    ``home_dir/data`` and ``binds``; its log in ``home_dir/server.log``) and wait until
    Spark Connect's port is open. Raises SparkUnavailable, after stopping what started."""
    home = spark_home()
    data = home_dir / "data"
    ui_port = free_port()
    spec = SandboxSpec(
        name=srv.name,
        identity=identity,
        argv=server_argv(data),
        env=server_env(home, data, srv.user),
        chdir=str(data),
        binds=[(data, str(data)), *binds],
        ro_binds=[*sandboxes.runtime_binds(), *ro_binds],
        masked=[str(settings.data_dir.resolve())],
        network=Network(
            from_host=(srv.port, ui_port),
            outbound=settings.session_network == "internet",
        ),
        limits=server_limits(settings),
    )
    confs = server_confs(settings, srv, data, ui_port, archive)
    log_path = home_dir / "server.log"
    log.info("starting the Spark Connect server of %s (uid %d) on 127.0.0.1:%d%s",
             srv.user, identity.uid, srv.port,
             "" if archive else " (no class-data archive yet)")  # fmt: skip
    try:
        launched = await launch(
            sandboxes, spec, srv, log_path, start_config(srv, confs, data, first), spawn_task
        )
    except (OSError, ValueError, RuntimeError) as exc:
        if srv.proc is None:  # the sandbox did not start
            raise SparkUnavailable(f"the Spark Connect server's sandbox failed: {exc}") from None
        await terminate(srv, sandboxes)  # it started but would not take its settings
        raise SparkUnavailable(
            f"the Spark Connect server failed to start ({exc}); see {log_path}"
        ) from None
    try:
        times = await handshake(srv, launched, ui_port)
        log.info("spark: %s's server: driver up after %s s, port open after %s s%s",
                 srv.user, times["driver_s"], times["open_s"],
                 " (its database made first)" if first else "")  # fmt: skip
    except (SparkUnavailable, TimeoutError, ConnectionError) as exc:
        why = "it did not start in time" if isinstance(exc, TimeoutError) else str(exc)
        await terminate(srv, sandboxes)
        raise SparkUnavailable(
            f"the Spark Connect server failed to start ({why}; exit code "
            f"{launched.proc.returncode}); see {log_path}"
        ) from None


async def terminate(srv: UserServer, sandboxes: Sandboxes) -> None:
    """The server is gone or must go: its sandbox (cgroup) is killed, its unanswered
    calls fail."""
    srv.ready.clear()
    srv.ui_port = srv.jvm_pid = None
    proc, srv.proc = srv.proc, None
    close_stdin(proc)
    await asyncio.to_thread(sandboxes.kill, srv.name)
    if proc is not None:
        # without cgroups (sandbox = 'none'), its process group is all there is
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    fail_waiters(srv)


# ---------------------------------------------------------------------- talking to it
@dataclass
class Launched:
    """A server process just spawned: its output is being read (``reader``); ``started``
    and ``opened`` get its first messages."""

    proc: Child
    reader: asyncio.Task[None]
    started: asyncio.Future[Message]
    opened: asyncio.Future[Message]


async def launch(
    sandboxes: Sandboxes,
    spec: SandboxSpec,
    srv: UserServer,
    log_path: Path,
    config: Message,
    spawn_task: SpawnTask,
) -> Launched:
    """Spawn the server (``spec`` with its stdout on a pipe the hub reads), then send it
    ``config`` with a fresh nonce that marks its own messages. Raises what the spawn
    raises; a failure to send is ConnectionError (the process is then ``srv.proc``)."""
    nonce = secrets.token_hex(12)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Message] = loop.create_future()
    opened: asyncio.Future[Message] = loop.create_future()
    r, w = os.pipe()
    try:
        proc = await sandboxes.spawn(dataclasses.replace(spec, stdout=w, stdin_pipe=True))
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    srv.proc = proc
    reader = spawn_task(
        read_output(srv, r, log_path, nonce, started, opened), f"spark-log-{spec.name}"
    )
    reader.add_done_callback(lambda _t: fail(started, opened))
    assert proc.stdin is not None
    proc.stdin.write((json.dumps({"nonce": nonce, **config}) + "\n").encode())
    await proc.stdin.drain()
    return Launched(proc, reader, started, opened)


async def handshake(srv: UserServer, launched: Launched, default_ui_port: int) -> Message:
    """Wait for the driver to start, then for Spark Connect's port to open. Returns the
    second message; raises SparkUnavailable (it said it failed) or TimeoutError."""
    msg = await asyncio.wait_for(launched.started, START_TIMEOUT_S)
    if msg.get("event") != "started":
        raise SparkUnavailable(f"the Spark driver did not start: {msg.get('detail')}")
    srv.jvm_pid = msg.get("jvm_pid")
    srv.ui_port = urlsplit(str(msg.get("ui_url") or "")).port or default_ui_port
    opened = await asyncio.wait_for(launched.opened, OPEN_TIMEOUT_S)
    if opened.get("event") != "open":
        raise SparkUnavailable(f"Spark Connect did not open: {opened.get('detail')}")
    return {"driver_s": msg.get("seconds"), "open_s": opened.get("seconds")}


async def read_output(
    srv: UserServer,
    fd: int,
    log_path: Path,
    nonce: str,
    started: asyncio.Future[Message],
    opened: asyncio.Future[Message],
) -> None:
    """The server's output: its own messages (``@rsparkhub:<nonce> {json}``) are
    dispatched, everything else goes to the hub's copy of its log. Ends with the pipe."""
    prefix = f"@rsparkhub:{nonce} ".encode()
    with PipeReader(fd, limit=MAX_LINE * 2) as reader:
        out = RotatingLog(log_path, MAX_LOG_BYTES)
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
                        dispatch(srv, line[len(prefix) :], started, opened)
                    elif line:
                        text.append(line)
                if text:
                    await asyncio.to_thread(out.write, b"\n".join(text) + b"\n")
        finally:
            await asyncio.to_thread(out.close)


def dispatch(
    srv: UserServer,
    raw: bytes,
    started: asyncio.Future[Message],
    opened: asyncio.Future[Message],
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


async def call(srv: UserServer, cmd: str, timeout: float = 30) -> Message:
    """Ask the running server (``activity`` …) and return its answer."""
    proc = srv.proc
    if proc is None or proc.returncode is not None or proc.stdin is None:
        raise SparkUnavailable("the Spark Connect server is not running")
    srv.calls += 1
    cid = str(srv.calls)
    fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    srv.waiters[cid] = fut
    try:
        proc.stdin.write((json.dumps({"id": cid, "cmd": cmd}) + "\n").encode())
        await proc.stdin.drain()
        return await asyncio.wait_for(fut, timeout)
    except (ConnectionError, BrokenPipeError) as exc:
        raise SparkUnavailable(f"the Spark Connect server went away: {exc}") from None
    finally:
        srv.waiters.pop(cid, None)


def fail(*futs: asyncio.Future[Message]) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_result({"event": "failed", "detail": "the server's output ended"})


def fail_waiters(srv: UserServer) -> None:
    """The server is gone: its unanswered calls fail."""
    gone = SparkUnavailable("the Spark Connect server exited")
    for fut in srv.waiters.values():
        if not fut.done():
            fut.set_exception(gone)
    srv.waiters.clear()


def close_stdin(proc: Child | None) -> None:
    """Closing its stdin asks a server to stop its driver and exit."""
    if proc is not None and proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()


def kill_strays(data: Path) -> None:
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
