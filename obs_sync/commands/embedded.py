"""``obs-sync db stop-embedded``: stop the embedded PostgreSQL if it runs; its data is kept."""

from __future__ import annotations

import click

from obs_sync.db.embedded import EmbeddedError, data_dir, server_pid, stop_server
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
    try:
        stop_server(directory)
    except EmbeddedError as error:
        click.echo(f"obs-sync: {error.for_cli()}", err=True)
        return error.exit_code
    except Exception as error:
        click.echo(
            f"obs-sync: cannot stop the embedded PostgreSQL in {directory} (pid {pid}): "
            f"{one_line(error)}",
            err=True,
        )
        return EXIT_FAILED
    click.echo(f"stopped the embedded PostgreSQL in {directory}")
    return EXIT_OK
