"""Spark for sessions on the embedded Spark Connect servers the hub starts itself, one per
user (real pyspark servers in real sandboxes, real sessions, one hub for the module): a
Python session's ``SparkSession.builder.getOrCreate()`` just works in the user's own
database; a table saved with ``saveAsTable`` survives a session restart; two users' temporary
views do not mix; an interrupt cancels a long Spark job and the session stays usable; a
killed server gives a clear error, is restarted by the hub, and works again; doctor reports
it. What users cannot do to each other through Spark: tests/test_spark_isolation.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient

from conftest import SPARK_CLASSES, HubProcess, embedded_spark_hub, spark_server_pids

pytestmark = pytest.mark.slow

# No retry loop: the first statement already runs in the user's database (the hub prepares
# the server-side session first; pyspark itself retries while the server is starting).
CONNECT = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
assert spark.catalog.currentDatabase() == {db!r}, spark.catalog.currentDatabase()
"""


@pytest.fixture(scope="module")
def spark_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with embedded_spark_hub(tmp_path_factory.mktemp("spark") / "data") as hub:
        yield hub


@pytest.fixture(scope="module")
def tokens(spark_hub: HubProcess) -> dict[str, str]:
    return {"alice": spark_hub.make_user("alice"), "bob": spark_hub.make_user("bob")}


async def _run(s: object, code: str, timeout: float = 200) -> str:
    r = await asyncio.wait_for(s.run(code, language="python"), timeout)  # type: ignore[attr-defined]
    assert r.ok, (code, r.stdout, [(e.ename, e.evalue) for e in r.errors])
    return str(r.stdout)


def _user_id(hub: HubProcess, token: str) -> str:
    return str(hub.client(token).get("/api/me").json()["id"])


async def test_query_persist_and_read_back_after_session_restart(
    spark_hub: HubProcess, tokens: dict[str, str]
) -> None:
    async with HubClient(spark_hub.url, tokens["alice"]) as c:
        w = await c.ensure_workspace("spark")
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_alice"))
            out = await _run(
                s,
                "import os\n"
                "params = os.environ['SPARK_REMOTE'].split('/;', 1)[1].split(';')\n"
                "print([p for p in params if p.startswith('user_id=')][0], len(params))\n"
                "print(spark.catalog.currentDatabase(), spark.range(10).count())\n"
                "spark.range(5).selectExpr('id * 2 AS x').write.saveAsTable('doubles')\n",
            )
            assert out.split() == ["user_id=alice", "3", "u_alice", "10"]  # token, session_id
        await c.stop_session(w["id"])
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_alice"))
            out = await _run(s, "print(sorted(r.x for r in spark.table('doubles').collect()))")
            assert out.strip() == "[0, 2, 4, 6, 8]"
    data = spark_hub.data_dir / "spark" / "users" / _user_id(spark_hub, tokens["alice"]) / "data"
    assert (data / "warehouse" / "u_alice" / "doubles").is_dir()


async def test_two_users_temp_views_do_not_collide(
    spark_hub: HubProcess, tokens: dict[str, str]
) -> None:
    async with (
        HubClient(spark_hub.url, tokens["alice"]) as ca,
        HubClient(spark_hub.url, tokens["bob"]) as cb,
    ):
        wa, wb = await ca.ensure_workspace("views"), await cb.ensure_workspace("views")
        async with ca.attach(wa["id"]) as sa, cb.attach(wb["id"]) as sb:
            await asyncio.gather(
                _run(sa, CONNECT.format(db="u_alice")), _run(sb, CONNECT.format(db="u_bob"))
            )
            await _run(sa, "spark.range(3).createOrReplaceTempView('t')")
            await _run(sb, "spark.range(100, 105).createOrReplaceTempView('t')")
            a = await _run(sa, "print(spark.sql('SELECT count(*), min(id) FROM t').first())")
            b = await _run(sb, "print(spark.sql('SELECT count(*), min(id) FROM t').first())")
            assert "count(1)=3, min(id)=0" in a
            assert "count(1)=5, min(id)=100" in b


