"""The outcome of a sync, per VDN and per run: the statuses, and the one place that decides them.

Plain data and pure functions, cheap to import (``obs-sync sync`` starts fetching before
the database side is ready; see :mod:`obs_sync.engine`). The store reads and writes; a
:class:`VdnPlan` (one fetched VDN) tells it what changes and what the VDN's result is, and
:func:`run_status` decides a run's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from obs_sync.diff import Changes, StoredCode, compute_changes, find_unstorable
from obs_sync.errors import EXIT_FAILED, EXIT_OK
from obs_sync.snapshot import FetchFailure, Snapshot

VdnStatus = Literal["succeeded", "failed", "incomplete", "skipped", "guarded"]
RunStatus = Literal["running", "succeeded", "failed", "stopped", "abandoned"]

VDN_STATUSES: tuple[VdnStatus, ...] = ("succeeded", "failed", "incomplete", "skipped", "guarded")
# A VDN is failing from its first result in this set until its next success ("skipped" is
# neither: the VDN was not tried). Health, metrics, the status query and the run's own
# status read it from here.
FAILING: frozenset[VdnStatus] = frozenset({"failed", "incomplete", "guarded"})
FAILING_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(FAILING)) + ")"  # an SQL IN list

# Why a VDN failed, for logs and tools: the iSales error's kind (auth, vendor, data,
# http_status, transport), or data (unstorable codes), database or internal.
ErrorKind = str

SkipReason = Literal["locked", "superseded", "stopped", "deadline", "auth_rejected", "unreachable"]
# Why a run started no more VDNs: a stop (signal, shutdown), its deadline, or fail-fast
# (obs_sync.failfast: credentials rejected again and again, the server unreachable).
NotStartedReason = Literal["stopped", "deadline", "auth_rejected", "unreachable"]
# Skips that are not failures: another process has (or had) the VDN, with data as new.
LEFT_TO_OTHERS: frozenset[SkipReason] = frozenset({"locked", "superseded"})
LOCKED_ERROR = "another session holds this VDN's lock"  # the start of a lock skip's error
SUPERSEDED_ERROR = "superseded"  # the start of the error of a superseded VDN
STOPPED_ERROR = "not started: stop requested"
DEADLINE_ERROR = "not started: run deadline exceeded"
INT4_MAX = 2**31 - 1  # the run records' integer columns
# The source (obs_sync.config: one iSales server and key, in one locale) of a configuration
# written with the single ``isales:`` section, and of every row stored before sources existed.
DEFAULT_SOURCE = "default"
VdnKey = tuple[str, int]  # (source, vdn_id): what identifies a VDN everywhere


def label(source: str, vdn_id: int) -> str:
    """How messages name a VDN: ``VDN 3``, or ``VDN 3 of north`` for a source other than
    default (a configuration with one isales: section reads as it always did)."""
    return f"VDN {vdn_id}" if source == DEFAULT_SOURCE else f"VDN {vdn_id} of {source}"


@dataclass(frozen=True)
class VdnResult:
    """One VDN of one run: what was fetched and what was applied (a ``sync_run_vdn`` row)."""

    source: str  # the configured source (config.sources[].name) the VDN belongs to
    vdn_id: int
    status: VdnStatus
    started_at: datetime
    finished_at: datetime
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    unchanged: int = 0
    withheld: int = 0  # deletions withheld by the mass-deletion guard
    # Descriptions replaced by their translation after the source's switch of locale (not
    # counted in updated: docs/semantics.md, "Languages").
    relabelled: int = 0
    pages: int = 0
    requests: int = 0
    total_count: int | None = None
    error: str | None = None
    # Why a VDN was not applied: "locked" (its lock was held: skipped, or failed once that
    # happened sync.max_lock_skips runs in a row), "superseded" (a newer snapshot was
    # already applied: not a failure), "stopped" (stop requested) or "deadline" (run
    # deadline passed), "auth_rejected" / "unreachable" (not attempted: the run stopped
    # asking, obs_sync.failfast); None otherwise.
    skip_reason: SkipReason | None = None
    error_kind: ErrorKind | None = None  # set for "failed": see ErrorKind

    @property
    def key(self) -> VdnKey:
        return (self.source, self.vdn_id)

    @property
    def label(self) -> str:
        """``VDN 3``, or ``VDN 3 of north`` for a source other than default (for messages)."""
        return label(self.source, self.vdn_id)

    @property
    def empty(self) -> bool:
        """Succeeded with the server reporting no code at all (totalCount 0): allowed by the
        semantics, but a configured VDN that is empty is usually a wrong id."""
        return self.status == "succeeded" and self.total_count == 0

    @property
    def category(self) -> str | None:
        """What went wrong, as one word for logs and tools; None when it succeeded."""
        if self.status == "succeeded":
            return None
        if self.status == "failed":
            return self.error_kind or self.skip_reason or "failed"
        if self.status == "skipped":
            return self.skip_reason or "skipped"
        return self.status  # incomplete, guarded

    def fields(self) -> dict[str, Any]:
        """The result as structured log fields (documented in docs/operations.md, "Logs")."""
        return {
            "event": "vdn_result",
            "source": self.source,
            "vdn": self.vdn_id,
            "status": self.status,
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "restored": self.restored,
            "unchanged": self.unchanged,
            "withheld": self.withheld,
            "relabelled": self.relabelled,
            "pages": self.pages,
            "requests": self.requests,
            "total_count": self.total_count,
            "empty": self.empty,
            "duration_seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
            "error_category": self.category,
        }

    @property
    def ok(self) -> bool:
        """Counts as success for the exit code: succeeded, or left to another process."""
        return self.status == "succeeded" or (
            self.status == "skipped" and self.skip_reason in LEFT_TO_OTHERS
        )


def not_started(
    source: str, vdn_id: int, at: datetime, reason: NotStartedReason, error: str | None = None
) -> VdnResult:
    """A VDN the run did not start: stop requested, the run's deadline passed, or the run
    stopped asking the server (``error`` then says why and what to fix)."""
    if error is None:
        error = DEADLINE_ERROR if reason == "deadline" else STOPPED_ERROR
    return VdnResult(
        source, vdn_id, "skipped", started_at=at, finished_at=at, error=error, skip_reason=reason
    )


NOT_REACHED_ERROR = (
    "not applied: the worker that took it ended unexpectedly, or none was left to take it "
    "(an internal error: see the log)"
)


def not_reached(source: str, vdn_id: int, at: datetime) -> VdnResult:
    """A VDN that no worker took although nothing asked the run to stop (a bug)."""
    return VdnResult(
        source,
        vdn_id,
        "failed",
        started_at=at,
        finished_at=at,
        error=NOT_REACHED_ERROR,
        error_kind="internal",
    )


def fetch_failed(
    source: str, vdn_id: int, started_at: datetime, finished_at: datetime, failure: FetchFailure
) -> VdnResult:
    """A VDN that could not be fetched: nothing of it was written; its fetch cost is kept."""
    return VdnResult(
        source,
        vdn_id,
        "failed",
        started_at=started_at,
        finished_at=max(finished_at, started_at),  # both database clock; the end estimated
        pages=failure.stats.pages,
        requests=failure.stats.requests,
        error=failure.error,
        error_kind=failure.kind,
    )


@dataclass(frozen=True)
class VdnPlan:
    """One fetched VDN about to be applied: its snapshot and the rules that judge it.

    The store reads the stored codes and asks the plan what changes (:meth:`changes`) and
    what the VDN's result is (:meth:`outcome`, :meth:`failed`, :meth:`locked`): it writes
    SQL, the decisions are made here."""

    source: str  # the source the snapshot was fetched from
    snapshot: Snapshot
    started_at: datetime  # when the fetch began, on the database clock
    max_delete_fraction: float
    max_lock_skips: int = 3  # sync.max_lock_skips
    # The locale of the snapshot's descriptions; relabel: the VDN's stored ones are in
    # another (the source switched language): its changed descriptions are not changes.
    locale: str = "zh_CN"
    relabel: bool = False
    baseline: bool = False  # first_sync_as_baseline: the initial load valid since ever

    @property
    def vdn_id(self) -> int:
        return self.snapshot.vdn_id

    @property
    def key(self) -> VdnKey:
        return (self.source, self.snapshot.vdn_id)

    @property
    def codes(self) -> Mapping[str, str]:
        return self.snapshot.codes

    @property
    def incomplete_reason(self) -> str | None:
        """None when the snapshot is complete (only then may it delete rows)."""
        if self.snapshot.complete:
            return None
        return self.snapshot.incomplete_reason or "reason unknown"

    @property
    def _selector(self) -> str:
        """The command-line options that select this VDN (``--source`` unless default)."""
        vdn = f"--vdn {self.vdn_id}"
        return vdn if self.source == DEFAULT_SOURCE else f"--source {self.source} {vdn}"

    def unstorable(self) -> str | None:
        """Why PostgreSQL cannot store this snapshot (then nothing is applied), or None."""
        total = self.snapshot.stats.total_count
        if total is not None and not 0 <= total <= INT4_MAX:
            return (
                f"data error: the server reported totalCount {total}, outside 0..{INT4_MAX} "
                "(no VDN has that many codes): its answer is wrong; nothing stored"
            )
        problems = find_unstorable(self.snapshot.codes)
        if not problems:
            return None
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"data error: {problems[0]}{more}"

    def changes(self, stored: Mapping[str, StoredCode]) -> Changes:
        """What applying the snapshot over ``stored`` writes (see :mod:`obs_sync.diff`)."""
        return compute_changes(
            stored,
            self.snapshot.codes,
            complete=self.snapshot.complete,
            max_delete_fraction=self.max_delete_fraction,
        )

    def _result(self, status: VdnStatus, finished_at: datetime, **fields: Any) -> VdnResult:
        stats = self.snapshot.stats
        total = stats.total_count
        return VdnResult(
            self.source,
            self.vdn_id,
            status,
            started_at=self.started_at,
            # Both on the database clock, the finish estimated from this host's clock: never
            # shown before the start.
            finished_at=max(finished_at, self.started_at),
            pages=stats.pages,
            requests=stats.requests,
            total_count=total if total is None or 0 <= total <= INT4_MAX else None,
            **fields,
        )

    def outcome(self, changes: Changes, present: int, finished_at: datetime) -> VdnResult:
        """The VDN's status, counts and error once ``changes`` are applied (or would be).

        ``present``: how many codes were stored as present before (for the guard's message).
        """
        status: VdnStatus = "succeeded"
        error = None
        if self.incomplete_reason is not None:
            status = "incomplete"
            error = f"incomplete snapshot, nothing deleted: {self.incomplete_reason}"
        elif changes.guarded:
            status = "guarded"
            error = (
                f"mass-deletion guard: {len(changes.withheld_deletes)} of {present} present "
                f"codes are missing from a complete snapshot, more than "
                f"sync.max_delete_fraction = {self.max_delete_fraction}; deletions withheld "
                f"(the other changes are not held back). If the deletion is real: "
                f"obs-sync sync {self._selector} --max-delete-fraction 1"
            )
        return self._result(
            status,
            finished_at,
            inserted=len(changes.inserts),
            updated=0 if self.relabel else len(changes.updates),
            relabelled=len(changes.updates) if self.relabel else 0,
            deleted=len(changes.deletes),
            restored=len(changes.restores),
            unchanged=changes.unchanged,
            withheld=len(changes.withheld_deletes),
            error=error,
        )

    def failed(self, error: str, finished_at: datetime, kind: ErrorKind) -> VdnResult:
        """The VDN could not be applied: nothing of it was written."""
        return self._result("failed", finished_at, error=error, error_kind=kind)

    def locked(self, finished_at: datetime, holder: str | None, streak: int) -> VdnResult:
        """Another session held the VDN's lock: left to it, not a failure, until that has
        happened ``max_lock_skips`` runs in a row (``streak`` counts this one): then the
        VDN is failed, since nothing has been written to it for that long.

        ``holder`` describes the session holding the lock (None: released meanwhile).
        """
        who = f" ({holder})" if holder else ""
        if streak < self.max_lock_skips:
            error = f"{LOCKED_ERROR}{who}; left to it"
            return self._result("skipped", finished_at, error=error, skip_reason="locked")
        error = (
            f"not synced: this VDN's lock was held by another session{who} in "
            f"{streak} runs in a row (sync.max_lock_skips = {self.max_lock_skips}); nothing "
            "written meanwhile. If that session is not an obs-sync sync, end it (SELECT "
            "pg_terminate_backend(pid))"
        )
        return self._result("failed", finished_at, error=error, skip_reason="locked")

    def superseded(self, newer: datetime, finished_at: datetime) -> VdnResult:
        """A snapshot whose fetch began later (at ``newer``) already wrote this VDN: this
        older one is not applied over it (not a failure: the VDN has newer data)."""
        error = (
            f"{SUPERSEDED_ERROR}: another obs-sync process applied a snapshot of this VDN "
            f"fetched after this one began ({newer.isoformat()} > "
            f"{self.started_at.isoformat()}); this older one was not applied"
        )
        return self._result("skipped", finished_at, error=error, skip_reason="superseded")


def run_status(results: Sequence[VdnResult]) -> RunStatus:
    """A finished run's status: failed if any VDN is failing, stopped if any was not tried."""
    if any(r.status in FAILING for r in results):
        return "failed"
    if any(not r.ok for r in results):
        return "stopped"
    return "succeeded"


@dataclass
class RunResult:
    """One run: its VDNs' results in configured order, and what the operator is told once."""

    run_id: int | None  # None for a dry run (nothing recorded)
    status: RunStatus
    vdns: list[VdnResult]
    started_at: datetime
    finished_at: datetime
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # said once to the operator (CLI prints)
    record_error: str | None = None  # the run's own record could not be closed
    code_lists: list[Any] = field(default_factory=list)  # code_list_diff.ListResult each

    @property
    def exit_code(self) -> int:
        """0 when each VDN and code list succeeded or was left to others, and the record closed."""
        ok = self.record_error is None and all(r.ok for r in [*self.vdns, *self.code_lists])
        return EXIT_OK if ok else EXIT_FAILED

    def total(self, name: str) -> int:
        return sum(int(getattr(vdn, name)) for vdn in self.vdns)

    def fields(self) -> dict[str, Any]:
        """The run as structured log fields (documented in docs/operations.md, "Logs")."""
        by_status: dict[str, int] = {}
        for vdn in self.vdns:
            by_status[vdn.status] = by_status.get(vdn.status, 0) + 1
        return {
            "event": "run_result",
            "run": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "vdns": len(self.vdns),
            "vdns_by_status": by_status,
            "vdns_empty": sum(1 for vdn in self.vdns if vdn.empty),
            **{
                name: self.total(name)
                for name in (
                    "inserted",
                    "updated",
                    "deleted",
                    "restored",
                    "unchanged",
                    "withheld",
                    "pages",
                    "requests",
                )
            },
            "duration_seconds": round((self.finished_at - self.started_at).total_seconds(), 3),
        }
