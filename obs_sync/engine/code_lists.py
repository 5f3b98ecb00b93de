"""The other code lists in a run: each VDN's display and business results, fetched in the
VDN's fetch slot after its OBS codes and applied after them, one list at a time.

A source's ``code_lists`` (obs_sync/config/isales.py) say which lists it syncs. Each list
of each VDN has its own result and run record (``sync_run_code_list``): a list that fails
fails only itself (:mod:`obs_sync.store.code_lists`). Not in a dry run (nothing of them is
fetched then: the run says so once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from obs_sync.code_list_diff import ListResult
from obs_sync.code_lists import (
    BUSINESS_RESULTS,
    DISPLAY_RESULTS,
    OBS_RESULT_CODES,
    BusinessResultsSnapshot,
    DisplayResultsSnapshot,
)
from obs_sync.errors import one_line
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_lists import fetch_business_results, fetch_display_results
from obs_sync.isales.errors import AuthenticationError, Cancelled, ISalesError
from obs_sync.results import VdnKey
from obs_sync.snapshot import FetchFailure, FetchStats
from obs_sync.store.code_lists import CodeListStore

if TYPE_CHECKING:
    from obs_sync.config import Config
    from obs_sync.store.store import Store

log = logging.getLogger("obs_sync.sync")

Fetcher = Callable[..., DisplayResultsSnapshot | BusinessResultsSnapshot]
FETCHERS: dict[str, Fetcher] = {
    DISPLAY_RESULTS: fetch_display_results,
    BUSINESS_RESULTS: fetch_business_results,
}


@dataclass(frozen=True)
class FetchedList:
    """One list of one VDN as fetched, or why it could not be."""

    code_list: str
    started: float  # time.monotonic() when its fetch began
    snapshot: DisplayResultsSnapshot | BusinessResultsSnapshot | FetchFailure
    at: datetime | None = None  # the same on the database clock, if known then


class CodeLists:
    """The lists a run syncs besides OBS codes, and their results (thread-safe)."""

    def __init__(self, config: Config, redact: Callable[[str], str], *, dry_run: bool) -> None:
        self.wanted = {
            source.name: tuple(n for n in source.code_lists if n != OBS_RESULT_CODES)
            for source in config.sources
        }
        self.baselines = {s.name: s.first_sync_as_baseline for s in config.sources}
        self.sync = config.sync
        self.redact = redact
        self.dry_run = dry_run
        self.results: list[ListResult] = []
        self._lock = threading.Lock()
        self._store: CodeListStore | None = None

    def fetch(
        self, client: ISalesClient, key: VdnKey, now: Callable[[], datetime | None]
    ) -> tuple[FetchedList, ...]:
        """Every list the VDN's source syncs; a rejected signature or a cancel ends it (the
        caller's fail-fast counts the OBS codes' fetch)."""
        source, vdn_id = key
        if self.dry_run:
            return ()
        fetched: list[FetchedList] = []
        for name in self.wanted.get(source, ()):
            started, at = time.monotonic(), now()
            try:
                snapshot = FETCHERS[name](client, vdn_id, source=source)
            except (AuthenticationError, Cancelled) as error:
                failure = FetchFailure(self.redact(_short(error, vdn_id)), error.kind)
                fetched.append(FetchedList(name, started, failure, at))
                break  # asking again would only be rejected again
            except ISalesError as error:
                failure = FetchFailure(
                    self.redact(_short(error, vdn_id)), error.kind, error.stats or FetchStats()
                )
                fetched.append(FetchedList(name, started, failure, at))
                continue
            fetched.append(FetchedList(name, started, snapshot, at))
        return tuple(fetched)

    def apply(
        self, store: Store, run_id: int | None, key: VdnKey, lists: Sequence[FetchedList]
    ) -> list[ListResult]:
        """Apply (or record the failure of) each fetched list, in its own transaction."""
        if self.dry_run or run_id is None or not lists:
            return []
        if self._store is None:
            self._store = CodeListStore(store.pool, store.schema)
        results = []
        for fetched in lists:
            started_at = fetched.at if fetched.at is not None else store.db_time(fetched.started)
            snapshot = fetched.snapshot
            try:
                if isinstance(snapshot, FetchFailure):
                    result = self._store.record_failed(
                        run_id,
                        key[0],
                        key[1],
                        fetched.code_list,
                        error=snapshot.error,
                        kind=snapshot.kind,
                        started_at=started_at,
                        stats=snapshot.stats,
                    )
                else:
                    result = self._store.apply(
                        run_id,
                        snapshot,
                        started_at=started_at,
                        max_code_bytes=self.sync.max_code_bytes,
                        max_delete_fraction=self.sync.max_delete_fraction,
                        baseline=self.baselines.get(key[0], False),
                    )
            except Exception as error:  # the record itself could not be written
                log.exception("cannot apply %s of VDN %s", fetched.code_list, key[1])
                result = ListResult(
                    *key[:1],
                    key[1],
                    fetched.code_list,
                    "failed",
                    started_at,
                    error=self.redact(f"database error: {one_line(error)}"),
                    error_kind="database",
                )
            _log(result)
            results.append(result)
        with self._lock:
            self.results.extend(results)
        return results

    def failing(self) -> list[ListResult]:
        with self._lock:
            return [r for r in self.results if not r.ok]


def _short(error: BaseException, vdn_id: int) -> str:
    return one_line(error).removeprefix(f"VDN {vdn_id}: ")


def _log(result: ListResult) -> None:
    if result.ok and result.status == "succeeded":
        log.info(
            "VDN %s %s: %s (+%d ~%d -%d, %d unchanged)",
            result.vdn_id,
            result.code_list,
            result.status,
            result.inserted + result.restored,
            result.updated,
            result.deleted,
            result.unchanged,
        )
    else:
        log.warning(
            "VDN %s %s: %s: %s", result.vdn_id, result.code_list, result.status, result.error
        )
