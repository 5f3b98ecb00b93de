"""One sync run: fan out the VDNs (bounded), fetch -> diff -> apply each, record the run.

The only module that knows both the iSales client and the store exist. Workers pull VDN
ids one at a time, so memory is bounded by the VDNs in flight, not by the data set: each
worker fetches a VDN, applies it in its own transaction, and drops it before taking the
next. There are ``2 x isales.max_concurrency`` workers and ``max_concurrency`` fetch slots:
while some workers write, the others keep every slot fetching, and the server never sees
more than ``max_concurrency`` requests at once.

Start-up is overlapped: the workers start fetching at once while another thread connects,
checks (or applies) migrations and opens the run record; a worker waits for that only
when it has a snapshot to apply. A one-shot ``obs-sync sync`` talks to PostgreSQL with
plain psycopg (its own small pool) and imports SQLAlchemy and Alembic only when a
migration is due; with an ``engine`` (the daemon), the store borrows the engine's
connections.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from obs_sync import __version__, logcontext
from obs_sync.db.errors import is_database_error
from obs_sync.errors import ObsSyncError, one_line
from obs_sync.failfast import FailFast
from obs_sync.heartbeat import Heartbeat
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.isales.events import RequestEvent
from obs_sync.observability import FIELDS, redactor_for
from obs_sync.progress import Progress, ProgressLogger
from obs_sync.results import (
    RunResult,
    VdnPlan,
    VdnResult,
    fetch_failed,
    not_reached,
    not_started,
    run_status,
    without_long_codes,
)
from obs_sync.snapshot import FetchStats, Snapshot
from obs_sync.text import plural

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config
    from obs_sync.db.pool import Pool
    from obs_sync.store.runs import RunHandle
    from obs_sync.store.store import Store

log = logging.getLogger(__name__)


def worker_count(config: Config) -> int:
    """Threads per run: twice the fetch slots, so one VDN is written while others fetch.

    Fetching is behind a semaphore of ``isales.max_concurrency``: the server never sees
    more requests at once, and at most this many snapshots are in memory.
    """
    return 2 * config.isales.max_concurrency


def connections_per_run(config: Config) -> int:
    """Database connections one run uses at most: every worker, plus the run's own."""
    return worker_count(config) + 1


def _short(error: BaseException, vdn_id: int) -> str:
    return one_line(error).removeprefix(f"VDN {vdn_id}: ")


def _log_result(result: VdnResult, dry_run: bool) -> None:
    counts = (
        f"+{result.inserted} ~{result.updated} -{result.deleted} ^{result.restored} "
        f"={result.unchanged}"
    )
    verb = "would apply" if dry_run else "applied"
    # The result as fields too: JSON logs carry them as keys (observability.FIELDS).
    extra = {FIELDS: result.fields()}
    if result.empty:
        log.warning(
            "VDN %d is empty: the server reports totalCount 0 for it; a configured VDN "
            "without codes is usually a wrong id in isales.vdn_ids (%s %s)",
            result.vdn_id,
            verb,
            counts,
            extra=extra,
        )
    elif result.status == "succeeded":
        log.debug("VDN %d succeeded: %s %s", result.vdn_id, verb, counts, extra=extra)
    elif result.status == "guarded":
        log.error(
            "VDN %d GUARDED: %d deletions withheld; %s %s. %s",
            result.vdn_id,
            result.withheld,
            verb,
            counts,
            result.error,
            extra=extra,
        )
    elif result.status == "incomplete":
        log.warning(
            "VDN %d incomplete (%s %s): %s", result.vdn_id, verb, counts, result.error, extra=extra
        )
    elif result.status == "failed":
        log.warning("VDN %d failed: %s", result.vdn_id, result.error, extra=extra)
    else:
        log.info("VDN %d skipped: %s", result.vdn_id, result.error, extra=extra)


def _log_run(result: RunResult) -> None:
    """One line per run with its result, also as fields (the daemon and ``sync`` alike)."""
    fields = result.fields()
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(fields["vdns_by_status"].items()))
    what = "dry run" if result.dry_run else f"run {result.run_id}"
    empty = f"; {plural(fields['vdns_empty'], 'empty VDN')}" if fields["vdns_empty"] else ""
    log.info(
        "%s finished: %s in %.1f s (%s); +%d ~%d -%d ^%d =%d; %s%s",
        what,
        result.status,
        fields["duration_seconds"],
        by_status or "no VDN",
        fields["inserted"],
        fields["updated"],
        fields["deleted"],
        fields["restored"],
        fields["unchanged"],
        plural(fields["requests"], "request"),
        empty,
        extra={FIELDS: fields},
    )


