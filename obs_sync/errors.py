"""obs-sync's errors: one family whose classes carry the exit code, and their one-line text.

Every error obs-sync raises on purpose is an :class:`ObsSyncError`. Commands raise them;
the command line (:mod:`obs_sync.cli`) is the one place that catches them, prints
:meth:`ObsSyncError.for_cli` and exits with the error's ``exit_code``. Callers classify
errors by type, never by module or class-name strings.
"""

from __future__ import annotations

import textwrap

# The process exit codes, defined here only.
EXIT_OK = 0  # success
EXIT_FAILED = 1  # a VDN failed, was incomplete or guarded; the database or iSales failed
EXIT_USAGE = 2  # configuration or usage: the operator must change something

# `obs-sync sync` stopped by a signal (128 + its number, as a shell reports it), after the
# run was recorded and its summary printed (docs/operations.md, "Signals, obs-sync sync").
EXIT_SIGINT = 128 + 2
EXIT_SIGTERM = 128 + 15

# What each exit code means, for every command's --help and the docs.
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_FAILED: "failed: a VDN failed, was incomplete or guarded, a check failed, or the "
    "database or iSales could not be used",
    EXIT_USAGE: "configuration or usage error: the message names the setting or option to fix",
    EXIT_SIGINT: "interrupted by SIGINT (sync: the run recorded, the summary printed)",
    EXIT_SIGTERM: "terminated by SIGTERM (sync: the run recorded, the summary printed)",
}


def exit_codes_help() -> str:
    """The exit codes as a --help epilog (click keeps a paragraph after ``\b`` as written)."""
    lines = [
        textwrap.fill(meaning, 78, initial_indent=f"  {code}  ", subsequent_indent=" " * 5)
        for code, meaning in EXIT_MEANINGS.items()
    ]
    return "\b\nExit codes:\n" + "\n".join(lines)


class ObsSyncError(Exception):
    """Base of obs-sync's own errors; the message is one line naming what to fix."""

    exit_code: int = EXIT_FAILED

    def for_cli(self) -> str:
        """What the command line prints for this error (after ``obs-sync: ``)."""
        return str(self)


class UsageError(ObsSyncError):
    """The configuration or the command line must change (exit 2)."""

    exit_code = EXIT_USAGE


def configuration_error(message: str) -> str:
    """``message`` as a configuration error is shown: the one place this prefix is written."""
    return f"configuration error: {message}"


class ConfigurationError(UsageError):
    """The configuration must change (exit 2); shown as ``configuration error: ...``."""

    def for_cli(self) -> str:
        return configuration_error(str(self))


def one_line(error: BaseException) -> str:
    """The first line of what went wrong, without library wrapping.

    SQLAlchemy wraps driver errors and prefixes them with the wrapped class
    ("(psycopg.OperationalError) connection failed: ..."): the driver's own error is used.
    Library and obs-sync errors say what happened in their message, so no class name is
    added; for Python's own exceptions (a KeyError's message is just the key) it is.
    """
    cause = getattr(error, "orig", None) or error
    # Lines are split at "\n" only: a server's text quoted in a message may hold a "\r" or
    # another control character, escaped where it is shown, not a reason to cut it off.
    lines = [line.strip() for line in str(cause).strip().split("\n") if line.strip()]
    name = type(cause).__name__
    if not lines:
        return name
    builtin = type(cause).__module__ == "builtins" and not isinstance(cause, OSError)
    return f"{name}: {lines[0]}" if builtin else lines[0]
