"""The threads of one run: each fetches a VDN (in a bounded fetch slot), applies it, records
its result, and takes the next."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from obs_sync import logcontext
from obs_sync.db.errors import is_database_error
from obs_sync.engine.prepare import Aborted, Prepared
from obs_sync.engine.report import log_result
from obs_sync.engine.slots import FetchSlots
from obs_sync.errors import one_line
from obs_sync.failfast import FailFast
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.observability import redactor_for
from obs_sync.progress import Progress
from obs_sync.results import (
    DEFAULT_SOURCE,
    VdnPlan,
    VdnResult,
    fetch_failed,
    not_started,
    without_long_codes,
)
from obs_sync.snapshot import FetchFailure, FetchStats, Snapshot

if TYPE_CHECKING:
    from obs_sync.config import Config

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


def _short(error: BaseException, vdn_id: int) -> str:
    return one_line(error).removeprefix(f"VDN {vdn_id}: ")


class Workers:
    """The state one run's workers share."""

    def __init__(
        self,
        config: Config,
        client: ISalesClient,
        prepared: Prepared,
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
        # while the other workers write the VDNs they fetched (slots.py: why not a
        # threading semaphore).
        self.fetching = FetchSlots(config.isales.max_concurrency)

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
            except Aborted:
                with self.lock:
                    self.aborted = True

    def settle(self, fetched: Fetched) -> VdnResult:
        """Apply one fetched VDN; an unexpected error fails that VDN, never the worker (a
        worker that died would leave its VDNs unrecorded)."""
        try:
            return self.apply(fetched)
        except Aborted:
            raise
        except Exception as error:
            log.exception("unexpected error applying VDN %d", fetched.vdn_id)
            store = self.prepared.store_if_ready()
            at = store.now() if store is not None else datetime.now(timezone.utc)
            message = self.redact(f"internal error: {_short(error, fetched.vdn_id)}")
            failed = fetch_failed(DEFAULT_SOURCE, fetched.vdn_id, at, at, FetchFailure(message))
            run_id = self.prepared.run_id
            if store is not None and not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed

    def fetch_next(self) -> Fetched | None:
        """Fetch the next VDN, or None when none is left (or the run stops)."""
        # A VDN is taken only when a fetch slot is free, so VDNs start in order and a stop
        # request leaves the ones not fetched yet unstarted.
        with self.fetching:
            vdn_id = self.next_vdn()
            if vdn_id is None:
                return None
            with logcontext.bind(vdn=vdn_id):
                fetched = self.fetch(vdn_id)
            # Counted before the slot is released: a worker waiting for it must see the
            # trip, or it would ask the server once more.
            self.observe(fetched)
        return fetched

    def observe(self, fetched: Fetched) -> None:
        """Count the fetch's outcome for fail-fast; trip it when a threshold is reached."""
        failure = fetched.snapshot if isinstance(fetched.snapshot, FetchFailure) else None
        if failure is not None and failure.kind == "cancelled":
            return
        with self.lock:
            trip = self.failfast.observe(
                failure.kind if failure else None, failure.status if failure else None
            )
        if trip is not None:
            log.error("asking the server for no more VDNs in this run: %s", trip.error)
            self.client.cancel()  # the fetches in flight would only add to it

    def finish(self, result: VdnResult) -> None:
        with self.lock:
            self.results[result.vdn_id] = result
        self.progress.record(result)
        log_result(result, self.dry_run)
        if self.on_vdn is not None:
            try:
                self.on_vdn(result)
            except Exception:
                log.exception("on_vdn callback failed (ignored)")

    def fetch(self, vdn_id: int) -> Fetched:
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
            return Fetched(vdn_id, started, self.client.fetch_snapshot(vdn_id), at=at)
        except ISalesError as error:
            # What the failed fetch cost goes to the run record.
            failure = FetchFailure(
                self.redact(_short(error, vdn_id)),
                error.kind,
                error.stats or FetchStats(),
                getattr(error, "status", None),
            )
            return Fetched(vdn_id, started, failure, at=at)
        except Exception as error:  # a bug must not take the other VDNs down
            log.exception("unexpected error fetching VDN %d", vdn_id)
            failure = FetchFailure(self.redact(f"internal error: {_short(error, vdn_id)}"))
            return Fetched(vdn_id, started, failure, at=at)

    def apply(self, fetched: Fetched) -> VdnResult:
        store = self.prepared.wait()
        # When the fetch began, on the database clock.
        started_at = fetched.at if fetched.at is not None else store.db_time(fetched.started)
        snapshot = fetched.snapshot
        if isinstance(snapshot, FetchFailure) and snapshot.kind == "cancelled":
            # Fail-fast tripped, or interrupted past the bound, while fetching: nothing of
            # it is applied.
            trip = self.failfast.trip
            if trip is not None:
                skipped = not_started(
                    DEFAULT_SOURCE, fetched.vdn_id, store.now(), trip.reason, trip.error
                )
            else:
                skipped = not_started(
                    DEFAULT_SOURCE,
                    fetched.vdn_id,
                    store.now(),
                    "stopped",
                    "stopped while fetching: not applied",
                )
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, skipped)
            return skipped
        if isinstance(snapshot, FetchFailure):
            failed = fetch_failed(DEFAULT_SOURCE, fetched.vdn_id, started_at, store.now(), snapshot)
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed
        sync = self.config.sync
        plan = VdnPlan(
            DEFAULT_SOURCE,
            without_long_codes(snapshot, sync.max_code_bytes),
            started_at,
            sync.max_delete_fraction,
            sync.max_lock_skips,
        )
        if self.dry_run:  # the same decisions as apply_vdn's, from an unlocked read
            return store.dry_apply(plan, stored=self.prepared.has_tables)
        run_id = self.prepared.run_id
        assert run_id is not None
        try:
            return store.apply_vdn(run_id, plan)
        except Exception as error:  # e.g. the database is unreachable even for the record
            log.exception("cannot apply VDN %d", plan.vdn_id)
            kind = "database" if is_database_error(error) else "internal"
            message = self.redact(f"{kind} error: {_short(error, 0)}")
            return plan.failed(message, store.now(), kind)


@dataclass(frozen=True)
class Fetched:
    """One VDN's fetch: its snapshot, or why it failed (with what it cost)."""

    vdn_id: int
    started: float  # time.monotonic() when the fetch began
    snapshot: Snapshot | FetchFailure
    at: datetime | None = None  # the same on the database clock, if known then
