"""Small Spark Connect helpers run in their own short-lived process (``python -m
rsparkhub.agent.spark …``), so that neither the agent nor the hub imports pyspark/grpc:

* ``interrupt``: the agent, on an interrupt, cancels every running operation of the
  session's server-side Spark session (same ``user_id``/``session_id`` as the kernel's
  ``SPARK_REMOTE``). It attaches without releasing: the user's session keeps its views.
* ``prepare``: the hub, once the server is up, creates each session's per-user database
  (``u_<name>`` with LOCATION in the user's warehouse directory) and makes it the current
  database of that server-side session, which the user's kernel then attaches to.

Input on stdin (JSON), never in argv: the URLs carry session ids."""

from __future__ import annotations

import asyncio
import json
import os
import sys
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


def _prepare(items: list[dict[str, str]]) -> str:
    from pyspark.sql.connect.session import SparkSession

    done = 0
    for item in items:
        spark = SparkSession.builder.remote(item["remote"]).create()
        try:
            db, loc = item["database"], item["location"].replace("'", "\\'")
            spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}` LOCATION '{loc}'")
            spark.sql(f"USE `{db}`")
            done += 1
        finally:
            spark.client.close()  # not spark.stop(): that would release the session
    return f"prepared {done} Spark session(s)"


def main() -> int:
    import warnings

    warnings.filterwarnings("ignore")
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    payload = json.loads(sys.stdin.read() or "null")
    try:
        if cmd == "interrupt":
            print(_interrupt(payload["remote"]))
        elif cmd == "prepare":
            print(_prepare(payload))
        else:
            print(f"unknown command {cmd!r}")
            return 2
    except Exception as exc:  # noqa: BLE001 - reported to the caller in one line
        print(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
