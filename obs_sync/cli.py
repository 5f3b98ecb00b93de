"""The ``obs-sync`` command line: parsing, output and exit codes only; no business logic.

Exit codes: 0 success; 1 a VDN failed, was incomplete or guarded (or a check failed);
2 configuration or usage error. Heavy modules are imported inside the commands that
need them so every command starts quickly.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from obs_sync.config import Config, ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"obs-sync: {message}", err=True)
    sys.exit(code)


def get_config(ctx: click.Context) -> Config:
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj.get("config_path"))
        except ConfigError as error:
            fail(f"configuration error: {error}", EXIT_USAGE)
    config: Config = obj["config"]
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Configuration file (default: $OBS_SYNC_CONFIG, else ./config.yaml).",
)
@click.version_option(package_name="obs-sync")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Keep a PostgreSQL copy, with history, of CC-iSales OBS result codes."""
    ctx.ensure_object(dict)["config_path"] = config_path


@main.command()
@click.option("--vdn", "vdn_id", type=click.IntRange(1, 9999), required=True, help="VDN id.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def fetch(ctx: click.Context, vdn_id: int, fmt: str) -> None:
    """Print one VDN's result codes as fetched from iSales (nothing is stored)."""
    config = get_config(ctx)
    import json

    from obs_sync.isales import ISalesClient, ISalesError

    try:
        with ISalesClient(config.isales) as client:
            snapshot = client.fetch_snapshot(vdn_id)
    except ConfigError as error:
        fail(f"configuration error: {error}", EXIT_USAGE)
    except ISalesError as error:
        fail(str(error))
    codes = snapshot.codes
    if fmt == "json":
        lines = [
            json.dumps({"obs_code": code, "obs_code_desc": desc}, ensure_ascii=False)
            for code, desc in codes.items()
        ]
    else:
        width = max([len("OBS_CODE"), *(len(code) for code in codes)])
        lines = [f"{'OBS_CODE':<{width}}  DESCRIPTION"]
        lines += [f"{code:<{width}}  {desc}" for code, desc in codes.items()]
    if lines:
        click.echo("\n".join(lines))
    stats = snapshot.stats
    state = "complete" if snapshot.complete else f"INCOMPLETE: {snapshot.incomplete_reason}"
    click.echo(
        f"VDN {vdn_id}: {len(codes)} codes (totalCount {stats.total_count}), "
        f"{stats.pages} pages, {stats.requests} requests ({stats.retries} retries, "
        f"{stats.restarts} restarts) in {stats.seconds:.2f}s; {state}",
        err=True,
    )
    sys.exit(EXIT_OK if snapshot.complete else EXIT_FAILED)


@main.command()
@click.pass_context
def simulator(ctx: click.Context) -> None:
    """Serve the bundled iSales simulator (for demos, tests and benchmarks)."""
    raise NotImplementedError


@main.command()
@click.option(
    "--vdn",
    "vdn_ids",
    type=click.IntRange(1, 9999),
    multiple=True,
    help="Sync only this VDN (repeatable); default: every configured VDN.",
)
@click.option("--dry-run", is_flag=True, help="Fetch and report what would change; write nothing.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending database migrations.")
@click.pass_context
def sync(ctx: click.Context, vdn_ids: tuple[int, ...], dry_run: bool, no_migrate: bool) -> None:
    """Sync once and exit (0 all succeeded, 1 a VDN failed/incomplete/guarded, 2 usage)."""
    raise NotImplementedError


@main.group()
def db() -> None:
    """Database schema management."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION."""
    raise NotImplementedError


@db.command()
@click.option("--revision", default="-1", show_default=True)
@click.pass_context
def downgrade(ctx: click.Context, revision: str) -> None:
    """Revert migrations down to REVISION."""
    raise NotImplementedError


@db.command("grant-reader")
@click.argument("role")
@click.pass_context
def grant_reader(ctx: click.Context, role: str) -> None:
    """Grant ROLE read-only access (SELECT) to the BI tables."""
    config = get_config(ctx)
    from sqlalchemy.exc import SQLAlchemyError

    from obs_sync.grants import GrantError, grant_reader
    from obs_sync.sync import make_engine

    engine = make_engine(config)
    try:
        statements = grant_reader(engine, config.database.schema_, role)
    except GrantError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        fail(f"database error: {str(cause).strip().splitlines()[0]}")
    finally:
        engine.dispose()
    for statement in statements:
        click.echo(f"{statement};")
    click.echo(f"{role} can now SELECT from the BI tables in schema {config.database.schema_}")


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the scheduling daemon (metrics and /healthz on metrics.port)."""
    config = get_config(ctx)
    from obs_sync.observability import setup_logging_for
    from obs_sync.scheduler import run_daemon

    setup_logging_for(config)
    sys.exit(run_daemon(config))


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the configuration, the database and one signed iSales request."""
    from pathlib import Path

    from obs_sync.config import resolve_config_path

    config = get_config(ctx)
    from obs_sync.checks import format_result, run_checks
    from obs_sync.observability import setup_logging_for

    setup_logging_for(config)
    path = Path(resolve_config_path(ctx.obj.get("config_path")))
    results = run_checks(config, path, on_result=lambda r: click.echo(format_result(r)))
    failed = [r.name for r in results if not r.ok]
    if failed:
        fail(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("all checks passed")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show recent runs and each VDN's freshness and failures."""
    raise NotImplementedError


@main.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run a self-contained demo: simulator + embedded PostgreSQL + two syncs."""
    raise NotImplementedError
