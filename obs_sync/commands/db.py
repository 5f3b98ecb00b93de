"""The ``obs-sync db`` group: ``upgrade``/``downgrade`` (migrations), ``grant-reader`` (a
read-only role for BI tools) and ``stop-embedded`` (the embedded PostgreSQL).

What each prints and its exit code; errors are raised (:mod:`obs_sync.errors`), and the
command line prints them.
"""

from __future__ import annotations

import sys

import click

from obs_sync.config import Config
from obs_sync.db.embedded import EmbeddedError, data_dir, server_pid, stop_server
from obs_sync.db.engine import make_engine
from obs_sync.errors import EXIT_OK, ObsSyncError, UsageError, one_line
from obs_sync.observability import setup_logging_for


def run_migration_command(
    config: Config, action: str, revision: str, *, assume_yes: bool = False
) -> int:
    """``obs-sync db upgrade|downgrade``. A downgrade that would undo a migration first
    says what it drops and asks (``assume_yes`` skips that; off a terminal it is required).
    """
    setup_logging_for(config)
    # Heavy, and only these commands need them (a sync loads them only to migrate).
    from alembic.util import CommandError

    from obs_sync.db import migrate
    from obs_sync.store.tables import TABLE_NAMES

    schema = config.database.schema_
    engine = make_engine(config)
    try:
        if action == "upgrade":
            before, after = migrate.upgrade(engine, schema, revision)
        else:
            plan = migrate.plan_downgrade(engine, schema, revision, TABLE_NAMES)
            if plan.current is not None and not plan.resolved:
                known = ", ".join(migrate.known_revisions())
                raise UsageError(
                    f"downgrade --revision {revision}: not a revision at or below the schema's "
                    f"{plan.current}; use -1 (one step), base (drop everything) or one of {known}"
                )
            if plan.current is not None and not plan.reverted:
                click.echo(f"schema {schema}: already at {plan.current}; nothing to downgrade")
                return EXIT_OK
            if plan.current is not None and not assume_yes:
                if not sys.stdin.isatty():
                    raise UsageError(f"{plan.describe()}. Not on a terminal: add --yes to go ahead")
                if not click.confirm(
                    f"{plan.describe()}. This cannot be undone. Go ahead?", err=True
                ):
                    raise ObsSyncError("nothing changed")
            before, after = migrate.downgrade(engine, schema, revision)
    except CommandError as error:  # Alembic's: an unknown revision and the like
        raise UsageError(f"{action} {revision}: {error}") from error
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"schema {schema}: already at {after or 'base (no tables)'}")
    else:
        click.echo(f"schema {schema}: {action}d from {before or 'base'} to {after or 'base'}")
    return EXIT_OK


def run_grant_reader(config: Config, role: str) -> int:
    """``obs-sync db grant-reader ROLE``: the statements run, then what ROLE can do now."""
    from obs_sync.store.grants import grant_reader  # SQLAlchemy: only this command needs it

    engine = make_engine(config)
    try:
        statements = grant_reader(engine, config.database.schema_, role)
    finally:
        engine.dispose()
    for statement in statements:
        click.echo(f"{statement};")
    click.echo(f"{role} can now SELECT from the BI tables in schema {config.database.schema_}")
    return EXIT_OK


def run_stop_embedded() -> int:
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
    except EmbeddedError:
        raise  # says itself what to do
    except Exception as error:
        raise ObsSyncError(
            f"cannot stop the embedded PostgreSQL in {directory} (pid {pid}): {one_line(error)}"
        ) from error
    click.echo(f"stopped the embedded PostgreSQL in {directory}")
    return EXIT_OK
