"""The schema's migration revision, read with one query (``<schema>.alembic_version``).

On a plain psycopg connection, so a re-sync checks it without importing SQLAlchemy or
Alembic; a SQLAlchemy connection passes its driver connection (:func:`revision_sa`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from obs_sync.db.url import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def read_revision(connection: psycopg.Connection[Any], schema: str) -> str | None:
    """The schema's revision, or None when obs-sync's tables were never created there."""
    quoted = quote_identifier(schema)
    row = connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{quoted}.alembic_version",)
    ).fetchone()
    if not (row and row[0]):
        return None
    row = connection.execute(f"SELECT version_num FROM {quoted}.alembic_version").fetchone()
    return str(row[0]) if row and row[0] is not None else None


def revision_sa(connection: Connection, schema: str) -> str | None:
    """:func:`read_revision` in a SQLAlchemy connection's transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)  # database.url is postgresql+psycopg
    return read_revision(driver, schema)
