"""Daemon health: a pure verdict over what the recent runs did, plus a thread-safe tracker.

Rules (documented in docs/operations.md):

* ``ok`` while the last run finished before its staleness deadline (``due``: 2 x the
  interval after that finish, or for cron the second fire time after it; see
  :mod:`obs_sync.scheduler`) and no VDN, nor any other code list of a VDN (display or
  business results), has been failing for longer than ``metrics.max_failing_minutes``;
* ``starting`` (still healthy) before the first run has finished, as long as the
  deadline computed from the daemon's start has not passed;
* otherwise ``unhealthy`` with a short reason.

The verdict is also given per source (``Health.sources``, ``/healthz?source=NAME``): a run
covers every source, so an overdue run makes each of them unhealthy; a VDN (or a list)
failing too long makes its own source unhealthy (and the whole daemon, whose verdict is the
worst).

A VDN is *failing* from its first ``failed``, ``incomplete`` or ``guarded`` result until its
next ``succeeded`` one; ``skipped`` (shutdown, run deadline, another replica holding the
VDN's lock) neither starts nor ends a streak. Each other code list of a VDN has its own
streak by the same rule, from its own results (``sync_run_code_list``): the VDN's OBS codes
succeeding does not end it. A run that could not start at all (database down) counts as a
failure of every configured VDN (its lists are not counted again: the VDNs say it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from obs_sync.code_lists import ListKey
from obs_sync.results import DEFAULT_SOURCE, FAILING, VdnKey
from obs_sync.text import duration, plural

HealthStatus = Literal["ok", "starting", "unhealthy"]
# What has a failure streak: a VDN (its OBS result codes) or one of its other code lists.
Subject = VdnKey | ListKey


def vdn_name(key: VdnKey) -> str:
    """``VDN 3``, or ``VDN 3 of source north`` for a source other than ``default``."""
    source, vdn_id = key
    return f"VDN {vdn_id}" if source == DEFAULT_SOURCE else f"VDN {vdn_id} of source {source}"


def subject_name(key: Subject) -> str:
    """:func:`vdn_name`, or for a list ``VDN 3 display_results`` (``... of source north``)."""
    if len(key) == 2:
        return vdn_name(key)
    source, vdn_id, code_list = key
    where = "" if source == DEFAULT_SOURCE else f" of source {source}"
    return f"VDN {vdn_id} {code_list}{where}"


def count_subjects(keys: Iterable[Subject], *, more: bool = False) -> str:
    """``2 VDNs``, ``1 code list``, ``1 VDN and 2 code lists`` (``more``: ``1 more VDN``)."""
    keys = list(keys)
    lists = sum(1 for key in keys if len(key) == 3)
    extra = "more " if more else ""
    counts = [(len(keys) - lists, "VDN"), (lists, "code list")]
    return " and ".join(plural(n, extra + what) for n, what in counts if n)


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    reason: str
    # Per configured source, its own verdict (empty: not broken down).
    sources: tuple[tuple[str, Health], ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "unhealthy"

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def source(self, name: str) -> Health | None:
        return dict(self.sources).get(name)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.sources:
            body["sources"] = {name: h.as_dict() for name, h in self.sources}
        return body

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict()).encode()


@dataclass
class Failure:
    since: datetime  # first failure of the current streak
    count: int  # consecutive failing results
    error: str | None  # the latest error


@dataclass
class HealthState:
    started_at: datetime
    last_finished_at: datetime | None = None
    # VDNs, (source, vdn_id), and code lists of VDNs, (source, vdn_id, code_list).
    failing: dict[Subject, Failure] = field(default_factory=dict)
    # Runs found abandoned (their process is gone) since this daemon's last finished run.
    abandoned: str | None = None


def _minutes(delta: timedelta) -> str:
    return duration(delta.total_seconds(), largest="min", whole_units=True)


def evaluate(
    state: HealthState,
    now: datetime,
    *,
    due: Callable[[datetime], datetime],
    max_failing: timedelta,
    sources: Sequence[str] = (),
) -> Health:
    """The verdict for ``state`` at ``now``, broken down by ``sources`` (the configured
    ones; a source with failing VDNs or lists that is not listed is added).

    ``due(t)`` is when a run is overdue if the last one finished (or the daemon started)
    at ``t``. Runs found abandoned are said in a healthy verdict's reason (the unhealthy
    ones say what is wrong first).
    """
    verdict = _with_abandoned(state, _evaluate(state, now, due=due, max_failing=max_failing))
    if not sources:
        return verdict
    names = list(dict.fromkeys([*sources, *sorted({key[0] for key in state.failing})]))
    per_source = tuple(
        (name, _with_abandoned(state, _evaluate(state, now, due, max_failing, name)))
        for name in names
    )
    return Health(verdict.status, verdict.reason, per_source)


def _with_abandoned(state: HealthState, verdict: Health) -> Health:
    if verdict.ok and state.abandoned:
        reason = f"{verdict.reason}; {state.abandoned}" if verdict.reason else state.abandoned
        return Health(verdict.status, reason)
    return verdict


def _evaluate(
    state: HealthState,
    now: datetime,
    due: Callable[[datetime], datetime],
    max_failing: timedelta,
    source: str | None = None,
) -> Health:
    """The verdict of every source (``source`` None) or of one."""
    failing = {
        key: failure for key, failure in state.failing.items() if source is None or key[0] == source
    }
    if state.last_finished_at is None:
        deadline = due(state.started_at)
        if now > deadline:
            started = f"{state.started_at:%Y-%m-%dT%H:%M:%S%z}"
            return Health("unhealthy", f"no run has finished since the daemon started {started}")
    else:
        deadline = due(state.last_finished_at)
        if now > deadline:
            return Health(
                "unhealthy",
                f"last run finished {_minutes(now - state.last_finished_at)} ago "
                f"(overdue since {deadline:%Y-%m-%dT%H:%M:%S%z})",
            )
    too_long = sorted(
        (key, failure) for key, failure in failing.items() if now - failure.since > max_failing
    )
    if too_long:
        key, failure = min(too_long, key=lambda item: item[1].since)
        rest = [other for other, _ in too_long if other != key]
        others = f" (and {count_subjects(rest, more=True)})" if rest else ""
        error = f": {failure.error}" if failure.error else ""
        return Health(
            "unhealthy",
            f"{subject_name(key)} failing for {_minutes(now - failure.since)}{others}{error}",
        )
    if state.last_finished_at is None:
        return Health("starting", "waiting for the first run to finish")
    if failing:
        return Health(
            "ok",
            f"{count_subjects(failing)} failing, for less than {_minutes(max_failing)}",
        )
    return Health("ok", "")


class HealthTracker:
    """Collects run outcomes from the scheduler thread; answers /healthz from HTTP threads."""

    def __init__(
        self,
        *,
        started_at: datetime,
        due: Callable[[datetime], datetime],
        max_failing: timedelta,
        clock: Callable[[], datetime],
        sources: Sequence[str] = (DEFAULT_SOURCE,),
    ) -> None:
        """``sources``: the configured source names, each given its own verdict."""
        self._state = HealthState(started_at=started_at)
        self._sources = tuple(sources)
        self._due = due
        self._max_failing = max_failing
        self._clock = clock
        self._lock = threading.Lock()

    def record_vdn(self, key: VdnKey, status: str, error: str | None, at: datetime) -> None:
        """One VDN's result; ``key`` is (source, vdn_id) (``VdnResult.key``)."""
        self._record(key, status, error, at)

    def record_code_list(self, key: ListKey, status: str, error: str | None, at: datetime) -> None:
        """One list of one VDN; ``key`` is (source, vdn_id, code_list) (``ListResult.key``)."""
        self._record(key, status, error, at)

    def _record(self, key: Subject, status: str, error: str | None, at: datetime) -> None:
        with self._lock:
            if status == "succeeded":
                self._state.failing.pop(key, None)
            elif status in FAILING:
                current = self._state.failing.get(key)
                if current is None:
                    self._state.failing[key] = Failure(since=at, count=1, error=error)
                else:
                    current.count += 1
                    current.error = error or current.error

    def seed_failing(self, failures: Mapping[Subject, Failure]) -> None:
        """Streaks recorded before this process started (read from the run records), so a
        restart, or a crash loop, does not hide a VDN (or a list) failing for days."""
        with self._lock:
            for key, failure in failures.items():
                current = self._state.failing.get(key)
                if current is None:
                    self._state.failing[key] = failure
                elif failure.since < current.since:  # e.g. after runs with the database down
                    current.since = failure.since
                    current.count = max(current.count, failure.count)

    def record_run_error(self, keys: Iterable[VdnKey], error: str, at: datetime) -> None:
        """A run that could not sync anything (e.g. the database is down): every
        configured (source, vdn_id) failed."""
        for key in keys:
            self.record_vdn(key, "failed", error, at)
        self.record_run_finished(at)

    def record_run_finished(self, at: datetime) -> None:
        with self._lock:
            self._state.last_finished_at = at
            self._state.abandoned = None

    def record_abandoned(self, run_ids: Iterable[int], at: datetime) -> None:
        """Runs found dead (their process gone) and marked abandoned, e.g. a replica's."""
        ids = ", ".join(str(run) for run in run_ids)
        with self._lock:
            self._state.abandoned = (
                f"run {ids} abandoned at {at:%Y-%m-%dT%H:%M:%S%z}: its process is gone"
            )

    def failing(self) -> dict[Subject, Failure]:
        with self._lock:
            return {
                key: Failure(f.since, f.count, f.error) for key, f in self._state.failing.items()
            }

    def check(self) -> Health:
        """The daemon's verdict, with each configured source's own."""
        with self._lock:
            return evaluate(
                self._state,
                self._clock(),
                due=self._due,
                max_failing=self._max_failing,
                sources=self._sources,
            )
