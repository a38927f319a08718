"""A throwaway real PostgreSQL server for tests, built from the system's binaries.

    with PgServer() as pg:
        engine = create_async_engine(pg.url)          # postgresql+asyncpg://user:pw@127.0.0.1:port/db
        conn = await asyncpg.connect(pg.dsn)          # postgresql://user:pw@127.0.0.1:port/db
        other = pg.create_database("scratch")         # -> SQLAlchemy URL of the new database

The cluster lives in a fresh temporary directory that ``stop()`` deletes. It listens on
127.0.0.1 only, on a free port, with its Unix socket in a private directory, and requires a
password (scram-sha-256) over TCP for a superuser created with a generated password. Durability
is switched off (fsync, synchronous_commit, full_page_writes) since the data is thrown away.

PostgreSQL refuses to run as root: when the tests run as root, ``initdb``/``pg_ctl`` run as the
``postgres`` system user (via ``runuser`` or ``setpriv``); otherwise as the current user.

The binaries are looked up in ``$RSPARKHUB_PG_BINDIR``, then the newest
``/usr/lib/postgresql/<version>/bin`` (Debian), then ``pg_config --bindir`` / ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from rsparkhub.hub.supervised import free_port

__all__ = ["PgServer", "PgServerError", "PostgresNotFoundError", "find_pg_bindir"]

REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
BINDIR_ENV = "RSPARKHUB_PG_BINDIR"
INSTALL_HINT = "install it with scripts/install.sh or `apt-get install postgresql`"

FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


class PgServerError(RuntimeError):
    """The throwaway PostgreSQL server could not be set up, started or used."""


class PostgresNotFoundError(PgServerError):
    """The PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed."""


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in REQUIRED_BINARIES)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (-1,)


def find_pg_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres; raises PostgresNotFoundError."""
    tried: list[str] = []
    override = os.environ.get(BINDIR_ENV)
    if override:
        if _has_binaries(Path(override)):
            return Path(override)
        raise PostgresNotFoundError(
            f"${BINDIR_ENV}={override} does not contain {', '.join(REQUIRED_BINARIES)}"
        )
    if DEBIAN_PG_ROOT.is_dir():
        versions = sorted(
            (p for p in DEBIAN_PG_ROOT.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)),
            key=_version_key,
            reverse=True,
        )
        for version_dir in versions:
            tried.append(str(version_dir / "bin"))
            if _has_binaries(version_dir / "bin"):
                return version_dir / "bin"
    else:
        tried.append(f"{DEBIAN_PG_ROOT}/<version>/bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            tried.append(out)
            if out and _has_binaries(Path(out)):
                return Path(out)
    initdb = shutil.which("initdb")
    if initdb:
        tried.append(str(Path(initdb).parent))
        if _has_binaries(Path(initdb).parent):
            return Path(initdb).parent
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        f"{', '.join(tried) or 'PATH'} (set ${BINDIR_ENV} to override); {INSTALL_HINT}"
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PgServer:
    """A throwaway PostgreSQL cluster; see the module docstring.

    Parameters: ``user``/``password`` of the superuser (password generated when None),
    ``database`` created at start and used by ``url``/``dsn``, ``port`` (a free one when None),
    ``settings`` extra ``postgresql.conf`` settings, ``bindir`` the binaries' directory (found
    with ``find_pg_bindir()`` when None), ``start_timeout`` in seconds.
    """

    def __init__(
        self,
        *,
        user: str = "rsparkhub",
        password: str | None = None,
        database: str = "rsparkhub",
        port: int | None = None,
        settings: dict[str, str] | None = None,
        bindir: str | os.PathLike[str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.database = database
        self.host = "127.0.0.1"
        self._requested_port = port
        self.port: int | None = None
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self._bindir = Path(bindir) if bindir is not None else None
        self.start_timeout = start_timeout
        self.base_dir: Path | None = None
        self._owner: pwd.struct_passwd | None = None
        self._started = False

    # -- URLs -------------------------------------------------------------------------------

    def _netloc(self) -> str:
        if self.port is None:
            raise PgServerError("the PostgreSQL server has not been started")
        return (
            f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}"
        )

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (asyncpg driver) of ``database`` on this server."""
        return f"postgresql+asyncpg://{self._netloc()}/{quote(database, safe='')}"

    def dsn_for(self, database: str) -> str:
        """libpq/asyncpg DSN (``postgresql://...``) of ``database`` on this server."""
        return f"postgresql://{self._netloc()}/{quote(database, safe='')}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database: ``postgresql+asyncpg://user:pw@127.0.0.1:port/db``."""
        return self.url_for(self.database)

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL (asyncpg) of the ``postgres`` maintenance database, as the superuser."""
        return self.url_for("postgres")

    @property
    def dsn(self) -> str:
        """Plain DSN of the test database: ``postgresql://user:pw@127.0.0.1:port/db``."""
        return self.dsn_for(self.database)

    @property
    def admin_dsn(self) -> str:
        return self.dsn_for("postgres")

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base() / "sock"

    @property
    def log_file(self) -> Path:
        return self._base() / "postgres.log"

    @property
    def running(self) -> bool:
        return self._started

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> PgServer:
        """initdb a fresh cluster in a temporary directory, start it and create ``database``."""
        if self._started:
            return self
        bindir = self._bindir or find_pg_bindir()
        if not _has_binaries(bindir):
            raise PostgresNotFoundError(
                f"{bindir} does not contain {', '.join(REQUIRED_BINARIES)}; {INSTALL_HINT}"
            )
        self._bindir = bindir
        self._owner = self._pick_owner()
        self.base_dir = self._make_base_dir()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_postmaster()
            self._started = True
            if self.database != "postgres":
                self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m immediate``) and delete its directory. Idempotent."""
        atexit.unregister(self.stop)
        base, self.base_dir = self.base_dir, None
        self._started = False
        if base is None:
            return
        data = base / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run_as_owner(
                    [str(self._bin("pg_ctl")), "stop", "-D", str(data), "-m", "immediate", "-w"],
                    cwd=base,
                    timeout=30,
                )
            except PgServerError:
                self._kill_postmaster(data)
        shutil.rmtree(base, ignore_errors=True)
        self.port = None

    # -- databases --------------------------------------------------------------------------

    def create_database(self, name: str | None = None, *, owner: str | None = None) -> str:
        """Create a database (a generated name when None) and return its SQLAlchemy URL."""
        name = name or f"db_{secrets.token_hex(6)}"
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if owner:
            sql += f" OWNER {_quote_ident(owner)}"
        self.psql(sql)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql over TCP as the superuser; returns psql's unaligned output."""
        if not self._started:
            raise PgServerError("the PostgreSQL server has not been started")
        psql = self._bin("psql")
        if not psql.exists():
            found = shutil.which("psql")
            if not found:
                raise PostgresNotFoundError(f"psql not found; {INSTALL_HINT}")
            psql = Path(found)
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}
        proc = subprocess.run(
            [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-c", sql],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise PgServerError(
                f"psql failed ({proc.returncode}) for {sql!r}: {proc.stderr.strip()}"
            )
        return proc.stdout

    # -- internals --------------------------------------------------------------------------

    def _base(self) -> Path:
        if self.base_dir is None:
            raise PgServerError("the PostgreSQL server has not been started")
        return self.base_dir

    def _bin(self, name: str) -> Path:
        assert self._bindir is not None
        return self._bindir / name

    def _pick_owner(self) -> pwd.struct_passwd | None:
        """The system user to run PostgreSQL as: None for the current user (non-root)."""
        if os.geteuid() != 0:
            return None
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PgServerError(
                "running as root but there is no 'postgres' system user to run PostgreSQL as "
                f"(PostgreSQL refuses to run as root); {INSTALL_HINT}"
            ) from None
        if not (shutil.which("runuser") or shutil.which("setpriv")):
            raise PgServerError("running as root but neither runuser nor setpriv is available")
        return owner

    def _make_base_dir(self) -> Path:
        candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
        errors = []
        for parent in dict.fromkeys(candidates):
            if not os.path.isdir(parent):
                continue
            base = Path(tempfile.mkdtemp(prefix="rsparkhub-pg-", dir=parent))
            try:
                if self._owner is not None:
                    os.chown(base, self._owner.pw_uid, self._owner.pw_gid)
                # The owner must be able to reach the directory through all its parents.
                self._run_as_owner(["test", "-w", str(base), "-a", "-x", str(base)], timeout=10)
                sock = base / "sock"
                sock.mkdir(mode=0o700)
                if self._owner is not None:
                    os.chown(sock, self._owner.pw_uid, self._owner.pw_gid)
                return base
            except (OSError, PgServerError) as exc:
                errors.append(f"{parent}: {exc}")
                shutil.rmtree(base, ignore_errors=True)
        raise PgServerError(
            "no temporary directory usable by the PostgreSQL user: " + "; ".join(errors)
        )

    def _as_owner(self, argv: list[str]) -> list[str]:
        if self._owner is None:
            return argv
        name = self._owner.pw_name
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--", *argv]
        return ["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", "--", *argv]

    def _run_as_owner(
        self, argv: list[str], *, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self._owner is not None:
            env.update(
                HOME=self._owner.pw_dir, USER=self._owner.pw_name, LOGNAME=self._owner.pw_name
            )
        try:
            proc = subprocess.run(
                self._as_owner(argv),
                cwd=cwd or self.base_dir or "/",
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PgServerError(f"{argv[0]} timed out after {timeout}s") from exc
        except OSError as exc:
            raise PgServerError(f"could not run {argv[0]}: {exc}") from exc
        if proc.returncode != 0:
            raise PgServerError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}".rstrip()
            )
        return proc

    def _initdb(self) -> None:
        base = self._base()
        pwfile = base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._owner is not None:
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        try:
            self._run_as_owner(
                [str(self._bin("initdb")), "-D", str(self.data_dir), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
                cwd=base,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {
            **self.settings,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# rsparkhub test server\n")
            for key, value in settings.items():
                conf.write(f"{key} = {_conf_value(str(value))}\n")

    def _start_postmaster(self) -> None:
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            self.port = self._requested_port or free_port()
            try:
                self._run_as_owner(
                    [str(self._bin("pg_ctl")), "start", "-D", str(self.data_dir),
                     "-l", str(self.log_file), "-w", "-t", str(int(self.start_timeout)),
                     "-o", f"-p {self.port}"],
                    cwd=self._base(), timeout=self.start_timeout + 15,
                )  # fmt: skip
                return
            except PgServerError as exc:
                log = self._log_tail()
                # Another process may have taken the port between probing and binding.
                if attempt + 1 < attempts and "already in use" in log:
                    time.sleep(0.2)
                    continue
                raise PgServerError(f"{exc}\n--- {self.log_file} ---\n{log}") from None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _kill_postmaster(data: Path) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)  # PostgreSQL's "immediate shutdown"
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._started else "stopped"
        return f"<PgServer {self.user}@{self.host} db={self.database} {state}>"
