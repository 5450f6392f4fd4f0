"""Bringing a database to the current schema with Alembic: automatically on open, or by hand.

A database is in one of four states: empty (create everything), written by tunesmith 0.1 (its tables
exist but Alembic never saw it: stamp it with revision ``0001``, then upgrade), current (nothing to do),
or written by a newer tunesmith (refuse, rather than write rows it cannot read). Before an existing
SQLite file is upgraded, a copy is taken beside it (``NAME.schema-REV.bak``), so an upgrade can always be
undone by putting the copy back.

Checking is one cheap read; Alembic itself is imported only when there is work to do.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from agent.storage.records import StorageError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

#: The newest revision this release knows, and every revision it can upgrade from.
HEAD = "0004"
KNOWN = ("0001", "0002", "0003", "0004")
#: The revision of databases written by tunesmith 0.1 (no ``alembic_version`` table).
LEGACY = "0001"


def revision(conn: Connection) -> str | None:
    """The database's schema revision; None when it holds no tunesmith table yet."""
    tables = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    if "studies" in tables:
        return LEGACY
    return None


def check_known(found: str | None, url: str) -> None:
    if found is not None and found not in KNOWN:
        raise StorageError(
            f"{url} was written by a newer tunesmith (schema revision {found}; this release knows up to {HEAD}); "
            "upgrade tunesmith to use it"
        )


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("agent.storage") / "migrations"))
    config.attributes["connection"] = conn
    return config


def upgrade_locked(conn: Connection, url: str) -> str | None:
    """Upgrade the database to :data:`HEAD` on ``conn``, which holds the write lock; returns the old revision."""
    from alembic import command

    found = revision(conn)
    check_known(found, url)
    if found == HEAD:
        return found
    config = _config(conn)
    if found == LEGACY and not sa.inspect(conn).has_table("alembic_version"):
        command.stamp(config, LEGACY)
    log.debug("upgrading %s from schema %s to %s", url, found or "(empty)", HEAD)
    command.upgrade(config, HEAD)
    return found


def backup_sqlite(path: Path, found: str) -> Path:
    """Copy a SQLite database (consistently, even while others use it) to ``PATH.schema-REV.bak``."""
    target = path.with_name(f"{path.name}.schema-{found}.bak")
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    source = sqlite3.connect(path, timeout=60)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    shutil.move(partial, target)
    log.warning("upgrading %s to schema %s; the old file was copied to %s", path, HEAD, target)
    return target


def needs_upgrade(engine: Engine, url: str) -> str | None:
    """The revision to upgrade from, or None when the database is current (one read, no lock)."""
    with engine.connect() as conn:
        found = revision(conn)
    check_known(found, url)
    return "" if found is None else (None if found == HEAD else found)
