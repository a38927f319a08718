"""Per-user PostgreSQL databases on the embedded server the hub starts itself (real
PostgreSQL from the system's binaries, real sessions): R (DBI + RPostgreSQL, dbplyr) and
Python (psycopg, SQLAlchemy) connect with no arguments; a user cannot reach another user's
database, run a program or read a server file; the admin role is reachable only through
the hub's private socket, never over TCP; passwords are derived from the hub's secret (the
hub database holds none), stay the same across restarts and change on rotation; disabling
a user revokes the role's login; no credential reaches the hub's, the agents' or
PostgreSQL's logs; `off` and a missing server leave sessions without PG variables; doctor
says which. An external server (the tests' own, tests/pgserver.py) is provisioned the same
way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from rsparkhub.client import HubClient
from rsparkhub.hub import secret_key
from rsparkhub.hub.postgres import cluster_base
from rsparkhub.hub.userdb import derive_password, find_bindir

from conftest import RSPARKHUB, HubProcess
from pgserver import PgServer

pytestmark = pytest.mark.slow

SEEN_SECRETS: list[str] = []
PG_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "DATABASE_URL")
ADMIN_OVER_TCP = 'pg_hba.conf rejects connection for host "127.0.0.1", user "rsparkhub"'


@pytest.fixture(scope="module")
def pg_hub() -> Iterator[HubProcess]:
    # A root hub's cluster lives outside DATA_DIR (hub/postgres.py cluster_base), where the
    # `postgres` system user reaches it; tests/test_embedded_services.py puts DATA_DIR
    # under a private parent.
    top = Path(tempfile.mkdtemp(prefix="rsh-userdb-", dir="/tmp"))
    hub = HubProcess(top / "data", {"RSPARKHUB_USER_DATABASES": "embedded"}).start()
    try:
        yield hub
    finally:
        hub.close()
        shutil.rmtree(cluster_base(hub.data_dir), ignore_errors=True)
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


def _base(hub: HubProcess) -> Path:
    """The embedded cluster's directory (DATA_DIR/postgres, or outside it for a root hub)."""
    return cluster_base(hub.data_dir)


def _admin_password(hub: HubProcess) -> str:
    return (_base(hub) / "admin-password").read_text().strip()


