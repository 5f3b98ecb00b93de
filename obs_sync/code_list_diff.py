"""What changed in one code list of one VDN: each table's rows against the stored ones,
and the list's status.

Pure functions over plain data, with the rules of :func:`obs_sync.diff.compute_changes`
(only a complete list deletes; the mass-deletion guard; a deleted row that comes back is
restored). The rows come from :mod:`obs_sync.code_lists`; the store
(:mod:`obs_sync.store.code_lists`) writes the :class:`ListPlan`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Generic, Literal, TypeVar

from obs_sync.code_lists import (
    BUSINESS_RESULTS,
    DISPLAY_RESULTS,
    BadData,
    BusinessResultsSnapshot,
    CodeListName,
    DisplayResultsSnapshot,
    ListKey,
    business_rows,
    display_rows,
)
from obs_sync.diff import _guard_limit

__all__ = [
    "ListPlan",
    "ListResult",
    "RowChanges",
    "Stored",
    "diff_rows",
    "plan_business_results",
    "plan_display_results",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)

ListStatus = Literal["succeeded", "failed", "incomplete", "guarded"]


@dataclass(frozen=True)
class Stored(Generic[V]):
    """One stored row of a list table: its value columns, and whether it is deleted."""

    value: V
    deleted: bool


@dataclass(frozen=True)
class RowChanges(Generic[K, V]):
    """What applying one fetched table writes. Every tuple is sorted by key."""

    inserts: tuple[tuple[K, V], ...]
    updates: tuple[tuple[K, V, V], ...]  # (key, old, new)
    deletes: tuple[K, ...]
    restores: tuple[tuple[K, V], ...]
    unchanged: int
    withheld: tuple[K, ...]  # deletions the mass-deletion guard withheld

    @property
    def is_empty(self) -> bool:
        return not (self.inserts or self.updates or self.deletes or self.restores)

    @property
    def guarded(self) -> bool:
        return bool(self.withheld)


def _sort_key(item: object) -> str:
    return repr(item)


def diff_rows(
    stored: Mapping[K, Stored[V]],
    fetched: Mapping[K, V],
    *,
    complete: bool,
    max_delete_fraction: float,
) -> RowChanges[K, V]:
    """Compare one table's stored rows (deleted ones included) with the fetched rows.

    Values compare exactly. Only a ``complete`` fetch deletes. The guard withholds every
    deletion when they exceed ``max_delete_fraction`` of the present stored rows (as for
    OBS codes).
    """
    limit: Fraction = _guard_limit(max_delete_fraction)
    inserts: list[tuple[K, V]] = []
    updates: list[tuple[K, V, V]] = []
    restores: list[tuple[K, V]] = []
    unchanged = 0
    for key, value in fetched.items():
        row = stored.get(key)
        if row is None:
            inserts.append((key, value))
        elif row.deleted:
            restores.append((key, value))
        elif row.value != value:
            updates.append((key, row.value, value))
        else:
            unchanged += 1
    present = sum(1 for row in stored.values() if not row.deleted)
    deletes: list[K] = []
    if complete:
        deletes = [key for key, row in stored.items() if not row.deleted and key not in fetched]
    withheld: list[K] = []
    if deletes and len(deletes) * limit.denominator > limit.numerator * present:
        withheld, deletes = deletes, []
    return RowChanges(
        inserts=tuple(sorted(inserts, key=_sort_key)),
        updates=tuple(sorted(updates, key=_sort_key)),
        deletes=tuple(sorted(deletes, key=_sort_key)),
        restores=tuple(sorted(restores, key=_sort_key)),
        unchanged=unchanged,
        withheld=tuple(sorted(withheld, key=_sort_key)),
    )


# ------------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class ListPlan:
    """One list of one VDN: the changes per table and what the list's record says.

    ``tables`` maps a table name (``display_result``...) to its :class:`RowChanges`;
    empty when the list failed. ``error``: why it failed, was incomplete or guarded.
    """

    code_list: CodeListName
    status: ListStatus
    tables: Mapping[str, RowChanges[tuple[str, ...], tuple[object, ...]]]
    error: str | None = None

    @property
    def is_empty(self) -> bool:
        return all(changes.is_empty for changes in self.tables.values())

    def count(self, what: Literal["inserts", "updates", "deletes", "restores", "withheld"]) -> int:
        return sum(len(getattr(changes, what)) for changes in self.tables.values())

    @property
    def unchanged(self) -> int:
        return sum(changes.unchanged for changes in self.tables.values())


def _status(
    tables: Mapping[str, RowChanges[tuple[str, ...], tuple[object, ...]]],
    complete: bool,
    incomplete_reason: str | None,
) -> tuple[ListStatus, str | None]:
    guarded = [name for name, changes in tables.items() if changes.guarded]
    if guarded:
        withheld = sum(len(tables[name].withheld) for name in guarded)
        return "guarded", (
            f"{withheld} deletions withheld by the mass-deletion guard "
            f"(sync.max_delete_fraction) in {', '.join(guarded)}"
        )
    if not complete:
        return "incomplete", (incomplete_reason or "incomplete") + "; nothing deleted"
    return "succeeded", None


def plan_display_results(
    snapshot: DisplayResultsSnapshot,
    stored_results: Mapping[tuple[str, ...], Stored[tuple[object, ...]]],
    stored_mappings: Mapping[tuple[str, ...], Stored[tuple[object, ...]]],
    *,
    max_code_bytes: int,
    max_delete_fraction: float,
) -> ListPlan:
    """The display results' plan: ``display_result`` keyed (def_id,), values
    (result_code, display_result); ``display_result_obs_code`` keyed (def_id, obs_code),
    no value columns."""
    rows = display_rows(snapshot, max_code_bytes=max_code_bytes)
    if isinstance(rows, BadData):
        return ListPlan(DISPLAY_RESULTS, "failed", {}, rows.reason)
    fetched_results: dict[tuple[str, ...], tuple[object, ...]] = {
        (def_id,): value for def_id, value in rows.results.items()
    }
    fetched_mappings: dict[tuple[str, ...], tuple[object, ...]] = {
        mapping: () for mapping in rows.mappings
    }
    complete = snapshot.complete
    tables = {
        "display_result": diff_rows(
            stored_results,
            fetched_results,
            complete=complete,
            max_delete_fraction=max_delete_fraction,
        ),
        "display_result_obs_code": diff_rows(
            stored_mappings,
            fetched_mappings,
            complete=complete,
            max_delete_fraction=max_delete_fraction,
        ),
    }
    status, error = _status(tables, complete, snapshot.incomplete_reason)
    return ListPlan(DISPLAY_RESULTS, status, tables, error)


def plan_business_results(
    snapshot: BusinessResultsSnapshot,
    stored: Mapping[tuple[str, ...], Stored[tuple[object, ...]]],
    *,
    max_code_bytes: int,
    max_delete_fraction: float,
) -> ListPlan:
    """The business results' plan: ``business_result`` keyed (parent_code, code), values
    (name, level)."""
    rows = business_rows(snapshot, max_code_bytes=max_code_bytes)
    if isinstance(rows, BadData):
        return ListPlan(BUSINESS_RESULTS, "failed", {}, rows.reason)
    fetched: dict[tuple[str, ...], tuple[object, ...]] = dict(rows.results.items())
    tables = {
        "business_result": diff_rows(
            stored, fetched, complete=snapshot.complete, max_delete_fraction=max_delete_fraction
        )
    }
    status, error = _status(tables, snapshot.complete, snapshot.incomplete_reason)
    return ListPlan(BUSINESS_RESULTS, status, tables, error)


@dataclass(frozen=True)
class ListResult:
    """One list of one VDN of one run: a ``sync_run_code_list`` row."""

    source: str
    vdn_id: int
    code_list: str
    status: str  # succeeded, failed, incomplete, guarded, skipped
    started_at: datetime
    finished_at: datetime | None = None
    pages: int = 0
    requests: int = 0
    total_count: int | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    unchanged: int = 0
    withheld: int = 0
    error: str | None = None
    skip_reason: str | None = None
    unexpected: tuple[str, ...] = ()
    error_kind: str | None = None  # data, database, or the iSales error's kind

    @property
    def key(self) -> ListKey:
        return (self.source, self.vdn_id, self.code_list)

    @property
    def ok(self) -> bool:
        """Counts as success for the exit code (as a VDN's: left to others is fine)."""
        return self.status == "succeeded" or (
            self.status == "skipped" and self.skip_reason in ("locked", "superseded")
        )

    def line(self) -> str:
        """One line for the operator."""
        what = f"{self.code_list} of VDN {self.vdn_id} (source {self.source})"
        return f"{what}: {self.status}" + (f": {self.error}" if self.error else "")
