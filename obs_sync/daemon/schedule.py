"""When the daemon runs: triggers from the schedule section, fire times, deadlines.

Pure schedule arithmetic over APScheduler's trigger objects (no threads, no clock of its
own, no I/O): crontab quirks, the next fire times, a run's deadline and when a run is
overdue. The daemon (:mod:`obs_sync.daemon.daemon`) starts the scheduler that uses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from obs_sync.errors import UsageError

if TYPE_CHECKING:
    from obs_sync.config import ScheduleConfig


class ScheduleError(UsageError, ValueError):
    """The schedule section cannot be turned into a trigger; the message names the key."""


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_days(field: str) -> str:
    """Translate a crontab day-of-week field to APScheduler 3 names.

    APScheduler 3 numbers weekdays from Monday = 0, crontab from Sunday = 0 (7 is Sunday
    too): passing ``1-5`` through unchanged would run Tuesday to Saturday. Numbers are
    expanded to explicit day names; names and ``*`` pass through.
    """
    if field == "*" or re.search(r"[a-zA-Z]", field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        match = re.fullmatch(r"(\*|\d+)(?:-(\d+))?(?:/(\d+))?", part)
        if not match:
            raise ScheduleError(f"schedule.cron: day-of-week field {field!r} is not valid")
        start_text, end_text, step_text = match.groups()
        if start_text == "*":
            low, high = 0, 6
        else:
            low = int(start_text)
            high = int(end_text) if end_text is not None else (7 if step_text else low)
        step = int(step_text) if step_text else 1
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high and step >= 1):
            raise ScheduleError(
                f"schedule.cron: day-of-week {part!r} must be within 0-7 (0 and 7 are Sunday)"
            )
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_CRON_DAYS[d] for d in sorted(days))


def _bad_cron_field(fields: dict[str, str]) -> str | None:
    """Which field of a rejected crontab is wrong, and why (APScheduler does not say which)."""
    from apscheduler.triggers.cron import CronTrigger  # heavy: only `run` and `check` load it

    labels = {"minute": "minute (0-59)", "hour": "hour (0-23)", "day": "day of month (1-31)"}
    labels |= {"month": "month (1-12)", "day_of_week": "day of week (0-7)"}
    for name, value in fields.items():
        try:
            CronTrigger(**{name: value}, timezone="UTC")
        except ValueError as error:
            detail = re.sub(r"^Error validating expression '[^']*': ", "", str(error))
            return f"the {labels[name]} field {value!r} is not valid: {detail}"
    return None


def make_trigger(schedule: ScheduleConfig, tz: Any = None) -> Any:
    """The APScheduler trigger for ``schedule`` (interval or 5-field crontab, with jitter)."""
    # Heavy: only `run` and `check` load APScheduler.
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = schedule.jitter_seconds or None
    if schedule.cron:
        minute, hour, day, month, day_of_week = schedule.cron.split()
        fields = {
            "minute": minute,
            "hour": hour,
            "day": day,
            "month": month,
            "day_of_week": _crontab_days(day_of_week),
        }
        try:
            return CronTrigger(**fields, timezone=tz, jitter=jitter)
        except ValueError as error:
            raise ScheduleError(
                f"schedule.cron {schedule.cron!r}: {_bad_cron_field(fields) or error}"
            ) from error
    assert schedule.interval_minutes is not None  # the config fills in the default
    return IntervalTrigger(seconds=schedule.interval_minutes * 60, timezone=tz, jitter=jitter)


def next_fires(trigger: Any, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after`` (jitter ignored)."""
    saved = getattr(trigger, "jitter", None)
    trigger.jitter = None
    try:
        fires: list[datetime] = []
        previous: datetime | None = None
        now = after + timedelta(microseconds=1)
        while len(fires) < count:
            fire = trigger.get_next_fire_time(previous, now)
            if fire is None:
                break
            fires.append(fire)
            previous, now = fire, fire + timedelta(microseconds=1)
        return fires
    finally:
        trigger.jitter = saved


@dataclass(frozen=True)
class Timing:
    """Deadlines derived from the schedule, shared by the scheduler and /healthz."""

    schedule: ScheduleConfig
    trigger: Any

    def run_deadline_seconds(self, now: datetime) -> float:
        if self.schedule.run_deadline_seconds is not None:
            return self.schedule.run_deadline_seconds
        if self.schedule.interval_minutes is not None and not self.schedule.cron:
            return 0.9 * self.schedule.interval_minutes * 60
        fires = next_fires(self.trigger, now, 2)
        gap = (fires[1] - fires[0]).total_seconds() if len(fires) == 2 else 3600.0
        return 0.9 * gap

    def due(self, since: datetime) -> datetime:
        """When a run is overdue if the previous one finished (or the daemon started) at ``since``.

        Interval: 2 x the interval (+ jitter). Cron: the second fire time after ``since``
        (+ jitter), i.e. one scheduled run may be missed entirely; for a regular crontab
        that is about 2 x the gap between fire times, and an irregular one (weekdays only)
        is not flagged over a weekend.
        """
        slack = timedelta(seconds=self.schedule.jitter_seconds)
        if self.schedule.interval_minutes is not None and not self.schedule.cron:
            return since + timedelta(minutes=2 * self.schedule.interval_minutes) + slack
        fires = next_fires(self.trigger, since, 2)
        if len(fires) < 2:
            return datetime.max.replace(tzinfo=timezone.utc)
        return fires[1] + slack
