"""``obs-sync run``: a thin APScheduler 3.x shell around :func:`obs_sync.sync.run_sync`.

The job is the same plain function the one-shot ``sync`` command runs; this module only
decides *when* it runs, bounds each run with a deadline, feeds metrics and health, and
shuts down cleanly on SIGTERM/SIGINT:

* one run at a time (``max_instances=1``), missed fire times collapse into one run
  (``coalesce``) and a run that could not start within ``misfire_grace_seconds`` is skipped;
* each run gets ``deadline = start + run_deadline_seconds`` (default 0.9 x the interval,
  for cron 0.9 x the gap to the next fire time): no VDN starts after it, so a hung server
  cannot block the runs that follow;
* on a signal: scheduling stops, the stop event tells the run in flight to start no new
  VDN (the VDN transaction in flight commits or rolls back), and the process exits 0 once
  the run has returned, or 1 after ``shutdown_timeout_seconds`` with a log line saying so.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from obs_sync.errors import one_line
from obs_sync.health import Failure, HealthTracker
from obs_sync.logcontext import PendingRun, bind
from obs_sync.text import minutes, plural

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config, ScheduleConfig
    from obs_sync.observability import Metrics, MetricsServer
    from obs_sync.status import VdnRow

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ScheduleError(ValueError):
    """The schedule section cannot be turned into a trigger; the message names the key."""


class StartError(Exception):
    """The daemon cannot start as configured (it would fail at every run or not serve at
    all); the message names the setting to change. ``obs-sync run`` exits 2."""


# --------------------------------------------------------------------------- triggers

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
    from apscheduler.triggers.cron import CronTrigger

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
            ) from None
    assert schedule.interval_minutes is not None  # the config fills in the default
    return IntervalTrigger(seconds=schedule.interval_minutes * 60, timezone=tz, jitter=jitter)


def _next_fires(trigger: Any, after: datetime, count: int) -> list[datetime]:
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
        fires = _next_fires(self.trigger, now, 2)
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
        fires = _next_fires(self.trigger, since, 2)
        if len(fires) < 2:
            return datetime.max.replace(tzinfo=timezone.utc)
        return fires[1] + slack


# --------------------------------------------------------------------------- the job


class RunResultLike(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def vdns(self) -> Sequence[Any]: ...
    @property
    def run_id(self) -> int | None: ...


class Job(Protocol):
    """One sync run; :class:`SyncJob` calls :func:`obs_sync.sync.run_sync`."""

    def __call__(
        self,
        *,
        stop: threading.Event,
        deadline: float,
        on_vdn: Callable[[Any], None],
        on_request: Callable[[Any], None] | None,
        log_run: PendingRun,
    ) -> RunResultLike: ...


class SyncJob:
    """:func:`~obs_sync.sync.run_sync` with one engine (connection pool) for the daemon's life.

    Pending migrations are applied by the first run that reaches the database (the one at
    start, with ``run_at_start``); later runs skip that step, so a database that is down at
    start delays migrations rather than preventing them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.migrated = False
        # A missing embedded extra never heals by itself: refuse to start, not fail every run.
        from obs_sync.embedded import EmbeddedError, require_installed

        try:
            require_installed(config.database.url.get_secret_value())
        except EmbeddedError as error:
            raise StartError(str(error)) from None

    def prepare(self) -> None:
        """Create the engine (starting the embedded PostgreSQL if configured) and connect once."""
        from sqlalchemy import text

        from obs_sync.migrate import MigrationError, current_revision, needs_upgrade
        from obs_sync.sync import make_engine

        if self.engine is None:
            self.engine = make_engine(self.config)
        schema = self.config.database.schema_
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            revision = current_revision(connection, schema)
        try:
            needs_upgrade(revision, schema, migrate=True)
        except MigrationError as error:  # migrated by a newer obs-sync: every run would fail
            raise StartError(str(error)) from None

    def recorded(self) -> Sequence[VdnRow]:
        """Each configured VDN's recorded freshness and failure streak (empty before the
        first run ever), so health and metrics survive a restart."""
        from obs_sync.status import StatusError, read_status
        from obs_sync.sync import make_engine

        if self.engine is None:  # prepare() failed: the database was down at start
            self.engine = make_engine(self.config)
        try:
            status = read_status(
                self.engine, self.config.database.schema_, self.config.isales.vdn_list, limit=1
            )
        except StatusError:
            return []
        return status.vdns

    def __call__(
        self,
        *,
        stop: threading.Event,
        deadline: float,
        on_vdn: Callable[[Any], None],
        on_request: Callable[[Any], None] | None,
        log_run: PendingRun,
    ) -> RunResultLike:
        from obs_sync.sync import make_engine, run_sync

        if self.engine is None:
            self.engine = make_engine(self.config)
        elif not self.config.database.url.get_secret_value():
            from obs_sync.embedded import restart_if_stopped

            if restart_if_stopped():
                log.warning("the embedded PostgreSQL had stopped; started it again")
        result = run_sync(
            self.config,
            engine=self.engine,
            migrate=not self.migrated,
            trigger="schedule",
            on_vdn=on_vdn,
            on_request=on_request,
            stop=stop,
            deadline=deadline,
            log_run=log_run,
        )
        self.migrated = True
        return result

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


