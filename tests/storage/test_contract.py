"""Every shipped storage passes the storage contract (agent.testing.storages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.storage import InMemoryStorage, SQLStorage, Storage
from agent.testing.storages import StorageContract
from tests.storage.conftest import fresh_postgres_database


class TestSQLiteStorage(StorageContract):
    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLStorage(f"sqlite:///{tmp_path / 'contract.db'}")


class TestInMemoryStorage(StorageContract):
    def make_storage(self, tmp_path: Path) -> Storage:
        return InMemoryStorage()


class TestPostgreSQLStorage(StorageContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: str) -> None:
        self.server = postgres_server

    def make_storage(self, tmp_path: Path) -> Storage:
        return SQLStorage(fresh_postgres_database(self.server))
