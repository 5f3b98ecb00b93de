"""The threads of one run: each fetches a VDN (in a bounded fetch slot), applies it, records
its result, and takes the next.

A run covers every source (obs_sync/config/sources.py). The VDNs of one server (base_url)
form a :class:`Lane`, with its own threads and fetch slots: sources on one server share its
concurrency bound (and, through their clients, its rate limit), other servers are not held
up by it. Fail-fast (obs_sync/failfast.py) counts per source: a server that is down or a
key it rejects stops only that source's VDNs."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from obs_sync import logcontext
from obs_sync.db.errors import is_database_error
from obs_sync.engine.code_lists import CodeLists, FetchedList
from obs_sync.engine.prepare import Aborted, Prepared
from obs_sync.engine.report import log_result
from obs_sync.engine.slots import FetchSlots
from obs_sync.errors import one_line
from obs_sync.failfast import FailFast
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.long_codes import without_long_codes
from obs_sync.observability import redactor_for
from obs_sync.progress import Progress
from obs_sync.results import (
    VdnKey,
    VdnPlan,
    VdnResult,
    fetch_failed,
    label,
    not_started,
)
from obs_sync.snapshot import FetchFailure, FetchStats, Snapshot

if TYPE_CHECKING:
    from obs_sync.config import Config, Server
    from obs_sync.store.store import Store

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


def _short(error: BaseException, vdn_id: int) -> str:
    return one_line(error).removeprefix(f"VDN {vdn_id}: ")


class Lane:
    """The VDNs of one server, in order, and the fetch slots its sources share."""

    def __init__(self, server: Server, keys: Sequence[VdnKey]) -> None:
        self.server = server
        self.pending: deque[VdnKey] = deque(keys)
        self.size = len(keys)
        # The server never sees more than its max_concurrency requests at once, while the
        # other workers write the VDNs they fetched (slots.py: why not a threading semaphore).
        self.fetching = FetchSlots(server.max_concurrency)

    @property
    def workers(self) -> int:
        """Threads for this lane: twice its fetch slots (one VDN is written while others
        fetch), never more than it has VDNs."""
        return min(2 * self.server.max_concurrency, max(self.size, 1))


class Workers:
    """The state one run's workers share."""

    def __init__(
        self,
        config: Config,
        clients: Mapping[str, ISalesClient],
        prepared: Prepared,
        *,
        keys: Sequence[VdnKey],
        lanes: Sequence[Lane],
        dry_run: bool,
        stop: threading.Event | None,
        deadline: float | None,
        on_vdn: Callable[[VdnResult], None] | None,
    ) -> None:
        self.config = config
        self.clients = clients  # one per source
        # Error text can quote the server (a body echoing a secret): masked before it is
        # stored, shown by `status` or put in a /healthz reason, as logging masks it.
        self.redact = redactor_for(config)
        self.prepared = prepared
        self.dry_run = dry_run
        self.stop = stop
        self.deadline = deadline
        self.on_vdn = on_vdn
        self.progress = Progress(len(keys))
        self.lanes = list(lanes)
        self.lock = threading.Lock()
        self.results: dict[VdnKey, VdnResult] = {}
        self.aborted = False
        # Set when the caller's thread was interrupted (an exception while it waited): no
        # new VDN starts, fetches in progress are cancelled.
        self.interrupted = False
        # Stops asking a source's server after repeated rejections or unreachable VDNs.
        sync = config.sync
        self.failfast = {
            source.name: FailFast(
                sync.max_auth_failures,
                sync.max_unreachable_vdns,
                keys=_keys_of(config, index),
            )
            for index, source in enumerate(config.sources)
        }
        self.locales = {source.name: source.effective_locale for source in config.sources}
        self.baselines = {s.name: s.first_sync_as_baseline for s in config.sources}
        self.lists = CodeLists(config, self.redact, dry_run=dry_run)  # display, business
        # The configuration keys a source's messages name (isales.base_url of the client's
        # wording becomes sources[1].base_url for a sources: list).
        self.keys = {
            source.name: _keys_of(config, index) for index, source in enumerate(config.sources)
        }

    def record_unapplied(self, store: Store, result: VdnResult) -> VdnResult:
        """A VDN that wrote nothing: its record is batched (none in a dry run)."""
        run_id = self.prepared.run_id
        if not self.dry_run and run_id is not None:
            store.record_later(run_id, result)
        return result

    def startable(self, source: str) -> bool:
        """False for a source that tripped fail-fast or was refused for its locale."""
        if self.failfast[source].trip is not None:
            return False
        return source not in self.prepared.refused()

    def next_vdn(self, lane: Lane) -> VdnKey | None:
        with self.lock:
            if self.aborted or self.interrupted or self.stopping() is not None:
                return None
            while lane.pending:
                key = lane.pending.popleft()
                if self.startable(key[0]):
                    return key
                # Not started: recorded at the run's end with its source's reason.
            return None

    def interrupt(self) -> None:
        """No new VDN starts; fetches in progress end at their next request or retry."""
        with self.lock:
            self.interrupted = True
        for client in self.clients.values():
            client.cancel()

    def stopping(self) -> Literal["stopped", "deadline"] | None:
        if self.stop is not None and self.stop.is_set():
            return "stopped"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None

    def worker(self, lane: Lane) -> None:
        # Threads do not inherit contextvars: bind the run once for everything logged here.
        with logcontext.bind(run=self.prepared.log_run):
            try:
                while (fetched := self.fetch_next(lane)) is not None:
                    with logcontext.bind(vdn=fetched.vdn_id):
                        self.finish(self.settle(fetched))
                        self.apply_lists(fetched)
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
            log.exception("unexpected error applying %s", label(*fetched.key))
            store = self.prepared.store_if_ready()
            at = store.now() if store is not None else datetime.now(timezone.utc)
            message = self.redact(f"internal error: {_short(error, fetched.vdn_id)}")
            failed = fetch_failed(*fetched.key, at, at, FetchFailure(message))
            run_id = self.prepared.run_id
            if store is not None and not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed

    def fetch_next(self, lane: Lane) -> Fetched | None:
        """Fetch the lane's next VDN, or None when none is left (or the run stops)."""
        # A VDN is taken only when a fetch slot is free, so VDNs start in order and a stop
        # request leaves the ones not fetched yet unstarted.
        with lane.fetching:
            key = self.next_vdn(lane)
            if key is None:
                return None
            with logcontext.bind(vdn=key[1]):
                fetched = self.fetch(key)
            # Counted before the slot is released: a worker waiting for it must see the
            # trip, or it would ask the server once more.
            self.observe(fetched)
        return fetched

    def observe(self, fetched: Fetched) -> None:
        """Count the fetch's outcome for fail-fast; trip it when a threshold is reached."""
        failure = fetched.snapshot if isinstance(fetched.snapshot, FetchFailure) else None
        if failure is not None and failure.kind == "cancelled":
            return
        source = fetched.key[0]
        with self.lock:
            trip = self.failfast[source].observe(
                failure.kind if failure else None, failure.status if failure else None
            )
        if trip is not None:
            log.error(
                "asking the server of source %s for no more VDNs in this run: %s",
                source,
                trip.error,
            )
            self.clients[source].cancel()  # the fetches in flight would only add to it

    def finish(self, result: VdnResult) -> None:
        with self.lock:
            self.results[result.key] = result
        self.progress.record(result)
        log_result(result, self.dry_run)
        if self.on_vdn is not None:
            try:
                self.on_vdn(result)
            except Exception:
                log.exception("on_vdn callback failed (ignored)")

    def fetch(self, key: VdnKey) -> Fetched:
        """The VDN's snapshot, or why it could not be fetched."""
        # When the fetch begins, on the database clock: this instant orders the snapshot
        # against other processes' (an older one is never applied over a newer one).
        # Estimated from the store's latest database clock reading, which every statement
        # of the run refreshes, so there is no round trip here; the first fetches, which
        # do not wait for the database side, are mapped once the run's first reading is in.
        source, vdn_id = key
        started = time.monotonic()
        store = self.prepared.store_if_ready()
        at = store.now() if store is not None else None
        client = self.clients[source]

        def lists() -> tuple[FetchedList, ...]:
            return self.lists.fetch(client, key, lambda: store.now() if store else None)

        try:
            snapshot = client.fetch_snapshot(vdn_id)
            return Fetched(key, started, snapshot, at=at, lists=lists())
        except ISalesError as error:
            # What the failed fetch cost goes to the run record.
            message = self.redact(_short(error, vdn_id))
            if self.keys[source] != "isales":
                message = message.replace("isales.", f"{self.keys[source]}.")
            failure = FetchFailure(
                message,
                error.kind,
                error.stats or FetchStats(),
                getattr(error, "status", None),
            )
            # The other lists are asked for too, unless the key was rejected or the run
            # is ending.
            more = () if error.kind in ("auth", "cancelled") else lists()
            return Fetched(key, started, failure, at=at, lists=more)
        except Exception as error:  # a bug must not take the other VDNs down
            log.exception("unexpected error fetching %s", label(*key))
            failure = FetchFailure(self.redact(f"internal error: {_short(error, vdn_id)}"))
            return Fetched(key, started, failure, at=at)

    def apply_lists(self, fetched: Fetched) -> None:
        """The VDN's other code lists (engine/code_lists.py), after its result is recorded
        (so an interrupted run never records the VDN twice); not for a refused source."""
        if not fetched.lists or self.prepared.refused().get(fetched.key[0]) is not None:
            return
        try:
            self.lists.apply(self.prepared.wait(), self.prepared.run_id, fetched.key, fetched.lists)
        except Aborted:
            raise
        except Exception:  # recorded per list where possible; never the worker's end
            log.exception("unexpected error applying the code lists of %s", label(*fetched.key))

    def apply(self, fetched: Fetched) -> VdnResult:
        store = self.prepared.wait()
        # When the fetch began, on the database clock.
        started_at = fetched.at if fetched.at is not None else store.db_time(fetched.started)
        snapshot = fetched.snapshot
        source = fetched.key[0]
        refusal = self.prepared.refused().get(source)
        if refusal is not None:  # its locale is not the one its data is in: nothing written
            refused = fetch_failed(
                *fetched.key, started_at, store.now(), FetchFailure(refusal.error, "locale")
            )
            return self.record_unapplied(store, refused)
        if isinstance(snapshot, FetchFailure) and snapshot.kind == "cancelled":
            # Fail-fast tripped, or interrupted past the bound, while fetching: nothing of
            # it is applied.
            trip = self.failfast[source].trip
            if trip is not None:
                skipped = not_started(*fetched.key, store.now(), trip.reason, trip.error)
            else:
                skipped = not_started(
                    *fetched.key,
                    store.now(),
                    "stopped",
                    "stopped while fetching: not applied",
                )
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, skipped)
            return skipped
        if isinstance(snapshot, FetchFailure):
            failed = fetch_failed(*fetched.key, started_at, store.now(), snapshot)
            run_id = self.prepared.run_id
            if not self.dry_run and run_id is not None:
                store.record_later(run_id, failed)
            return failed
        sync = self.config.sync
        plan = VdnPlan(
            source,
            without_long_codes(snapshot, sync.max_code_bytes),
            started_at,
            sync.max_delete_fraction,
            sync.max_lock_skips,
            locale=self.locales[source],
            relabel=fetched.key in self.prepared.source_state.relabel,
            baseline=self.baselines[source],
        )
        if self.dry_run:  # the same decisions as apply_vdn's, from an unlocked read
            return store.dry_apply(plan, stored=self.prepared.has_tables)
        run_id = self.prepared.run_id
        assert run_id is not None
        try:
            return store.apply_vdn(run_id, plan)
        except Exception as error:  # e.g. the database is unreachable even for the record
            log.exception("cannot apply %s", label(*plan.key))
            kind = "database" if is_database_error(error) else "internal"
            message = self.redact(f"{kind} error: {_short(error, 0)}")
            return plan.failed(message, store.now(), kind)


@dataclass(frozen=True)
class Fetched:
    """One VDN's fetch: its snapshot, or why it failed (with what it cost)."""

    key: VdnKey
    started: float  # time.monotonic() when the fetch began
    snapshot: Snapshot | FetchFailure
    at: datetime | None = None  # the same on the database clock, if known then
    lists: tuple[FetchedList, ...] = ()  # its other code lists

    @property
    def vdn_id(self) -> int:
        return self.key[1]


def _keys_of(config: Config, index: int) -> str:
    """The configuration keys of source ``index``, as its fixes name them."""
    return "isales" if config.legacy else f"sources[{index}]"
