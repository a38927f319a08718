"""The processes that import pyspark, run as ``python -m rsparkhub.agent.spark COMMAND`` so
that neither the agent nor the hub imports pyspark, grpc or py4j:

* ``interrupt`` (short-lived, started by the agent on an interrupt): cancels every running
  operation of the session's server-side Spark session (same ``user_id``/``session_id`` as
  the kernel's ``SPARK_REMOTE``). It attaches without releasing: the user's session keeps
  its views. Input: ``{"remote": URL}`` on stdin, never in argv (the URL carries ids).
* ``server DIR`` (long-lived, started by the hub for ``spark = 'embedded'``): ONE user's
  Spark Connect server, inside that user's sandbox and under their uid (hub/spark_embedded.py).
  DIR is the user's Spark directory (warehouse, metastore, scratch); the server writes
  nothing anywhere else. The hub sends one JSON object per line on stdin — first the
  configuration ``{"nonce", "confs", "database", "location", "create_database"}``, then
  commands ``{"id", "cmd": "activity"}`` — and reads stdout, which it shares with stderr
  and the JVM's output (the server log): the server's own messages are the lines
  ``@rsparkhub:<nonce> {json}``.

  1. It starts the driver JVM through pyspark (py4j) with the user's database ``u_<name>``
     as the catalog's default database (``spark.sql.catalog.spark_catalog.defaultDatabase``),
     so every Spark session a client opens starts there: the first statement of a kernel
     needs no preparation. Then ``{"event": "started", "ui_url", "jvm_pid"}``.
  2. With ``create_database`` (the user's first server: no metastore yet) it creates that
     database before anyone can connect. Spark refuses to open a catalog whose default
     database is missing, so the catalog is opened once from a Spark session whose default
     is ``default``.
  3. It starts the gRPC service (``SparkConnectService.start``): ``{"event": "open"}``.
  4. Otherwise the catalog (Hive client, Derby) opens in the background
     ``CATALOG_DELAY_S`` after the port is open — clients' first statements do not wait for
     it unless they touch tables, and opening it at once took both cores from the first
     statement of the session that started the server (0.6 s of its cold start,
     bench/RESULTS.md) — and the database is made again should the user have dropped it:
     ``{"event": "catalog", "seconds"}``.

  ``activity`` answers ``{"id", "running": N}``: Spark Connect operations running now
  (the hub's idle stop). It exits when stdin closes (the hub stops it or is gone) or the
  JVM dies (a watchdog thread).
* ``server DIR --train ARCHIVE`` (the hub, once per Java/pyspark install, as an account of
  no user's): the same server with ``-XX:ArchiveClassesAtExit=ARCHIVE``, driven through a
  first query by a local Spark Connect client, then stopped: the JVM writes the class-data
  archive that later servers map at start (AppCDS), which roughly halves their start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from typing import Any

INTERRUPT_TIMEOUT_S = 15.0


async def interrupt_spark(remote: str | None = None, timeout: float = INTERRUPT_TIMEOUT_S) -> str:
    """Cancel the session's Spark operations; a short description of what happened. Does
    nothing when SPARK_REMOTE is not set. Never raises."""
    remote = remote if remote is not None else os.environ.get("SPARK_REMOTE")
    if not remote:
        return "no SPARK_REMOTE"
    ok, out = await run_helper("interrupt", {"remote": remote}, timeout)
    return out if ok else f"could not interrupt Spark: {out}"


async def run_helper(cmd: str, payload: Any, timeout: float) -> tuple[bool, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rsparkhub.agent.spark", cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return False, str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"timed out after {timeout:.0f} s"
    text = out.decode(errors="replace").strip()
    return proc.returncode == 0, text.splitlines()[-1] if text else ""


def _client(remote: str) -> Any:
    from pyspark.sql.connect.client import SparkConnectClient

    return SparkConnectClient(remote)


def _interrupt(remote: str) -> str:
    client = _client(remote)
    try:
        ids = client.interrupt_all()
    finally:
        client.close()  # closes the channel only: the server-side session stays
    return f"interrupted {len(ids or [])} Spark operation(s)"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]


# --------------------------------------------------------------------------- server

DEFAULT_DATABASE = "spark.sql.catalog.spark_catalog.defaultDatabase"
# The first statement of a cold start runs within ~1.5 s of the port opening; the catalog
# opens after it (a statement that touches tables before then opens it itself).
CATALOG_DELAY_S = 5.0


class _Events:
    """The server's own messages to the hub, on the stdout it shares with the log: one
    line each, starting on a line of its own (the JVM may be mid-line)."""

    def __init__(self, nonce: str) -> None:
        self.prefix = f"@rsparkhub:{nonce} "
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        self.lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        with self.lock:
            self.out.write("\n" + self.prefix + json.dumps(msg) + "\n")
            self.out.flush()


class _Server:
    """One user's Spark Connect server: a root SparkSession (Hive catalog) in a JVM driven
    over py4j, and the hub's command loop."""

    def __init__(self, confs: dict[str, str], events: _Events) -> None:
        from pyspark import SparkConf, SparkContext
        from pyspark.sql import SparkSession

        conf = SparkConf(loadDefaults=False).setAll(list(confs.items()))
        self.spark = SparkSession.builder.config(conf=conf).getOrCreate()
        self.sc = self.spark.sparkContext
        self.jvm: Any = self.sc._jvm
        self.events = events
        self.stopping = False
        gateway = SparkContext._gateway
        self.jvm_proc = getattr(gateway, "proc", None)
        if self.jvm_proc is not None:
            threading.Thread(target=self._watch_jvm, name="jvm-watchdog", daemon=True).start()
        service: Any = self.jvm.org.apache.spark.sql.connect.service  # type: ignore[union-attr]
        self.service = service.SparkConnectService

    def _watch_jvm(self) -> None:
        assert self.jvm_proc is not None
        rc = self.jvm_proc.wait()
        if self.stopping:
            return
        print(f"rsparkhub: the Spark driver JVM exited ({rc}); stopping", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)

    def ensure_database(self, database: str, location: str) -> None:
        """Open the catalog; when the default database (the user's) is missing, open it
        from a session whose default is ``default`` and create the user's."""
        shared = self.spark._jsparkSession.sharedState()
        try:
            shared.externalCatalog()
            return
        except Exception as exc:  # noqa: BLE001 - DEFAULT_DATABASE_NOT_EXISTS, most likely
            print(f"rsparkhub: creating the database {database}: {_one_line(exc)}",
                  file=sys.stderr)  # fmt: skip
        session = self.spark._jsparkSession.newSession()
        # the static setting, for this session only (RuntimeConfig would refuse it)
        session.sessionState().conf().setConfString(DEFAULT_DATABASE, "default")
        classic = self.jvm.org.apache.spark.sql.SparkSession
        classic.setActiveSession(session)
        try:
            shared.externalCatalog()
        finally:
            classic.clearActiveSession()
        loc = location.replace("\\", "\\\\").replace("'", "\\'")
        session.sql(f"CREATE DATABASE IF NOT EXISTS `{database}` LOCATION '{loc}'")

    def open(self) -> None:
        self.service.start(self.sc._jsc.sc())

    def activity(self) -> dict[str, Any]:
        either = self.service.executionManager().listActiveExecutions()
        running = 0 if either.isLeft() else int(either.right().get().size())
        return {"ok": True, "running": running}

    def loop(self) -> None:
        for line in sys.stdin:  # ends when the hub closes the pipe (or dies)
            msg: Any = None
            try:
                msg = json.loads(line)
                cmd = msg.get("cmd")
                if cmd == "activity":
                    answer = self.activity()
                else:
                    answer = {"ok": False, "detail": f"unknown command {cmd!r}"}
            except Exception as exc:  # noqa: BLE001 - answered, never fatal
                answer = {"ok": False, "detail": _one_line(exc)}
            self.events.send({"id": msg.get("id") if isinstance(msg, dict) else None, **answer})

    def stop(self) -> None:
        """Stop the driver (bounded) and let the JVM exit, which writes the class-data
        archive when asked to."""
        self.stopping = True
        stopper = threading.Thread(target=self.spark.stop, daemon=True)
        stopper.start()
        stopper.join(30)
        if self.jvm_proc is not None:
            with contextlib.suppress(Exception):
                self.jvm_proc.stdin.close()  # PythonGatewayServer exits on EOF
            with contextlib.suppress(Exception):
                self.jvm_proc.wait(120)


