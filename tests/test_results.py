"""The pure decisions of results.py: long codes, lock-skip streaks, superseded, record times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from obs_sync.long_codes import without_long_codes
from obs_sync.results import (
    INT4_MAX,
    LOCKED_ERROR,
    RunResult,
    VdnPlan,
    run_status,
)
from obs_sync.snapshot import FetchStats, Snapshot

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)


def plan(
    codes: dict[str, str] | None = None, *, total: int | None = 1, max_lock_skips: int = 3
) -> VdnPlan:
    snapshot = Snapshot(
        7, codes or {"a": "x"}, complete=True, stats=FetchStats(pages=1, total_count=total)
    )
    return VdnPlan("default", snapshot, T0, 0.5, max_lock_skips)


def test_long_codes_are_dropped_and_make_the_snapshot_incomplete() -> None:
    codes = {"k" * 4: "at the limit", "k" * 5: "over", "é" * 2: "4 bytes", "é" * 3: "6 bytes"}
    snapshot = Snapshot(1, codes, complete=True)
    kept = without_long_codes(snapshot, 4)
    assert dict(kept.codes) == {"k" * 4: "at the limit", "é" * 2: "4 bytes"}
    assert not kept.complete
    assert kept.incomplete_reason == (
        "obsCode 'kkkkk' is 5 bytes, longer than sync.max_code_bytes = 4 (and 1 more): not stored"
    )
    assert without_long_codes(snapshot, 6) is snapshot  # nothing too long: unchanged
    earlier = Snapshot(1, codes, complete=False, incomplete_reason="page 2 was empty")
    reason = without_long_codes(earlier, 4).incomplete_reason or ""
    assert reason.startswith("page 2 was empty; obsCode 'kkkkk'")


@pytest.mark.parametrize(("streak", "status"), [(1, "skipped"), (2, "skipped"), (3, "failed")])
def test_a_lock_skip_is_a_failure_from_max_lock_skips_runs_in_a_row(
    streak: int, status: str
) -> None:
    result = plan(max_lock_skips=3).locked(T0, "pid 9, application_name 'bi'", streak)
    assert result.status == status and result.skip_reason == "locked"
    assert "pid 9, application_name 'bi'" in (result.error or "")
    assert result.ok == (status == "skipped")
    if status == "skipped":
        assert (result.error or "").startswith(LOCKED_ERROR)
    else:
        assert "3 runs in a row (sync.max_lock_skips = 3)" in (result.error or "")
    run = RunResult(None, run_status([result]), [result], T0, T0)
    assert (run.status, run.exit_code) == (("succeeded", 0) if result.ok else ("failed", 1))


def test_superseded_is_a_skip_that_is_not_a_failure() -> None:
    result = plan().superseded(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert (result.status, result.skip_reason, result.ok) == ("skipped", "superseded", True)
    assert (result.error or "").startswith("superseded:")
    assert run_status([result]) == "succeeded"


@pytest.mark.parametrize("total", [-1, INT4_MAX + 1, 2**63])
def test_a_total_count_the_records_cannot_hold_is_a_data_error(total: int) -> None:
    bad = plan(total=total)
    assert f"totalCount {total}" in (bad.unstorable() or "")
    assert bad.failed("x", T0, "data").total_count is None  # never reaches the int4 column
    assert plan(total=INT4_MAX).unstorable() is None


def test_a_record_never_finishes_before_it_started() -> None:
    early = T0 - timedelta(milliseconds=3)  # an estimate of the database clock, a bit early
    assert plan().failed("x", early, "data").finished_at == T0
