"""The PostgreSQL server user databases live on (``user_databases``): the embedded cluster
the hub runs from the system's binaries (:class:`EmbeddedPostgres`, ``DATA_DIR/postgres``)
or an external one (:func:`external_server`, ``user_databases_admin_url``), reached as the
hub's admin role through an :class:`AdminServer`.

Owns: the embedded cluster's life — initdb, pg_hba.conf, start (adopting a server a
previous hub left running, restarting one with an older configuration), reload, stop — and
how the admin connects. Must not: provision roles or databases (``userdb.py`` does), or let
the admin role in over TCP.

* No path leads from a session to the embedded server's superuser (the admin role
  ``rsparkhub``): it connects only through the Unix socket in ``DATA_DIR/postgres/run``
  (mode 0700, owned by the server's system user, inside the hub's private data directory),
  with its password, and pg_hba.conf rejects it over TCP. Sessions connect over TCP on
  127.0.0.1, on a port chosen at ``initdb`` and remembered in ``DATA_DIR/postgres/port``
  (a :class:`~rsparkhub.hub.supervised.PortFile`), and each role reaches only the database
  of its own name (``sameuser``). The hub rewrites pg_hba.conf at every start and passes
  the listening settings on the server's command line, so a cluster set up by an older hub
  is brought in line (restarted if its socket is elsewhere). PostgreSQL refuses to run as
  root: a root hub runs initdb/pg_ctl as the ``postgres`` system user.
* On an external server the hub cannot see pg_hba.conf: the operator keeps the admin role
  out of the sessions' reach (docs/operations.md).
* Nothing blocks the event loop: external programs run through asyncio subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from rsparkhub.config import Settings
from rsparkhub.hub.supervised import PortFile, log_tail

log = logging.getLogger("rsparkhub.userdb")

ADMIN_ROLE = "rsparkhub"
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "install the server with `apt-get install postgresql` (scripts/install.sh does)"
CONNECT_TIMEOUT_S = 10
SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path) on Linux


class UserDbUnavailable(Exception):
    """User databases are off or PostgreSQL cannot be used; the message says why."""


@dataclass
class AdminServer:
    """Where the hub's admin role connects, and where sessions do (``host``, ``port``)."""

    host: str  # where sessions connect (TCP)
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    admin_database: str = "postgres"
    admin_socket_dir: str | None = None  # embedded: the admin's only way in
    dsn: str | None = field(default=None, repr=False)  # external: the admin URL as given

    @property
    def admin_address(self) -> str:
        if self.admin_socket_dir is not None:
            return f"{self.admin_socket_dir}/.s.PGSQL.{self.port}"
        return f"{self.host}:{self.port}"

    async def connect(self) -> asyncpg.Connection:
        if self.dsn is not None:
            return await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S)
        return await asyncpg.connect(
            host=self.admin_socket_dir or self.host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            database=self.admin_database,
            timeout=CONNECT_TIMEOUT_S,
        )


def external_server(settings: Settings) -> AdminServer:
    """The operator's server of ``user_databases_admin_url``."""
    assert settings.user_databases_admin_url is not None  # checked by Settings
    url = settings.user_databases_admin_url.get_secret_value()
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    if scheme not in ("postgresql", "postgres"):
        raise UserDbUnavailable(
            f"user_databases_admin_url must be a postgresql:// URL (got scheme '{parts.scheme}')"
        )
    return AdminServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        admin_user=unquote(parts.username or ""),
        admin_password=unquote(parts.password or ""),
        admin_database=unquote(parts.path.lstrip("/")) or "postgres",
        dsn=url.replace(parts.scheme + "://", "postgresql://", 1),
    )


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / n, os.X_OK) for n in REQUIRED_BINARIES)


