"""Health verdicts as a pure function of run history, and the schedule-derived deadlines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from obs_sync.config import ScheduleConfig
from obs_sync.daemon.schedule import ScheduleError, Timing, _crontab_days, make_trigger
from obs_sync.health import (
    Failure,
    HealthState,
    HealthTracker,
    count_subjects,
    evaluate,
    subject_name,
    vdn_name,
)

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=timezone.utc)  # a Monday
HOUR = timedelta(hours=1)
MAX_FAILING = timedelta(minutes=30)


def every_hour(since: datetime) -> datetime:
    return since + 2 * HOUR


def verdict(state: HealthState, now: datetime) -> tuple[str, str]:
    health = evaluate(state, now, due=every_hour, max_failing=MAX_FAILING)
    return health.status, health.reason


def test_starting_until_the_first_deadline() -> None:
    state = HealthState(started_at=T0)
    assert verdict(state, T0 + timedelta(minutes=5))[0] == "starting"
    status, reason = verdict(state, T0 + 2 * HOUR + timedelta(seconds=1))
    assert status == "unhealthy"
    assert "no run has finished" in reason


def test_ok_while_last_run_recent_then_overdue() -> None:
    state = HealthState(started_at=T0, last_finished_at=T0 + HOUR)
    assert verdict(state, T0 + 2 * HOUR) == ("ok", "")
    assert verdict(state, T0 + 3 * HOUR) == ("ok", "")
    status, reason = verdict(state, T0 + 3 * HOUR + timedelta(seconds=1))
    assert status == "unhealthy"
    assert "last run finished 120 min ago" in reason


def test_failing_vdn_tolerated_until_max_failing() -> None:
    since = T0 + timedelta(minutes=10)
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + timedelta(minutes=40),
        failing={("default", 7): Failure(since=since, count=3, error="VDN 7: HTTP 503")},
    )
    status, reason = verdict(state, since + MAX_FAILING)
    assert status == "ok"
    assert "1 VDN failing, for less than 30 min" in reason
    status, reason = verdict(state, since + MAX_FAILING + timedelta(seconds=1))
    assert status == "unhealthy"
    assert reason.startswith("VDN 7 failing for 30 min")
    assert "HTTP 503" in reason


def test_names_the_longest_failing_vdn() -> None:
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + HOUR,
        failing={
            ("default", 3): Failure(since=T0 + timedelta(minutes=20), count=1, error=None),
            ("default", 2): Failure(since=T0, count=1, error=None),
        },
    )
    status, reason = verdict(state, T0 + HOUR)
    assert status == "unhealthy"
    assert reason.startswith("VDN 2 failing for 60 min (and 1 more VDN)")


def test_tracker_streaks() -> None:
    now = [T0]
    tracker = HealthTracker(
        started_at=T0, due=every_hour, max_failing=MAX_FAILING, clock=lambda: now[0]
    )
    one, two = ("default", 1), ("default", 2)
    tracker.record_vdn(one, "failed", "boom", T0)
    tracker.record_vdn(one, "skipped", None, T0 + timedelta(minutes=10))  # neutral
    tracker.record_vdn(one, "incomplete", "short", T0 + timedelta(minutes=20))
    tracker.record_vdn(two, "guarded", "mass deletion", T0 + timedelta(minutes=20))
    failing = tracker.failing()
    assert failing[one].since == T0 and failing[one].count == 2
    assert failing[one].error == "short"
    assert two in failing
    tracker.record_vdn(one, "succeeded", None, T0 + timedelta(minutes=30))
    assert set(tracker.failing()) == {two}
    tracker.record_run_finished(T0 + timedelta(minutes=31))
    now[0] = T0 + timedelta(minutes=45)
    assert tracker.check().ok
    now[0] = T0 + timedelta(minutes=51)
    assert tracker.check().status == "unhealthy"


def test_tracker_run_error_marks_every_vdn() -> None:
    tracker = HealthTracker(
        started_at=T0, due=every_hour, max_failing=MAX_FAILING, clock=lambda: T0
    )
    keys = [("default", 1), ("default", 2), ("north", 2)]
    tracker.record_run_error(keys, "OperationalError: connection refused", T0)
    assert set(tracker.failing()) == set(keys)
    assert tracker.check().status == "ok"  # a finished (failed) run, failing < max


def test_each_source_has_its_own_verdict() -> None:
    since = T0 + timedelta(minutes=5)
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + timedelta(minutes=50),
        failing={
            ("north", 3): Failure(since=since, count=2, error="HTTP 401"),
            ("south", 3): Failure(since=T0 + timedelta(minutes=50), count=1, error=None),
        },
    )
    health = evaluate(
        state, T0 + HOUR, due=every_hour, max_failing=MAX_FAILING, sources=["north", "south", "en"]
    )
    assert health.status == "unhealthy"  # the daemon's verdict is the worst
    assert health.reason.startswith("VDN 3 of source north failing for 55 min: HTTP 401")
    north, south, en = (health.source(name) for name in ("north", "south", "en"))
    assert north is not None and north.status == "unhealthy" and north.http_status == 503
    assert south is not None and south.status == "ok"
    assert south.reason == "1 VDN failing, for less than 30 min"
    assert en is not None and (en.status, en.reason) == ("ok", "")
    assert health.source("west") is None
    body = json.loads(health.to_json())
    assert list(body["sources"]) == ["north", "south", "en"]
    assert body["sources"]["north"]["status"] == "unhealthy"


def test_an_overdue_run_makes_every_source_unhealthy() -> None:
    state = HealthState(started_at=T0, last_finished_at=T0)
    health = evaluate(
        state, T0 + 3 * HOUR, due=every_hour, max_failing=MAX_FAILING, sources=["a", "b"]
    )
    assert [(name, h.status) for name, h in health.sources] == [
        ("a", "unhealthy"),
        ("b", "unhealthy"),
    ]
    assert all("last run finished" in h.reason for _, h in health.sources)


def test_a_source_with_failing_vdns_but_no_longer_configured_is_still_shown() -> None:
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + HOUR,
        failing={("old", 1): Failure(since=T0, count=4, error="gone")},
    )
    health = evaluate(state, T0 + HOUR, due=every_hour, max_failing=MAX_FAILING, sources=["new"])
    assert [name for name, _ in health.sources] == ["new", "old"]
    old = health.source("old")
    assert old is not None and old.status == "unhealthy"


def test_the_default_source_reads_as_before() -> None:
    assert vdn_name(("default", 7)) == "VDN 7"
    assert vdn_name(("north", 7)) == "VDN 7 of source north"
    tracker = HealthTracker(
        started_at=T0, due=every_hour, max_failing=MAX_FAILING, clock=lambda: T0
    )
    health = tracker.check()
    assert json.loads(health.to_json()) == {
        "status": "starting",
        "reason": "waiting for the first run to finish",
        "sources": {
            "default": {"status": "starting", "reason": "waiting for the first run to finish"}
        },
    }


# ------------------------------------------------------------------ the other code lists

DISPLAY = ("default", 3, "display_results")


def test_a_list_failing_too_long_is_unhealthy_like_a_vdn() -> None:
    since = T0 + timedelta(minutes=10)
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + timedelta(minutes=40),
        failing={DISPLAY: Failure(since=since, count=2, error="HTTP 500; nothing deleted")},
    )
    status, reason = verdict(state, since + MAX_FAILING)
    assert status == "ok" and "code list" in reason
    status, reason = verdict(state, since + MAX_FAILING + timedelta(seconds=1))
    assert status == "unhealthy"
    assert reason.startswith(subject_name(DISPLAY)) and "HTTP 500" in reason


def test_the_reason_names_the_list_and_its_source() -> None:
    assert subject_name(DISPLAY) == "VDN 3 display_results"
    assert (
        subject_name(("north", 3, "business_results")) == "VDN 3 business_results of source north"
    )
    assert subject_name(("north", 3)) == vdn_name(("north", 3))
    state = HealthState(
        started_at=T0,
        last_finished_at=T0 + HOUR,
        failing={
            ("north", 3, "business_results"): Failure(since=T0, count=1, error="bad data"),
            ("north", 4): Failure(since=T0 + timedelta(minutes=5), count=1, error=None),
            ("south", 1, "display_results"): Failure(since=T0 + HOUR, count=1, error=None),
        },
    )
    health = evaluate(
        state, T0 + HOUR, due=every_hour, max_failing=MAX_FAILING, sources=["north", "south"]
    )
    assert health.status == "unhealthy"
    # The longest streak is named; the VDN failing too long besides is counted.
    assert health.reason.startswith("VDN 3 business_results of source north failing for")
    assert count_subjects([("north", 4)], more=True) in health.reason
    north, south = health.source("north"), health.source("south")
    assert north is not None and north.status == "unhealthy"
    assert south is not None and south.status == "ok"  # its list fails, but not for long


def test_a_lists_streak_is_its_own() -> None:
    tracker = HealthTracker(
        started_at=T0, due=every_hour, max_failing=MAX_FAILING, clock=lambda: T0 + HOUR
    )
    business = ("default", 3, "business_results")
    tracker.record_code_list(DISPLAY, "incomplete", "HTTP 500", T0)
    tracker.record_code_list(DISPLAY, "skipped", None, T0 + timedelta(minutes=10))  # neutral
    tracker.record_code_list(DISPLAY, "guarded", None, T0 + timedelta(minutes=20))
    tracker.record_code_list(business, "failed", "bad data", T0 + timedelta(minutes=20))
    tracker.record_vdn(("default", 3), "succeeded", None, T0 + timedelta(minutes=20))
    failing = tracker.failing()
    # The VDN's OBS codes succeeding ends neither list's streak.
    assert set(failing) == {DISPLAY, business}
    assert (failing[DISPLAY].since, failing[DISPLAY].count) == (T0, 2)
    assert failing[DISPLAY].error == "HTTP 500"
    tracker.record_run_finished(T0 + timedelta(minutes=21))
    assert tracker.check().status == "unhealthy"
    tracker.record_code_list(DISPLAY, "succeeded", None, T0 + timedelta(minutes=30))
    tracker.record_code_list(business, "succeeded", None, T0 + timedelta(minutes=30))
    assert tracker.failing() == {}
    assert tracker.check().status == "ok"


def test_a_seeded_list_streak_keeps_its_earlier_start() -> None:
    tracker = HealthTracker(
        started_at=T0, due=every_hour, max_failing=MAX_FAILING, clock=lambda: T0 + HOUR
    )
    tracker.record_code_list(DISPLAY, "failed", "HTTP 500", T0 + timedelta(minutes=50))
    tracker.seed_failing({DISPLAY: Failure(since=T0, count=5, error="HTTP 500")})
    tracker.record_run_finished(T0 + timedelta(minutes=51))
    assert tracker.failing()[DISPLAY].since == T0
    assert tracker.check().status == "unhealthy"


def test_counting_vdns_and_lists() -> None:
    assert count_subjects([("default", 1), ("default", 2)]) == "2 VDNs"
    assert count_subjects([DISPLAY]) == "1 code list"
    assert count_subjects([("default", 1), DISPLAY], more=True) == "1 more VDN and 1 more code list"


def test_health_json_body() -> None:
    state = HealthState(started_at=T0)
    health = evaluate(state, T0 + 3 * HOUR, due=every_hour, max_failing=MAX_FAILING)
    assert health.http_status == 503
    assert health.to_json().startswith(b'{"status": "unhealthy", "reason": ')


# --------------------------------------------------------------------------- schedule timing


def test_interval_timing() -> None:
    schedule = ScheduleConfig(interval_minutes=10, jitter_seconds=5)
    timing = Timing(schedule, make_trigger(schedule))
    assert timing.run_deadline_seconds(T0) == pytest.approx(540)
    assert timing.due(T0) == T0 + timedelta(minutes=20, seconds=5)
    explicit = ScheduleConfig(interval_minutes=10, run_deadline_seconds=42)
    assert Timing(explicit, make_trigger(explicit)).run_deadline_seconds(T0) == 42


def test_cron_timing_regular() -> None:
    schedule = ScheduleConfig(cron="*/15 * * * *")
    timing = Timing(schedule, make_trigger(schedule, tz=timezone.utc))
    assert timing.run_deadline_seconds(T0) == pytest.approx(0.9 * 15 * 60)
    # Finished at 09:01: the fires at 09:15 and 09:30; overdue after the second.
    assert timing.due(T0 + timedelta(minutes=1)) == T0 + timedelta(minutes=30)


def test_cron_weekdays_use_crontab_numbering() -> None:
    # "1-5" is Monday to Friday in crontab (APScheduler 3 alone would read Tuesday-Saturday).
    schedule = ScheduleConfig(cron="0 9 * * 1-5")
    timing = Timing(schedule, make_trigger(schedule, tz=timezone.utc))
    friday = T0 + timedelta(days=4, minutes=5)
    assert friday.strftime("%a") == "Fri"
    # The weekend is not "overdue": next fires Monday and Tuesday 09:00.
    assert timing.due(friday) == T0 + timedelta(days=8)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0,6", "sun,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("mon-fri", "mon-fri"),
    ],
)
def test_crontab_days(field: str, expected: str) -> None:
    assert _crontab_days(field) == expected


def test_bad_cron_is_a_schedule_error() -> None:
    with pytest.raises(ScheduleError, match=r"schedule\.cron '61 \* \* \* \*': the minute"):
        make_trigger(ScheduleConfig(cron="61 * * * *"))
    with pytest.raises(ScheduleError, match=r"the day of month \(1-31\) field '32'"):
        make_trigger(ScheduleConfig(cron="0 9 32 * *"))
    with pytest.raises(ScheduleError, match="0-7"):
        make_trigger(ScheduleConfig(cron="0 9 * * 9"))
