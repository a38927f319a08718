"""Spark code runs with its user's rights and nobody else's (issue #20, Spark): real sessions
of two users, alice and bob, on a root hub whose per-user Spark Connect servers run in real
sandboxes (hub/spark_embedded.py through hub/sandbox/). Every attempt below is made from
alice's session (Python, as a user would) and asserted to fail:

* each user has a server of their own: other ports, other processes, under the user's own
  uid (not root), the one their session code runs as;
* a Python UDF runs as alice's uid, not 0;
* Spark reads no host file: /etc/shadow, the hub's database, bob's warehouse, bob's
  session's files — but it does read alice's own session's files, at the same path;
* alice cannot read bob's tables (his database is not in her catalog) nor reach bob's
  server (his port is not forwarded into her session), and her own server does not know
  bob's Spark session even with his ids;
* bob cannot open alice's Spark UI through the hub;
* a session of a workspace that uses Spark starts the server before any Spark call;
* a server with no session and no query for ``spark_idle_timeout_s`` stops, and starts
  again at the next use.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rsparkhub.client import HubClient

from conftest import HubProcess, embedded_spark_hub, spark_server_pids

pytestmark = pytest.mark.slow
IDLE_S = 8

CONNECT = """
import os, socket
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
assert spark.catalog.currentDatabase() == {db!r}, spark.catalog.currentDatabase()
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    env = {"RSPARKHUB_SPARK_IDLE_TIMEOUT_S": str(IDLE_S)}
    with embedded_spark_hub(tmp_path_factory.mktemp("spark-iso") / "data", env) as h:
        yield h


@pytest.fixture(scope="module")
def tokens(hub: HubProcess) -> dict[str, str]:
    return {name: hub.make_user(name) for name in ("alice", "bob", "carol")}


def _user_id(hub: HubProcess, token: str) -> str:
    return str(hub.client(token).get("/api/me").json()["id"])


def _spark(hub: HubProcess, token: str) -> dict[str, Any]:
    return hub.client(token).get("/api/spark").json()  # type: ignore[no-any-return]


async def _run(s: Any, code: str, timeout: float = 240) -> str:
    r = await asyncio.wait_for(s.run(code, language="python"), timeout)
    assert r.ok, (code, r.stdout, [(e.ename, e.evalue) for e in r.errors])
    return str(r.stdout)


async def _fails(s: Any, code: str, timeout: float = 120) -> str:
    """Runs code that must fail; the error the user sees."""
    r = await asyncio.wait_for(s.run(code, language="python"), timeout)
    assert not r.ok, (code, r.stdout)
    return " ".join(f"{e.ename}: {e.evalue}" for e in r.errors)


@pytest.fixture(scope="module")
def world(hub: HubProcess, tokens: dict[str, str]) -> dict[str, Any]:
    """alice and bob each with a live session that has used Spark (so both servers run),
    bob with a table and a temporary view of his own; what their sessions say about
    themselves."""

    async def setup() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("alice", "bob"):
            async with HubClient(hub.url, tokens[name]) as c:
                w = await c.ensure_workspace("keeper")
                async with c.attach(w["id"]) as s:
                    text = await _run(
                        s,
                        CONNECT.format(db=f"u_{name}")
                        + "print(os.getuid(), os.environ['SPARK_REMOTE'], os.getcwd())\n"
                        + (
                            "spark.range(7).write.saveAsTable('secret')\n"
                            "spark.range(3).createOrReplaceTempView('bobs_view')\n"
                            if name == "bob"
                            else ""
                        ),
                    )
                uid, remote, cwd = text.split()
                out[name] = {
                    "uid": int(uid),
                    "cwd": cwd,
                    "remote": remote,
                    "port": int(remote.split(":")[2].split("/")[0]),
                    "workspace": w["id"],
                    "id": _user_id(hub, tokens[name]),
                }
        return out

    return asyncio.run(setup())


def test_each_user_has_a_server_of_their_own(hub: HubProcess, world: dict[str, Any]) -> None:
    alice, bob = world["alice"], world["bob"]
    assert alice["port"] != bob["port"]
    assert alice["uid"] not in (0, bob["uid"]) and bob["uid"] != 0
    pids = {n: set(spark_server_pids(hub, world[n]["id"])) for n in ("alice", "bob")}
    assert pids["alice"] and pids["bob"] and not pids["alice"] & pids["bob"], pids
    for name, procs in pids.items():
        uids = {psutil.Process(p).uids().real for p in procs if psutil.pid_exists(p)}
        assert uids == {world[name]["uid"]}, (name, uids)  # none of them runs as root
        names = {psutil.Process(p).name() for p in procs if psutil.pid_exists(p)}
        assert "java" in names, names


