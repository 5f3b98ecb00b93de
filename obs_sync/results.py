"""The outcome of a sync, per VDN and per run: plain data, cheap to import.

Kept apart from the store so ``obs-sync sync`` can start fetching before SQLAlchemy has
finished importing (see :mod:`obs_sync.sync`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

VdnStatus = Literal["succeeded", "failed", "incomplete", "skipped", "guarded"]
RunStatus = Literal["running", "succeeded", "failed", "stopped", "abandoned"]

LOCKED_ERROR = "another obs-sync process is syncing this VDN right now; left to it"


@dataclass(frozen=True)
class VdnResult:
    """One VDN of one run: what was fetched and what was applied (a ``sync_run_vdn`` row)."""

    vdn_id: int
    status: VdnStatus
    started_at: datetime
    finished_at: datetime | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    unchanged: int = 0
    withheld: int = 0  # deletions withheld by the mass-deletion guard
    pages: int = 0
    requests: int = 0
    total_count: int | None = None
    error: str | None = None
    # Why a VDN was skipped: "locked" (another process had it: not a failure), "stopped"
    # (stop requested) or "deadline" (run deadline passed); None otherwise.
    skip_reason: Literal["locked", "stopped", "deadline"] | None = None

    @property
    def ok(self) -> bool:
        """Counts as success for the exit code: succeeded, or left to another process."""
        return self.status == "succeeded" or self.skip_reason == "locked"
