"""One run from start to record: :func:`run_sync`."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from obs_sync import logcontext
from obs_sync.config.sources import servers
from obs_sync.db.errors import is_database_error
from obs_sync.engine.control import RunControl
from obs_sync.engine.prepare import Aborted, Prepared
from obs_sync.engine.report import log_run
from obs_sync.engine.workers import Lane, Workers
from obs_sync.errors import ObsSyncError, one_line
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.events import RequestEvent
from obs_sync.locales import RunSource
from obs_sync.progress import ProgressLogger
from obs_sync.ratelimit import RateLimiter
from obs_sync.results import (
    RunResult,
    VdnKey,
    VdnResult,
    fetch_failed,
    not_reached,
    not_started,
    run_status,
)
from obs_sync.snapshot import FetchFailure
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


def run_keys(
    config: Config, sources: Sequence[str] | None, vdn_ids: Sequence[int] | None
) -> list[VdnKey]:
    """The (source, vdn_id) a run covers: every configured VDN of ``sources`` (default:
    every source), or of those only ``vdn_ids``. With one source selected, ``vdn_ids`` are
    taken as they are (the command checks that they are configured)."""
    selected = [config.source(name) for name in sources] if sources else list(config.sources)
    if vdn_ids is None:
        return [(source.name, vdn) for source in selected for vdn in source.vdn_list]
    wanted = list(dict.fromkeys(vdn_ids))
    if len(selected) == 1:
        return [(selected[0].name, vdn) for vdn in wanted]
    return [(source.name, vdn) for source in selected for vdn in wanted if vdn in source.vdn_list]


def run_sync(
    config: Config,
    *,
    vdn_ids: Sequence[int] | None = None,
    sources: Sequence[str] | None = None,
    switch_locale: bool = False,
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
    """Sync ``vdn_ids`` of ``sources`` (default: every configured VDN of every source)
    once (:func:`run_keys`). ``switch_locale``: a source whose configured locale differs
    from its data's is switched (one recorded event) instead of refused.

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
    keys = run_keys(config, sources, vdn_ids)
    names = [s.name for s in config.sources if not sources or s.name in sources]
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
        keys=keys,
        full=vdn_ids is None and not sources,
        sources=[_run_source(config, name) for name in names],
        switch_locale=names if switch_locale else (),
    )
    prepared.thread.start()
    try:
        with logcontext.bind(run=pending):
            return _run(
                config,
                prepared,
                keys,
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


def _run_source(config: Config, name: str) -> RunSource:
    index, source = next((i, s) for i, s in enumerate(config.sources) if s.name == name)
    key = "isales.locale" if config.legacy else f"sources[{index}].locale"
    return RunSource(name, source.effective_locale, key)


def _clients(
    config: Config, keys: Sequence[VdnKey], on_request: Callable[[RequestEvent], None] | None
) -> tuple[dict[str, ISalesClient], list[Lane]]:
    """One client per source of the run, sharing a rate limiter per server; one lane of
    workers per server."""
    used = {key[0] for key in keys}
    clients: dict[str, ISalesClient] = {}
    lanes: list[Lane] = []
    for server in servers(config.sources):
        limiter = RateLimiter(server.max_requests_per_second)
        for source in server.sources:
            if source.name in used:
                clients[source.name] = ISalesClient(source, on_request=on_request, limiter=limiter)
        names = {source.name for source in server.sources}
        lane_keys = [key for key in keys if key[0] in names]
        if lane_keys:
            lanes.append(Lane(server, lane_keys))
    return clients, lanes


def _run(
    config: Config,
    prepared: Prepared,
    keys: list[VdnKey],
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
        clients, lanes = _clients(config, keys, on_request)
        with contextlib.ExitStack() as closing:
            for client in clients.values():
                closing.enter_context(client)
            run = Workers(
                config,
                clients,
                prepared,
                keys=keys,
                lanes=lanes,
                dry_run=dry_run,
                stop=stop,
                deadline=deadline,
                on_vdn=on_vdn,
            )
            if control is not None:
                control.workers = run
            # Each worker says when it has ended: after a Thread.join() interrupted by an
            # exception (KeyboardInterrupt), a join was seen to return while its thread still
            # ran (CPython 3.11), so after an interrupt the run waits for these instead.
            ended = [threading.Event() for lane in lanes for _ in range(lane.workers)]
            slots = iter(ended)
            threads = [
                threading.Thread(
                    target=_worker,
                    args=(run, lane, next(slots)),
                    name=f"obs-sync-vdn-{n}-{i}",
                    daemon=True,
                )
                for n, lane in enumerate(lanes)
                for i in range(lane.workers)
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
                    for thread, done in zip(threads, ended, strict=True):
                        if thread.ident is not None:  # (started)
                            done.wait()
            for lane in lanes:
                lane.fetching.close()  # (every worker has ended: none can use it)
        store = prepared.wait()  # raises Aborted when preparation failed
        handle = prepared.handle
        now = store.now()
        unstarted = [
            _unstarted(run, key, now, interrupted) for key in keys if key not in run.results
        ]
        if unstarted:
            log.warning("%s %s", plural(len(unstarted), "VDN"), unstarted[0].error)
            if on_vdn is not None:
                for result in unstarted:
                    on_vdn(result)
        position = {key: index for index, key in enumerate(keys)}
        ordered = sorted([*run.results.values(), *unstarted], key=lambda r: position[r.key])
        status = run_status(ordered)
        notes = list(prepared.notes)
        failing_lists = run.lists.failing()  # display and business results (code_lists.py)
        if failing_lists and status == "succeeded":
            status = "failed"
        notes += [result.line() for result in failing_lists]
        if dry_run and any(run.lists.wanted.values()):
            notes.append("dry run: the other code lists (display, business results) not fetched")
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
            code_lists=run.lists.results,
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


def _worker(run: Workers, lane: Lane, ended: threading.Event) -> None:
    try:
        run.worker(lane)
    finally:
        ended.set()


def _unstarted(
    run: Workers, key: VdnKey, now: datetime, interrupted: BaseException | None
) -> VdnResult:
    """The record of a VDN no worker took, saying why."""
    source, vdn = key
    refusal = run.prepared.refused().get(source)
    if refusal is not None:  # not fetched: its source's locale is not its data's
        return fetch_failed(source, vdn, now, now, FetchFailure(refusal.error, "locale"))
    trip = run.failfast[source].trip
    if trip is not None:
        return not_started(source, vdn, now, trip.reason, trip.error)
    reason = run.stopping()
    if reason is not None:
        return not_started(source, vdn, now, reason)
    if interrupted is not None:
        what = type(interrupted).__name__
        error = f"not started: the run was interrupted ({what})"
        return not_started(source, vdn, now, "stopped", error)
    return not_reached(source, vdn, now)
