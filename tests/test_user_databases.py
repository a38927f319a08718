"""Per-user PostgreSQL databases on the embedded server the hub starts itself (real
PostgreSQL from the system's binaries, real sessions): R (DBI + RPostgreSQL, dbplyr) and
Python (psycopg, SQLAlchemy) connect with no arguments; a user cannot reach another user's
database; an admin rotates a password; disabling a user revokes the role's login; no
credential reaches the hub's, the agents' or PostgreSQL's logs; `off` and a missing server
leave sessions without PG variables; doctor says which."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from rsparkhub.client import HubClient

from conftest import RSPARKHUB, HubProcess

pytestmark = pytest.mark.slow

SEEN_SECRETS: list[str] = []
PG_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "DATABASE_URL")


@pytest.fixture(scope="module")
def pg_hub() -> Iterator[HubProcess]:
    # The cluster runs as the `postgres` system user (PostgreSQL refuses root), which must
    # reach DATA_DIR/postgres: pytest's tmp_path (/tmp/pytest-of-root, 0700) is not enough.
    top = Path(tempfile.mkdtemp(prefix="rsh-userdb-", dir="/tmp"))
    top.chmod(0o755)
    hub = HubProcess(top / "data", {"RSPARKHUB_USER_DATABASES": "embedded"}).start()
    try:
        yield hub
    finally:
        hub.close()
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(pg_hub: HubProcess) -> dict[str, str]:
    return {
        "admin": pg_hub.make_user("boss", admin=True),
        "alice": pg_hub.make_user("alice"),
        "bob": pg_hub.make_user("bob"),
        "carol.x": pg_hub.make_user("carol.x"),
    }


async def _run(hub: HubProcess, token: str, code: str, language: str, ws: str = "db") -> str:
    async with HubClient(hub.url, token) as c:
        w = await c.ensure_workspace(ws)
        async with c.attach(w["id"]) as s:
            r = await s.run(code, language=language)
            assert r.ok, (code, r.stdout, [(e.ename, e.evalue) for e in r.errors])
            return r.stdout


async def _session_env(hub: HubProcess, token: str, ws: str = "db") -> dict[str, str]:
    code = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {PG_VARS!r}}}))"
    out = await _run(hub, token, code, "python", ws)
    env = json.loads(out.strip().splitlines()[-1])
    if env.get("PGPASSWORD"):
        SEEN_SECRETS.append(env["PGPASSWORD"])
    return {k: v for k, v in env.items() if v is not None}


def _connect(env: dict[str, str], **kw: object) -> psycopg.Connection:
    args: dict[str, object] = {
        "host": env["PGHOST"],
        "port": env["PGPORT"],
        "user": env["PGUSER"],
        "password": env["PGPASSWORD"],
        "dbname": env["PGDATABASE"],
        "connect_timeout": 10,
    }
    args.update(kw)
    return psycopg.connect(**args)  # type: ignore[arg-type]


def _admin_connect(hub: HubProcess, env: dict[str, str]) -> psycopg.Connection:
    password = (hub.data_dir / "postgres" / "admin-password").read_text().strip()
    return psycopg.connect(
        host="127.0.0.1",
        port=env["PGPORT"],
        user="rsparkhub",
        password=password,
        dbname="postgres",
        autocommit=True,
    )


PY_CODE = """
import psycopg, sqlalchemy
with psycopg.connect() as con:
    con.execute("create table t_py (x int)")
    con.execute("insert into t_py values (1), (2)")
    print(con.execute("select current_user, current_database(), sum(x) from t_py").fetchone())
engine = sqlalchemy.create_engine("postgresql+psycopg://")
with engine.connect() as c:
    print("sqlalchemy", c.execute(sqlalchemy.text("select count(*) from t_py")).scalar())
"""

R_CODE = """
library(DBI)
con <- dbConnect(RPostgreSQL::PostgreSQL())
dbWriteTable(con, "t_r", data.frame(a = 1:3), row.names = FALSE)
cat("R", dbGetQuery(con, "select current_user as u, sum(a) as s from t_r")$u,
    dbGetQuery(con, "select sum(a) as s from t_r")$s,
    dbGetQuery(con, "select sum(x) as s from t_py")$s, "\\n")
