"""Storages under test: SQLite files, memory, and PostgreSQL when a server is given.

PostgreSQL tests need ``TUNESMITH_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway server and sets it;
by hand: ``eval "$(.ci/postgres.sh start)"``). Without it they are skipped locally and fail under CI, so
that CI can never pass without having run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "TUNESMITH_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {POSTGRES_ENV} is not set (see .ci/run)")
        pytest.skip(f'no PostgreSQL server: set {POSTGRES_ENV} (eval "$(.ci/postgres.sh start)")')
    return url


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the test server; returns its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    yield fresh_postgres_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new database shared by the processes (or connections) of a test: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("postgres_url"))
