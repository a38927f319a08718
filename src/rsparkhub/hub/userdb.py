"""Per-user PostgreSQL databases: a role and a database ``u_<name>`` for every user, on the
embedded server (a private cluster in ``DATA_DIR/postgres`` the hub starts from the system's
binaries) or on an external server (``user_databases_admin_url``).

* The hub provisions lazily and idempotently (the first session of a user, or
  ``GET /api/me/database``): role ``u_<name>`` with LOGIN, NOSUPERUSER, NOCREATEDB,
  NOCREATEROLE and membership in no other role (so no ``COPY … FROM PROGRAM``, no server
  files), database ``u_<name>`` owned by it, CONNECT revoked from PUBLIC. Every provisioning
  re-applies the password, the attributes and the LOGIN/NOLOGIN state, so the server follows
  the hub's database; a role that keeps a privilege anyway gets no credentials handed out.
* No password is stored. Each one is derived: HMAC-SHA256 of the role and a generation
  counter, keyed with the hub's secret (``DATA_DIR/hub-secret``, hub/secret_key.py); the hub
  database keeps only the generation, and a rotation adds one. The password reaches only the
  environment of the user's sessions (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE,
  DATABASE_URL) and PostgreSQL, as a SCRAM-SHA-256 verifier computed here, so not even the
  server's statement log could show it. Nothing here logs a credential.
* No path leads from a session to the embedded server's superuser (the admin role
  ``rsparkhub``): it connects only through the Unix socket in ``DATA_DIR/postgres/run``
  (mode 0700, owned by the server's system user, inside the hub's private data directory),
  with its password, and pg_hba.conf rejects it over TCP. Sessions connect over TCP on
  127.0.0.1, on a port chosen at ``initdb`` and remembered in ``DATA_DIR/postgres/port``,
  and each role reaches only the database of its own name (``sameuser``). The hub rewrites
  pg_hba.conf at every start and passes the listening settings on the server's command line,
  so a cluster set up by an older hub is brought in line (restarted if its socket is
  elsewhere). PostgreSQL refuses to run as root: a root hub runs initdb/pg_ctl as the
  ``postgres`` system user.
* On an external server the hub cannot see pg_hba.conf: the operator keeps the admin role
  out of the sessions' reach (docs/operations.md).
* Nothing blocks the event loop: external programs run through asyncio subprocesses, file
  I/O and SCRAM hashing in threads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.config import Settings
from rsparkhub.hub import secret_key
from rsparkhub.hub.db.models import User, UserDatabase

if TYPE_CHECKING:
    from rsparkhub.hub.db.engine import Database

log = logging.getLogger("rsparkhub.userdb")

ADMIN_ROLE = "rsparkhub"
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "install the server with `apt-get install postgresql` (scripts/install.sh does)"
CONNECT_TIMEOUT_S = 10
PASSWORD_PURPOSE = "postgres-user-password"  # the secret_key.derive purpose of user passwords
SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path) on Linux


class UserDbUnavailable(Exception):
    """User databases are off or PostgreSQL cannot be used; the message says why."""


@dataclass
class Credentials:
    host: str
    port: int
    user: str
    database: str
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """The libpq variables sessions get (through the environment, never argv)."""
        url = (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(self.database, safe='')}"
        )
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
            "DATABASE_URL": url,
        }

    def public(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "user": self.user, "database": self.database}


@dataclass
class _Server:
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


# --------------------------------------------------------------------------- helpers


def role_name(user: str) -> str:
    """``u_<name>``: a valid unquoted PostgreSQL identifier of at most 63 bytes. Names
    that had to be changed ('.', '-', length) get a short hash so that two users never
    share a role."""
    clean = re.sub(r"[^a-z0-9_]", "_", user.lower())
    name = f"u_{clean}"
    if clean != user or len(name) > 63:
        name = f"{name[:55]}_{hashlib.sha256(user.encode()).hexdigest()[:6]}"
    return name


def derive_password(key: bytes, role: str, generation: int) -> str:
    """The password of ``role`` at ``generation``: HMAC-SHA256 keyed with the hub's secret
    (secret_key.derive), URL-safe base64 (43 characters, 256 bits)."""
    digest = secret_key.derive(key, PASSWORD_PURPOSE, role, str(generation))
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (as libpq's PQencryptPasswordConn)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the service


class UserDatabases:
    """The hub's per-user database service (``hub.userdb``)."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.mode = settings.user_databases
        self.hub_db = db
        self.base = settings.data_dir / "postgres"
        self._server: _Server | None = None
        self._owns_server = False  # stop the embedded server at close()
        self._lock = asyncio.Lock()
        self._user_locks: dict[str, asyncio.Lock] = {}
        self._last_error: str | None = None
        self._bindir: Path | None = None
        self._owner: pwd.struct_passwd | None = None
        self._key: bytes | None = None  # the hub's secret (secret_key), read on first use

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def run_dir(self) -> Path:
        """The directory of the server's Unix socket: the admin role's only way in."""
        return self.base / "run"

    # ------------------------------------------------------------------ server
    async def server(self, start: bool = True) -> _Server:
        """The server to provision on, starting (or adopting) the embedded one."""
        if self.mode == "off":
            raise UserDbUnavailable("user databases are off (user_databases = 'off')")
        if self._server is not None:
            return self._server
        async with self._lock:
            if self._server is None:
                try:
                    srv = await (
                        self._external() if self.mode == "external" else self._embedded(start)
                    )
                    conn = await self._connect(srv)
                    await conn.close()
                except UserDbUnavailable as exc:
                    self._last_error = str(exc)
                    raise
                self._server, self._last_error = srv, None
                await self._sync_disabled()
            return self._server

    async def _connect(self, srv: _Server) -> asyncpg.Connection:
        try:
            return await srv.connect()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise UserDbUnavailable(
                f"cannot connect to PostgreSQL at {srv.admin_address} as {srv.admin_user}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[asyncpg.Connection]:
        srv = await self.server()
        try:
            conn = await self._connect(srv)
        except UserDbUnavailable:
            # The server may have been restarted or stopped behind our back: find it again.
            self._server = None
            conn = await self._connect(await self.server())
        try:
            yield conn
        finally:
            await conn.close()

    async def _external(self) -> _Server:
        assert self.settings.user_databases_admin_url is not None  # checked by Settings
        url = self.settings.user_databases_admin_url.get_secret_value()
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        if scheme not in ("postgresql", "postgres"):
            raise UserDbUnavailable(
                "user_databases_admin_url must be a postgresql:// URL "
                f"(got scheme '{parts.scheme}')"
            )
        return _Server(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            admin_user=unquote(parts.username or ""),
            admin_password=unquote(parts.password or ""),
            admin_database=unquote(parts.path.lstrip("/")) or "postgres",
            dsn=url.replace(parts.scheme + "://", "postgresql://", 1),
        )

    # ------------------------------------------------------------------ embedded server
    async def _embedded(self, start: bool) -> _Server:
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
            rc, out = await self._stop()
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
        self._owns_server = start
        return _Server("127.0.0.1", port, ADMIN_ROLE, password, admin_socket_dir=str(self.run_dir))

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
        port = _free_port()
        # The same settings are passed at every start; here for a server started by hand.
        with open(tmp / "postgresql.conf", "a") as conf:
            conf.write("\n# rsparkhub: per-user databases\n")
            for key, value in self._server_settings().items():
                conf.write(f"{key} = {_literal(value)}\n")
        secret = self.base / "admin-password"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        (self.base / "port").write_text(f"{port}\n")
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
            return self._saved_port(), ""

    def _saved_port(self) -> int:
        try:
            return int((self.base / "port").read_text().strip())
        except (OSError, ValueError):
            port = _free_port()
            (self.base / "port").write_text(f"{port}\n")
            return port

    async def _start(self) -> int:
        port = self._saved_port()
        logfile = self.base / "postgres.log"
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
            tail = _tail(logfile)
            if attempt == 0 and "already in use" in tail:
                port = _free_port()  # the remembered port is taken: choose and remember another
                (self.base / "port").write_text(f"{port}\n")
                continue
            raise UserDbUnavailable(
                f"the embedded PostgreSQL server did not start: {out.strip()[-800:]}\n{tail}"
            )
        raise AssertionError("unreachable")

    async def _reload(self) -> None:
        rc, out = await self._run_as_owner([self._bin("pg_ctl"), "reload", "-D", str(self.data)])
        if rc != 0:
            raise UserDbUnavailable(f"pg_ctl reload failed: {out.strip()[-800:]}")

    async def _stop(self) -> tuple[int, str]:
        try:
            return await self._run_as_owner(
                [self._bin("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60"],
                timeout=90,
            )
        except UserDbUnavailable as exc:
            return 1, str(exc)

    async def close(self) -> None:
        """Hub shutdown: stop the embedded server this process started or adopted."""
        if self.mode != "embedded" or not self._owns_server or self._bindir is None:
            return
        self._server, self._owns_server = None, False
        rc, out = await self._stop()
        if rc == 0:
            log.info("stopped the embedded PostgreSQL server")
        else:
            log.warning("could not stop the embedded PostgreSQL server: %s", out.strip()[-500:])

    # ------------------------------------------------------------------ provisioning
    async def _secret(self) -> bytes:
        if self._key is None:
            path = secret_key.path_in(self.settings.data_dir)
            try:
                self._key = await asyncio.to_thread(secret_key.load, path)
            except secret_key.SecretKeyError as exc:
                raise UserDbUnavailable(str(exc)) from None
        return self._key

    async def credentials(self, db: AsyncSession, user: User) -> Credentials:
        """The user's credentials, provisioning the role and database when needed
        (idempotent: the derived password, the role's attributes and the LOGIN state are
        applied every time)."""
        srv = await self.server()
        key = await self._secret()
        async with self._user_locks.setdefault(user.id, asyncio.Lock()):
            row = await db.get(UserDatabase, user.id)
            if row is None:
                name = role_name(user.name)
                row = UserDatabase(user_id=user.id, role=name, database=name, password_generation=1)
                db.add(row)
                await db.commit()
            password = derive_password(key, row.role, row.password_generation)
            await self._apply(row, password, login=not user.disabled)
        return Credentials(srv.host, srv.port, row.role, row.database, password)

    async def session_env(self, user_id: str) -> dict[str, str]:
        """The PG* variables for a session of ``user_id``; {} (and a warning naming the
        reason, never a secret) when user databases are off or unavailable."""
        if not self.enabled or self.hub_db is None:
            return {}
        try:
            async with self.hub_db.session() as db:
                user = await db.get(User, user_id)
                if user is None:
                    return {}
                creds = await self.credentials(db, user)
        except UserDbUnavailable as exc:
            log.warning("session without a PostgreSQL database: PostgreSQL not available: %s", exc)
            return {}
        except Exception as exc:  # noqa: BLE001 - a session starts even without its database
            log.warning(
                "session without a PostgreSQL database: provisioning failed: %s",
                type(exc).__name__,
            )
            return {}
        return creds.env()

    async def rotate(self, db: AsyncSession, user: User) -> Credentials:
        """A new password for the user's role (provisioning first if needed): the next
        generation's, which the role gets at once; the previous one stops working."""
        await self.credentials(db, user)
        async with self._user_locks.setdefault(user.id, asyncio.Lock()):
            row = await db.get(UserDatabase, user.id)
            assert row is not None
            await db.refresh(row)
            row.password_generation += 1
            row.rotated_at = datetime.now(UTC)
            await db.commit()  # the hub's record first: the next provisioning applies it anyway
        return await self.credentials(db, user)

    async def set_login(self, db: AsyncSession, user: User, enabled: bool) -> bool:
        """LOGIN/NOLOGIN for the user's role; disabling also ends its connections.
        False when the user has no database yet (nothing to change)."""
        row = await db.get(UserDatabase, user.id)
        if row is None:
            return False
        async with self._admin() as conn:
            await conn.execute(f"ALTER ROLE {_ident(row.role)} {'LOGIN' if enabled else 'NOLOGIN'}")
            if not enabled:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    row.role,
                )
        log.info(
            "%s login of the PostgreSQL role %s", "enabled" if enabled else "revoked", row.role
        )
        return True

    async def _apply(self, row: UserDatabase, password: str, login: bool) -> None:
        verifier = await asyncio.to_thread(scram_verifier, password)
        role, dbname = _ident(row.role), _ident(row.database)
        async with self._admin() as conn:
            superuser = await conn.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            attrs = ["LOGIN" if login else "NOLOGIN", "NOCREATEDB", "NOCREATEROLE"]
            if superuser:  # a CREATEROLE admin may not even name these (PostgreSQL <= 15)
                attrs += ["NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"]
            opts = f"{' '.join(attrs)} PASSWORD {_literal(verifier)}"
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", row.role)
            if not exists:
                try:
                    await conn.execute(f"CREATE ROLE {role} {opts}")
                except asyncpg.DuplicateObjectError:
                    exists = True
            if exists:
                await conn.execute(f"ALTER ROLE {role} {opts}")
            await _confine(conn, row.role)
            if not superuser:  # CREATE DATABASE … OWNER needs membership in the owner role
                with contextlib.suppress(asyncpg.PostgresError):
                    await conn.execute(f"GRANT {role} TO CURRENT_USER")
            if not await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", row.database
            ):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(f"CREATE DATABASE {dbname} OWNER {role}")
                    log.info("created the PostgreSQL role and database %s", row.role)
            await conn.execute(f"REVOKE ALL ON DATABASE {dbname} FROM PUBLIC")
            await conn.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {dbname} TO {role}")

    async def _sync_disabled(self) -> None:
        """After (re)connecting to the server: disabled users' roles have no LOGIN, even if
        they were disabled while the server was down or from the command line."""
        if self.hub_db is None or self._server is None:
            return
        try:
            async with self.hub_db.session() as db:
                rows = await db.execute(
                    select(UserDatabase.role).join(User, User.id == UserDatabase.user_id)
                    .where(User.disabled.is_(True))
                )  # fmt: skip
                roles = list(rows.scalars())
            if not roles:
                return
            conn = await self._server.connect()
            try:
                for role in roles:
                    if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                        await conn.execute(f"ALTER ROLE {_ident(role)} NOLOGIN")
            finally:
                await conn.close()
        except Exception as exc:  # noqa: BLE001 - best effort; provisioning re-applies it
            log.warning("could not revoke the login of disabled users' roles: %s", exc)

    # ------------------------------------------------------------------ doctor
    async def describe(self) -> dict[str, Any]:
        """For doctor: is PostgreSQL for user databases usable here, and why not. Starts
        nothing."""
        mode = self.mode
        if mode == "off":
            return {"ok": False, "mode": mode, "detail": "off (user_databases = 'off')"}
        if self._server is not None:
            srv = self._server
            where = (
                f"in {self.base}, admin only through {self.run_dir}"
                if mode == "embedded"
                else "(external)"
            )
            return {
                "ok": True,
                "mode": mode,
                "detail": f"PostgreSQL at {srv.host}:{srv.port} {where}, running",
            }
        if self._last_error:
            return {
                "ok": False,
                "mode": mode,
                "detail": f"PostgreSQL not available: {self._last_error}",
            }
        try:
            if mode == "external":
                srv = await self._external()
                conn = await self._connect(srv)
                version = await conn.fetchval("SHOW server_version")
                await conn.close()
                return {
                    "ok": True,
                    "mode": mode,
                    "detail": f"PostgreSQL {version} at {srv.host}:{srv.port} (external)",
                }
            bindir = find_bindir(self.settings.user_databases_bindir)
            self._check_socket_path()
            self._pick_owner()
        except UserDbUnavailable as exc:
            return {"ok": False, "mode": mode, "detail": f"PostgreSQL not available: {exc}"}
        state = "set up" if (self.data / "PG_VERSION").exists() else "not set up yet"
        return {
            "ok": True,
            "mode": mode,
            "detail": f"embedded PostgreSQL from {bindir}; cluster in {self.base} ({state}); "
            "started with the first session",
        }


