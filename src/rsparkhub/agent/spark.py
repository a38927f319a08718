"""The processes that import pyspark, run as ``python -m rsparkhub.agent.spark COMMAND`` so
that neither the agent nor the hub imports pyspark, grpc or py4j:

* ``interrupt`` (short-lived, started by the agent on an interrupt): cancels every running
  operation of the session's server-side Spark session (same ``user_id``/``session_id`` as
  the kernel's ``SPARK_REMOTE``). It attaches without releasing: the user's session keeps
  its views. Input: ``{"remote": URL}`` on stdin, never in argv (the URL carries ids).
* ``server DIR`` (long-lived, started by the hub for ``spark = 'embedded'``): the embedded
  Spark Connect server. It starts the driver JVM through pyspark (py4j), then takes
  commands from the hub, one JSON object per line on stdin, and answers each on stdout:

  - ``{"id", "cmd": "prepare", "items": [{"user", "session_id", "database", "location"}]}``
    creates the server-side Spark session of each hub session *before any client can
    reach it*: ``CREATE DATABASE IF NOT EXISTS`` the user's database (LOCATION in the
    user's warehouse directory), ``USE`` it, and register the session under the key the
    kernel's ``SPARK_REMOTE`` names. A session that already exists is left alone (the user
    may have changed its database since).
  - ``{"id", "cmd": "open"}`` starts the gRPC service (``SparkConnectService.start``). The
    hub prepares every live session first, so the first statement of a kernel — at server
    start, after a crash, or in a session started while the server runs — already runs in
    the user's database.

  Before any command it prints ``{"event": "started", "ui_url", "jvm_pid"}`` once the JVM
  and the root SparkSession are up. It exits when stdin closes (the hub is gone) or the
  JVM dies (a watchdog thread), so it never outlives the hub for long. The JVM inherits
  this process's stdout, which is moved to stderr (the log) at once: only the answers use
  the original stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import IO, Any

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


class _Server:
    """The embedded Spark Connect server: a root SparkSession (Hive catalog) in a JVM driven
    over py4j, and the hub's command loop."""

    def __init__(self, confs: dict[str, str], control: IO[str]) -> None:
        from pyspark import SparkConf, SparkContext
        from pyspark.sql import SparkSession

        conf = SparkConf(loadDefaults=False).setAll(list(confs.items()))
        self.spark = SparkSession.builder.config(conf=conf).getOrCreate()
        self.sc = self.spark.sparkContext
        self.jvm: Any = self.sc._jvm
        self.control = control
        self.created: set[str] = set()
        gateway = SparkContext._gateway
        self.jvm_proc = getattr(gateway, "proc", None)
        if self.jvm_proc is not None:
            threading.Thread(target=self._watch_jvm, name="jvm-watchdog", daemon=True).start()
        service: Any = self.jvm.org.apache.spark.sql.connect.service  # type: ignore[union-attr]
        self.pkg = service
        self.manager = getattr(getattr(service, "SparkConnectService$"), "MODULE$").sessionManager()

    def _watch_jvm(self) -> None:
        assert self.jvm_proc is not None
        rc = self.jvm_proc.wait()
        print(f"rsparkhub: the Spark driver JVM exited ({rc}); stopping", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)

    def send(self, msg: dict[str, Any]) -> None:
        self.control.write(json.dumps(msg) + "\n")
        self.control.flush()

    def prepare(self, items: list[dict[str, str]]) -> dict[str, Any]:
        done = kept = 0
        failed: list[str] = []
        for item in items:
            try:
                key = self.pkg.SessionKey(item["user"], item["session_id"])
                if self.manager.getIsolatedSessionIfPresent(key).isDefined():
                    kept += 1
                    continue
                session = self.spark._jsparkSession.newSession()
                db = item["database"]
                if db not in self.created:
                    loc = item["location"].replace("\\", "\\\\").replace("'", "\\'")
                    session.sql(f"CREATE DATABASE IF NOT EXISTS `{db}` LOCATION '{loc}'")
                    self.created.add(db)
                session.sql(f"USE `{db}`")
                holder = self.manager.registerExistingSession(
                    item["user"], item["session_id"], session
                )
                # registered sessions never expire; back to the server's default timeout
                holder.setCustomInactiveTimeoutMs(self.jvm.scala.Option.apply(None))
                done += 1
            except Exception as exc:  # noqa: BLE001 - one session's problem, reported
                failed.append(f"{item.get('database')}: {_one_line(exc)}")
        detail = f"prepared {done} Spark session(s)" + (f", {kept} already there" if kept else "")
        return {"ok": not failed, "detail": detail, "failed": failed}

    def open(self) -> dict[str, Any]:
        self.pkg.SparkConnectService.start(self.sc._jsc.sc())
        return {"ok": True, "detail": "the Spark Connect service is open"}

    def loop(self) -> None:
        for line in sys.stdin:  # ends when the hub closes the pipe (or dies)
            msg: Any = None
            try:
                msg = json.loads(line)
                cmd = msg.get("cmd")
                if cmd == "prepare":
                    answer = self.prepare(msg.get("items") or [])
                elif cmd == "open":
                    answer = self.open()
                else:
                    answer = {"ok": False, "detail": f"unknown command {cmd!r}"}
            except Exception as exc:  # noqa: BLE001 - answered, never fatal
                answer = {"ok": False, "detail": _one_line(exc)}
            self.send({"id": msg.get("id") if isinstance(msg, dict) else None, **answer})


def _serve() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    # The JVM (a child) inherits fd 1: keep the real stdout for answers, send the rest to
    # stderr, which the hub points at server.log.
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    first = sys.stdin.readline()
    if not first:
        return 0
    config = json.loads(first)
    try:
        server = _Server({str(k): str(v) for k, v in config["confs"].items()}, control)
    except Exception as exc:  # noqa: BLE001 - the hub logs the line and retries later
        control.write(json.dumps({"event": "failed", "detail": _one_line(exc)}) + "\n")
        control.flush()
        return 1
    server.send(
        {
            "event": "started",
            "ui_url": server.sc.uiWebUrl,
            "jvm_pid": server.jvm_proc.pid if server.jvm_proc is not None else None,
        }
    )
    server.loop()
    # stdin closed: the hub is gone. Stop the driver (bounded), then exit.
    stopper = threading.Thread(target=server.spark.stop, daemon=True)
    stopper.start()
    stopper.join(30)
    return 0


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "server":
        return _serve()
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