def _admin_connect(hub: HubProcess, env: dict[str, str]) -> psycopg.Connection:
    """The hub's admin role, the only way it can connect: the private socket directory."""
    return psycopg.connect(
        host=str(_base(hub) / "run"),
        port=env["PGPORT"],
        user="rsparkhub",
        password=_admin_password(hub),
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


async def test_the_admin_role_cannot_log_in_over_tcp(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """Not from the host, not from a session, not with the right password: pg_hba.conf
    rejects the superuser over TCP. The same password works through the private socket (so
    the refusal is not a wrong password), in a 0700 directory of the server's system user."""
    env = await _session_env(pg_hub, tokens["alice"])
    password = _admin_password(pg_hub)
    for db in ("postgres", "u_alice", "template1"):
        with pytest.raises(psycopg.OperationalError, match=ADMIN_OVER_TCP):
            psycopg.connect(
                host="127.0.0.1", port=env["PGPORT"], user="rsparkhub", password=password,
                dbname=db, connect_timeout=10,
            )  # fmt: skip
    # From alice's session, as if the password had leaked (it did, through Spark, in #20).
    code = (
        "import psycopg\n"
        "try:\n"
        f"    psycopg.connect(user='rsparkhub', password={password!r}, dbname='postgres')\n"
        "    print('CONNECTED')\n"
        "except psycopg.OperationalError as e:\n    print('REFUSED', e)\n"
    )
    out = await _run(pg_hub, tokens["alice"], code, "python")
    assert "REFUSED" in out and "rejects connection" in out, out
    with _admin_connect(pg_hub, env) as admin:
        me = admin.execute("select rolsuper from pg_roles where rolname = current_user")
        assert me.fetchone() == (True,)
        rules = admin.execute(
            "select type, database, user_name, address, auth_method from pg_hba_file_rules"
            " order by line_number"
        ).fetchall()
    assert rules == [
        ("local", ["all"], ["rsparkhub"], None, "scram-sha-256"),
        ("host", ["all"], ["rsparkhub"], "all", "reject"),
        ("host", ["sameuser"], ["all"], "127.0.0.1", "scram-sha-256"),
    ]
    run = _base(pg_hub) / "run"
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert run.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert (run / f".s.PGSQL.{env['PGPORT']}").is_socket()


async def test_a_user_role_cannot_run_programs_or_read_server_files(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """Privileges a role should not have (granted by hand, or by an older hub) are taken
    away by the next provisioning; then the role can neither run a program on the server
    (COPY … PROGRAM), nor read or write its files, nor become another role."""
    env = await _session_env(pg_hub, tokens["alice"])
    with _admin_connect(pg_hub, env) as admin:
        admin.execute(
            "grant pg_execute_server_program, pg_read_server_files, pg_write_server_files,"
            " rsparkhub to u_alice"
        )
        admin.execute("alter role u_alice createdb createrole")
    await _session_env(pg_hub, tokens["alice"], ws="confined")  # a new session provisions
    with _admin_connect(pg_hub, env) as admin:
        row = admin.execute(
            "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,"
            " (select count(*) from pg_auth_members where member = r.oid),"
            " pg_has_role('u_alice', 'pg_execute_server_program', 'member')"
            " from pg_roles r where rolname = 'u_alice'"
        ).fetchone()
    assert row == (False, False, False, False, False, 0, False)
    attempts = {
        "copy_from_program": "COPY t_x FROM PROGRAM 'id'",
        "copy_to_program": "COPY (select 1) TO PROGRAM 'cat > /tmp/pwned'",
        "copy_from_file": "COPY t_x FROM '/etc/passwd'",
        "copy_to_file": "COPY (select 1) TO '/tmp/pwned'",
        "pg_read_file": "select pg_read_file('/etc/hostname')",
        "lo_import": "select lo_import('/etc/hostname')",
        "set_role": "SET ROLE rsparkhub",
        "create_database": "CREATE DATABASE u_alice_2",
        "create_role": "CREATE ROLE sneaky",
        "superuser": "ALTER ROLE u_alice SUPERUSER",
    }
    code = (
        "import psycopg\n"
        f"attempts = {attempts!r}\n"
        "with psycopg.connect(autocommit=True) as con:\n"
        "    con.execute('create temp table t_x (line text)')\n"
        "    for name, sql in attempts.items():\n"
        "        try:\n"
        "            con.execute(sql)\n"
        "            print('ALLOWED', name)\n"
        "        except psycopg.Error as e:\n"
        "            print('DENIED', name, e.sqlstate)\n"
    )
    out = await _run(pg_hub, tokens["alice"], code, "python", ws="confined")
    for name in attempts:
        assert f"DENIED {name} 42501" in out, out  # insufficient_privilege


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
    # The hub database keeps the generation, and the password is the next one's.
    assert _hub_rows(pg_hub)["u_bob"] == 2
    key = secret_key.load(pg_hub.data_dir / "hub-secret")
    assert new["password"] == derive_password(key, "u_bob", 2)
    assert old["PGPASSWORD"] == derive_password(key, "u_bob", 1)
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


def _hub_rows(hub: HubProcess) -> dict[str, int]:
    """role -> password_generation, read straight from the hub's SQLite file."""
    with contextlib.closing(sqlite3.connect(hub.data_dir / "rsparkhub.db")) as con:
        return dict(con.execute("select role, password_generation from user_databases"))


def test_the_hub_database_holds_no_password(pg_hub: HubProcess) -> None:
    """Every password a session was given (and the rotated one), searched for in the bytes
    of the hub's database file and its write-ahead log."""
    secrets_seen = set(SEEN_SECRETS)
    assert len(secrets_seen) >= 4
    files = sorted(pg_hub.data_dir.glob("rsparkhub.db*"))
    assert pg_hub.data_dir / "rsparkhub.db" in files
    blob = b"".join(p.read_bytes() for p in files)
    for secret in secrets_seen:
        assert secret.encode() not in blob
    with contextlib.closing(sqlite3.connect(pg_hub.data_dir / "rsparkhub.db")) as con:
        columns = {r[1] for r in con.execute("pragma table_info(user_databases)")}
    assert "password" not in columns and "password_generation" in columns


def test_doctor_reports_the_server(pg_hub: HubProcess, tokens: dict[str, str]) -> None:
    with pg_hub.client(tokens["admin"]) as c:
        rep = c.get("/api/doctor").json()
    assert rep["user_databases"]["ok"] is True and rep["user_databases"]["mode"] == "embedded"
    assert "running" in rep["user_databases"]["detail"]


async def test_server_is_adopted_after_a_hub_crash(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    pidfile = _base(pg_hub) / "data" / "postmaster.pid"
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


async def test_passwords_are_the_same_after_a_hub_restart(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """Derived from the hub's secret, not drawn at random: a session started after a
    restart gets the password the sessions before it had, and both keep working."""
    before = await _session_env(pg_hub, tokens["alice"], ws="stable-before")
    pg_hub.restart()
    after = await _session_env(pg_hub, tokens["alice"], ws="stable-after")
    assert after["PGPASSWORD"] == before["PGPASSWORD"]
    with _connect(before) as con:
        assert con.execute("select current_user").fetchone() == ("u_alice",)
    key_file = pg_hub.data_dir / "hub-secret"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    generation = _hub_rows(pg_hub)["u_alice"]
    assert before["PGPASSWORD"] == derive_password(secret_key.load(key_file), "u_alice", generation)


async def test_a_server_set_up_by_an_older_hub_is_brought_in_line(
    pg_hub: HubProcess, tokens: dict[str, str]
) -> None:
    """Older hubs let the admin in over TCP and put the socket in the cluster's sock/.
    A hub that finds such a server running restarts it with its socket in run/ and its own
    pg_hba.conf; the admin is then refused over TCP again."""
    env = await _session_env(pg_hub, tokens["alice"])
    port, password = env["PGPORT"], _admin_password(pg_hub)
    pg_hub.stop()  # a clean stop stops the server too
    base = _base(pg_hub)
    (base / "data" / "pg_hba.conf").write_text(
        "local all rsparkhub trust\n"
        "host all rsparkhub 127.0.0.1/32 scram-sha-256\n"
        "host sameuser all 127.0.0.1/32 scram-sha-256\n"
    )
    sock = base / "sock"
    sock.mkdir(mode=0o700, exist_ok=True)
    as_owner: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(sock, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    pg_ctl = str(find_bindir(None) / "pg_ctl")
    await asyncio.to_thread(
        subprocess.run,
        [*as_owner, pg_ctl, "start", "-D", str(base / "data"), "-l", str(base / "postgres.log"),
         "-w", "-o", f"-p {port} -c unix_socket_directories={sock}"],
        check=True, capture_output=True, cwd="/", timeout=90,
    )  # fmt: skip
    old_pid = int((base / "data" / "postmaster.pid").read_text().split()[0])
    with psycopg.connect(  # what #20 found: the superuser over TCP
        host="127.0.0.1", port=port, user="rsparkhub", password=password, dbname="postgres"
    ) as con:
        assert con.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    pg_hub.start()
    env = await _session_env(pg_hub, tokens["alice"], ws="after-upgrade")
    assert int((base / "data" / "postmaster.pid").read_text().split()[0]) != old_pid
    assert env["PGPORT"] == port
    with pytest.raises(psycopg.OperationalError, match=ADMIN_OVER_TCP):
        psycopg.connect(
            host="127.0.0.1", port=port, user="rsparkhub", password=password, dbname="postgres"
        )
    with _admin_connect(pg_hub, env) as admin:
        assert admin.execute("show unix_socket_directories").fetchone() == (str(base / "run"),)
    with _connect(env) as con:
        assert con.execute("select count(*) from t_py").fetchone() == (2,)


def test_no_credential_in_any_log(pg_hub: HubProcess) -> None:
    assert len(set(SEEN_SECRETS)) >= 4
    logs = [pg_hub.log_path, _base(pg_hub) / "postgres.log"]
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


# --------------------------------------------------------------------------- derived passwords


def test_the_hub_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "hub-secret"
    key = secret_key.load(path)  # created on first use, private
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key.load(path) == key  # and then read, not replaced
    path.chmod(0o644)
    assert secret_key.load(path) == key and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not hex\n")
    with pytest.raises(secret_key.SecretKeyError, match="damaged"):
        secret_key.load(path)


def test_a_password_depends_on_the_key_the_role_and_the_generation() -> None:
    key, other = b"k" * 32, b"o" * 32
    pw = derive_password(key, "u_alice", 1)
    assert pw == derive_password(key, "u_alice", 1) and len(pw) == 43
    assert len({pw, derive_password(other, "u_alice", 1), derive_password(key, "u_bob", 1),
                derive_password(key, "u_alice", 2)}) == 4  # fmt: skip


async def test_the_migration_forgets_stored_passwords(tmp_path: Path) -> None:
    """A hub database from before revision 0005, with a password in clear: after the
    upgrade the column is gone, the row has generation 1 (its next session derives that
    password and gives it to the role) and no byte of the file holds the old password."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from rsparkhub.hub.db.engine import Database, alembic_config

    cfg = alembic_config()
    previous = ScriptDirectory.from_config(cfg).get_revision("0005").down_revision
    assert previous is not None
    clear = "clear-" + secrets.token_urlsafe(24)

    def upgrade_to_previous(conn: object) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, str(previous))

    path = tmp_path / "rsparkhub.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.engine.begin() as conn:
        await conn.run_sync(upgrade_to_previous)
        await conn.exec_driver_sql(
            "insert into users (id, name, is_admin, disabled, created_at)"
            " values ('u1', 'alice', 0, 0, '2025-01-01 00:00:00')"
        )
        await conn.exec_driver_sql(
            "insert into user_databases values"
            f" ('u1', 'u_alice', 'u_alice', '{clear}', '2025-01-01', '2025-01-01')"
        )
    await db.dispose()  # written long ago: in the main file, no longer in the log
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await db.upgrade()
        async with db.engine.connect() as conn:
            rows = (await conn.exec_driver_sql("select * from user_databases")).mappings().all()
            assert [(r["role"], r["password_generation"]) for r in rows] == [("u_alice", 1)]
            assert "password" not in rows[0]
            # While the hub runs (its connections open), as well as after.
            blob = b"".join(p.read_bytes() for p in tmp_path.glob("rsparkhub.db*"))
            assert clear.encode() not in blob
    finally:
        await db.dispose()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("rsparkhub.db*"))
    assert clear.encode() not in blob


@pytest.mark.parametrize("admin", ["superuser", "createrole"])
async def test_an_external_server_is_provisioned_the_same_way(
    pg_server: PgServer, tmp_path: Path, admin: str
) -> None:
    """user_databases = 'external' on the tests' own server (tests/pgserver.py), with a
    superuser admin and with a CREATEROLE + CREATEDB one: derived passwords, the same role
    attributes, rotation; nothing stored in clear."""
    from rsparkhub.config import Settings
    from rsparkhub.hub.db.engine import Database
    from rsparkhub.hub.db.models import User
    from rsparkhub.hub.userdb import UserDatabases

    admin_url = pg_server.admin_dsn
    admin_role = f"hub_admin_{secrets.token_hex(3)}"
    if admin == "createrole":
        pw = secrets.token_urlsafe(16)
        pg_server.psql(f"CREATE ROLE {admin_role} LOGIN CREATEROLE CREATEDB PASSWORD '{pw}'")
        admin_url = f"postgresql://{admin_role}:{pw}@127.0.0.1:{pg_server.port}/postgres"
    settings = Settings(
        data_dir=tmp_path, user_databases="external", user_databases_admin_url=admin_url
    )
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'rsparkhub.db'}")
    await db.upgrade()
    userdb = UserDatabases(settings, db)
    name = f"ext_{secrets.token_hex(3)}"
    try:
        async with db.session() as s:
            user = User(name=name)
            s.add(user)
            await s.commit()
            creds = await userdb.credentials(s, user)
            assert creds.user == f"u_{name}" and creds.port == pg_server.port
            env = creds.env()
            with _connect(env, autocommit=True) as con:
                assert con.execute("select current_user").fetchone() == (creds.user,)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    con.execute("COPY (select 1) TO PROGRAM 'true'")
                row = con.execute(
                    "select rolsuper or rolcreatedb or rolcreaterole,"
                    " (select count(*) from pg_auth_members where member = r.oid)"
                    " from pg_roles r where rolname = current_user"
                ).fetchone()
                assert row == (False, 0)
            assert (await userdb.credentials(s, user)).password == creds.password
            new = await userdb.rotate(s, user)
            assert new.password != creds.password
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                _connect(env)
            with _connect(env, password=new.password) as con:
                assert con.execute("select 1").fetchone() == (1,)
        blob = b"".join(p.read_bytes() for p in tmp_path.glob("rsparkhub.db*"))
        assert creds.password.encode() not in blob and new.password.encode() not in blob
    finally:
        await db.dispose()
        pg_server.drop_database(f"u_{name}")
        pg_server.psql(f"DROP ROLE IF EXISTS u_{name}")
        if admin == "createrole":
            pg_server.psql(f"DROP ROLE IF EXISTS {admin_role}")
