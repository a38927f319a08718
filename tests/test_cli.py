"""The ``rsparkhub`` command line: users, tokens, database upgrade, doctor, configuration
errors and ``run`` without credentials. Each command runs as a real subprocess."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import PASSWORD, RSPARKHUB, HubProcess


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPARKHUB_")}
    env.update(extra)
    return env


def cli(
    *args: str,
    data_dir: Path | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [RSPARKHUB, *args]
    if data_dir is not None:
        cmd += ["--data-dir", str(data_dir)]
    return subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=120,
    )


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, (p.args, p.returncode, p.stdout, p.stderr)
    return p.stdout


def failed(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A clean failure: non-zero exit, a one-line 'error: …' on stderr, no traceback."""
    assert p.returncode != 0, (p.args, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    for needle in needles:
        assert needle in p.stderr, (needle, p.stderr)
    return p.stderr


def test_user_add_list_disable(tmp_path: Path) -> None:
    d = tmp_path / "data"
    assert (
        ok(cli("user", "add", "alice", data_dir=d, stdin=PASSWORD + "\n")).strip()
        == "created user alice"
    )
    out = ok(cli("user", "add", "root", "--admin", data_dir=d, stdin=PASSWORD + "\n"))
    assert out.strip() == "created user root (admin)"

    # The password read from stdin is the one stored (argon2, not clear text).
    con = sqlite3.connect(d / "rsparkhub.db")
    try:
        rows = dict(con.execute("SELECT name, password_hash FROM users").fetchall())
    finally:
        con.close()
    assert set(rows) == {"alice", "root"}
    assert rows["alice"].startswith("$argon2") and PASSWORD not in rows["alice"]

    lines = ok(cli("user", "list", data_dir=d)).splitlines()
    assert lines == ["alice\t", "root\tadmin"]

    failed(cli("user", "add", "alice", data_dir=d, stdin=PASSWORD + "\n"), "already exists")
    failed(cli("user", "add", "shorty", data_dir=d, stdin="short\n"), "needs at least 8")
    failed(cli("user", "add", "Bad Name", data_dir=d, stdin=PASSWORD + "\n"), "User names")
    failed(cli("user", "disable", "nobody", data_dir=d), "no user named 'nobody'")

    assert ok(cli("user", "disable", "alice", data_dir=d)).strip() == "disabled alice"
    assert ok(cli("user", "list", data_dir=d)).splitlines() == ["alice\tdisabled", "root\tadmin"]


def test_token_create_works_against_the_api(shared_hub: HubProcess) -> None:
    hub = shared_hub
    hub.cli("user", "add", "tina", stdin=PASSWORD + "\n")
    token = hub.cli("token", "create", "tina", "--expires-in", "1").strip()
    assert token.startswith("rsh_") and "\n" not in token
    me = hub.client(token).get("/api/me")
    assert me.status_code == 200 and me.json()["name"] == "tina"
    listed = hub.client(token).get("/api/tokens").json()
    assert len(listed) == 1 and listed[0]["name"] == "cli"
    # --expires-in 1 means one day from now.
    expires = datetime.fromisoformat(listed[0]["expires_at"])
    made = datetime.fromisoformat(listed[0]["created_at"])
    assert timedelta(hours=23, minutes=59) < expires - made < timedelta(days=1, minutes=1)

    p = cli("token", "create", "nobody", data_dir=hub.data_dir)
    failed(p, "no user named 'nobody'")
    for bad in ("0", "-1"):
        failed(
            cli("token", "create", "tina", "--expires-in", bad, data_dir=hub.data_dir),
            "--expires-in",
        )
    assert len(hub.client(token).get("/api/tokens").json()) == 1


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "fresh" / "data"
    assert not d.exists()
    assert ok(cli("db", "upgrade", data_dir=d)).strip() == "database is up to date"
    db = d / "rsparkhub.db"
    assert db.is_file()

    def schema() -> tuple[list[str], list[tuple[str]]]:
        con = sqlite3.connect(db)
        try:
            tables = sorted(
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            )
            version = con.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            con.close()
        return tables, version

    first = schema()
    assert {"users", "api_tokens", "projects", "workspaces", "files", "file_versions"} <= set(
        first[0]
    )
    assert len(first[1]) == 1
    assert ok(cli("db", "upgrade", data_dir=d)).strip() == "database is up to date"
    assert schema() == first
    # The upgraded database is usable.
    ok(cli("user", "add", "u1", data_dir=d, stdin=PASSWORD + "\n"))
    assert ok(cli("user", "list", data_dir=d)).splitlines() == ["u1\t"]


def test_doctor_reports_languages_and_sandbox(tmp_path: Path) -> None:
    d = tmp_path / "data"
    rep = json.loads(ok(cli("doctor", "--json", data_dir=d)))
    for lang in ("r", "python", "bash"):
        assert rep["languages"][lang]["ok"] is True, rep["languages"][lang]
    assert rep["languages"]["r"]["version"].startswith("R version")
    s = rep["sessions"]
    assert s["spawner"] == "local"
    assert s["sandbox"] == "bubblewrap", s  # bwrap is installed on this machine
    assert "bwrap" in s["sandbox_reason"]
    assert rep["tools"]["bwrap"]["ok"] is True
    assert rep["database"].startswith("sqlite")
    # The limits shown are the ones sessions get (defaults here).
    assert s["memory_mb"] == 4096

    text = ok(cli("doctor", data_dir=d))
    lines = text.splitlines()
    for lang in ("r", "python", "bash"):
        assert any(line.split()[:2] == ["ok", lang] for line in lines), text
    assert "sessions: spawner=local sandbox=bubblewrap" in text

    # Turning the sandbox off is reported as such.
    rep = json.loads(
        ok(cli("doctor", "--json", data_dir=d, env=clean_env(RSPARKHUB_SANDBOX="none")))
    )
    assert rep["sessions"]["sandbox"] == "none"


def test_config_file_errors_and_values(tmp_path: Path) -> None:
    d = tmp_path / "data"
    missing = tmp_path / "nope.toml"
    err = failed(cli("user", "list", "--config", str(missing), data_dir=d), "error:", str(missing))
    assert "does not exist" in err
    failed(cli("doctor", "--config", str(missing), data_dir=d), "does not exist")

    broken = tmp_path / "broken.toml"
    broken.write_text("this is = = not toml\n")
    failed(cli("user", "list", "--config", str(broken), data_dir=d), "invalid configuration")

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[rsparkhub]\nno-such-setting = 1\n")
    failed(
        cli("user", "list", "--config", str(unknown), data_dir=d),
        "invalid configuration",
        "no_such_setting",
    )

    bad_value = tmp_path / "bad.toml"
    bad_value.write_text("[rsparkhub]\nmax-file-bytes = -5\n")
    failed(
        cli("user", "list", "--config", str(bad_value), data_dir=d),
        "invalid configuration",
        "max_file_bytes",
    )

    good = tmp_path / "good.toml"
    good.write_text('[rsparkhub]\nsession-memory-mb = 1234\nsandbox = "none"\n')
    rep = json.loads(ok(cli("doctor", "--json", "--config", str(good), data_dir=d)))
    assert rep["sessions"]["memory_mb"] == 1234
    assert rep["sessions"]["sandbox"] == "none"
    # An environment variable beats the file.
    env = clean_env(RSPARKHUB_SESSION_MEMORY_MB="77")
    rep = json.loads(ok(cli("doctor", "--json", "--config", str(good), data_dir=d, env=env)))
    assert rep["sessions"]["memory_mb"] == 77


@pytest.mark.parametrize("given", ["nothing", "url only", "token only"])
def test_run_without_credentials_fails_clearly(tmp_path: Path, given: str) -> None:
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    extra = {
        "nothing": {},
        "url only": {"RSPARKHUB_URL": "http://127.0.0.1:9"},
        "token only": {"RSPARKHUB_TOKEN": "rsh_x"},
    }[given]
    p = cli("run", str(script), env=clean_env(**extra))
    assert p.returncode == 2
    failed(p, "--url", "--token")
    assert "hello" not in p.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["render", "doc.Rmd"],
        ["runs", "list"],
        ["runs", "show", "abc"],
        ["rerun", "abc"],
        ["export"],
    ],
)
def test_every_hub_command_without_credentials_fails_clearly(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "doc.Rmd").write_text("# hello\n")
    args = [str(tmp_path / a) if a == "doc.Rmd" else a for a in command]
    p = cli(*args, env=clean_env(RSPARKHUB_URL="http://127.0.0.1:9"))
    assert p.returncode == 2
    failed(p, "--url", "--token")


def test_run_with_a_revoked_token_fails_clearly(shared_hub: HubProcess, tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    p = cli(
        "run",
        str(script),
        env=clean_env(RSPARKHUB_URL=shared_hub.url, RSPARKHUB_TOKEN="rsh_revoked"),
    )
    assert p.returncode != 0
    failed(p, "error:", "token")
    assert "hello" not in p.stdout


def test_run_against_an_unreachable_hub_fails_clearly(tmp_path: Path) -> None:
    from conftest import free_port

    script = tmp_path / "hello.py"
    script.write_text("print('hello')\n")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    p = cli("run", str(script), env=clean_env(RSPARKHUB_URL=url, RSPARKHUB_TOKEN="rsh_x"))
    assert p.returncode == 2
    failed(p, f"error: cannot reach the hub at {url}")
    assert len(p.stderr.splitlines()) == 1, p.stderr