class _Aborted(Exception):
    """Database preparation failed: workers stop; run_sync re-raises the cause."""


class _Prepared:
    """The database side of a run, made ready in the background (see the module doc)."""

    def __init__(
        self,
        config: Config,
        engine: Engine | None,
        *,
        dry_run: bool,
        migrate: bool,
        trigger: str,
        log_run: logcontext.PendingRun,
        vdns: Sequence[int] = (),
        full: bool = True,
    ) -> None:
        self.config = config
        # The VDN registry's configured flags (obs_sync/store/registry.py): a full run sets them
        # all, a --vdn run only its own.
        self.register = (list(vdns), full)
        # The run's log lines wait for its id, known once start_run has inserted the row.
        self.log_run = log_run
        if dry_run:
            log_run.resolve("dry-run")
        self.engine = engine
        self.own_engine = engine is None
        self.dry_run = dry_run
        self.migrate = migrate
        self.trigger = trigger
        self.pool: Pool | None = None
        self.store: Store | None = None
        self.handle: RunHandle | None = None
        self.heartbeat: Heartbeat | None = None
        self.has_tables = True
        self.notes: list[str] = []
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._prepare, name="obs-sync-db", daemon=True)

    def _prepare(self) -> None:
        with logcontext.bind(run=self.log_run):  # a thread of its own: bind again
            self._prepare_bound()

    def _prepare_bound(self) -> None:
        try:
            # Imported in this thread on purpose: psycopg's import overlaps the first fetches.
            from obs_sync.db import url as db_url
            from obs_sync.db.pool import EnginePool, OwnPool
            from obs_sync.store.registry import register_vdns
            from obs_sync.store.store import Store

            if self.engine is not None:
                self.pool = EnginePool(self.engine)
            else:  # one-shot: plain psycopg, no SQLAlchemy unless a migration is due
                url = db_url.database_url(self.config)
                database = self.config.database
                log.info(
                    "database: %s",
                    db_url.describe_database(url, database.schema_, embedded=database.embedded),
                )
                params = db_url.connect_params(url)
                params.update(db_url.session_args(self.config, params.get("options")))
                self.pool = OwnPool(params, connections_per_run(self.config))
            schema = self.config.database.schema_
            store = Store(self.pool, schema)
            if self.dry_run:
                self.has_tables = store.tables_exist()
                if not self.has_tables:
                    self.notes.append(
                        f"schema {schema} has no obs-sync tables yet: compared against an "
                        "empty store"
                    )
            else:
                # Tables this run created are empty: the store skips its no-change pre-reads.
                store.created = self._migrate(schema)
                with self.pool.connection() as connection:
                    register_vdns(connection, schema, self.register[0], full=self.register[1])
                self.store = store  # before anything else can fail: the run gets closed
                self.handle = store.start_run(
                    trigger=self.trigger,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    version=__version__,
                    heartbeat_seconds=self.config.sync.heartbeat_seconds,
                )
                interval = self.config.sync.heartbeat_seconds
                self.heartbeat = Heartbeat(store, self.handle, interval).start()
                self.log_run.resolve(self.handle.run_id)
            self.store = store
        except BaseException as error:
            self.error = error
        finally:
            self.ready.set()

    def _migrate(self, schema: str) -> bool:
        """Check the schema version with one query; only a schema behind pays for Alembic.

        Returns True when this call created obs-sync's tables (the schema was at base).
        """
        # In this thread for the same reason; Alembic itself loads only for an upgrade.
        from obs_sync.db import migrate
        from obs_sync.db.engine import single_use_engine
        from obs_sync.db.revision import read_revision

        assert self.pool is not None
        with self.pool.connection() as connection:
            current = read_revision(connection, schema)
        if not migrate.needs_upgrade(current, schema, migrate=self.migrate):
            return False
        engine = self.engine if self.engine is not None else single_use_engine(self.config)
        try:
            before, after = migrate.upgrade(engine, schema)
        finally:
            if engine is not self.engine:
                engine.dispose()
        if before != after:
            log.info("migrated schema %s from %s to %s", schema, before or "base", after)
        return before is None and after is not None

    def wait(self) -> Store:
        self.ready.wait()
        if self.store is None or self.error is not None:
            raise _Aborted
        return self.store

    def store_if_ready(self) -> Store | None:
        """The store, if the database side is ready now (never waits for it)."""
        return self.store if self.ready.is_set() and self.error is None else None

    @property
    def run_id(self) -> int | None:
        return self.handle.run_id if self.handle is not None else None

    def stop_heartbeat(self) -> None:
        """Before the run's record is closed (the heartbeat shares its connection)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()


class _Run:
    """The state one run's workers share."""

    def __init__(
        self,
        config: Config,
        client: ISalesClient,
        prepared: _Prepared,
        *,
        vdn_ids: Sequence[int],
        dry_run: bool,
        stop: threading.Event | None,
        deadline: float | None,
        on_vdn: Callable[[VdnResult], None] | None,
    ) -> None:
        self.config = config
        self.client = client
        # Error text can quote the server (a body echoing a secret): masked before it is
        # stored, shown by `status` or put in a /healthz reason, as logging masks it.
        self.redact = redactor_for(config)
        self.prepared = prepared
        self.dry_run = dry_run
        self.stop = stop
        self.deadline = deadline
        self.on_vdn = on_vdn
        self.progress = Progress(len(vdn_ids))
        self.pending: Iterator[int] = iter(vdn_ids)
        self.lock = threading.Lock()
        self.results: dict[int, VdnResult] = {}
        self.aborted = False
        # Set when the caller's thread was interrupted (an exception while it waited): no
        # new VDN starts, fetches in progress are cancelled.
        self.interrupted = False
        # Stops asking the server after repeated rejections or unreachable VDNs.
        sync = config.sync
        self.failfast = FailFast(sync.max_auth_failures, sync.max_unreachable_vdns)
        # Fetch slots: the server never sees more than max_concurrency requests at once,
        # while the other workers write the VDNs they fetched.
        self.fetching = threading.BoundedSemaphore(config.isales.max_concurrency)

    def next_vdn(self) -> int | None:
        with self.lock:
            if self.aborted or self.interrupted or self.failfast.trip is not None:
                return None
            if self.stopping() is not None:
                return None
            return next(self.pending, None)

    def interrupt(self) -> None:
        """No new VDN starts; fetches in progress end at their next request or retry."""
        with self.lock:
            self.interrupted = True
        self.client.cancel()

    def stopping(self) -> Literal["stopped", "deadline"] | None:
        if self.stop is not None and self.stop.is_set():
            return "stopped"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None

    def worker(self) -> None:
        # Threads do not inherit contextvars: bind the run once for everything logged here.
        with logcontext.bind(run=self.prepared.log_run):
            try:
                while (fetched := self.fetch_next()) is not None:
                    with logcontext.bind(vdn=fetched.vdn_id):
                        self.finish(self.settle(fetched))
            except _Aborted:
                with self.lock:
                    self.aborted = True

    def settle(self, fetched: _Fetched) -> VdnResult:
        """Apply one fetched VDN; an unexpected error fails that VDN, never the worker (a
        worker that died would leave its VDNs unrecorded)."""
        try:
            return self.apply(fetched)
        except _Aborted:
            raise
        except Exception as error:
            log.exception("unexpected error applying VDN %d", fetched.vdn_id)
            store = self.prepared.store_if_ready()
            at = store.now() if store is not None else datetime.now(timezone.utc)
            message = self.redact(f"internal error: {_short(error, fetched.vdn_id)}")
            failed = fetch_failed(fetched.vdn_id, at, at, message, FetchStats(), "internal")
            run_id = self.prepared.run_id
            if store is not None and not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed

    def fetch_next(self) -> _Fetched | None:
        """Fetch the next VDN, or None when none is left (or the run stops)."""
        # A VDN is taken only when a fetch slot is free, so VDNs start in order and a stop
        # request leaves the ones not fetched yet unstarted.
        with self.fetching:
            vdn_id = self.next_vdn()
            if vdn_id is None:
                return None
            with logcontext.bind(vdn=vdn_id):
                fetched = self.fetch(vdn_id)
        failed = isinstance(fetched.snapshot, str)
        if fetched.error_kind != "cancelled":
            with self.lock:
                trip = self.failfast.observe(fetched.error_kind if failed else None, fetched.status)
            if trip is not None:
                log.error("asking the server for no more VDNs in this run: %s", trip.error)
                self.client.cancel()  # the fetches in flight would only add to it
        return fetched

    def finish(self, result: VdnResult) -> None:
        with self.lock:
            self.results[result.vdn_id] = result
        self.progress.record(result)
        _log_result(result, self.dry_run)
        if self.on_vdn is not None:
            try:
                self.on_vdn(result)
            except Exception:
                log.exception("on_vdn callback failed (ignored)")

    def fetch(self, vdn_id: int) -> _Fetched:
        """The VDN's snapshot, or why it could not be fetched."""
        # When the fetch begins, on the database clock: this instant orders the snapshot
        # against other processes' (an older one is never applied over a newer one).
        # Estimated from the store's latest database clock reading, which every statement
        # of the run refreshes, so there is no round trip here; the first fetches, which
        # do not wait for the database side, are mapped once the run's first reading is in.
        started = time.monotonic()
        store = self.prepared.store_if_ready()
        at = store.now() if store is not None else None
        try:
            return _Fetched(vdn_id, started, self.client.fetch_snapshot(vdn_id), at=at)
        except ISalesError as error:
            # What the failed fetch cost goes to the run record.
            error_text = self.redact(_short(error, vdn_id))
            stats = error.stats or FetchStats()
            status = getattr(error, "status", None)
            return _Fetched(vdn_id, started, error_text, stats, at, error.kind, status)
        except Exception as error:  # a bug must not take the other VDNs down
            log.exception("unexpected error fetching VDN %d", vdn_id)
            error_text = self.redact(f"internal error: {_short(error, vdn_id)}")
            return _Fetched(vdn_id, started, error_text, at=at)

    def apply(self, fetched: _Fetched) -> VdnResult:
        store = self.prepared.wait()
        # When the fetch began, on the database clock.
        started_at = fetched.at if fetched.at is not None else store.db_time(fetched.started)
        snapshot = fetched.snapshot
        if isinstance(snapshot, str) and fetched.error_kind == "cancelled":
            # Fail-fast tripped, or interrupted past the bound, while fetching: nothing of
            # it is applied.
            trip = self.failfast.trip
            if trip is not None:
                skipped = not_started(fetched.vdn_id, store.now(), trip.reason, trip.error)
            else:
                skipped = not_started(
                    fetched.vdn_id, store.now(), "stopped", "stopped while fetching: not applied"
                )
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, skipped)
            return skipped
        if isinstance(snapshot, str):
            failed = fetch_failed(
                fetched.vdn_id,
                started_at,
                store.now(),
                snapshot,
                fetched.failed_stats,
                fetched.error_kind,
            )
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed
        sync = self.config.sync
        plan = VdnPlan(
            without_long_codes(snapshot, sync.max_code_bytes),
            started_at,
            sync.max_delete_fraction,
            sync.max_lock_skips,
        )
        if self.dry_run:
            return self.dry_apply(store, plan)
        run_id = self.prepared.run_id
        assert run_id is not None
        try:
            return store.apply_vdn(run_id, plan)
        except Exception as error:  # e.g. the database is unreachable even for the record
            log.exception("cannot apply VDN %d", plan.vdn_id)
            kind = "database" if is_database_error(error) else "internal"
            message = self.redact(f"{kind} error: {_short(error, 0)}")
            return plan.failed(message, store.now(), kind)

    def dry_apply(self, store: Store, plan: VdnPlan) -> VdnResult:
        """What :meth:`Store.apply_vdn` would do, from an unlocked read; writes nothing."""
        now = datetime.now(timezone.utc)
        problem = plan.unstorable()
        if problem is not None:
            return plan.failed(problem, now, "data")
        stored = store.read_codes(plan.vdn_id) if self.prepared.has_tables else {}
        present = sum(1 for row in stored.values() if not row.deleted)
        return plan.outcome(plan.changes(stored), present, now)