def _warm_catalog(server: _Server, database: str, location: str) -> None:
    time.sleep(CATALOG_DELAY_S)
    t0 = time.monotonic()
    try:
        server.ensure_database(database, location)
        server.events.send({"event": "catalog", "seconds": round(time.monotonic() - t0, 3)})
    except Exception as exc:  # noqa: BLE001 - reported; a query touching tables will say more
        server.events.send({"event": "catalog", "error": _one_line(exc)})


def _train(server: _Server, port: str) -> None:
    """A first session through Spark Connect, so that its classes get archived too."""
    import warnings

    warnings.filterwarnings("ignore")
    # the Spark Connect client's own builder: pyspark's refuses while a classic session runs
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}/;user_id=rsparkhub").getOrCreate()
    spark.sql("SELECT 1 AS x").collect()
    spark.range(100).selectExpr("id % 7 AS k").groupBy("k").count().collect()
    spark.range(3).write.mode("overwrite").saveAsTable("rsparkhub_class_archive")
    spark.table("rsparkhub_class_archive").count()
    spark.catalog.currentDatabase()
    spark.stop()


def _since(t0: float) -> float:
    return round(time.monotonic() - t0, 3)


def _serve(args: list[str]) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    first = sys.stdin.readline()
    t0 = time.monotonic()
    if not first:
        return 0
    config = json.loads(first)
    events = _Events(str(config["nonce"]))
    if args:  # DIR: scratch space left by a killed server goes; Java needs its temp dir
        import shutil

        shutil.rmtree(os.path.join(args[0], "tmp"), ignore_errors=True)
        for sub in ("tmp", "home"):
            os.makedirs(os.path.join(args[0], sub), mode=0o700, exist_ok=True)
    confs = {str(k): str(v) for k, v in config["confs"].items()}
    database, location = str(config["database"]), str(config["location"])
    train = args[args.index("--train") + 1] if "--train" in args else None
    if train is not None:
        confs["spark.driver.extraJavaOptions"] = (
            confs.get("spark.driver.extraJavaOptions", "")
            + f" -XX:ArchiveClassesAtExit={train} -Xlog:cds=off -Xlog:cds+dynamic=off"
        ).strip()
    try:
        server = _Server(confs, events)
    except Exception as exc:  # noqa: BLE001 - the hub logs the line and retries later
        events.send({"event": "failed", "detail": _one_line(exc)})
        return 1
    ui = server.sc.uiWebUrl
    jvm_pid = server.jvm_proc.pid if server.jvm_proc is not None else None
    events.send({"event": "started", "ui_url": ui, "jvm_pid": jvm_pid, "seconds": _since(t0)})
    try:
        if config.get("create_database") or train is not None:
            server.ensure_database(database, location)
        server.open()
    except Exception as exc:  # noqa: BLE001
        events.send({"event": "failed", "detail": _one_line(exc)})
        server.stop()
        return 1
    events.send({"event": "open", "seconds": _since(t0)})
    if train is not None:
        try:
            _train(server, confs["spark.connect.grpc.binding.port"])
        finally:
            server.stop()
        events.send({"event": "trained"})
        return 0
    threading.Thread(
        target=_warm_catalog, args=(server, database, location), name="catalog", daemon=True
    ).start()
    server.loop()
    server.stop()  # stdin closed: the hub stops this server, or is gone
    return 0


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "server":
        return _serve(sys.argv[2:])
    payload = json.loads(sys.stdin.read() or "null")
    try:
        if cmd == "interrupt":
            print(_interrupt(payload["remote"]))
        else:
            print(f"unknown command {cmd!r}")
            return 2
    except Exception as exc:  # noqa: BLE001 - reported to the caller in one line
        print(_one_line(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
