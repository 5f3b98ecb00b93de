"""What a connection asks the PostgreSQL server about itself (``obs-sync check``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def server_version(connection: Connection) -> str:
    """The server's version as it reports it (``SHOW server_version``)."""
    return str(connection.exec_driver_sql("SHOW server_version").scalar_one())