# --------------------------------------------------------------------------- the daemon


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        job: Job | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.config = config
        self.job: Job = job if job is not None else SyncJob(config)
        self.clock = clock
        self.trigger = make_trigger(config.schedule)
        self.timing = Timing(config.schedule, self.trigger)
        self.vdn_ids = config.isales.vdn_list
        self.stop_event = threading.Event()  # passed to run_sync: start no new VDN
        self.shutdown_requested = threading.Event()
        self._idle = threading.Condition()
        self._running = 0
        self._signals = 0
        self.started_at = clock()
        self.health = HealthTracker(
            started_at=self.started_at,
            due=self.timing.due,
            max_failing=timedelta(minutes=config.metrics.max_failing_minutes),
            clock=clock,
        )
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self.runs_finished = 0
        self.seeded = False  # failure streaks and last successes read from the run records

    # ----------------------------------------------------------------- one run

    def run_once(self) -> None:
        """The scheduled job: one sync run, never raising (a failure is logged and counted)."""
        with self._idle:
            if self.shutdown_requested.is_set():
                return
            self._running += 1
        try:
            self._run_once()
        finally:
            with self._idle:
                self._running -= 1
                self.runs_finished += 1
                self._idle.notify_all()

    def _run_once(self) -> None:
        # Every line of the run carries its id: held back until run_sync has inserted the
        # run's row (or, if it never does, written without one).
        run = PendingRun()
        try:
            with bind(run=run):
                self._run_bound(run)
        finally:
            run.resolve(None)

    def _run_bound(self, run: PendingRun) -> None:
        started = time.monotonic()
        deadline_seconds = self.timing.run_deadline_seconds(self.clock())
        deadline = started + deadline_seconds
        metrics = self.metrics
        log.info("run starting (deadline in %.0f s)", deadline_seconds)
        self._seed_from_records(quiet=True)  # if the database was down at start

        def on_vdn(result: Any) -> None:
            at = getattr(result, "finished_at", None) or self.clock()
            self.health.record_vdn(result.vdn_id, result.status, result.error, at)
            if metrics is not None:
                metrics.on_vdn(result, at)

        try:
            result = self.job(
                stop=self.stop_event,
                deadline=deadline,
                on_vdn=on_vdn,
                on_request=metrics.on_request if metrics is not None else None,
                log_run=run,
            )
        except Exception as error:
            # Typically the database is unreachable; the next run tries again.
            finished = self.clock()
            message = one_line(error)
            log.error(
                "run failed before syncing: %s", message, exc_info=log.isEnabledFor(logging.DEBUG)
            )
            self.health.record_run_error(self.vdn_ids, message, finished)
            if metrics is not None:
                metrics.mark_failing(self.vdn_ids)
                metrics.on_run("error", time.monotonic() - started, finished)
            return
        finished = self.clock()
        self.health.record_run_finished(finished)
        if metrics is not None:
            metrics.on_run(result.status, time.monotonic() - started, finished)
        counts: dict[str, int] = {}
        for vdn in result.vdns:
            counts[vdn.status] = counts.get(vdn.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        log.info(
            "run %s finished: %s in %.1f s (%s)",
            result.run_id,
            result.status,
            time.monotonic() - started,
            summary or "no VDN",
        )

    # ----------------------------------------------------------------- lifecycle

    def request_shutdown(self, reason: str) -> None:
        if not self.shutdown_requested.is_set():
            log.info("%s: stopping (no new run or VDN starts; the VDN in flight finishes)", reason)
        self.shutdown_requested.set()
        self.stop_event.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.error("%s received again: exiting now without waiting for the run in flight", name)
            logging.shutdown()
            os._exit(EXIT_FAILED)
        self.request_shutdown(f"{name} received")

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def start_metrics(self) -> None:
        from obs_sync.observability import Metrics, MetricsServer

        self.metrics = Metrics()
        host, port = self.config.metrics.host, self.config.metrics.port
        if port == 0:
            log.info("metrics endpoint disabled (metrics.port: 0)")
            return
        try:
            server = MetricsServer(host, port, metrics=self.metrics, health=self.health.check)
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise StartError(
                f"metrics.host/metrics.port: cannot listen on {host}:{port}: {reason}; set "
                "metrics.port to a free port (0 turns the endpoint off) or metrics.host to an "
                "address of this machine"
            ) from None
        self.server = server.start()
        log.info(
            "serving /metrics and /healthz on http://%s:%d",
            self.config.metrics.host,
            self.server.port,
        )

    def serve(self, *, install_signals: bool = True) -> int:
        """Run until a signal (or :meth:`request_shutdown`); return the exit code."""
        from apscheduler.schedulers.background import BackgroundScheduler

        if install_signals:
            self.install_signal_handlers()
        self.start_metrics()
        prepare = getattr(self.job, "prepare", None)
        if prepare is not None:
            try:
                prepare()
                log.info("database reachable")
            except StartError:
                if self.server is not None:
                    self.server.stop()
                raise
            except Exception as error:
                log.error("database not reachable at start: %s (runs will retry)", one_line(error))
            else:
                self._seed_from_records()

        schedule = self.config.schedule
        scheduler = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1},
            executors={"default": {"type": "threadpool", "max_workers": 1}},
        )
        scheduler.add_job(
            self.run_once,
            self.trigger,
            id="sync",
            name="obs-sync run",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=schedule.misfire_grace_seconds,
            # Without run_at_start the first run waits for the trigger.
            **({"next_run_time": datetime.now(timezone.utc)} if schedule.run_at_start else {}),
        )
        what = (
            f"cron {schedule.cron!r}"
            if schedule.cron
            else f"every {minutes(schedule.interval_minutes or 0)}"
        )
        # Logged before the scheduler starts: the first run may begin at once.
        log.info(
            "daemon started: %s %s%s",
            plural(len(self.vdn_ids), "VDN"),
            what,
            ", first run now" if schedule.run_at_start else "",
        )
        scheduler.start()
        try:
            while not self.shutdown_requested.wait(timeout=1.0):
                pass
        finally:
            # Stop scheduling first so no new run starts, then wait for the one in flight.
            scheduler.shutdown(wait=False)
        return self._drain(schedule.shutdown_timeout_seconds)

    def _seed_from_records(self, *, quiet: bool = False) -> None:
        """Health and metrics from the run records; retried before each run until it works
        (the database may be down when the daemon starts)."""
        recorded = getattr(self.job, "recorded", None)
        if recorded is None or self.seeded:
            return
        try:
            rows: Sequence[VdnRow] = recorded()
        except Exception as error:
            if not quiet:
                log.warning(
                    "cannot read earlier run records yet: %s (read before the next run)",
                    one_line(error),
                )
            return
        self.seeded = True
        failing = {
            row.vdn_id: Failure(since=row.failing_since, count=row.streak, error=row.last_error)
            for row in rows
            if row.streak and row.failing_since is not None
        }
        self.health.seed_failing(failing)
        if self.metrics is not None:
            last_success = {row.vdn_id: row.last_success for row in rows if row.last_success}
            self.metrics.seed(last_success, failing)
        if failing:
            first = min(failing, key=lambda vdn: failing[vdn].since)
            log.warning(
                "%s already failing before this start, VDN %d since %s",
                plural(len(failing), "VDN"),
                first,
                failing[first].since.isoformat(timespec="seconds"),
            )

    def _drain(self, timeout: float) -> int:
        limit = time.monotonic() + timeout
        with self._idle:
            while self._running:
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(timeout=remaining)
            clean = self._running == 0
        if self.server is not None:
            self.server.stop()
        if not clean:
            log.error(
                "the run in flight did not finish within schedule.shutdown_timeout_seconds "
                "(%g s); exiting anyway (its open VDN transaction is rolled back by PostgreSQL)",
                timeout,
            )
            return EXIT_FAILED
        close = getattr(self.job, "close", None)
        if close is not None:
            close()
        log.info("stopped cleanly")
        return EXIT_OK


def run_daemon(config: Config, *, job: Job | None = None, install_signals: bool = True) -> int:
    """``obs-sync run``: serve until SIGTERM/SIGINT; return the process exit code."""
    try:
        daemon = Daemon(config, job=job)
        code = daemon.serve(install_signals=install_signals)
    except (ScheduleError, StartError) as error:
        log.error("cannot start: %s", error)
        return EXIT_USAGE
    if code != EXIT_OK:
        # The run in flight is still going in a worker thread that the interpreter would
        # join at exit; only a hard exit keeps the shutdown bound.
        logging.shutdown()
        os._exit(code)
    return code