async def _confine(conn: asyncpg.Connection, role: str) -> None:
    """Take ``role`` out of every role it is a member of (pg_execute_server_program,
    pg_read_server_files, pg_write_server_files, pg_read_all_data, a superuser's role …),
    then check that it has no privileged attribute and no membership left: a role that
    keeps one gets no credentials handed out (UserDbUnavailable names what to fix)."""
    groups = await conn.fetch(
        "SELECT g.rolname FROM pg_auth_members m"
        " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member"
        " WHERE r.rolname = $1",
        role,
    )
    for (group,) in groups:
        with contextlib.suppress(asyncpg.PostgresError):  # checked below
            await conn.execute(f"REVOKE {_ident(group)} FROM {_ident(role)}")
    row = await conn.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
        " ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g"
        "       ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1) AS member_of"
        " FROM pg_roles r WHERE r.rolname = $1",
        role,
    )
    if row is None:
        raise UserDbUnavailable(f"the PostgreSQL role {role} disappeared while provisioning")
    attrs = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
    kept = [a.removeprefix("rol").upper() for a in attrs if row[a]]
    kept += [f"membership in {g}" for g in row["member_of"]]
    if kept:
        raise UserDbUnavailable(
            f"the PostgreSQL role {role} keeps {', '.join(kept)}, which the hub's admin role "
            "cannot take away; its credentials are not handed out until an administrator of "
            "the server does (ALTER ROLE / REVOKE)"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
