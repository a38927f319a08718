"""The embedded services work wherever the operator put the checkout, and a session that
has to go without one says so to its users (issue #10).

On Debian root's home is ``drwx------``: a hub run as root from a clone in ``/root`` with
the default ``./data`` gave every user no database, because the ``postgres`` system user
(PostgreSQL refuses root) could not reach ``DATA_DIR/postgres``. These tests put the data
directory under a 0700 root-owned parent, as such a clone does, with a real hub, a real
PostgreSQL from the system's binaries and real sessions. When PostgreSQL or Spark cannot be
used, the session's start messages (``session_state``, what the console shows while it
starts) and ``doctor`` say what is missing and what an administrator can do."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rsparkhub import protocol as P
from rsparkhub.client import HubClient
from rsparkhub.hub.postgres import STATE_ROOT, cluster_base

from conftest import RSPARKHUB, HubProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the postgres system user matters to a root hub"),
]

NO_DATABASE = "No PostgreSQL database in this session"
NO_SPARK = "No Spark in this session"


def _private_data_dir(tmp_path: Path) -> Path:
    """DATA_DIR inside a directory only root may enter, like ``/root/rsparkhub/data``."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    assert private.stat().st_uid == 0
    return private / "data"


@pytest.fixture
def private_pg_hub(tmp_path: Path) -> Iterator[HubProcess]:
    data = _private_data_dir(tmp_path)
    hub = HubProcess(data, {"RSPARKHUB_USER_DATABASES": "embedded"}).start()
    try:
        yield hub
    finally:
        hub.close()  # a clean stop stops the server too
        shutil.rmtree(cluster_base(data), ignore_errors=True)


async def _start_and_run(
    hub: HubProcess, token: str, code: str, language: str, ws: str = "w"
) -> tuple[str, list[str]]:
    """Start the workspace's session by attaching, run ``code``: its output and the start
    messages the session's clients were shown."""
    async with HubClient(hub.url, token) as c:
        w = await c.ensure_workspace(ws)
        async with c.attach(w["id"]) as s:
            r = await s.run(code, language=language)  # type: ignore[arg-type]
            assert r.ok, (code, r.stdout, [(e.ename, e.evalue) for e in r.errors])
            return r.stdout, _start_messages(s.side)


def _start_messages(side: list[dict[str, Any]]) -> list[str]:
    return [
        m["message"]
        for m in side
        if m.get("type") == "session_state" and m.get("state") == "starting" and m.get("message")
    ]


PY_SELECT = (
    "import os, psycopg\n"
    "with psycopg.connect() as con:\n"
    "    print('PY', os.environ['PGHOST'], os.environ['PGUSER'],"
    " con.execute('select 1').fetchone()[0])\n"
)
R_SELECT = (
    "con <- DBI::dbConnect(RPostgreSQL::PostgreSQL())\n"
    'cat("R", Sys.getenv("PGUSER"), DBI::dbGetQuery(con, "select 1 as x")$x, "\\n")\n'
    "invisible(DBI::dbDisconnect(con))\n"
)


