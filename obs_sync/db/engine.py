"""SQLAlchemy engines: the daemon's long-lived one, and a short-lived one for a migration.

In-function imports of SQLAlchemy: a one-shot ``sync`` imports this module's callers
without needing an engine unless a migration is due.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obs_sync.config.database_url import connect_params
from obs_sync.db.url import database_url, session_args

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config


def _connect_args(config: Config, url: str) -> dict[str, Any]:
    """Connection arguments that make SQLAlchemy open the database obs-sync's own pools open,
    with the same session bounds (:func:`~obs_sync.db.url.session_args`).

    SQLAlchemy 2.0 (the newest on Python 3.10) leaves a percent-encoded database name
    encoded; libpq and :func:`connect_params` decode it, so the decoded name is passed on.
    """
    params = connect_params(url)
    args = session_args(config, params.get("options"))
    dbname = params.get("dbname")
    if dbname:
        args["dbname"] = dbname
    return args


def make_engine(config: Config, *, connections: int = 1) -> Engine:
    """An engine whose pool holds up to ``connections`` (each the same again as overflow)."""
    from sqlalchemy import create_engine  # heavy: only commands that need an engine pay

    url = database_url(config)
    return create_engine(
        url,
        pool_size=connections,
        max_overflow=connections,
        pool_recycle=1800,
        # A pooled connection that died (database restart, failover, a terminated backend)
        # is replaced at checkout instead of failing the daemon's next runs.
        pool_pre_ping=True,
        connect_args=_connect_args(config, url),
    )


def single_use_engine(config: Config) -> Engine:
    """An engine without a pool, for one migration of a one-shot sync (disposed after)."""
    from sqlalchemy import create_engine  # heavy: only a sync that migrates pays
    from sqlalchemy.pool import NullPool

    url = database_url(config)
    return create_engine(url, poolclass=NullPool, connect_args=_connect_args(config, url))
