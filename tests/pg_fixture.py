"""Pytest fixtures for a real, throwaway PostgreSQL server (see tests/pgserver.py).

Use them from a test module (or a conftest) by importing them::

    from pg_fixture import pg_server, pg_database  # noqa: F401

or, in tests/conftest.py, ``pytest_plugins = ["pg_fixture"]``.

``pg_server`` is session-scoped and yields a started ``PgServer``. It does not skip: when the
PostgreSQL binaries are missing, every test that uses it fails with a message saying how to
install them. ``pg_database`` gives each test a fresh, empty database and yields its SQLAlchemy
URL (``postgresql+asyncpg://...``); it is dropped afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgserver import PgServer, PgServerError, PostgresNotFoundError

__all__ = ["pg_database", "pg_server"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A started throwaway PostgreSQL server, shared by the whole test session."""
    server = PgServer()
    problem = None
    try:
        server.start()
    except PostgresNotFoundError as exc:
        problem = f"PostgreSQL is required for this test: {exc}"
    except PgServerError as exc:
        problem = f"could not start the throwaway PostgreSQL server: {exc}"
    if problem is not None:  # fail outside the except block: no chained traceback
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database on ``pg_server`` for one test; yields its SQLAlchemy URL."""
    name = f"test_{os.urandom(6).hex()}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)
