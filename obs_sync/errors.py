"""One-line descriptions of exceptions, for messages a user reads (logs, CLI, run records)."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """The first line of what went wrong, without library wrapping.

    SQLAlchemy wraps driver errors and prefixes them with the wrapped class
    ("(psycopg.OperationalError) connection failed: ..."): the driver's own error is used.
    Library and obs-sync errors say what happened in their message, so no class name is
    added; for Python's own exceptions (a KeyError's message is just the key) it is.
    """
    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    name = type(cause).__name__
    if not lines:
        return name
    builtin = type(cause).__module__ == "builtins" and not isinstance(cause, OSError)
    return f"{name}: {lines[0]}" if builtin else lines[0]


def database_error(error: BaseException) -> str:
    """A database failure of a command, with where to look (``check`` names the fix)."""
    cause = getattr(error, "orig", None) or error
    # Only a failure to reach the server is about database.url; "permission denied" is not.
    unreachable = type(cause).__name__ in ("OperationalError", "InterfaceError")
    where = "check database.url and that the server is up; " if unreachable else ""
    return f"database error: {one_line(error)} ({where}`obs-sync check` tells more)"