PANDAS_ROUND_TRIP = """
import pandas as pd
from pyspark.sql.functions import pandas_udf
pdf = pd.DataFrame({"s": ["x", None, "z"], "n": [1, 2, 3],
                    "d": pd.to_datetime(["2024-01-01", None, "2024-03-01"])})
sdf = spark.createDataFrame(pdf)
print(sdf.dtypes)
@pandas_udf("string")
def up(s: pd.Series) -> pd.Series:
    return s.str.upper()
back = sdf.select(up("s").alias("u"), "n", "d").toPandas()
print(back["u"].tolist(), back["n"].tolist(), back["d"].dt.day.tolist())
doubled = sdf.groupBy().applyInPandas(lambda df: df.assign(n=df.n * 2), "s string, n long, d timestamp")
print(sorted(doubled.toPandas()["n"].tolist()))
"""


async def test_pandas_round_trips_through_spark_without_warnings(
    spark_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """What data scientists do most with Spark from Python — a pandas frame in, a pandas
    frame out, pandas UDFs — works with the pandas the install ships (3.x, which PySpark
    4.x warns about on every import: pykernel_spark.PANDAS_WARNING), and the console shows
    no such warning."""
    async with HubClient(spark_hub.url, tokens["alice"]) as c:
        w = await c.ensure_workspace("spark-pandas")
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_alice"))
            r = await asyncio.wait_for(s.run(PANDAS_ROUND_TRIP, language="python"), 200)
            assert r.ok, (r.stdout, r.stderr, [(e.ename, e.evalue) for e in r.errors])
            assert r.stdout.splitlines() == [
                "[('s', 'string'), ('n', 'bigint'), ('d', 'timestamp')]",
                "['X', nan, 'Z'] [1, 2, 3] [1.0, nan, 1.0]",
                "[2, 4, 6]",
            ]
            assert "pandas" not in r.stderr, r.stderr
        await c.stop_session(w["id"])


async def test_interrupt_cancels_a_long_spark_job(
    spark_hub: HubProcess, tokens: dict[str, str]
) -> None:
    async with HubClient(spark_hub.url, tokens["alice"]) as c:
        w = await c.ensure_workspace("interrupt")
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_alice"))
            rid = "long"
            code = "spark.range(0, 10**13, 1, 4).selectExpr('sum(id % 3)').collect()"
            await s.send(P.ExecuteRequest(id=rid, code=code, language="python"))
            await asyncio.sleep(4)
            t0 = time.monotonic()
            await s.send(P.InterruptRequest(id="int1", language="python"))
            status = None
            async for msg in s.messages(timeout=30):
                ev = msg.get("event", {})
                if ev.get("type") == "done" and ev.get("request_id") == rid:
                    status = ev["status"]
                    break
            assert status in ("aborted", "error"), status
            assert time.monotonic() - t0 < 10
            assert (await _run(s, "print(spark.range(7).count())")).strip() == "7"
            out = await _run(s, "print(spark.catalog.currentDatabase())")
            assert out.strip() == "u_alice"  # the same server-side session, undisturbed


async def test_killed_server_is_restarted(spark_hub: HubProcess, tokens: dict[str, str]) -> None:
    async with HubClient(spark_hub.url, tokens["bob"]) as c:
        w = await c.ensure_workspace("kill")
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_bob"))
            await _run(s, "spark.range(4).write.saveAsTable('kept')")
            old = spark_server_pids(spark_hub, _user_id(spark_hub, tokens["bob"]))
            assert old
            for pid in old:  # the whole server: its helper, its JVM, its sandbox
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            r = await asyncio.wait_for(s.run("spark.range(3).count()", language="python"), 200)
            assert not r.ok
            text = " ".join(f"{e.ename}: {e.evalue}" for e in r.errors)
            assert any(
                w in text
                for w in (
                    "UNAVAILABLE",
                    "Connection refused",
                    "new Spark Session",
                    "SESSION_CHANGED",
                    "failed to connect",
                    "NO_ACTIVE_SESSION",
                )
            ), text
            # the hub restarts the server; a new SparkSession (same id) works again
            await _run(s, CONNECT.format(db="u_bob"))
            new = spark_server_pids(spark_hub, _user_id(spark_hub, tokens["bob"]))
            assert new and not set(new) & set(old)
            out = await _run(s, "print(spark.range(3).count(), spark.table('kept').count())")
            assert out.split() == ["3", "4"]
    assert "the Spark Connect server of bob died" in spark_hub.log_path.read_text()


async def test_a_server_maps_the_class_archive_on_its_class_path(
    spark_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """Once the hub has made the class-data archive, a server started after it maps it. A
    JVM unmaps an archive made on another class path (the unsigned copies of Spark's signed
    jars go first, spark_embedded_archive.py), so the mapping proves both."""
    from rsparkhub.config import Settings
    from rsparkhub.hub.spark_embedded_archive import ClassArchive

    archive = SPARK_CLASSES / f"spark-{await ClassArchive(Settings(), SPARK_CLASSES).key()}.jsa"
    if not archive.is_file():  # made once per install, after the hub's first server is up
        async with HubClient(spark_hub.url, spark_hub.make_user("trainer")) as c:
            async with c.attach((await c.ensure_workspace("first"))["id"]) as s:
                await _run(s, CONNECT.format(db="u_trainer"))
    deadline = time.monotonic() + 600
    while not archive.is_file():
        assert time.monotonic() < deadline, "the hub made no class-data archive in 10 min"
        await asyncio.sleep(1)
    token = spark_hub.make_user("carol")  # a new user: a server started now
    async with HubClient(spark_hub.url, token) as c:
        w = await c.ensure_workspace("archive")
        async with c.attach(w["id"]) as s:
            await _run(s, CONNECT.format(db="u_carol"))
            jvms = [
                pid
                for pid in spark_server_pids(spark_hub, _user_id(spark_hub, token))
                if Path(f"/proc/{pid}/exe").resolve().name == "java"
            ]
            assert len(jvms) == 1, jvms
            maps = Path(f"/proc/{jvms[0]}/maps").read_text()
            assert str(archive) in maps
            cmdline = Path(f"/proc/{jvms[0]}/cmdline").read_bytes().split(b"\0")
            copies = str(archive.with_suffix(".jars")).encode()
            assert any(copies in arg for arg in cmdline), cmdline


def test_doctor_reports_spark(spark_hub: HubProcess, tokens: dict[str, str]) -> None:
    out = spark_hub.cli("doctor")
    line = next(x for x in out.splitlines() if x.startswith("spark:"))
    assert "ok" in line and "embedded" in line and "4." in line and "openjdk" in line.lower()
    assert "one Spark Connect server per user" in line, line
    # the running hub knows whose servers run (bob's, restarted above)
    admin = spark_hub.make_user("root", admin=True)
    spark = spark_hub.client(admin).get("/api/doctor").json()["spark"]
    assert spark["ok"] and spark["servers"] >= 1, spark
    assert "running (" in spark["detail"] and "bob " in spark["detail"], spark["detail"]


def test_spark_off_means_no_spark_remote(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()  # conftest's default: RSPARKHUB_SPARK=off
    try:
        token = hub.make_user("carol")

        async def check() -> str:
            async with HubClient(hub.url, token) as c:
                w = await c.ensure_workspace("x")
                async with c.attach(w["id"]) as s:
                    return await _run(s, "import os; print(os.environ.get('SPARK_REMOTE'))")

        assert asyncio.run(check()).strip() == "None"
        assert not (hub.data_dir / "spark" / "users").exists()
    finally:
        hub.close()
