"""Per-user PostgreSQL databases: a role and a database ``u_<name>`` for every user, on the
embedded server (a private cluster the hub starts from the system's binaries) or on an
external server (``user_databases_admin_url``); the servers themselves are ``postgres.py``'s.

Owns: provisioning (roles, databases, their privileges and LOGIN state), the users'
derived passwords and what sessions get to connect with. Must not: log a credential, store
a password, or build SQL by hand (identifiers and literals go through ``psycopg.sql``).

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
* A session that gets no database says so to its users (:class:`SessionDatabase`'s
  ``missing``, shown among the session's start messages): what is missing and what an
  administrator can do, never a credential.
* Nothing blocks the event loop: the server's start runs through asyncio subprocesses,
  file I/O and SCRAM hashing in threads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import asyncpg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rsparkhub.config import Settings
from rsparkhub.hub import secret_key
from rsparkhub.hub.db.models import User, UserDatabase
from rsparkhub.hub.postgres import (
    AdminServer,
    EmbeddedPostgres,
    UserDbUnavailable,
    external_server,
    find_bindir,
)

if TYPE_CHECKING:
    from rsparkhub.hub.db.engine import Database

__all__ = [
    "Credentials",
    "SessionDatabase",
    "UserDatabases",
    "UserDbUnavailable",
    "derive_password",
    "find_bindir",
    "role_name",
    "scram_verifier",
]

log = logging.getLogger("rsparkhub.userdb")

PASSWORD_PURPOSE = "postgres-user-password"  # the secret_key.derive purpose of user passwords


def _q(statement: sql.Composable) -> str:
    """A composed statement as the text asyncpg sends (utility statements such as CREATE
    ROLE take no parameters: their identifiers and literals are quoted by psycopg.sql)."""
    return statement.as_string(None)


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
class SessionDatabase:
    """What a new session gets: the PG* variables, or none and why (``missing``: a sentence
    for the session's users, shown with its start messages; None when user databases are
    off, which is the administrator's choice and needs no excuse)."""

    env: dict[str, str] = field(repr=False)
    missing: str | None = None


def _missing(reason: str) -> str:
    """The start message of a session without its database: the first line of why (no
    server log, no credential), and what an administrator can do."""
    why = reason.strip().splitlines()[0] if reason.strip() else "unknown reason"
    if len(why) > 800:
        why = why[:800] + "…"
    return (
        "No PostgreSQL database in this session (PGHOST, PGUSER … are not set): "
        f"{why}. An administrator can see the details with `rsparkhub doctor` or in the "
        "hub's log; the next session tries again."
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


# --------------------------------------------------------------------------- the service


class UserDatabases:
    """The hub's per-user database service (``hub.userdb``)."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.mode = settings.user_databases
        self.hub_db = db
        # the hub's own cluster (user_databases = 'embedded'; idle in the other modes)
        self.embedded = EmbeddedPostgres(settings)
        self._server: AdminServer | None = None
        self._lock = asyncio.Lock()
        self._user_locks: dict[str, asyncio.Lock] = {}
        self._last_error: str | None = None
        self._key: bytes | None = None  # the hub's secret (secret_key), read on first use

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    # ------------------------------------------------------------------ server
    async def server(self, start: bool = True) -> AdminServer:
        """The server to provision on, starting (or adopting) the embedded one."""
        if self.mode == "off":
            raise UserDbUnavailable("user databases are off (user_databases = 'off')")
        if self._server is not None:
            return self._server
        async with self._lock:
            if self._server is None:
                try:
                    if self.mode == "external":
                        srv = external_server(self.settings)
                    else:
                        srv = await self.embedded.open(start)
                    conn = await self._connect(srv)
                    await conn.close()
                except UserDbUnavailable as exc:
                    self._last_error = str(exc)
                    raise
                self._server, self._last_error = srv, None
                await self._sync_disabled()
            return self._server

    async def _connect(self, srv: AdminServer) -> asyncpg.Connection:
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

    async def close(self) -> None:
        """Hub shutdown: stop the embedded server this process started or adopted."""
        if self.embedded.owns_server:
            self._server = None
        await self.embedded.close()

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

    async def session_database(self, user_id: str) -> SessionDatabase:
        """The PG* variables for a session of ``user_id``; none when user databases are
        off, or none with a warning in the log and ``missing`` for the session's users
        (naming the reason, never a secret) when they are unavailable."""
        if not self.enabled or self.hub_db is None:
            return SessionDatabase({})
        try:
            async with self.hub_db.session() as db:
                user = await db.get(User, user_id)
                if user is None:
                    return SessionDatabase({})
                creds = await self.credentials(db, user)
        except UserDbUnavailable as exc:
            log.warning("session without a PostgreSQL database: PostgreSQL not available: %s", exc)
            return SessionDatabase({}, _missing(f"PostgreSQL is not available: {exc}"))
        except Exception as exc:  # noqa: BLE001 - a session starts even without its database
            log.warning(
                "session without a PostgreSQL database: provisioning failed: %s",
                type(exc).__name__,
            )
            return SessionDatabase(
                {}, _missing(f"setting up the database failed ({type(exc).__name__})")
            )
        return SessionDatabase(creds.env())

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
            login = sql.SQL("LOGIN" if enabled else "NOLOGIN")
            await conn.execute(
                _q(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(row.role), login))
            )
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
        role, dbname = sql.Identifier(row.role), sql.Identifier(row.database)
        async with self._admin() as conn:
            superuser = await conn.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            attrs = ["LOGIN" if login else "NOLOGIN", "NOCREATEDB", "NOCREATEROLE"]
            if superuser:  # a CREATEROLE admin may not even name these (PostgreSQL <= 15)
                attrs += ["NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS"]
            opts = sql.SQL("{} PASSWORD {}").format(
                sql.SQL(" ").join(sql.SQL(a) for a in attrs), sql.Literal(verifier)
            )
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", row.role)
            if not exists:
                try:
                    await conn.execute(_q(sql.SQL("CREATE ROLE {} {}").format(role, opts)))
                except asyncpg.DuplicateObjectError:
                    exists = True
            if exists:
                await conn.execute(_q(sql.SQL("ALTER ROLE {} {}").format(role, opts)))
            await _confine(conn, row.role)
            if not superuser:  # CREATE DATABASE … OWNER needs membership in the owner role
                with contextlib.suppress(asyncpg.PostgresError):
                    await conn.execute(_q(sql.SQL("GRANT {} TO CURRENT_USER").format(role)))
            if not await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", row.database
            ):
                with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                    await conn.execute(
                        _q(sql.SQL("CREATE DATABASE {} OWNER {}").format(dbname, role))
                    )
                    log.info("created the PostgreSQL role and database %s", row.role)
            await conn.execute(_q(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(dbname)))
            await conn.execute(
                _q(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(dbname, role))
            )

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
                        await conn.execute(
                            _q(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
                        )
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
                f"in {self.embedded.base}, admin only through {self.embedded.run_dir}"
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
                srv = external_server(self.settings)
                conn = await self._connect(srv)
                version = await conn.fetchval("SHOW server_version")
                await conn.close()
                return {
                    "ok": True,
                    "mode": mode,
                    "detail": f"PostgreSQL {version} at {srv.host}:{srv.port} (external)",
                }
            bindir = self.embedded.check()
        except UserDbUnavailable as exc:
            return {"ok": False, "mode": mode, "detail": f"PostgreSQL not available: {exc}"}
        state = "set up" if self.embedded.is_set_up() else "not set up yet"
        return {
            "ok": True,
            "mode": mode,
            "detail": f"embedded PostgreSQL from {bindir}; cluster in {self.embedded.base} ({state}); "
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
            await conn.execute(
                _q(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(role)))
            )
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
