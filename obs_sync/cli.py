"""The ``obs-sync`` command line: parsing, output and exit codes only; no business logic.

Exit codes: 0 success; 1 a VDN failed, was incomplete or guarded (or a check failed);
2 configuration or usage error (:mod:`obs_sync.errors`). Commands raise obs-sync's errors;
:class:`Group` is the one place that catches them, prints one line and exits with the
error's code (the cause, chained, goes to the debug log). Each command imports what it
runs inside its function, so every command starts quickly and loads only its own layer
(the rule tests/test_architecture.py allows for this module).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from obs_sync.commands.options import code_list_option
from obs_sync.config import (
    VDN_MAX,
    Config,
    ConfigError,
    load_config,
    parse_vdn_ids,
    resolve_config_path,
)
from obs_sync.db.errors import database_error, is_database_error
from obs_sync.errors import (
    EXIT_FAILED,
    ConfigurationError,
    ObsSyncError,
    UsageError,
    exit_codes_help,
)
from obs_sync.observability import Redactor, config_secrets, setup_logging_for
from obs_sync.text import escape_controls, id_ranges

log = logging.getLogger(__name__)


def exit_on_error(ctx: click.Context, error: BaseException, message: str, code: int) -> NoReturn:
    """Print ``obs-sync: message`` (secrets masked, control characters escaped, line by
    line) and exit with ``code``; the error and its causes go to the debug log."""
    config = ctx.find_root().ensure_object(dict).get("config")
    if isinstance(config, Config):
        if config.logging.level == "DEBUG":  # (a command may stop before it set up logging)
            setup_logging_for(config)
        message = Redactor(config_secrets(config))(message)  # a server's text may echo one
    log.debug("the command stopped: %s", message, exc_info=error)
    shown = "\n".join(escape_controls(line) for line in message.split("\n"))
    click.echo(f"obs-sync: {shown}", err=True)
    sys.exit(code)


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan and inf (click's own range check lets nan pass)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _vdn_ranges(_: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[int]:
    try:
        return parse_vdn_ids(value)
    except ValueError as error:
        raise click.BadParameter(str(error), param=param) from error


F = TypeVar("F", bound=Callable[..., Any])
VDN_FORMS = 'an id or a range like "100-120" (repeatable, or comma-separated: 3,5-6)'


def vdn_option(what: str, *, required: bool = False) -> Callable[[F], F]:
    """``--vdn``, the same forms in every command (one parser: ``parse_vdn_ids``, as for
    ``isales.vdn_ids``); the value is the sorted list of ids."""
    return click.option(
        "--vdn",
        "vdn_ids",
        multiple=True,
        required=required,
        callback=_vdn_ranges,
        help=f"{what}: {VDN_FORMS}.",
    )


def source_option(what: str) -> Callable[[F], F]:
    """``--source NAME`` (repeatable), the same in every command."""
    return click.option(
        "--source",
        "sources",
        multiple=True,
        metavar="NAME",
        help=f"{what} (a sources[].name; repeatable).",
    )


class Command(click.Command):
    """A command whose --help ends with the exit codes (defined once, in obs_sync.errors)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", exit_codes_help())
        super().__init__(*args, **kwargs)


class Group(click.Group):
    """A command group whose commands and subgroups list the exit codes too, and the one
    place a command's error becomes its line on stderr and its exit code."""

    command_class = Command
    group_class = type  # subgroups are of this class too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", exit_codes_help())
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ObsSyncError as error:
            exit_on_error(ctx, error, error.for_cli(), error.exit_code)
        except Exception as error:
            # psycopg's errors (the sync's own statements) or SQLAlchemy's (the others).
            if not is_database_error(error):
                raise
            exit_on_error(ctx, error, database_error(error), EXIT_FAILED)


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format: table (for people) or json (for tools).",
)


def get_config(ctx: click.Context, *, credentials: bool = True, database: bool = True) -> Config:
    """The configuration; ``credentials=False`` for commands that never call iSales,
    ``database=False`` for those that never open the database."""
    obj: dict[str, Any] = ctx.ensure_object(dict)
    if "config" not in obj:
        obj["config"] = load_config(
            obj.get("config_path"), credentials=credentials, database=database
        )
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


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="obs-sync")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Keep a PostgreSQL copy, with history, of CC-iSales OBS result codes."""
    ctx.ensure_object(dict)  # commands read config_path from it


@main.command(short_help="Show one VDN's codes from iSales; no writes.")
@source_option("The source to ask (required with several sources)")
@vdn_option("The VDN (one; any id, configured or not)", required=True)
@format_option
@code_list_option
@config_option
@click.pass_context
def fetch(
    ctx: click.Context, sources: tuple[str, ...], vdn_ids: list[int], fmt: str, code_list: str
) -> None:
    """Print one VDN's result codes (or --code-list) as fetched from iSales; nothing stored."""
    if len(vdn_ids) > 1:
        # Silently keeping the last of several would answer another question than asked.
        raise UsageError(
            f"--vdn names {len(vdn_ids)} VDNs ({id_ranges(vdn_ids)}): fetch prints one VDN per call"
        )
    config = get_config(ctx, database=False)
    from obs_sync.commands.fetch import run_fetch

    sys.exit(run_fetch(config, vdn_ids[0], fmt, sources, code_list))