@dataclass(frozen=True)
class _Fetched:
    """One VDN's fetch: its snapshot, or the error text when it failed (with its cost)."""

    vdn_id: int
    started: float  # time.monotonic() when the fetch began
    snapshot: Snapshot | str
    failed_stats: FetchStats = field(default_factory=FetchStats)
    at: datetime | None = None  # the same on the database clock, if known then
    error_kind: str = "internal"  # when the fetch failed: results.ErrorKind
    status: int | None = None  # when it failed on an HTTP status


class RunControl:
    """What a signal handler may do to a run in progress (``obs-sync sync``).

    :meth:`request_stop`: no new VDN starts; after ``stop_timeout`` seconds the fetches
    still going are cancelled (they end at their next request or retry wait), the VDN
    transactions in flight commit or roll back, and the run is recorded as usual.
    :meth:`abort`: the caller exits at once after it; it only closes the run's record
    (``failed``, saying so) on a connection of its own. The process exit then rolls back
    every open VDN transaction: no VDN is half-applied.
    """

    def __init__(self, stop_timeout: float) -> None:
        self.stop = threading.Event()
        self.stop_timeout = stop_timeout
        self._run: _Run | None = None
        self._timer: threading.Timer | None = None

    def request_stop(self) -> None:
        self.stop.set()
        if self._timer is None:
            self._timer = threading.Timer(self.stop_timeout, self._cancel_fetches)
            self._timer.daemon = True
            self._timer.start()

    def _cancel_fetches(self) -> None:
        run = self._run
        if run is not None:
            log.warning(
                "the VDNs in flight did not finish within schedule.shutdown_timeout_seconds "
                "(%g s): cancelling their fetches",
                self.stop_timeout,
            )
            run.interrupt()

    def abort(self, reason: str) -> None:
        """Close the run's record as aborted (best effort, bounded by connect_timeout and
        the statement timeout)."""
        run = self._run
        prepared = run.prepared if run is not None else None
        if prepared is None or prepared.handle is None or prepared.store is None:
            return
        try:
            prepared.store.abort_run(prepared.handle, reason)
        except Exception as error:
            log.error("cannot record the run as aborted: %s", one_line(error))


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
    ``control``: a :class:`RunControl` whose ``stop`` replaces ``stop`` (signal handlers).
    After the run, run records older than ``sync.keep_run_records_days`` are pruned.
    """
    vdns = list(dict.fromkeys(vdn_ids)) if vdn_ids is not None else config.isales.vdn_list
    if control is not None:
        stop = control.stop
    pending = log_run if log_run is not None else logcontext.PendingRun()
    prepared = _Prepared(
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
    prepared: _Prepared,
    vdns: list[int],
    dry_run: bool,
    on_vdn: Callable[[VdnResult], None] | None,
    on_request: Callable[[RequestEvent], None] | None,
    stop: threading.Event | None,
    deadline: float | None,
    progress_interval: float,
    control: RunControl | None = None,
) -> RunResult:
    started_at = datetime.now(timezone.utc)
    interrupted: BaseException | None = None
    try:
        with ISalesClient(config.isales, on_request=on_request) as client:
            run = _Run(
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
                control._run = run
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
        store = prepared.wait()  # raises _Aborted when preparation failed
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
        _log_run(outcome)
        if interrupted is not None:
            raise interrupted
        return outcome
    except _Aborted:
        assert prepared.error is not None
        raise prepared.error from None
    finally:
        prepared.ready.wait()
        prepared.stop_heartbeat()
        handle = prepared.handle
        if handle is not None and not handle.lease.released and prepared.store is not None:
            # Interrupted between start_run and finish_run (an exception, KeyboardInterrupt):
            # close the run as failed if we still can; otherwise the next run marks it
            # abandoned (its liveness lock goes with the connection).
            try:
                prepared.store.finish_run(handle, "failed", [], error="run aborted by an error")
            except Exception:
                handle.lease.discard()
        if prepared.own_engine and prepared.pool is not None:
            prepared.pool.close()


def _unstarted(run: _Run, vdn: int, now: datetime, interrupted: BaseException | None) -> VdnResult:
    """The record of a VDN no worker took, saying why."""
    trip = run.failfast.trip
    if trip is not None:
        return not_started(vdn, now, trip.reason, trip.error)
    reason = run.stopping()
    if reason is not None:
        return not_started(vdn, now, reason)
    if interrupted is not None:
        what = type(interrupted).__name__
        return not_started(vdn, now, "stopped", f"not started: the run was interrupted ({what})")
    return not_reached(vdn, now)