async def test_a_session_gets_its_database_with_the_data_dir_under_a_private_parent(
    private_pg_hub: HubProcess,
) -> None:
    hub = private_pg_hub
    token = hub.make_user("alice")
    out, messages = await _start_and_run(hub, token, PY_SELECT, "python")
    assert "PY 127.0.0.1 u_alice 1" in out, out
    assert not any(NO_DATABASE in m for m in messages), messages
    out, _ = await _start_and_run(hub, token, R_SELECT, "r")
    assert "R u_alice 1" in out, out

    # The cluster lives where the postgres user can reach it, made by the hub, and keeps
    # its admin socket private; DATA_DIR needs no opening for it (0700).
    base = cluster_base(hub.data_dir)
    assert base.parent == STATE_ROOT / "postgres" and not (hub.data_dir / "postgres").exists()
    postgres = pwd.getpwnam("postgres")
    for path in (base, base / "run", base / "data"):
        st = path.stat()
        assert st.st_uid == postgres.pw_uid and stat.S_IMODE(st.st_mode) == 0o700, path
    for parent in (STATE_ROOT, base.parent):
        st = parent.stat()
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) & 0o077 == 0o011, parent
    assert stat.S_IMODE(hub.data_dir.stat().st_mode) == 0o700
    assert (base / "data-dir").read_text().strip() == str(hub.data_dir)
    assert stat.S_IMODE((base / "admin-password").stat().st_mode) == 0o600

    with hub.client(hub.make_user("boss", admin=True)) as c:
        rep = c.get("/api/doctor").json()["user_databases"]
    assert rep["ok"] is True and f"in {base}, admin only through {base / 'run'}" in rep["detail"]

    # A crashed hub's server is adopted by the next one.
    pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
    hub.restart(signal.SIGKILL)
    out, _ = await _start_and_run(hub, token, PY_SELECT, "python", ws="after-crash")
    assert "PY 127.0.0.1 u_alice 1" in out, out
    assert int((base / "data" / "postmaster.pid").read_text().split()[0]) == pid
    hub.stop()  # and a clean stop stops it
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_a_cluster_the_postgres_user_cannot_reach_is_explained(tmp_path: Path) -> None:
    """A cluster an older hub set up in DATA_DIR/postgres stays there; when the checkout is
    then moved under a private parent, users are told at session start and doctor names
    the directory in the way and the two ways out."""
    data = _private_data_dir(tmp_path)
    (data / "postgres" / "data").mkdir(parents=True)
    (data / "postgres" / "data" / "PG_VERSION").write_text("15\n")  # an older hub's cluster
    hub = HubProcess(data, {"RSPARKHUB_USER_DATABASES": "embedded"}).start()
    try:
        token = hub.make_user("boss", admin=True)
        out, messages = await _start_and_run(
            hub, token, "import os; print('PGHOST' in os.environ)", "python"
        )
        assert out.strip() == "False"
        said = [m for m in messages if NO_DATABASE in m]
        assert len(said) == 1, messages
        # the first directory in the way: pytest's own 0700 directory, or the private one
        blocked = next(p for p in reversed(data.parents) if not p.stat().st_mode & stat.S_IXOTH)
        assert f"cannot reach {blocked} (on the way to {data / 'postgres'})" in said[0]
        assert "chmod o+x" in said[0] and "rsparkhub doctor" in said[0]
        assert stat.S_IMODE(data.stat().st_mode) == 0o711  # the old cluster's way in
        out = await _doctor(hub)
        assert f"cannot reach {blocked}" in out and "move" in out, out
    finally:
        hub.close()


async def test_users_are_told_which_services_their_session_goes_without(
    tmp_path: Path,
) -> None:
    """No PostgreSQL server binaries where the hub is told to look, and Spark's session ids
    cannot be made (DATA_DIR/spark is a file): the session starts, and its start messages
    say what is missing and what an administrator can do."""
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "spark").write_text("not a directory\n")
    hub = HubProcess(
        data,
        {
            "RSPARKHUB_USER_DATABASES": "embedded",
            "RSPARKHUB_USER_DATABASES_BINDIR": str(empty),
            "RSPARKHUB_SPARK": "external",
            "RSPARKHUB_SPARK_REMOTE_URL": "sc://127.0.0.1:9",
        },
    ).start()
    try:
        token = hub.make_user("boss", admin=True)
        code = "import os; print(sorted(k for k in os.environ if k.startswith(('PG', 'SPARK'))))"
        out, messages = await _start_and_run(hub, token, code, "python")
        assert out.strip() == "[]", out
        db = [m for m in messages if NO_DATABASE in m]
        assert len(db) == 1, messages
        assert f"user_databases_bindir = {empty} does not contain initdb" in db[0]
        assert "point it at the server's bin directory" in db[0] and "rsparkhub doctor" in db[0]
        spark = [m for m in messages if NO_SPARK in m]
        assert len(spark) == 1, messages
        assert "Spark is not available on this hub" in spark[0], spark
        assert "rsparkhub doctor" in spark[0]
        assert "PGPASSWORD" not in " ".join(messages)
        # Someone who opens the workspace later, while the session runs, is told too.
        async with (
            HubClient(hub.url, hub.make_user("late")) as late,
            HubClient(hub.url, token) as c,
        ):
            wid = (await c.ensure_workspace("w"))["id"]
            await c.request(
                "PUT", f"/api/workspaces/{wid}/members", json={"user": "late", "role": "viewer"}
            )
            async with late.attach(wid) as s:
                await s.send(P.PingRequest(id="p"))
                told = []
                async for m in s.messages(timeout=30):  # the notices come before the pong
                    if m.get("type") == "session_state" and m.get("state") == "running":
                        told.append(m["message"])
                    if m.get("type") == "event" and m["event"].get("request_id") == "p":
                        break
                assert [m for m in told if NO_DATABASE in m] == db, told
                assert [m for m in told if NO_SPARK in m] == spark, told
        out = await _doctor(hub)
        assert "PostgreSQL not available: user_databases_bindir" in out, out
        assert "point it at the server's bin directory" in out, out
    finally:
        hub.close()


async def _doctor(hub: HubProcess) -> str:
    out = await asyncio.to_thread(
        subprocess.run,
        [RSPARKHUB, "doctor", "--data-dir", str(hub.data_dir)],
        env=hub.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout
