"""``spark = 'external'``: the test starts its own real Spark Connect server (``spark-submit
--class …SparkConnectServer`` from the pip pyspark, on loopback, as a cluster would run it)
and a hub pointed at it with ``RSPARKHUB_SPARK_REMOTE_URL``. Sessions get SPARK_REMOTE
with their user and session ids and query that server; two users' temporary views stay
apart; the hub starts no server of its own and prepares no database there (the cluster's
default database applies — a decision documented in docs/configuration.md); doctor and
``GET /api/spark`` describe it without the URL's parameters, and notice when it is down."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rsparkhub.client import HubClient
from rsparkhub.config import Settings
from rsparkhub.hub.spark import SessionOwner, build_spark
from rsparkhub.hub.spark_embedded_process import spark_home
from rsparkhub.hub.supervised import free_port, port_open

from conftest import HubProcess

pytestmark = pytest.mark.slow
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class ExternalServer:
    """A plain Spark Connect server, the way a Spark cluster runs one."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        home = spark_home()
        confs = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(base / "warehouse"),
        }
        argv = [str(home / "bin" / "spark-submit"), "--class", SERVER_CLASS,
                "--master", "local[2]", "--driver-memory", "1g"]  # fmt: skip
        for k, v in confs.items():
            argv += ["--conf", f"{k}={v}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RSPARKHUB_", "SPARK_"))}
        env.update(SPARK_HOME=str(home), SPARK_LOCAL_IP="127.0.0.1")
        self.log = open(base / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*argv, "spark-internal"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(base),
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not port_open(self.port):
            assert self.proc.poll() is None, (base / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Spark Connect server did not open its port"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalServer]:
    s = ExternalServer(tmp_path_factory.mktemp("external-spark"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, server: ExternalServer) -> Iterator[HubProcess]:
    h = HubProcess(
        tmp_path_factory.mktemp("external-hub") / "data",
        {
            "RSPARKHUB_SPARK": "external",
            "RSPARKHUB_SPARK_REMOTE_URL": f"sc://127.0.0.1:{server.port}",
        },
    ).start()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def tokens(hub: HubProcess) -> dict[str, str]:
    return {
        "alice": hub.make_user("alice"),
        "bob": hub.make_user("bob"),
        "root": hub.make_user("root", admin=True),
    }


async def _run(s: Any, code: str, timeout: float = 200) -> str:
    r = await asyncio.wait_for(s.run(code, language="python"), timeout)
    assert r.ok, (code, r.stdout, [(e.ename, e.evalue) for e in r.errors])
    return str(r.stdout)


CONNECT = "from pyspark.sql import SparkSession\nspark = SparkSession.builder.getOrCreate()\n"


async def test_sessions_use_the_external_server(
    hub: HubProcess, server: ExternalServer, tokens: dict[str, str]
) -> None:
    async with HubClient(hub.url, tokens["alice"]) as c:
        w = await c.ensure_workspace("ext")
        async with c.attach(w["id"]) as s:
            remote = (await _run(s, "import os; print(os.environ['SPARK_REMOTE'])")).strip()
            m = re.fullmatch(
                rf"sc://127\.0\.0\.1:{server.port}/;user_id=alice;session_id=([0-9a-f-]{{36}})",
                remote,
            )
            assert m, remote
            out = await _run(
                s,
                CONNECT + "print(spark.catalog.currentDatabase())\n"
                "print(spark.client._session_id)\n"
                "print(spark.sql('SELECT 6 * 7 AS x').first().x)\n",
            )
            # the cluster's default database: the hub prepares none on an external server
            assert out.split() == ["default", m.group(1), "42"]
    assert not (hub.data_dir / "spark" / "users").exists()  # no server of its own
    assert "starting the Spark Connect server" not in hub.log_path.read_text()


async def test_two_users_temp_views_stay_apart(hub: HubProcess, tokens: dict[str, str]) -> None:
    async with (
        HubClient(hub.url, tokens["alice"]) as ca,
        HubClient(hub.url, tokens["bob"]) as cb,
    ):
        wa, wb = await ca.ensure_workspace("views"), await cb.ensure_workspace("views")
        async with ca.attach(wa["id"]) as sa, cb.attach(wb["id"]) as sb:
            await _run(sa, CONNECT + "spark.range(3).createOrReplaceTempView('t')")
            await _run(sb, CONNECT + "spark.range(100, 105).createOrReplaceTempView('t')")
            a = await _run(sa, "print(spark.sql('SELECT count(*), min(id) FROM t').first())")
            b = await _run(sb, "print(spark.sql('SELECT count(*), min(id) FROM t').first())")
            assert "count(1)=3, min(id)=0" in a
            assert "count(1)=5, min(id)=100" in b


def test_api_spark_and_doctor_describe_the_external_server(
    hub: HubProcess, server: ExternalServer, tokens: dict[str, str]
) -> None:
    info = hub.client(tokens["bob"]).get("/api/spark").json()
    assert info == {
        "mode": "external",
        "state": "running",
        "remote": f"sc://127.0.0.1:{server.port}/;user_id=bob",
        "database": None,
        "ui_url": None,
        "detail": info["detail"],
    }
    assert "external" in info["detail"]
    r = hub.client(tokens["root"]).get("/spark-ui/root/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "spark_off"
    assert "external" in r.json()["error"]["message"]
    line = next(x for x in hub.cli("doctor").splitlines() if x.startswith("spark:"))
    assert "ok" in line and "external" in line, line
    assert f"sc://127.0.0.1:{server.port}" in line and "reachable" in line, line
    assert "no authentication" in line, line


async def test_describe_never_shows_url_parameters(tmp_path: Path) -> None:
    """An external URL may carry a token: doctor and /api/spark show scheme, host, port."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        spark="external",
        spark_remote_url=f"sc://127.0.0.1:{port}/;token=s3cret-token;use_ssl=false",
    )
    spark = build_spark(settings)
    doctor = await spark.describe()
    mine = await spark.describe_for("alice", is_admin=True)
    assert "s3cret" not in str(doctor) and "s3cret" not in str(mine)
    assert f"sc://127.0.0.1:{port}" in doctor["detail"] and doctor["ok"] is False  # down
    assert mine["state"] == "down" and mine["remote"] == f"sc://127.0.0.1:{port}/;user_id=alice"
    # sessions do get the whole URL (they need the token), with their own ids after it
    env = await spark.session_env(SessionOwner("hub-session-1", "alice"))
    assert env["SPARK_REMOTE"].startswith(
        f"sc://127.0.0.1:{port}/;token=s3cret-token;use_ssl=false;user_id=alice;session_id="
    )


def test_a_stopped_external_server_is_reported_down(
    hub: HubProcess, server: ExternalServer, tokens: dict[str, str]
) -> None:
    server.stop()  # last: the module's server is gone afterwards
    assert hub.client(tokens["alice"]).get("/api/spark").json()["state"] == "down"
    line = next(x for x in hub.cli("doctor").splitlines() if x.startswith("spark:"))
    assert "NOT reachable" in line, line
    assert httpx.get(f"{hub.url}/api/health").status_code == 200
