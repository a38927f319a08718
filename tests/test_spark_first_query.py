"""The first Spark statement of a session runs in the user's own database — with no retry
loop in the user's code (the user's database is their server's default database, see
hub/spark_embedded.py): when that first statement starts the user's server (cold), when the
server is already running (warm), and after the server crashed and the hub restarted it,
where the test pins down exactly what the user sees."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rsparkhub.client import HubClient

from conftest import HubProcess, embedded_spark_hub, spark_server_pids

pytestmark = pytest.mark.slow

FIRST = (
    "from pyspark.sql import SparkSession\n"
    "spark = SparkSession.builder.getOrCreate()\n"
    "print(spark.catalog.currentDatabase())\n"
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with embedded_spark_hub(tmp_path_factory.mktemp("spark-first") / "data") as h:
        yield h


def _spark(hub: HubProcess, token: str) -> dict[str, Any]:
    r = httpx.get(f"{hub.url}/api/spark", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _server_running(hub: HubProcess, token: str, timeout: float = 240) -> None:
    """Starts the user's server when it is not running (a throwaway session in a workspace
    whose file mentions Spark: the hub starts the server in the background), then waits
    for the *server* (the hub's state): a user's query is never retried here."""
    if _spark(hub, token)["state"] == "down":
        async with HubClient(hub.url, token) as c:
            w = await c.ensure_workspace("starter")
            await c.upload(w["id"], {"uses_spark.py": b"from pyspark.sql import SparkSession\n"})
            await c.start_session(w["id"])
    deadline = time.monotonic() + timeout
    while _spark(hub, token)["state"] != "running":
        assert time.monotonic() < deadline, _spark(hub, token)
        await asyncio.sleep(0.5)


async def _run(s: Any, code: str, timeout: float = 240) -> Any:
    return await asyncio.wait_for(s.run(code, language="python"), timeout)


def _errors(r: Any) -> str:
    return " ".join(f"{e.ename}: {e.evalue}" for e in r.errors)


async def test_cold_first_statement_runs_in_the_users_database(hub: HubProcess) -> None:
    token = hub.make_user("carol")
    assert _spark(hub, token)["state"] == "down"  # nothing has started Spark yet
    async with HubClient(hub.url, token) as c:
        w = await c.ensure_workspace("cold")
        async with c.attach(w["id"]) as s:
            # This statement starts the user's server (its first connection reaches the
            # hub, which starts it). pyspark's client retries the refused connection on
            # its own; the server's default database is the user's.
            r = await _run(s, FIRST)
            assert r.ok, _errors(r)
            assert r.stdout.strip() == "u_carol"
    info = _spark(hub, token)
    assert info["state"] == "running" and info["database"] == "u_carol"


async def test_warm_first_statement_runs_in_the_users_database(hub: HubProcess) -> None:
    token = hub.make_user("dave")  # a new user: the database is created at session start
    await _server_running(hub, token)
    async with HubClient(hub.url, token) as c:
        for name in ("warm-1", "warm-2"):  # a first and a later session of the user
            w = await c.ensure_workspace(name)
            async with c.attach(w["id"]) as s:
                r = await _run(s, FIRST + "print(spark.sql('SELECT 41 + 1 AS x').first().x)\n")
                assert r.ok, _errors(r)
                assert r.stdout.split() == ["u_dave", "42"]


PRELOADED = "import sys; print('pyspark.sql.connect.session' in sys.modules)\n"


async def test_a_spark_workspace_kernel_imports_pyspark_in_the_background(hub: HubProcess) -> None:
    """In a workspace whose files mention Spark, the Python kernel has pyspark's Connect
    client imported without the user asking (and printed nothing of it); in one whose files
    do not, it has not (its memory stays that of a plain kernel). Then the first statement
    runs as usual."""
    token = hub.make_user("gwen")
    async with HubClient(hub.url, token) as c:
        plain = await c.ensure_workspace("no-spark")
        await c.upload(plain["id"], {"a.py": b"print('hello')\n"})
        async with c.attach(plain["id"]) as s:
            r = await _run(s, "import time; time.sleep(3)\n" + PRELOADED)
            assert r.ok and r.stdout.split() == ["False"], (r.stdout, _errors(r))
        w = await c.ensure_workspace("uses-spark")
        await c.upload(w["id"], {"job.py": b"from pyspark.sql import SparkSession\n"})
        async with c.attach(w["id"]) as s:
            first = await _run(s, "print('first')\n")
            assert first.ok and first.stdout == "first\n" and not first.stderr, first.stderr
            seen = ""
            for _ in range(60):  # bounded: 30 s
                r = await _run(s, PRELOADED)
                assert r.ok and not r.stderr, (r.stderr, _errors(r))
                seen = r.stdout.strip()
                if seen == "True":
                    break
                await asyncio.sleep(0.5)
            assert seen == "True"
            r = await _run(s, FIRST)
            assert r.ok and r.stdout.strip() == "u_gwen", (r.stdout, _errors(r))


async def test_after_a_crash_one_clear_error_then_get_or_create_reconnects(
    hub: HubProcess,
) -> None:
    token = hub.make_user("erin")
    await _server_running(hub, token)
    async with HubClient(hub.url, token) as c:
        w = await c.ensure_workspace("crash")
        async with c.attach(w["id"]) as s:
            r = await _run(s, FIRST + "spark.range(3).createOrReplaceTempView('v')\n")
            assert r.ok and r.stdout.strip() == "u_erin", _errors(r)
            uid = str(hub.client(token).get("/api/me").json()["id"])
            old = spark_server_pids(hub, uid)
            assert old
            for pid in old:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

            # The existing `spark` object: its request is retried by the client while the
            # server is down, then the restarted server answers that the session changed;
            # pyspark marks the object stopped and reports SESSION_CHANGED, or, when that
            # answer came to a retry inside the request, NO_ACTIVE_SESSION ("Please create
            # a new Spark session").
            r = await _run(s, "spark.range(3).count()")
            assert not r.ok
            assert any(w in _errors(r) for w in ("SESSION_CHANGED", "NO_ACTIVE_SESSION")), _errors(
                r
            )

            # The next getOrCreate() is a new session — at once in the user's database.
            r = await _run(s, FIRST + "print(spark.range(3).count())\n")
            assert r.ok, _errors(r)
            assert r.stdout.split() == ["u_erin", "3"]
            new = spark_server_pids(hub, uid)
            assert new and not set(new) & set(old)

            # Temporary views died with the server (tables do not: see test_spark.py).
            r = await _run(s, "spark.table('v').count()")
            assert not r.ok and "TABLE_OR_VIEW_NOT_FOUND" in _errors(r), _errors(r)
    assert _spark(hub, token)["state"] == "running"
    assert "the Spark Connect server of erin died" in hub.log_path.read_text()
