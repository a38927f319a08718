"""The PostgreSQL server user databases live on (``user_databases``): the embedded cluster
the hub runs from the system's binaries (:class:`EmbeddedPostgres`, in :func:`cluster_base`)
or an external one (:func:`external_server`, ``user_databases_admin_url``), reached as the
hub's admin role through an :class:`AdminServer`.

Owns: the embedded cluster's life — initdb, pg_hba.conf, start (adopting a server a
previous hub left running, restarting one with an older configuration), reload, stop — and
how the admin connects. Must not: provision roles or databases (``userdb.py`` does), or let
the admin role in over TCP.

* Where the cluster lives (:func:`cluster_base`): PostgreSQL refuses to run as root, so a
  root hub runs initdb/pg_ctl as the ``postgres`` system user, which often cannot reach
  ``DATA_DIR`` (a checkout in ``/root``, mode 0700 on Debian). A root hub therefore keeps
  its cluster in ``/var/lib/rsparkhub/postgres/<key>`` (``key`` from DATA_DIR's path; the
  parents root's and 0711, the directory the ``postgres`` user's and 0700), which it
  creates itself; a cluster an older hub set up in ``DATA_DIR/postgres`` stays there. A hub
  that is not root runs the server as itself, in ``DATA_DIR/postgres``.
* No path leads from a session to the embedded server's superuser (the admin role
  ``rsparkhub``): it connects only through the Unix socket in the cluster's ``run/``
  (mode 0700, owned by the server's system user, in a directory no sandbox shows),
  with its password, and pg_hba.conf rejects it over TCP. Sessions connect over TCP on
  127.0.0.1, on a port chosen at ``initdb`` and remembered in the cluster's ``port`` file
  (a :class:`~rsparkhub.hub.supervised.PortFile`), and each role reaches only the database
  of its own name (``sameuser``). The hub rewrites pg_hba.conf at every start and passes
  the listening settings on the server's command line, so a cluster set up by an older hub
  is brought in line (restarted if its socket is elsewhere).
* On an external server the hub cannot see pg_hba.conf: the operator keeps the admin role
  out of the sessions' reach (docs/operations.md).
* Nothing blocks the event loop: external programs run through asyncio subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hashlib
import logging
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
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
# A root hub's clusters: STATE_ROOT/postgres/<key>, outside any home directory.
STATE_ROOT = Path("/var/lib/rsparkhub")


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
            f"user_databases_bindir = {configured} does not contain "
            f"{', '.join(REQUIRED_BINARIES)}: point it at the server's bin directory "
            "(e.g. /usr/lib/postgresql/15/bin) or unset it to use the installed server"
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


def cluster_base(data_dir: Path) -> Path:
    """The embedded cluster's directory for the hub of ``data_dir``.

    A hub that is not root runs PostgreSQL as itself: ``DATA_DIR/postgres``. A root hub runs
    it as the ``postgres`` system user, which cannot reach a DATA_DIR under a private
    parent (a checkout in ``/root``): its cluster lives in
    ``STATE_ROOT/postgres/<first 16 hex digits of sha256(DATA_DIR)>``, one per data
    directory — unless an older hub already set one up in ``DATA_DIR/postgres``, which is
    kept (the users' databases are in it)."""
    inside = data_dir / "postgres"
    if os.geteuid() != 0 or (inside / "data" / "PG_VERSION").exists():
        return inside
    key = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return STATE_ROOT / "postgres" / key


def postgres_traverses_data_dir(settings: Settings) -> bool:
    """Whether the ``postgres`` system user must traverse DATA_DIR (so it is 0711, not
    0700): only for a root hub's cluster that an older hub set up inside it."""
    if settings.user_databases != "embedded" or os.geteuid() != 0:
        return False
    return cluster_base(settings.data_dir).is_relative_to(settings.data_dir)


def _blocking_parent(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory on the way to ``path`` that ``user`` may not search
    (by its mode bits; ACLs are not read), or None."""
    groups = {user.pw_gid, *(g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem)}
    for directory in reversed([path, *path.parents]):
        try:
            st = directory.stat()
        except OSError:
            return None  # not made yet: the hub makes it with the right owner and mode
        if st.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _conf_value(value: str) -> str:
    """A postgresql.conf string value (single quotes, a quote doubled)."""
    return "'" + value.replace("'", "''") + "'"


class EmbeddedPostgres:
    """The hub's own cluster in ``base`` (:func:`cluster_base`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = cluster_base(settings.data_dir)
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

    @property
    def in_data_dir(self) -> bool:
        return self.base.is_relative_to(self.settings.data_dir)

    def is_set_up(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def check(self) -> Path:
        """For doctor: the binaries (returned), the socket path, the system user and whether
        it can reach the cluster's directory, or UserDbUnavailable. Starts nothing."""
        bindir = find_bindir(self.settings.user_databases_bindir)
        self._check_socket_path()
        owner = self._pick_owner()
        if owner is not None:
            blocked = _blocking_parent(self.base, owner)
            if blocked is not None:
                raise UserDbUnavailable(self._unreachable(owner, blocked))
        return bindir

    def _unreachable(self, owner: pwd.struct_passwd, blocked: Path | None) -> str:
        where = f"{blocked} (on the way to {self.base})" if blocked else str(self.base)
        why = (
            f"the '{owner.pw_name}' system user, which runs PostgreSQL for a root hub, "
            f"cannot reach {where}"
        )
        if self.in_data_dir:
            return (
                f"{why}: make every parent directory searchable by it (chmod o+x), or move "
                f"{self.base} aside so that the hub sets up a new cluster under "
                f"{STATE_ROOT / 'postgres'} (the databases in the old one are then not used)"
            )
        return f"{why}: make {STATE_ROOT} and its parents searchable by it (chmod o+x)"

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
                blocked = _blocking_parent(self.base, self._owner)
                raise UserDbUnavailable(self._unreachable(self._owner, blocked))
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
            )  # only a cluster in DATA_DIR can be that deep

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
        if not self.in_data_dir:
            self._prepare_state_dir()
        for path in (self.base, self.run_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
            self._chown(path)
        with contextlib.suppress(OSError):  # an older hub's socket directory
            (self.base / "sock").rmdir()

    def _prepare_state_dir(self) -> None:
        """A root hub's cluster directory outside DATA_DIR: its parents root's and searchable
        but not listable (0711), so that the ``postgres`` user reaches its own 0700
        directory; a note in it names the data directory it belongs to."""
        for parent in (STATE_ROOT, self.base.parent):
            try:
                parent.mkdir(mode=0o711, exist_ok=True)
                mode = stat.S_IMODE(parent.stat().st_mode)
                if mode & 0o011 != 0o011:
                    parent.chmod(mode | 0o011)
            except OSError as exc:
                raise UserDbUnavailable(
                    f"cannot make {parent} for the embedded PostgreSQL cluster ({exc}): make "
                    f"{STATE_ROOT.parent} writable by root, or run the hub as a user other "
                    "than root"
                ) from None
        self.base.mkdir(mode=0o700, exist_ok=True)
        note = self.base / "data-dir"
        if not note.exists():
            fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{self.settings.data_dir}\n")
        # what an older hub made in DATA_DIR before finding it could not use it (if empty)
        for leftover in ("postgres/run", "postgres"):
            with contextlib.suppress(OSError):
                (self.settings.data_dir / leftover).rmdir()

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _write_hba(self) -> None:
        """pg_hba.conf, rewritten at every start: nothing else lets a connection in."""
        hba = (
            "# Written by rsparkhub whenever the hub starts the server: edits are lost.\n"
            f"# The admin role ({ADMIN_ROLE}) connects only through the Unix socket in\n"
            f"# {self.run_dir} (mode 0700; no session can see it); over TCP it is\n"
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