@main.command(short_help="Serve the bundled iSales simulator.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=18443,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option(
    "--vdns",
    type=click.IntRange(0, VDN_MAX),
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
@click.option(
    "--keys",
    "keys_path",
    type=click.Path(dir_okay=False, exists=True),
    help='JSON/YAML {"<access key>": {secret_key: ..., vdn_ids: [...]}}: more keys, '
    "each granted some VDNs (null: all).",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="PEM private key.")
@click.option(
    "--latency-ms",
    type=FiniteFloatRange(0, 600_000),
    default=0,
    show_default=True,
    help="Added to every iSales request.",
)
@click.option(
    "--max-clock-skew",
    type=FiniteFloatRange(0, 366 * 86_400),
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
def simulator(**options: Any) -> None:
    """Serve the bundled iSales simulator (for demos, tests and benchmarks).

    Credentials come from ISALES_ACCESS_KEY / ISALES_SECRET_KEY (never from arguments);
    without them the demo pair demo-access-key / demo-secret-key is used. Runs until
    SIGINT/SIGTERM; the control API is under /_sim/ (docs/simulator.md).
    """
    from obs_sync.commands.simulator import run_simulator

    run_simulator(**options)


@main.command(short_help="Sync once and exit.")
@source_option("Sync only this source; default: every source")
@vdn_option("Sync only these VDNs (of the chosen sources' vdn_ids); default: all of them")
@click.option("--dry-run", is_flag=True, help="Fetch and report what would change; write nothing.")
@click.option("--no-migrate", is_flag=True, help="Do not apply pending database migrations.")
@click.option(
    "--max-delete-fraction",
    type=FiniteFloatRange(0, 1),
    help="sync.max_delete_fraction for this run only, e.g. 1 to accept a real mass "
    "deletion that guarded a VDN (best with --vdn).",
)
@click.option(
    "--switch-locale",
    is_flag=True,
    help="Accept a changed locale of the chosen sources: record the switch as one event; "
    "the translated descriptions are relabelled, not changes (docs/semantics.md).",
)
@config_option
@click.pass_context
def sync(
    ctx: click.Context,
    sources: tuple[str, ...],
    vdn_ids: list[int],
    dry_run: bool,
    no_migrate: bool,
    max_delete_fraction: float | None,
    switch_locale: bool,
) -> None:
    """Sync once and exit."""
    config = get_config(ctx)
    if max_delete_fraction is not None:
        guard = config.sync.model_copy(update={"max_delete_fraction": max_delete_fraction})
        config = config.model_copy(update={"sync": guard})
    from obs_sync.commands.sync import run_sync_command

    sys.exit(
        run_sync_command(
            config,
            vdn_ids,
            dry_run=dry_run,
            migrate=not no_migrate,
            sources=sources,
            switch_locale=switch_locale,
        )
    )


@main.group()
@config_option
def db() -> None:
    """Database schema management."""


@db.command()
@click.option("--revision", default="head", show_default=True, help="Migration to upgrade to.")
@config_option
@click.pass_context
def upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from obs_sync.commands.db import run_migration_command

    sys.exit(run_migration_command(get_config(ctx, credentials=False), "upgrade", revision))


@db.command(short_help="Revert migrations (may drop data; asks).")
@click.option(
    "--revision",
    default="-1",
    show_default=True,
    help='Migration to revert to: -1 one step back, "base" drops every table.',
)
@click.option("--yes", is_flag=True, help="Do not ask first (required when not on a terminal).")
@config_option
@click.pass_context
def downgrade(ctx: click.Context, revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION; "-1" is one step back, "base" drops every table.

    "-1" keeps the codes, history and run records (0003 -> 0002 drops the snapshot
    markers and skip reasons; 0002 -> 0001 the BI views, function and VDN registry);
    "base" drops every obs-sync table, history included. It first says which tables and
    how many rows, and asks.
    """
    from obs_sync.commands.db import run_migration_command

    config = get_config(ctx, credentials=False)
    sys.exit(run_migration_command(config, "downgrade", revision, assume_yes=yes))


@db.command("grant-reader")
@click.argument("role")
@config_option
@click.pass_context
def grant_reader(ctx: click.Context, role: str) -> None:
    """Grant ROLE read-only access (SELECT) to the BI tables."""
    config = get_config(ctx, credentials=False)
    from obs_sync.commands.db import run_grant_reader

    sys.exit(run_grant_reader(config, role))


@db.command("stop-embedded", short_help="Stop the embedded PostgreSQL; keep its data.")
def stop_embedded() -> None:
    """Stop the embedded PostgreSQL server, if it runs (its data is kept)."""
    from obs_sync.commands.db import run_stop_embedded

    sys.exit(run_stop_embedded())


@main.command(short_help="Run the daemon: schedule, /metrics, /healthz.")
@config_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the scheduling daemon (metrics and /healthz on metrics.port)."""
    config = get_config(ctx)
    from obs_sync.daemon.daemon import run_daemon
    from obs_sync.daemon.job import StartError
    from obs_sync.daemon.schedule import ScheduleError, make_trigger

    try:
        make_trigger(config.schedule)
    except ScheduleError as error:
        path = resolve_config_path(ctx.obj.get("config_path"))
        raise ConfigurationError(f"{path}: {error}") from error
    setup_logging_for(config)
    try:
        code = run_daemon(config)
    except StartError as error:
        # The daemon's output is its log (JSON with logging.format: json), its refusal too.
        log.error(
            "cannot start: %s", error, exc_info=error if log.isEnabledFor(logging.DEBUG) else None
        )
        sys.exit(error.exit_code)
    sys.exit(code)


@main.command(short_help="Check config, database, iSales, metrics port.")
@config_option
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the configuration, the database, one signed iSales request and the metrics port."""
    from obs_sync.commands.check import CheckResult, format_result, run_checks

    try:
        config = load_config(ctx.obj.get("config_path"))
    except ConfigError as error:
        click.echo(format_result(CheckResult("config", False, str(error))))
        raise UsageError(
            "the configuration must be fixed before the other checks can run"
        ) from error

    setup_logging_for(config)
    path = Path(resolve_config_path(ctx.obj.get("config_path")))
    results = run_checks(config, path, on_result=lambda r: click.echo(format_result(r)))
    failed = [r.name for r in results if not r.ok]
    if failed:
        # An invalid configuration (a bad cron) is a usage error, like everywhere else.
        kind = UsageError if "config" in failed else ObsSyncError
        raise kind(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("all checks passed")


@main.command(short_help="Summary, then failing and stale VDNs first.")
@format_option
@click.option("--failing", is_flag=True, help="List only the failing VDNs (the summary stays).")
@source_option("Only this source's VDNs")
@vdn_option("Only these VDNs (default: every configured VDN)")
@config_option
@click.pass_context
def status(
    ctx: click.Context, fmt: str, failing: bool, sources: tuple[str, ...], vdn_ids: list[int]
) -> None:
    """Show a summary (VDNs by state, the oldest success, the longest failure), the recent
    runs, and each VDN: failing, never synced, stale and empty ones first."""
    config = get_config(ctx, credentials=False)
    from obs_sync.commands.status import run_status_command

    sys.exit(
        run_status_command(config, fmt, failing_only=failing, vdn_ids=vdn_ids, sources=sources)
    )


@main.command(short_help="Check the stored history's integrity; read-only.")
@click.option("--upstream", is_flag=True, help="Also compare with a fresh fetch from iSales.")
@source_option("Check only this source's VDNs")
@vdn_option(
    "Check only these VDNs, configured or stored (default: all; --upstream: all configured)"
)
@format_option
@config_option
@click.pass_context
def verify(
    ctx: click.Context, upstream: bool, sources: tuple[str, ...], vdn_ids: list[int], fmt: str
) -> None:
    """Verify the stored codes and history (0 all holds, 1 findings listed, 2 usage)."""
    config = get_config(ctx, credentials=upstream)
    from obs_sync.commands.verify import run_verify

    sys.exit(
        run_verify(
            config, vdn_ids=list(vdn_ids) or None, upstream=upstream, fmt=fmt, sources=sources
        )
    )


@main.command(short_help="One-command demo: simulator + embedded DB.")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Run a self-contained demo: simulator + embedded PostgreSQL + two syncs."""
    from obs_sync.commands.demo import DEMO_SECRET_KEY, run_demo
    from obs_sync.config import LoggingConfig
    from obs_sync.db.embedded import INSTALL_HINT, EmbeddedError, require_installed
    from obs_sync.observability import setup_logging

    try:
        require_installed()
    except EmbeddedError as error:
        raise UsageError(
            f"the demo needs the embedded PostgreSQL, which is not installed: {INSTALL_HINT}"
        ) from error
    # No configuration needed: the demo builds its own. Only warnings reach the log.
    setup_logging(LoggingConfig(level="WARNING"), secrets=[DEMO_SECRET_KEY])
    try:
        sys.exit(run_demo(click.echo))
    except EmbeddedError as error:  # whatever its kind: the demo failed (exit 1)
        raise ObsSyncError(str(error)) from error