async def test_a_udf_runs_as_its_user(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    async with HubClient(hub.url, tokens["alice"]) as c, c.attach(world["alice"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_alice"))
        out = await _run(
            s,
            "from pyspark.sql.functions import udf\n"
            "@udf('string')\n"
            "def probe(_):\n"
            "    import os\n"
            "    try:\n"
            "        open('/etc/shadow').read(); shadow = 'READ'\n"
            "    except OSError as e:\n"
            "        shadow = type(e).__name__\n"
            "    return f'{os.getuid()} {os.geteuid()} {shadow} {sum(p.isdigit() for p in os.listdir(\"/proc\"))}'\n"
            "print(spark.range(1).select(probe('id')).first()[0])\n",
        )
    uid, euid, shadow, nproc = out.split()
    assert int(uid) == int(euid) == world["alice"]["uid"] != 0
    assert shadow in ("FileNotFoundError", "PermissionError"), shadow
    assert int(nproc) < 30  # its own PID namespace: no host processes to see


async def test_spark_reads_no_host_file(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    bob_warehouse = hub.data_dir / "spark" / "users" / world["bob"]["id"] / "data" / "warehouse"
    assert (bob_warehouse / "u_bob" / "secret").is_dir()  # it is there, on the host
    targets = [
        "/etc/shadow",
        str(hub.data_dir / "rsparkhub.db"),
        str(hub.data_dir / "spark" / "secret"),
        str(bob_warehouse / "u_bob" / "secret"),
        world["bob"]["cwd"],  # bob's session's working directory (his workspace's files)
        "/root/.bashrc",  # /root shows only what the runtime needs (pyenv's Python, here)
    ]
    assert Path("/root/.bashrc").is_file()
    async with HubClient(hub.url, tokens["alice"]) as c, c.attach(world["alice"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_alice"))
        for path in targets:
            err = await _fails(s, f"spark.read.text({path!r}).collect()")
            assert "PATH_NOT_FOUND" in err or "AccessDenied" in err, (path, err)
        err = await _fails(
            s, f"spark.read.parquet({str(bob_warehouse / 'u_bob' / 'secret')!r}).count()"
        )
        assert "PATH_NOT_FOUND" in err or "AccessDenied" in err, err
        # her own session's files: Spark reads them where her code sees them, and writes there
        out = await _run(
            s,
            "open('mine.csv', 'w').write('a,b\\n1,2\\n')\n"
            "df = spark.read.csv(os.path.abspath('mine.csv'), header=True)\n"
            "df.write.mode('overwrite').parquet(os.path.abspath('mine.parquet'))\n"
            "print(df.first().b, os.path.isdir('mine.parquet'))\n",
        )
        assert out.split() == ["2", "True"], out


async def test_alice_cannot_read_bobs_tables(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    async with HubClient(hub.url, tokens["alice"]) as c, c.attach(world["alice"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_alice"))
        err = await _fails(s, "spark.table('u_bob.secret').count()")
        assert "TABLE_OR_VIEW_NOT_FOUND" in err or "SCHEMA_NOT_FOUND" in err, err
        out = await _run(s, "print(sorted(r[0] for r in spark.sql('SHOW DATABASES').collect()))")
        assert "u_bob" not in out and "u_alice" in out, out
    # and bob still has it
    async with HubClient(hub.url, tokens["bob"]) as c, c.attach(world["bob"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_bob"))
        assert (await _run(s, "print(spark.table('secret').count())")).strip() == "7"


async def test_alice_cannot_join_bobs_spark_session(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    bob_port = world["bob"]["port"]
    params = world["bob"]["remote"].split("/;", 1)[1].split(";")  # token, user_id, session_id
    bob_ids = ";".join(p for p in params if not p.startswith("token="))
    async with HubClient(hub.url, tokens["alice"]) as c, c.attach(world["alice"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_alice"))
        # bob's server: not reachable from her session at all
        err = await _fails(
            s, f"socket.create_connection(('127.0.0.1', {bob_port}), timeout=5).close()"
        )
        assert "Connection" in err or "timed out" in err or "OSError" in err, err
        # bob's ids on her own server: a new, empty session, not his
        out = await _run(
            s,
            "from pyspark.sql.connect.session import SparkSession as Remote\n"
            "mine = os.environ['SPARK_REMOTE'].split(';', 2)[1]\n"  # her own token
            f"port = os.environ['SPARK_REMOTE'].split(':')[2].split('/')[0]\n"
            f"other = Remote.builder.remote(f'sc://localhost:{{port}}/;{{mine}};{bob_ids}').create()\n"
            "try:\n"
            "    other.table('bobs_view').count(); print('JOINED')\n"
            "except Exception as e:\n"
            "    print('refused', type(e).__name__, 'TABLE_OR_VIEW_NOT_FOUND' in str(e))\n",
        )
        assert out.split() == ["refused", "AnalysisException", "True"], out
    async with HubClient(hub.url, tokens["bob"]) as c, c.attach(world["bob"]["workspace"]) as s:
        await _run(s, CONNECT.format(db="u_bob"))
        assert (await _run(s, "print(spark.table('bobs_view').count())")).strip() == "3"


CALL_WITH = """
import sys
from pyspark.sql.connect.session import SparkSession
try:
    SparkSession.builder.remote(sys.argv[1]).create().sql("SELECT 1").collect()
    print("ANSWERED")
except Exception as e:
    print("refused", type(e).__name__, "UNAUTHENTICATED" in str(e) or "401" in str(e))
"""


def test_a_server_answers_only_its_users_token(hub: HubProcess, world: dict[str, Any]) -> None:
    """Reaching a user's port is not enough: a process on the host (here: the test, as
    root) that calls alice's server without her token, or with bob's, is refused; with her
    token it is answered (so the refusals are the token's doing)."""
    alice, bob = world["alice"], world["bob"]
    port = alice["port"]

    def token(remote: str) -> str:
        return next(p for p in remote.split("/;", 1)[1].split(";") if p.startswith("token="))

    assert token(alice["remote"]) != token(bob["remote"])

    def call(url: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", CALL_WITH, url],
            capture_output=True, text=True, timeout=180,
            env={k: v for k, v in os.environ.items() if not k.startswith("SPARK_")},
        )  # fmt: skip
        return out.stdout.split()

    assert call(f"sc://localhost:{port}/;user_id=alice") == [
        "refused",
        "SparkConnectGrpcException",
        "True",
    ]
    assert call(f"sc://localhost:{port}/;{token(bob['remote'])};user_id=alice") == [
        "refused", "SparkConnectGrpcException", "True"
    ]  # fmt: skip
    assert call(f"sc://localhost:{port}/;{token(alice['remote'])};user_id=alice") == ["ANSWERED"]


def test_bob_cannot_open_alices_spark_ui(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    assert _spark(hub, tokens["alice"])["ui_url"] == "/spark-ui/alice/"
    r = hub.client(tokens["alice"]).get("/spark-ui/alice/jobs/")
    assert r.status_code == 200 and "Spark Jobs" in r.text
    for path in ("/spark-ui/alice/jobs/", "/spark-ui/alice/api/v1/applications"):
        r = hub.client(tokens["bob"]).get(path)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text


async def test_a_spark_workspace_starts_the_server_with_its_session(
    hub: HubProcess, tokens: dict[str, str]
) -> None:
    assert _spark(hub, tokens["carol"])["state"] == "down"
    async with HubClient(hub.url, tokens["carol"]) as c:
        plain = await c.ensure_workspace("plain")
        await c.start_session(plain["id"])  # no file mentions Spark: nothing starts
        await asyncio.sleep(3)
        assert _spark(hub, tokens["carol"])["state"] == "down"
        w = await c.ensure_workspace("etl")
        await c.upload(w["id"], {"etl.R": b"trips <- rspark_read_csv('trips.csv')\n"})
        await c.start_session(w["id"])  # no Spark call at all
        deadline = time.monotonic() + 240
        while _spark(hub, tokens["carol"])["state"] != "running":
            assert time.monotonic() < deadline, _spark(hub, tokens["carol"])
            await asyncio.sleep(0.5)
        await c.stop_session(w["id"])
        await c.stop_session(plain["id"])


async def test_an_idle_server_stops_and_starts_again_on_use(
    hub: HubProcess, tokens: dict[str, str], world: dict[str, Any]
) -> None:
    """Last: it stops alice's sessions."""
    alice = world["alice"]
    assert _spark(hub, tokens["alice"])["state"] == "running"
    async with HubClient(hub.url, tokens["alice"]) as c:
        await c.stop_session(alice["workspace"])
        # no session, no query: stopped after IDLE_S (checked every IDLE_S / 4)
        t0 = time.monotonic()
        while _spark(hub, tokens["alice"])["state"] != "down" or spark_server_pids(
            hub, alice["id"]
        ):
            assert time.monotonic() - t0 < IDLE_S + 30, _spark(hub, tokens["alice"])
            await asyncio.sleep(0.5)
        assert time.monotonic() - t0 >= IDLE_S - 1
        assert "stopping the Spark Connect server of alice: idle" in hub.log_path.read_text()
        # the next use starts it again, with her table still there
        async with c.attach(alice["workspace"]) as s:
            await _run(s, CONNECT.format(db="u_alice"))
            await _run(s, "spark.range(2).write.saveAsTable('after_idle')")
            assert (await _run(s, "print(spark.table('after_idle').count())")).strip() == "2"
        assert spark_server_pids(hub, alice["id"])