n <- suppressWarnings(dplyr::collect(dplyr::summarise(dplyr::tbl(con, "t_r"), n = sum(a, na.rm = TRUE))))
cat("dbplyr", n$n, "\\n")
invisible(dbDisconnect(con))
"""


async def test_r_and_python_connect_with_no_arguments(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    for name, role in (("alice", "u_alice"), ("bob", "u_bob")):
        env = await _session_env(pg_hub, tokens[name])
        assert set(env) == set(PG_VARS), env
        assert env["PGUSER"] == env["PGDATABASE"] == role and env["PGHOST"] == "127.0.0.1"
        assert env["DATABASE_URL"].startswith(f"postgresql://{role}:")
        out = await _run(pg_hub, tokens[name], PY_CODE, "python")
        assert f"('{role}', '{role}', 3)" in out and "sqlalchemy 2" in out, out
        out = await _run(pg_hub, tokens[name], R_CODE, "r")
        assert f"R {role} 6 3" in out and "dbplyr 6" in out, out
    # Names that are not identifiers get a sanitised role with a hash suffix.
    env = await _session_env(pg_hub, tokens["carol.x"])
    assert env["PGUSER"].startswith("u_carol_x_") and len(env["PGUSER"]) == len("u_carol_x_") + 6


async def test_me_database_shows_no_password(pg_hub: HubProcess, tokens: dict[str, str]) -> None:
    env = await _session_env(pg_hub, tokens["alice"])
    with pg_hub.client(tokens["alice"]) as c:
        r = c.get("/api/me/database")
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["available"] is True and info["user"] == info["database"] == "u_alice"
    assert info["host"] == "127.0.0.1" and str(info["port"]) == env["PGPORT"]
    assert "password" not in info and env["PGPASSWORD"] not in r.text


async def test_a_user_cannot_reach_another_users_database(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    alice = await _session_env(pg_hub, tokens["alice"])
    # From alice's session, with no other argument than bob's database name.
    code = (
        "import psycopg\n"
        "try:\n    psycopg.connect(dbname='u_bob')\n    print('CONNECTED')\n"
        "except psycopg.OperationalError as e:\n    print('REFUSED', e)\n"
    )
    out = await _run(pg_hub, tokens["alice"], code, "python")
    assert "REFUSED" in out and "no pg_hba.conf entry" in out, out
    # From outside, with alice's credentials: bob's database and the maintenance ones.
    for db in ("u_bob", "postgres", "template1"):
        with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry"):
            _connect(alice, dbname=db)
    # And even a server whose pg_hba allowed it (an external one) refuses: no CONNECT.
    with _admin_connect(pg_hub, alice) as admin:
        row = admin.execute(
            "select has_database_privilege('u_alice', 'u_bob', 'CONNECT'),"
            " has_database_privilege('u_bob', 'u_bob', 'CONNECT'),"
            " (select rolsuper or rolcreatedb or rolcreaterole from pg_roles"
            "  where rolname = 'u_alice')"
        ).fetchone()
    assert row == (False, True, False)
    with _connect(alice) as con:  # her own, yes
        assert con.execute("select current_database()").fetchone() == ("u_alice",)


async def test_admin_rotates_a_password(pg_hub: HubProcess, tokens: dict[str, str]) -> None:
    old = await _session_env(pg_hub, tokens["bob"], ws="rot")
    with pg_hub.client(tokens["bob"]) as c:
        r = c.post("/api/users/bob/database/rotate")
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    with pg_hub.client(tokens["admin"]) as c:
        assert c.post("/api/users/nobody/database/rotate").status_code == 404
        r = c.post("/api/users/bob/database/rotate")
    assert r.status_code == 200, r.text
    new = r.json()
    SEEN_SECRETS.append(new["password"])
    assert new["user"] == "u_bob" and new["password"] != old["PGPASSWORD"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(old)
    with _connect(old, password=new["password"]) as con:
        assert con.execute("select count(*) from t_py").fetchone() == (2,)  # data kept
    # The running session keeps the old password; a new session gets the new one.
    with pg_hub.client(tokens["bob"]) as c:
        wid = next(w["id"] for w in c.get("/api/workspaces").json() if w["name"] == "rot")
        assert c.delete(f"/api/workspaces/{wid}/session").status_code == 200
    env = await _session_env(pg_hub, tokens["bob"], ws="rot")
    assert env["PGPASSWORD"] == new["password"]
    out = await _run(
        pg_hub, tokens["bob"], "import psycopg; print(psycopg.connect().info.user)", "python", "rot"
    )
    assert "u_bob" in out


async def test_disabling_a_user_revokes_the_login(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    env = await _session_env(pg_hub, tokens["carol.x"])
    open_conn = _connect(env, autocommit=True)
    assert open_conn.execute("select 1").fetchone() == (1,)
    with pg_hub.client(tokens["admin"]) as c:
        r = c.patch("/api/users/carol.x", json={"disabled": True})
        assert r.status_code == 200 and r.json()["disabled"] is True, r.text
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            _connect(env)
        with pytest.raises(psycopg.OperationalError):  # her open connection was ended
            open_conn.execute("select 1")
        r = c.patch("/api/users/carol.x", json={"disabled": False})
        assert r.status_code == 200 and r.json()["disabled"] is False, r.text
    with _connect(env) as con:
        assert con.execute("select 1").fetchone() == (1,)


def test_doctor_reports_the_server(pg_hub: HubProcess, tokens: dict[str, str]) -> None:
    with pg_hub.client(tokens["admin"]) as c:
        rep = c.get("/api/doctor").json()
    assert rep["user_databases"]["ok"] is True and rep["user_databases"]["mode"] == "embedded"
    assert "running" in rep["user_databases"]["detail"]


async def test_server_is_adopted_after_a_hub_crash(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    pidfile = pg_hub.data_dir / "postgres" / "data" / "postmaster.pid"
    pid = int(pidfile.read_text().split()[0])
    pg_hub.restart(signal.SIGKILL)  # no clean shutdown: the postmaster keeps running
    assert psutil.pid_exists(pid)
    env = await _session_env(pg_hub, tokens["alice"], ws="after-crash")
    with _connect(env) as con:
        assert con.execute("select count(*) from t_py").fetchone() == (2,)
    assert int(pidfile.read_text().split()[0]) == pid  # adopted, not restarted
    # A clean hub stop stops the server; the next session starts it again.
    pg_hub.restart()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    env = await _session_env(pg_hub, tokens["alice"], ws="after-restart")
    with _connect(env) as con:
        assert con.execute("select count(*) from t_r").fetchone() == (3,)


def test_no_credential_in_any_log(pg_hub: HubProcess) -> None:
    assert len(set(SEEN_SECRETS)) >= 4
    logs = [pg_hub.log_path, pg_hub.data_dir / "postgres" / "postgres.log"]
    logs += sorted((pg_hub.data_dir / "logs").glob("*/agent.log"))
    assert len(logs) >= 5
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in set(SEEN_SECRETS):
            assert secret not in text, path
        assert "PGPASSWORD" not in text and "postgresql://u_" not in text, path


# --------------------------------------------------------------------------- off / missing


async def test_off_means_no_variables(hub: HubProcess) -> None:
    token = hub.make_user("dora")
    env = await _session_env(hub, token)
    assert env == {}
    with hub.client(token) as c:
        info = c.get("/api/me/database").json()
    assert info["available"] is False and info["mode"] == "off"


async def test_missing_binaries_sessions_start_and_doctor_says_why(tmp_path: Path) -> None:
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    extra = {"RSPARKHUB_USER_DATABASES": "embedded", "RSPARKHUB_USER_DATABASES_BINDIR": str(empty)}
    h = HubProcess(tmp_path / "data", extra).start()
    try:
        admin = h.make_user("boss", admin=True)
        assert await _session_env(h, admin) == {}  # the session started, without PG*
        with h.client(admin) as c:
            rep = c.get("/api/doctor").json()["user_databases"]
            assert rep["ok"] is False and rep["detail"].startswith("PostgreSQL not available:")
            info = c.get("/api/me/database").json()
            assert info["available"] is False and "not available" in info["detail"]
            r = c.post("/api/users/boss/database/rotate")
            assert (
                r.status_code == 503 and r.json()["error"]["code"] == "user_databases_unavailable"
            )
        out = await asyncio.to_thread(
            subprocess.run,
            [RSPARKHUB, "doctor", "--data-dir", str(h.data_dir)],
            env=h.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "PostgreSQL not available: user_databases_bindir" in out.stdout, out.stdout
    finally:
        h.close()


def test_external_needs_an_admin_url(tmp_path: Path) -> None:
    out = subprocess.run(
        [RSPARKHUB, "doctor", "--data-dir", str(tmp_path)],
        env={**os.environ, "RSPARKHUB_USER_DATABASES": "external"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "user_databases_admin_url" in out.stderr, out.stderr


def test_unique_role_names() -> None:
    from rsparkhub.hub.userdb import role_name, scram_verifier

    assert role_name("alice") == "u_alice"
    assert role_name("a.b") != role_name("a_b") and role_name("a-b") != role_name("a.b")
    assert len(role_name("x" * 64).encode()) <= 63
    assert scram_verifier("pw").startswith("SCRAM-SHA-256$4096:")


async def test_the_postgres_example_runs(pg_hub: HubProcess, tokens: dict[str, str]) -> None:
    """The bundled example workspace: R (DBI + dbplyr) and Python (psycopg + SQLAlchemy)
    reach the user's database with no connection arguments."""
    async with HubClient(pg_hub.url, tokens["alice"]) as c:
        project = await c.ensure_project("default")
        ws = await c.request(
            "POST",
            f"/api/projects/{project['id']}/workspaces",
            json={"name": "pg-example", "example": "postgres"},
        )
        async with c.attach(ws["id"]) as s:
            r = await s.run(path="dbi.R", mode="run")
            assert r.ok, (r.stdout, [(e.ename, e.evalue) for e in r.errors])
            assert "26.66" in r.stdout and "SELECT" in r.stdout  # mean mpg of 4 cylinders
            r = await s.run(path="psycopg_demo.py", mode="run")
            assert r.ok, (r.stdout, [(e.ename, e.evalue) for e in r.errors])
            assert "'u_alice', 'u_alice'" in r.stdout
            assert "b  3  12.0" in r.stdout
