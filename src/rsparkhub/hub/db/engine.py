"""Database engine, sessions and migrations. Owns connection set-up only; queries live
with the feature that needs them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# SQLite connections kept open (WAL: readers do not block each other or the writer).
SQLITE_POOL_SIZE = 32
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every stored datetime is UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def iso(dt: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp for the API, or None."""
    value = aware(dt)
    return value.isoformat() if value is not None else None


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, object] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            # Every request holds a connection while it runs. Beyond the pool's size each
            # one opens a connection (for aiosqlite: a thread, the file, the pragmas) and
            # closes it after; with the default 5 that churn was most of GET /api/me's
            # tail latency at 8 concurrent clients (bench/rest_latency.py).
            kwargs["pool_size"] = SQLITE_POOL_SIZE
            kwargs["max_overflow"] = SQLITE_POOL_SIZE
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine.sync_engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    async def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_upgrade)
        if self.url.startswith("sqlite"):
            # Move what a migration changed into the main file and empty the write-ahead
            # log, so that a value a migration erased (with secure_delete, e.g. 0005's
            # passwords) lingers in neither file's bytes.
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def dispose(self) -> None:
        await self.engine.dispose()


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _run_upgrade(sync_conn) -> None:  # type: ignore[no-untyped-def]
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


def upgrade_sync(url: str) -> None:
    """For the CLI: ``rsparkhub db upgrade``."""

    async def _go() -> None:
        db = Database(url)
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(_go())
