"""Alembic environment: migrations always run on a connection tunesmith hands over (never from a URL).

The connection is already inside the transaction that holds the database's write lock, so that two
processes opening an old or new file at the same moment upgrade it once, one after the other.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
