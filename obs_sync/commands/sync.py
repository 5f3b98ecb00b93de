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
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from obs_sync.commands.selection import check_configured
from obs_sync.commands.table import table_lines
from obs_sync.db.embedded import require_installed
from obs_sync.errors import UsageError
from obs_sync.observability import setup_logging_for
from obs_sync.progress_bar import ProgressBar
from obs_sync.results import DEFAULT_SOURCE
from obs_sync.text import plural

log = logging.getLogger("obs_sync.sync")

if TYPE_CHECKING:
    from obs_sync.config import Config
    from obs_sync.engine.control import RunControl
    from obs_sync.results import RunResult, VdnResult

log = logging.getLogger("obs_sync.sync")


class _Interrupts:
    """SIGINT/SIGTERM during ``obs-sync sync``, as the daemon handles them.

    The first stops the run (no new VDN; the ones in flight finish, their fetches are
    cancelled after ``schedule.shutdown_timeout_seconds``); the run is recorded ``stopped``
    (``failed`` if a VDN failed), the summary printed, and the exit code is 128 + the
    signal's number. A second aborts at once: the run's record is closed as ``failed``
    ("aborted"), and the process exits, which rolls back the VDN transactions in flight.
    """

    def __init__(self, control: RunControl) -> None:
        self.control = control
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            log.error("%s received again: aborting now; the VDNs in flight are rolled back", name)
            self.control.abort(
                f"aborted by a second signal ({name}): the VDNs in flight were rolled back; "
                "VDNs without a sync_run_vdn row were not applied"
            )
            logging.shutdown()
            os._exit(128 + signum)
        self.received = signum
        log.warning(
            "%s received: stopping (no new VDN starts; the VDNs in flight finish, their "
            "fetches are cancelled after schedule.shutdown_timeout_seconds = %g s); send it "
            "again to abort at once",
            name,
            self.control.stop_timeout,
        )
        self.control.request_stop()


def _counts(vdn: VdnResult) -> list[str]:
    return [
        f"+{vdn.inserted}",
        f"~{vdn.updated}",
        f"-{vdn.deleted}",
        f"^{vdn.restored}",
        f"={vdn.unchanged}",
    ]


def format_summary(result: RunResult) -> str:
    """The per-VDN table and a totals line (a SOURCE column once a source other than
    default is in the run: with today's isales: section the table is as it was)."""
    sources = any(vdn.source != DEFAULT_SOURCE for vdn in result.vdns)
    header = ["VDN", "STATUS", "NEW", "CHANGED", "DELETED", "RESTORED", "UNCHANGED", "PAGES"]
    if sources:
        header.insert(0, "SOURCE")
    rows: list[list[str]] = []
    for vdn in result.vdns:
        error = (vdn.error or "").replace("\n", " ")  # last column: shown whole
        row = [str(vdn.vdn_id), vdn.status, *_counts(vdn), str(vdn.pages), error]
        rows.append([vdn.source, *row] if sources else row)
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


def run_sync_command(
    config: Config,
    vdn_ids: Sequence[int],
    *,
    dry_run: bool,
    migrate: bool,
    sources: Sequence[str] = (),
    switch_locale: bool = False,
) -> int:
    check_configured(config, sources, vdn_ids)
    if switch_locale and dry_run:
        raise UsageError("--switch-locale records the switch: it cannot be a --dry-run")
    setup_logging_for(config)
    # A one-shot command: at exit, skip the interpreter's last full garbage collections
    # over every object of every imported module (pydantic, psycopg, requests...), about
    # 0.05 s, a tenth of a small sync. Objects are still released; only cycles are left to
    # the operating system, which reclaims the whole process anyway.
    atexit.register(gc.freeze)

    # After the checks above: a usage error answers before the client and its HTTP stack load.
    from obs_sync.engine.control import RunControl
    from obs_sync.engine.run import run_keys, run_sync

    if config.database.embedded:  # before fetching anything that could not be stored
        require_installed()

    total = len(run_keys(config, list(sources) or None, list(vdn_ids) or None))
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
    control = RunControl(config.schedule.shutdown_timeout_seconds)
    interrupts = _Interrupts(control)
    try:
        with interrupts:
            result = run_sync(
                config,
                vdn_ids=list(vdn_ids) or None,
                sources=list(sources) or None,
                switch_locale=switch_locale,
                dry_run=dry_run,
                migrate=migrate,
                on_vdn=advance if progress is not None else None,
                log_progress=progress is None,  # the bar on a terminal; log lines otherwise
                control=control,
                deadline=deadline,
            )
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)
    for note in result.notes:
        click.echo(f"obs-sync: {note}", err=True)
    click.echo(format_summary(result))
    if interrupts.received is not None:
        return 128 + interrupts.received  # as a shell reports a process a signal ended
    return result.exit_code
