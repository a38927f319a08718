"""The throwaway PostgreSQL server used by the tests really works (tests/pgserver.py)."""

from __future__ import annotations

import os
import stat

import asyncpg
import pytest

from pg_fixture import pg_database, pg_server  # noqa: F401  (fixtures)
from pgserver import PgServer, PgServerError, PostgresNotFoundError


async def test_select_one(pg_server: PgServer) -> None:  # noqa: F811
    assert pg_server.url.startswith(f"postgresql+asyncpg://{pg_server.user}:")
    assert pg_server.url.endswith(f"@127.0.0.1:{pg_server.port}/{pg_server.database}")
    assert pg_server.dsn.startswith("postgresql://")
    assert pg_server.admin_url.endswith("/postgres")
    conn = await asyncpg.connect(pg_server.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == pg_server.database
        assert await conn.fetchval("select rolsuper from pg_roles where rolname = current_user")
        assert await conn.fetchval("show fsync") == "off"
        assert await conn.fetchval("show listen_addresses") == "127.0.0.1"
    finally:
        await conn.close()


async def test_wrong_password_is_rejected(pg_server: PgServer) -> None:  # noqa: F811
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host="127.0.0.1",
            port=pg_server.port,
            user=pg_server.user,
            password="not-the-password",
            database=pg_server.database,
        )
    with pytest.raises(asyncpg.InvalidPasswordError):  # no password at all
        await asyncpg.connect(
            host="127.0.0.1", port=pg_server.port, user=pg_server.user, database="postgres"
        )


async def test_create_database(pg_server: PgServer) -> None:  # noqa: F811
    url = pg_server.create_database("extra_db")
    try:
        assert url == pg_server.url_for("extra_db")
        conn = await asyncpg.connect(pg_server.dsn_for("extra_db"))
        try:
            assert await conn.fetchval("select current_database()") == "extra_db"
        finally:
            await conn.close()
    finally:
        pg_server.drop_database("extra_db")


async def test_pg_database_fixture(pg_database: str, pg_server: PgServer) -> None:  # noqa: F811
    assert pg_database.startswith("postgresql+asyncpg://")
    name = pg_database.rsplit("/", 1)[1]
    conn = await asyncpg.connect(pg_server.dsn_for(name))
    try:
        assert (
            await conn.fetchval("select count(*) from pg_tables where schemaname = 'public'") == 0
        )
    finally:
        await conn.close()


def test_socket_dir_is_private(pg_server: PgServer) -> None:  # noqa: F811
    mode = stat.S_IMODE(os.stat(pg_server.socket_dir).st_mode)
    assert mode == 0o700
    assert list(pg_server.socket_dir.glob(f".s.PGSQL.{pg_server.port}"))


def test_stop_removes_everything() -> None:
    server = PgServer(database="postgres")
    with server:
        base = server.base_dir
        assert base is not None and (base / "data" / "PG_VERSION").exists()
        assert server.psql("select 1").strip() == "1"
    assert not base.exists()
    assert server.base_dir is None and server.port is None
    server.stop()  # idempotent


def test_missing_binaries_give_a_clear_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPARKHUB_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresNotFoundError, match="initdb"):
        PgServer().start()
    with pytest.raises(PgServerError, match="not been started"):
        _ = PgServer().url