def find_bindir(configured: Path | None) -> Path:
    """initdb/pg_ctl/postgres: the configured directory, the newest Debian
    /usr/lib/postgresql/<version>/bin, then PATH. Raises UserDbUnavailable."""
    if configured is not None:
        if _has_binaries(configured):
            return configured
        raise UserDbUnavailable(
            f"user_databases_bindir = {configured} does not contain {', '.join(REQUIRED_BINARIES)}"
        )
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        versions = [p for p in root.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        for v in sorted(versions, key=lambda p: [int(x) for x in p.name.split(".")], reverse=True):
            if _has_binaries(v / "bin"):
                return v / "bin"
    initdb = shutil.which("initdb")
    if initdb and _has_binaries(Path(initdb).parent):
        return Path(initdb).parent
    raise UserDbUnavailable(
        "the PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed; "
        + INSTALL_HINT
    )


def _conf_value(value: str) -> str:
    """A postgresql.conf string value (single quotes, a quote doubled)."""
    return "'" + value.replace("'", "''") + "'"


class EmbeddedPostgres:
    """The hub's own cluster in ``base`` (``DATA_DIR/postgres``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.data_dir / "postgres"
        self.port_file = PortFile(self.base / "port")
        self.owns_server = False  # stop it at close(): this process started or adopted it
        self._bindir: Path | None = None
        self._owner: pwd.struct_passwd | None = None

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def run_dir(self) -> Path:
        """The directory of the server's Unix socket: the admin role's only way in."""
        return self.base / "run"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    def is_set_up(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def check(self) -> Path:
        """For doctor: the binaries (returned), the socket path and the system user, or
        UserDbUnavailable. Starts nothing."""
        bindir = find_bindir(self.settings.user_databases_bindir)
        self._check_socket_path()
        self._pick_owner()
        return bindir

    async def open(self, start: bool) -> AdminServer:
        """The running server, adopted or (``start``) set up and started; otherwise
        UserDbUnavailable."""
        self._bindir = find_bindir(self.settings.user_databases_bindir)
        self._check_socket_path()
        self._owner = self._pick_owner()
        await asyncio.to_thread(self._prepare_base)
        if self._owner is not None:
            rc, out = await self._run_as_owner(
                ["test", "-w", str(self.base), "-a", "-x", str(self.base)], timeout=10
            )
            if rc != 0:
                raise UserDbUnavailable(
                    f"the '{self._owner.pw_name}' system user (PostgreSQL refuses to run as "
                    f"root) cannot reach {self.base}: make every parent directory searchable "
                    "(chmod o+x) or choose another data_dir"
                )
        if not (self.data / "PG_VERSION").exists():
            if not start:
                raise UserDbUnavailable(f"the embedded server in {self.base} is not set up yet")
            await self._initdb()
        try:
            password = (self.base / "admin-password").read_text().strip()
        except OSError as exc:
            raise UserDbUnavailable(f"cannot read {self.base / 'admin-password'}: {exc}") from None
        await asyncio.to_thread(self._write_hba)
        running = await self._running()
        if running is not None and running[1] != str(self.run_dir):
            # Left by an older hub, with its socket elsewhere (and maybe the admin allowed
            # over TCP): restart it with today's settings.
            if not start:
                raise UserDbUnavailable(
                    "the embedded PostgreSQL server runs with an older configuration; "
                    "the hub restarts it when it next starts it"
                )
            log.info("restarting the embedded PostgreSQL server to apply the hub's settings")
            rc, out = await self.stop()
            if rc != 0:
                raise UserDbUnavailable(
                    f"could not stop the embedded PostgreSQL server to restart it: "
                    f"{out.strip()[-800:]}"
                )
            running = None
        if running is not None:
            port = running[0]
            await self._reload()  # the pg_hba.conf just written
            log.info("using the embedded PostgreSQL server already running on port %s", port)
        elif not start:
            raise UserDbUnavailable("the embedded PostgreSQL server is not running")
        else:
            port = await self._start()
        self.owns_server = start
        return AdminServer(
            "127.0.0.1", port, ADMIN_ROLE, password, admin_socket_dir=str(self.run_dir)
        )

    def _check_socket_path(self) -> None:
        sock = self.run_dir / ".s.PGSQL.65535"
        if len(str(sock).encode()) > SOCKET_PATH_MAX:
            raise UserDbUnavailable(
                f"data_dir is too long for the server's Unix socket ({sock} is over "
                f"{SOCKET_PATH_MAX} bytes), the only way the hub's admin role connects: "
                "choose a shorter data_dir"
            )

    def _server_settings(self) -> dict[str, str]:
        """Passed on the server's command line at every start (over any configuration file):
        sessions reach it over TCP on 127.0.0.1, the admin through the private socket."""
        return {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.run_dir),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
        }

    def _pick_owner(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise UserDbUnavailable(
                "the hub runs as root but there is no 'postgres' system user to run PostgreSQL "
                f"as; {INSTALL_HINT}"
            ) from None
        if not shutil.which("runuser"):
            raise UserDbUnavailable("the hub runs as root but runuser is not installed")
        return owner

    def _prepare_base(self) -> None:
        for path in (self.base, self.run_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
            self._chown(path)
        with contextlib.suppress(OSError):  # an older hub's socket directory
            (self.base / "sock").rmdir()

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _write_hba(self) -> None:
        """pg_hba.conf, rewritten at every start: nothing else lets a connection in."""
        hba = (
            "# Written by rsparkhub whenever the hub starts the server: edits are lost.\n"
            f"# The admin role ({ADMIN_ROLE}) connects only through the Unix socket in\n"
            "# DATA_DIR/postgres/run (mode 0700; no session can see it); over TCP it is\n"
            "# rejected, whatever its password. Every other role reaches only the database\n"
            "# of its own name, over TCP on 127.0.0.1.\n"
            "# TYPE  DATABASE  USER        ADDRESS        METHOD\n"
            f"local   all       {ADMIN_ROLE}                 scram-sha-256\n"
            f"host    all       {ADMIN_ROLE}   all            reject\n"
            "host    sameuser  all         127.0.0.1/32   scram-sha-256\n"
        )
        path = self.data / "pg_hba.conf"
        tmp = path.with_name(".pg_hba.conf.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(hba)
        self._chown(tmp)
        os.replace(tmp, path)

    async def _run_as_owner(self, argv: list[str], timeout: float = 120) -> tuple[int, str]:
        cmd = argv if self._owner is None else ["runuser", "-u", self._owner.pw_name, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RSPARKHUB_"))}
        env.update(LC_ALL="C", LANG="C")
        if self._owner is not None:
            env.update(HOME=self._owner.pw_dir, USER=self._owner.pw_name)
        # Output goes to a temporary file, not a pipe: pg_ctl leaves a postmaster behind, and
        # under uvloop a pipe-based communicate() may wait for it.
        with tempfile.TemporaryFile() as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    cwd=str(self.base) if self.base.is_dir() else "/",
                    start_new_session=True,
                )
            except OSError as exc:
                raise UserDbUnavailable(f"cannot run {argv[0]}: {exc}") from None
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise UserDbUnavailable(
                    f"{Path(argv[0]).name} timed out after {timeout:.0f} s"
                ) from None
            out.seek(0)
            text = out.read(1_000_000).decode(errors="replace")
        return proc.returncode or 0, text

    def _bin(self, name: str) -> str:
        assert self._bindir is not None
        return str(self._bindir / name)

    async def _initdb(self) -> None:
        tmp = self.base / "data.init"
        await asyncio.to_thread(shutil.rmtree, tmp, True)
        password = secrets.token_urlsafe(32)
        pwfile = self.base / "initdb.pw"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            rc, out = await self._run_as_owner(
                [self._bin("initdb"), "-D", str(tmp), "-U", ADMIN_ROLE, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-instructions"],
                timeout=300,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if rc != 0:
            raise UserDbUnavailable(f"initdb failed: {out.strip()[-1500:]}")
        # The same settings are passed at every start; here for a server started by hand.
        with open(tmp / "postgresql.conf", "a") as conf:
            conf.write("\n# rsparkhub: per-user databases\n")
            for key, value in self._server_settings().items():
                conf.write(f"{key} = {_conf_value(value)}\n")
        secret = self.base / "admin-password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        self.port_file.choose()
        os.rename(tmp, self.data)
        log.info("initialised the embedded PostgreSQL cluster in %s", self.data)

    async def _running(self) -> tuple[int, str] | None:
        """The port and socket directory of a postmaster already running on our data
        directory (a previous hub process left it), or None."""
        rc, _ = await self._run_as_owner([self._bin("pg_ctl"), "status", "-D", str(self.data)], 30)
        if rc != 0:
            return None
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
            return int(lines[3]), lines[4].strip()
        except (OSError, IndexError, ValueError):
            return self.port_file.read_or_choose(), ""

    async def _start(self) -> int:
        port, old = await asyncio.to_thread(self.port_file.usable)
        if old is not None:
            log.warning("PostgreSQL's port %d is taken by another program: using %d", old, port)
        logfile = self.log_path
        for attempt in range(2):
            # pg_ctl hands -o to a shell: every value is quoted.
            options = " ".join(
                [f"-p {port}"]
                + [f"-c {shlex.quote(f'{k}={v}')}" for k, v in self._server_settings().items()]
            )
            rc, out = await self._run_as_owner(
                [self._bin("pg_ctl"), "start", "-D", str(self.data), "-l", str(logfile),
                 "-w", "-t", "60", "-o", options],
                timeout=90,
            )  # fmt: skip
            if rc == 0:
                log.info("started the embedded PostgreSQL server on 127.0.0.1:%s", port)
                return port
            tail = log_tail(logfile)
            if attempt == 0 and "already in use" in tail:
                # taken since it was checked: choose and remember another
                port = await asyncio.to_thread(self.port_file.choose, (port,))
                continue
            raise UserDbUnavailable(
                f"the embedded PostgreSQL server did not start: {out.strip()[-800:]}\n{tail}"
            )
        raise AssertionError("unreachable")

    async def _reload(self) -> None:
        rc, out = await self._run_as_owner([self._bin("pg_ctl"), "reload", "-D", str(self.data)])
        if rc != 0:
            raise UserDbUnavailable(f"pg_ctl reload failed: {out.strip()[-800:]}")

    async def stop(self) -> tuple[int, str]:
        """``pg_ctl stop -m fast``: the exit code and output."""
        try:
            return await self._run_as_owner(
                [self._bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60"],
                timeout=90,
            )
        except UserDbUnavailable as exc:
            return 1, str(exc)

    async def close(self) -> None:
        """Hub shutdown: stop the server if this process started or adopted it."""
        if not self.owns_server or self._bindir is None:
            return
        self.owns_server = False
        rc, out = await self.stop()
        if rc == 0:
            log.info("stopped the embedded PostgreSQL server")
        else:
            log.warning("could not stop the embedded PostgreSQL server: %s", out.strip()[-500:])
