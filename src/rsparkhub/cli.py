"""The ``rsparkhub`` command: serve the hub, manage users and tokens, run a file in a
workspace session, upgrade the database, and report what this machine can run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from sqlalchemy import select

from rsparkhub.config import Settings, load_settings

app = typer.Typer(
    help="rsparkhub: R, Python and bash sessions behind one hub.", no_args_is_help=True
)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Run records: what each Run, Source and Render ran with and produced.",
    no_args_is_help=True,
)
app.add_typer(user_app, name="user")
app.add_typer(runs_app, name="runs")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")

T = TypeVar("T")
DataDir = typer.Option(
    None, "--data-dir", help="Data directory (default ./data or RSPARKHUB_DATA_DIR)."
)
ConfigOpt = typer.Option(None, "--config", help="TOML config file (or RSPARKHUB_CONFIG).")


def _settings(data_dir: Path | None, config: Path | None, **kw: Any) -> Settings:
    if config is not None:
        if not config.is_file():
            _fail(f"config file {config} does not exist")
        os.environ["RSPARKHUB_CONFIG"] = str(config)
    try:
        return load_settings(data_dir=data_dir, **kw)
    except Exception as exc:  # noqa: BLE001 - shown to the operator as a sentence
        _fail(f"invalid configuration: {exc}")
        raise


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _with_db(settings: Settings, fn: Callable[[Any], Awaitable[T]]) -> T:
    from rsparkhub.hub.db.engine import Database
    from rsparkhub.hub.errors import ApiError

    async def go() -> T:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        try:
            await db.upgrade()
            async with db.session() as s:
                return await fn(s)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except ApiError as exc:
        _fail(exc.message)
        raise


LOGIN_LINK_FILE = "first-login-link"


def _show_login_link(settings: Settings, url: str) -> None:
    """The first start's one-time admin link goes to the operator's terminal only. Not
    through ``logging``, and not onto a stream that is not a terminal: that one is a log
    (systemd's journal, ``kubectl logs``, a redirected file). Then the link is written to
    DATA_DIR/first-login-link, readable by the hub's account only, and its path printed."""
    who = f"log in as '{settings.admin_user}' once with this link (valid 24 h)"
    if sys.stderr.isatty():
        sys.stderr.write(f"First start: {who}:\n    {url}\n")
        sys.stderr.flush()
        return
    path = settings.data_dir / LOGIN_LINK_FILE
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a link of an earlier first start (the database was reset)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(url + "\n")
    sys.stderr.write(
        f"First start: {who} — it is in {path} (readable by this account only); "
        f"`rsparkhub login-link {settings.admin_user}` prints a new one.\n"
    )
    sys.stderr.flush()


class _RedactSecrets:
    """Keep one-time login links out of the access log."""

    def filter(self, record: Any) -> bool:
        import re

        if isinstance(record.args, tuple):
            record.args = tuple(
                re.sub(r"/login/[^\s?]+", "/login/<redacted>", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


@app.command()
def serve(
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
    data_dir: Path = DataDir,
    config: Path = ConfigOpt,
    stop_sessions: bool = typer.Option(
        False,
        "--stop-sessions",
        help="Stop every session cleanly when the hub stops (default: they keep running and "
        "the next hub adopts them).",
    ),
) -> None:
    """Start the hub (creates the admin and prints a one-time login URL on first start)."""
    import uvicorn

    from rsparkhub.hub.app import create_app
    from rsparkhub.hub.users import bootstrap_admin

    settings = _settings(
        data_dir, config, host=host, port=port, stop_sessions_on_exit=stop_sessions or None
    )
    import logging

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    url = _with_db(settings, lambda db: bootstrap_admin(db, settings.admin_user, settings.base_url))
    typer.echo(f"rsparkhub {settings.base_url}  (data: {settings.data_dir})")
    if url:
        _show_login_link(settings, url)
    server_config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        ws_max_size=64 * 1024 * 1024,
    )
    # uvicorn (re)configures its loggers in Config(): attach the filter afterwards.
    logging.getLogger("uvicorn.access").addFilter(_RedactSecrets())
    from rsparkhub.hub.listeners import listen_agents, listen_tcp

    # The hub's address, and the unix socket local session agents dial (hub/listeners.py).
    sockets = [listen_tcp(settings.host, settings.port), listen_agents(settings.data_dir)]
    uvicorn.Server(server_config).run(sockets=sockets)


@app.command("login-link")
def login_link(name: str, data_dir: Path = DataDir, config: Path = ConfigOpt) -> None:
    """Print a new one-time login URL for a user (e.g. a lost admin password): their
    password is forgotten and their browsers logged out; the link asks for a new one."""
    from rsparkhub.hub.db.models import User
    from rsparkhub.hub.users import reset_password

    settings = _settings(data_dir, config)

    async def go(db: Any) -> str:
        user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
        if user is None:
            _fail(f"no user named '{name}'")
        link, _ = await reset_password(db, user, settings.base_url)
        return link  # a running hub closes the browser windows of the revoked logins

    typer.echo(_with_db(settings, go))


@user_app.command("add")
def user_add(
    name: str,
    admin: bool = typer.Option(False, "--admin", help="Make the user an administrator."),
    data_dir: Path = DataDir,
    config: Path = ConfigOpt,
) -> None:
    """Create a user; the password is read from a prompt, or from stdin when piped."""
    from rsparkhub.hub.users import create_user

    settings = _settings(data_dir, config)
    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    from rsparkhub.hub.identities import shared_uid_warning

    async def add(db: Any) -> int:
        from sqlalchemy import func, select

        from rsparkhub.hub.db.models import User

        await create_user(db, name, password, admin)
        return int((await db.execute(select(func.count()).select_from(User))).scalar_one())

    count = _with_db(settings, add)
    typer.echo(f"created user {name}{' (admin)' if admin else ''}")
    warning = shared_uid_warning(settings, count)
    if warning:
        typer.echo(f"warning: {warning}", err=True)


@user_app.command("list")
def user_list(data_dir: Path = DataDir, config: Path = ConfigOpt) -> None:
    """List users."""
    from rsparkhub.hub.db.models import User

    async def go(db: Any) -> list[Any]:
        return list((await db.execute(select(User).order_by(User.name))).scalars())

    for u in _with_db(_settings(data_dir, config), go):
        flags = [f for f, on in (("admin", u.is_admin), ("disabled", u.disabled)) if on]
        typer.echo(f"{u.name}\t{','.join(flags)}")


@user_app.command("disable")
def user_disable(name: str, data_dir: Path = DataDir, config: Path = ConfigOpt) -> None:
    """Disable a user: logins and tokens stop working at once."""
    from rsparkhub.hub.db.models import User

    async def go(db: Any) -> str:
        user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
        if user is None:
            _fail(f"no user named '{name}'")
        user.disabled = True
        await db.commit()
        return await _revoke_database_login(settings, db, user)

    settings = _settings(data_dir, config)
    note = _with_db(settings, go)
    typer.echo(f"disabled {name}{note}")


async def _revoke_database_login(settings: Settings, db: Any, user: Any) -> str:
    """NOLOGIN for the user's PostgreSQL role, if the server is up (the embedded one is not
    started for this: the hub revokes the login of disabled users when it starts it)."""
    from rsparkhub.hub.db.models import UserDatabase
    from rsparkhub.hub.userdb import UserDatabases, UserDbUnavailable

    userdb = UserDatabases(settings)
    if not userdb.enabled or await db.get(UserDatabase, user.id) is None:
        return ""  # no database provisioned: nothing to revoke
    try:
        await userdb.server(start=False)
        changed = await userdb.set_login(db, user, enabled=False)
    except UserDbUnavailable:
        return " (their PostgreSQL role loses its login when the hub next starts the server)"
    return "; their PostgreSQL role can no longer log in" if changed else ""


@token_app.command("create")
def token_create(
    name: str = typer.Argument(..., help="The user the token acts as."),
    expires_in: float = typer.Option(
        None, "--expires-in", help="Lifetime in days (default from settings)."
    ),
    data_dir: Path = DataDir,
    config: Path = ConfigOpt,
) -> None:
    """Print a new API token for a user."""
    from rsparkhub.hub.auth import issue_token
    from rsparkhub.hub.db.models import User

    settings = _settings(data_dir, config)
    if expires_in is not None and expires_in <= 0:
        _fail("--expires-in must be a positive number of days")
    days = expires_in or settings.token_default_days

    async def go(db: Any) -> str:
        user = (await db.execute(select(User).where(User.name == name))).scalar_one_or_none()
        if user is None:
            _fail(f"no user named '{name}'")
        secret, _ = await issue_token(db, user, "api", "cli", timedelta(days=days))
        await db.commit()
        return secret

    typer.echo(_with_db(settings, go))


@db_app.command("upgrade")
def db_upgrade(data_dir: Path = DataDir, config: Path = ConfigOpt) -> None:
    """Apply database migrations."""
    from rsparkhub.hub.db.engine import upgrade_sync

    settings = _settings(data_dir, config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_sync(settings.db_url)
    typer.echo("database is up to date")


@app.command()
def doctor(
    data_dir: Path = DataDir,
    config: Path = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Report which languages and services are usable here, and why not."""
    from rsparkhub.doctor import report
    from rsparkhub.hub.spawners.local import LocalSpawner

    settings = _settings(data_dir, config)
    # The spawner the hub would use (as in hub.app.build_hub), so that the reported
    # limits are the real ones.
    spawner = LocalSpawner(settings)
    rep = asyncio.run(report(settings, spawner))
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
        return
    for section in ("languages", "tools"):
        typer.echo(f"{section}:")
        for name, info in rep[section].items():
            typer.echo(
                f"  {'ok ' if info['ok'] else 'NO '} {name:<11} {info.get('version') or info['detail']}"
            )
    s = rep["sessions"]
    typer.echo(f"sessions: spawner={s['spawner']} sandbox={s['sandbox']} ({s['sandbox_reason']})")
    if "isolation" in s:
        typer.echo(
            f"isolation: {s['isolation']} network={s['network']} cgroups={s['cgroups']} "
            f"seccomp={'on' if s['seccomp'] else 'off'} ({s['isolation_reason']})"
        )
    if "disk" in s:
        cap = f"{s['disk_mb']} MB of its own" if s["disk_mb"] else f"no cap ({s['disk']})"
        typer.echo(f"session disk: {cap}")
    if "session_pool_size" in s:
        why = s.get("session_pool_reason")
        pool = f"{s['session_pool_size']} per user" if s["session_pool_size"] else "off"
        typer.echo(f"warm pool: {pool}" + (f" ({why})" if why else ""))
    u = rep["user_databases"]
    typer.echo(f"user databases: {'ok ' if u['ok'] else 'NO '} {u['mode']}: {u['detail']}")
    sp = rep["spark"]
    typer.echo(f"spark: {'ok ' if sp['ok'] else 'NO '} {sp['mode']}: {sp['detail']}")


@app.command()
def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    workspace: str = typer.Option(
        None, "--workspace", help="Workspace name (default: the file's folder name)."
    ),
    project: str = typer.Option("default", "--project", help="Project holding the workspace."),
    mode: str = typer.Option(
        "run", "--mode", help="run (like Rscript/python FILE) or source (echoed transcript)."
    ),
    language: str = typer.Option(
        None, "--language", help="r, python or bash (default: by extension)."
    ),
    plots_dir: Path = typer.Option(
        None, "--plots-dir", help="Write the plots made to this folder."
    ),
    with_dir: Path = typer.Option(
        None, "--with", help="Also upload this folder's files (the file's neighbours)."
    ),
    url: str = typer.Option(None, "--url", envvar="RSPARKHUB_URL", help="Hub URL."),
    token: str = typer.Option(None, "--token", envvar="RSPARKHUB_TOKEN", help="API token."),
) -> None:
    """Run FILE in a workspace session and print its output as produced."""
    if mode not in ("run", "source"):
        _fail("--mode must be run or source")
    if language not in (None, "r", "python", "bash"):
        _fail("--language must be r, python or bash")
    from rsparkhub.client.run import run_file

    _hub_command(
        url,
        token,
        lambda url, token: run_file(
            url,
            token,
            file,
            workspace or file.resolve().parent.name or "default",
            project,
            mode,
            language,
            plots_dir,
            with_dir,
        ),
    )


@app.command()
def render(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    workspace: str = typer.Option(
        None, "--workspace", help="Workspace name (default: the file's folder name)."
    ),
    project: str = typer.Option("default", "--project", help="Project holding the workspace."),
    output: Path = typer.Option(
        None, "-o", "--output", help="Where to write the result (default: next to FILE)."
    ),
    in_session: bool = typer.Option(
        False, "--in-session", help="Render in the session's R environment (not a clean process)."
    ),
    with_dir: Path = typer.Option(
        None, "--with", help="Also upload this folder's files (data the document reads)."
    ),
    url: str = typer.Option(None, "--url", envvar="RSPARKHUB_URL", help="Hub URL."),
    token: str = typer.Option(None, "--token", envvar="RSPARKHUB_TOKEN", help="API token."),
) -> None:
    """Render a document (R Markdown, Markdown/Quarto, notebook) in a workspace session and
    write the result locally, printing the render log as it comes."""
    from rsparkhub.client.run import render_file

    _hub_command(
        url,
        token,
        lambda url, token: render_file(
            url,
            token,
            file,
            workspace or file.resolve().parent.name or "default",
            project,
            output,
            in_session,
            with_dir,
        ),
    )


RunsWorkspace = typer.Option(
    None, "--workspace", help="Workspace name (default: the current folder's name)."
)
RunsProject = typer.Option("default", "--project", help="Project holding the workspace.")
UrlOpt = typer.Option(None, "--url", envvar="RSPARKHUB_URL", help="Hub URL.")
TokenOpt = typer.Option(None, "--token", envvar="RSPARKHUB_TOKEN", help="API token.")


@runs_app.command("list")
def runs_list(
    workspace: str = RunsWorkspace,
    project: str = RunsProject,
    file: str = typer.Option(None, "--file", help="Only records that ran or wrote this file."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="The records as JSON."),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """List a workspace's run records, newest first."""
    from rsparkhub.client.runs import list_runs

    name = workspace or Path.cwd().name
    _hub_command(
        url, token, lambda url, token: list_runs(url, token, name, project, file, limit, as_json)
    )


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="A run id (or the start of one, as listed)."),
    workspace: str = RunsWorkspace,
    project: str = RunsProject,
    as_json: bool = typer.Option(False, "--json", help="The record as JSON."),
    with_packages: bool = typer.Option(
        False, "--packages", help="Also every package of its environment, with its version."
    ),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Show one run record: command, file versions, environment, status, inputs, outputs."""
    from rsparkhub.client.runs import show_run

    name = workspace or Path.cwd().name
    _hub_command(
        url,
        token,
        lambda url, token: show_run(url, token, name, project, run_id, as_json, with_packages),
    )


@app.command()
def rerun(
    run_id: str = typer.Argument(..., help="A run id (or the start of one, as listed)."),
    workspace: str = RunsWorkspace,
    project: str = RunsProject,
    ignore: list[str] = typer.Option(
        [], "--ignore", help="A regular expression to mask in text before comparing (repeat)."
    ),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Re-run a record in a fresh session with its recorded file versions and print the
    diff. Exit code: 0 reproduced, 1 not reproduced, 2 error."""
    from rsparkhub.client.runs import rerun as rerun_record

    name = workspace or Path.cwd().name
    _hub_command(
        url,
        token,
        lambda url, token: rerun_record(url, token, name, project, run_id, ignore, as_json),
    )


@app.command()
def export(
    run_id: str = typer.Argument(None, help="A run id (default: the workspace's last runs)."),
    workspace: str = RunsWorkspace,
    project: str = RunsProject,
    output: str = typer.Option(None, "-o", "--output", help="The zip to write."),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Export a run (or the workspace's last runs) as a bundle that re-runs without the hub:
    files at their recorded versions, environment files, a Dockerfile and rerun.py."""
    from rsparkhub.client.runs import export as export_bundle

    name = workspace or Path.cwd().name
    _hub_command(
        url, token, lambda url, token: export_bundle(url, token, name, project, run_id, output)
    )


environments_app = typer.Typer(
    help="The hub's built workspace environments (administrators).", no_args_is_help=True
)
app.add_typer(environments_app, name="environments")


@environments_app.command("list")
def environments_list(
    as_json: bool = typer.Option(False, "--json", help="As JSON."),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Every built environment: declaration, size, when built and last used, mounted."""
    from rsparkhub.client.environments import list_environments

    _hub_command(url, token, lambda url, token: list_environments(url, token, as_json))


@environments_app.command("gc")
def environments_gc(
    older_than_days: float = typer.Option(
        ..., "--older-than-days", min=0, help="Remove those no session was given for this long."
    ),
    url: str = UrlOpt,
    token: str = TokenOpt,
) -> None:
    """Remove environments unused for a while; never one a session mounts."""
    from rsparkhub.client.environments import collect

    _hub_command(url, token, lambda url, token: collect(url, token, older_than_days))


def _hub_command(
    url: str | None, token: str | None, call: Callable[[str, str], Awaitable[int]]
) -> NoReturn:
    """The end of every command that talks to a hub: refuse a missing --url/--token, run
    ``call(url, token)`` and exit with its code (hub errors and lost connections exit 2)."""
    if not url or not token:
        _fail("give the hub with --url/RSPARKHUB_URL and --token/RSPARKHUB_TOKEN")
    raise typer.Exit(_client_call(url, lambda: call(url, token)))


def _client_call(url: str, make: Any) -> int:
    """Run a client coroutine; hub errors and lost connections exit 2 with a sentence."""
    import httpx
    import websockets

    from rsparkhub.client import HubError

    try:
        return int(asyncio.run(make()))
    except HubError as exc:
        _fail(exc.message, 2)
    except httpx.TransportError as exc:
        _fail(f"cannot reach the hub at {url}: {exc}", 2)
    except (OSError, EOFError, websockets.exceptions.WebSocketException) as exc:
        _fail(f"lost the connection to the hub at {url}: {exc}", 2)
    return 2


if __name__ == "__main__":
    app()
