"""What ``obs-sync sync`` prints, and its exit code.

Kept out of cli.py so the click layer stays a thin parser. Errors are raised
(:mod:`obs_sync.errors`: each carries its exit code); the command line prints them.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from obs_sync.commands.table import table_lines
from obs_sync.db.embedded import require_installed
from obs_sync.errors import EXIT_FAILED, UsageError
from obs_sync.observability import setup_logging_for
from obs_sync.progress_bar import ProgressBar
from obs_sync.text import id_ranges, plural

log = logging.getLogger("obs_sync.sync")

if TYPE_CHECKING:
    from obs_sync.config import Config
    from obs_sync.results import RunResult, VdnResult


def _counts(vdn: VdnResult) -> list[str]:
    return [
        f"+{vdn.inserted}",
        f"~{vdn.updated}",
        f"-{vdn.deleted}",
        f"^{vdn.restored}",
        f"={vdn.unchanged}",
    ]


def format_summary(result: RunResult) -> str:
    """The per-VDN table and a totals line."""
    header = ["VDN", "STATUS", "NEW", "CHANGED", "DELETED", "RESTORED", "UNCHANGED", "PAGES"]
    rows: list[list[str]] = []
    for vdn in result.vdns:
        error = (vdn.error or "").replace("\n", " ")  # last column: shown whole
        rows.append([str(vdn.vdn_id), vdn.status, *_counts(vdn), str(vdn.pages), error])
    lines = table_lines([*header, "ERROR"], rows)
    statuses: dict[str, int] = {}
    for vdn in result.vdns:
        statuses[vdn.status] = statuses.get(vdn.status, 0) + 1
    by_status = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    seconds = (result.finished_at - result.started_at).total_seconds()
    what = "dry run (nothing written)" if result.dry_run else f"run {result.run_id}"
    verb = "would be" if result.dry_run else ""
    totals = (
        f"{what}: {result.status}; {plural(len(result.vdns), 'VDN')} ({by_status or 'none'}); "
        f"{verb + ' ' if verb else ''}+{result.total('inserted')} new, "
        f"~{result.total('updated')} changed, -{result.total('deleted')} deleted, "
        f"^{result.total('restored')} restored, ={result.total('unchanged')} unchanged; "
        f"{plural(result.total('requests'), 'request')} in {seconds:.2f}s"
    )
    return "\n".join([*lines, totals])


def _stop_on_sigterm(stop: threading.Event) -> Any:
    """SIGTERM (a CronJob's deadline, ``kubectl delete``, systemd) stops the run as in the
    daemon: no new VDN starts, the one in flight commits or rolls back, the rest are
    recorded as skipped. A second SIGTERM exits at once. Returns the previous handler."""

    def on_sigterm(signum: int, frame: Any) -> None:
        if stop.is_set():
            log.error("SIGTERM received again: exiting now without waiting for the VDN in flight")
            logging.shutdown()
            os._exit(EXIT_FAILED)
        log.info("SIGTERM received: stopping (no new VDN starts; the VDN in flight finishes)")
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return None  # signals reach the main thread only (a test's CliRunner thread)
    return signal.signal(signal.SIGTERM, on_sigterm)


def run_sync_command(
    config: Config, vdn_ids: Sequence[int], *, dry_run: bool, migrate: bool
) -> int:
    configured = set(config.isales.vdn_list)
    unknown = [vdn for vdn in vdn_ids if vdn not in configured]
    if unknown:
        raise UsageError(
            f"--vdn {id_ranges(unknown)}: not in isales.vdn_ids; add it to the "
            "configuration to sync it (only configured VDNs are kept fresh)"
        )
    setup_logging_for(config)
    # A one-shot command: at exit, skip the interpreter's last full garbage collections
    # over every object of every imported module (pydantic, psycopg, requests...), about
    # 0.05 s, a tenth of a small sync. Objects are still released; only cycles are left to
    # the operating system, which reclaims the whole process anyway.
    atexit.register(gc.freeze)

    # After the checks above: a usage error answers before the client and its HTTP stack load.
    from obs_sync.engine.run import run_sync

    if config.database.embedded:  # before fetching anything that could not be stored
        require_installed()

    total = len(vdn_ids) if vdn_ids else len(configured)
    progress: ProgressBar | None = None
    if sys.stderr.isatty():
        # Log records are written around the bar, never into its line.
        progress = ProgressBar(total, sys.stderr).__enter__()

    def advance(_: VdnResult) -> None:
        if progress is not None:
            progress.advance()

    # schedule.run_deadline_seconds, when set, bounds a one-shot run as the daemon's: after
    # it no new VDN starts (a CronJob's activeDeadlineSeconds is the hard stop).
    limit = config.schedule.run_deadline_seconds
    deadline = None if limit is None else time.monotonic() + limit
    stop = threading.Event()
    previous = _stop_on_sigterm(stop)
    try:
        result = run_sync(
            config,
            vdn_ids=list(vdn_ids) or None,
            dry_run=dry_run,
            migrate=migrate,
            on_vdn=advance if progress is not None else None,
            log_progress=progress is None,  # the bar on a terminal; log lines otherwise
            stop=stop,
            deadline=deadline,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if progress is not None:
            progress.__exit__(None, None, None)
    for note in result.notes:
        click.echo(f"obs-sync: {note}", err=True)
    click.echo(format_summary(result))
    return result.exit_code
