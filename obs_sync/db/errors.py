"""Which exceptions are database failures, and how a command words them.

Classified by type: psycopg's errors (the sync's own statements) and SQLAlchemy's (a
migration, the daemon's engine). The classes are looked up among the modules already
imported (a library that was never imported cannot have raised), so no command pays for
importing SQLAlchemy or psycopg just to classify an error.
"""

from __future__ import annotations

import sys
from typing import Any

from obs_sync.errors import one_line


def _loaded(module: str, name: str) -> Any:
    """``module.name`` when ``module`` is imported, else a class nothing is an instance of."""
    found = sys.modules.get(module)
    return getattr(found, name) if found is not None else ()


def is_database_error(error: BaseException) -> bool:
    """True for an error raised by the database driver or SQLAlchemy."""
    kinds = (_loaded("psycopg", "Error"), _loaded("sqlalchemy.exc", "SQLAlchemyError"))
    return isinstance(error, kinds)


PRIVILEGE_FIX = (
    "the role in database.url lacks a privilege on the schema: connect as the role that "
    "owns it (the one that ran `obs-sync db upgrade`), or have that role run "
    "`obs-sync db grant-reader ROLE` for a read-only role"
)


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (also under SQLAlchemy's wrapper), if any."""
    cause = getattr(error, "orig", None) or error
    state = getattr(cause, "sqlstate", None)
    return state if isinstance(state, str) else None


def database_error(error: BaseException) -> str:
    """A database failure of a command, with where to look (``check`` names the fix)."""
    if sqlstate(error) == "42501":  # insufficient_privilege: not about reaching the server
        return f"database error: {one_line(error)} ({PRIVILEGE_FIX})"
    cause = getattr(error, "orig", None) or error
    # Only a failure to reach the server is about database.url; "permission denied" is not.
    unreachable = type(cause) in (
        _loaded("psycopg", "OperationalError"),
        _loaded("psycopg", "InterfaceError"),
    )
    where = "check database.url and that the server is up; " if unreachable else ""
    return f"database error: {one_line(error)} ({where}`obs-sync check` tells more)"
