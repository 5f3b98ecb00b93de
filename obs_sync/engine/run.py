"""One run from start to record: :func:`run_sync`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from obs_sync import logcontext
from obs_sync.db.errors import is_database_error
from obs_sync.engine.control import RunControl
from obs_sync.engine.prepare import Aborted, Prepared
from obs_sync.engine.report import log_run
from obs_sync.engine.sizing import worker_count
from obs_sync.engine.workers import Workers
from obs_sync.errors import ObsSyncError, one_line
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.events import RequestEvent
from obs_sync.progress import ProgressLogger
from obs_sync.results import (
    DEFAULT_SOURCE,
    RunResult,
    VdnResult,
    not_reached,
    not_started,
    run_status,
)
from obs_sync.text import plural

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config
    from obs_sync.store.store import Store

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


def _prune(store: Store, keep_days: float) -> None:
    """Retention of run records; a failure here never fails the run (the next one retries)."""
    try:
        store.prune_run_records(keep_days)
    except Exception as error:
        log.warning("pruning old run records failed (the next run retries): %s", error)


def run_sync(
    config: Config,
    *,
    vdn_ids: Sequence[int] | None = None,
    dry_run: bool = False,
    migrate: bool = True,
    engine: Engine | None = None,
    trigger: str = "cli",
    on_vdn: Callable[[VdnResult], None] | None = None,
    on_request: Callable[[RequestEvent], None] | None = None,
    stop: threading.Event | None = None,
    deadline: float | None = None,
    log_run: logcontext.PendingRun | None = None,
    log_progress: bool = True,
    control: RunControl | None = None,
) -> RunResult:
    """Sync ``vdn_ids`` (default: every configured VDN) once.

    Raises :class:`obs_sync.db.migrate.MigrationError` when the schema cannot be used, and
    psycopg (or, for a migration, SQLAlchemy) errors when the database cannot be reached
    at all (nothing was recorded).
    Per-VDN problems never raise: they are in the returned results and run records.
    ``stop`` set / ``deadline`` (a ``time.monotonic()`` value) passed: no new VDN starts;
    the ones not started are recorded as skipped. With ``engine`` given, it is used and
    left open (the daemon keeps one for its life); otherwise one is made and disposed.
    ``log_run``: bound by a caller that logs about the run too; resolved with the run id.
    ``log_progress``: a progress line every ``logging.progress_interval_seconds`` (off when
    the caller shows progress itself, e.g. a progress bar on a terminal).
    ``control``: a :class:`~obs_sync.engine.control.RunControl` whose ``stop`` replaces
    ``stop`` (signal handlers).
    After the run, run records older than ``sync.keep_run_records_days`` are pruned.
    """
    vdns = list(dict.fromkeys(vdn_ids)) if vdn_ids is not None else config.isales.vdn_list
    if control is not None:
        stop = control.stop
    pending = log_run if log_run is not None else logcontext.PendingRun()
    prepared = Prepared(
        config,
        engine,
        dry_run=dry_run,
        migrate=migrate,
        trigger=trigger,
        log_run=pending,
        vdns=vdns,
        full=vdn_ids is None,
    )
    prepared.thread.start()
    try:
        with logcontext.bind(run=pending):
            return _run(
                config,
                prepared,
                vdns,
                dry_run,
                on_vdn,
                on_request,
                stop,
                deadline,
                config.logging.progress_interval_seconds if log_progress else 0,
                control,
            )
    finally:
        pending.resolve(None)  # no-op once the run has its id; else writes the held lines


def _run(
    config: Config,
    prepared: Prepared,
    vdns: list[int],
    dry_run: bool,
    on_vdn: Callable[[VdnResult], None] | None,
    on_request: Callable[[RequestEvent], None] | None,
    stop: threading.Event | None,
    deadline: float | None,
    progress_interval: float,
    control: RunControl | None,
) -> RunResult:
    started_at = datetime.now(timezone.utc)
    interrupted: BaseException | None = None
    try:
        with ISalesClient(config.isales, on_request=on_request) as client:
            run = Workers(
                config,
                client,
                prepared,
                vdn_ids=vdns,
                dry_run=dry_run,
                stop=stop,
                deadline=deadline,
                on_vdn=on_vdn,
            )
            if control is not None:
                control.workers = run
            workers = min(worker_count(config), max(len(vdns), 1))
            threads = [
                threading.Thread(target=run.worker, name=f"obs-sync-vdn-{i}", daemon=True)
                for i in range(workers)
            ]
            with ProgressLogger(run.progress, progress_interval, prepared.log_run):
                for thread in threads:
                    thread.start()
                try:
                    for thread in threads:
                        thread.join()
                except BaseException as error:  # e.g. KeyboardInterrupt in this thread
                    # No worker outlives the run: none starts a VDN now, fetches end at
                    # their next request, the VDN transactions in flight commit or roll back.
                    interrupted = error
                    run.interrupt()
                    for thread in threads:
                        thread.join()
            run.fetching.close()  # (every worker has ended: none can use it)
        store = prepared.wait()  # raises Aborted when preparation failed
        handle = prepared.handle
        now = store.now()
        unstarted = [
            _unstarted(run, vdn, now, interrupted) for vdn in vdns if vdn not in run.results
        ]
        if unstarted:
            log.warning("%s %s", plural(len(unstarted), "VDN"), unstarted[0].error)
            if on_vdn is not None:
                for result in unstarted:
                    on_vdn(result)
        position = {vdn: index for index, vdn in enumerate(vdns)}
        ordered = sorted([*run.results.values(), *unstarted], key=lambda r: position[r.vdn_id])
        status = run_status(ordered)
        notes = list(prepared.notes)
        record_error: str | None = None
        if handle is not None:
            started_at = handle.started_at
            prepared.stop_heartbeat()
            try:
                finished_at = store.finish_run(handle, status, ordered, unrecorded=unstarted)
            except Exception as error:
                # The VDNs' own records are committed; only the run's row stays open, and
                # readers show it ended at its last heartbeat (its liveness lock is gone).
                if not (is_database_error(error) or isinstance(error, ObsSyncError)):
                    raise
                record_error = one_line(error)
                log.error(
                    "run %d synced its VDNs (%s) but its run record could not be closed: %s",
                    handle.run_id,
                    status,
                    record_error,
                )
                notes.append(f"the run record could not be closed: {record_error}")
                finished_at = datetime.now(timezone.utc)
            else:
                _prune(store, config.sync.keep_run_records_days)
        else:
            finished_at = datetime.now(timezone.utc)
        outcome = RunResult(
            run_id=prepared.run_id,
            status=status,
            vdns=ordered,
            started_at=started_at,
            finished_at=finished_at,
            dry_run=dry_run,
            notes=notes,
            record_error=record_error,
        )
        log_run(outcome)
        if interrupted is not None:
            raise interrupted
        return outcome
    except Aborted:
        assert prepared.error is not None
        raise prepared.error from None
    finally:
        prepared.ready.wait()
        prepared.stop_heartbeat()
        handle = prepared.handle
        if handle is not None and not handle.lease.released and prepared.store is not None:
            # Interrupted between start_run and finish_run (an exception, KeyboardInterrupt):
            # close the run as failed if we still can; otherwise it shows as abandoned once
            # its heartbeat is old (its liveness lock goes with the connection).
            try:
                prepared.store.finish_run(handle, "failed", [], error="run aborted by an error")
            except Exception:
                handle.lease.discard()
        if prepared.own_engine and prepared.pool is not None:
            prepared.pool.close()


def _unstarted(
    run: Workers, vdn: int, now: datetime, interrupted: BaseException | None
) -> VdnResult:
    """The record of a VDN no worker took, saying why."""
    trip = run.failfast.trip
    if trip is not None:
        return not_started(DEFAULT_SOURCE, vdn, now, trip.reason, trip.error)
    reason = run.stopping()
    if reason is not None:
        return not_started(DEFAULT_SOURCE, vdn, now, reason)
    if interrupted is not None:
        what = type(interrupted).__name__
        return not_started(
            DEFAULT_SOURCE, vdn, now, "stopped", f"not started: the run was interrupted ({what})"
        )
    return not_reached(DEFAULT_SOURCE, vdn, now)
