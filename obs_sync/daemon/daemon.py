"""``obs-sync run``: a thin APScheduler 3.x shell around :func:`obs_sync.engine.run.run_sync`.

The job (:class:`obs_sync.daemon.job.SyncJob`) runs the same ``run_sync`` as the one-shot
``sync`` command; this module only decides *when* it runs, bounds each run with a deadline,
feeds metrics and health, and shuts down cleanly on SIGTERM/SIGINT:

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
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import TYPE_CHECKING, Any

from obs_sync.daemon.job import Job, StartError, SyncJob
from obs_sync.daemon.metrics import Metrics, MetricsServer
from obs_sync.daemon.schedule import Timing, make_trigger
from obs_sync.errors import EXIT_FAILED, EXIT_OK, one_line
from obs_sync.health import Failure, HealthTracker, Subject, count_subjects, subject_name
from obs_sync.logcontext import PendingRun, bind
from obs_sync.store.status_query import ListStreakRow
from obs_sync.text import minutes, plural

if TYPE_CHECKING:
    from obs_sync.code_lists import ListKey
    from obs_sync.config import Config
    from obs_sync.store.status_query import VdnRow

log = logging.getLogger(__name__)


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
        self.vdn_keys = config.vdn_keys  # (source, vdn_id) of every configured VDN
        self.source_names = [source.name for source in config.sources]
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
            sources=self.source_names,
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
            self.health.record_vdn(result.key, result.status, result.error, at)
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
            self.health.record_run_error(self.vdn_keys, message, finished)
            if metrics is not None:
                metrics.mark_failing(self.vdn_keys)
                metrics.on_run("error", time.monotonic() - started, finished)
            return
        finished = self.clock()
        # Display and business results (a RunResult's; stand-in jobs may have none).
        for listed in getattr(result, "code_lists", ()):
            at = listed.finished_at or finished
            self.health.record_code_list(listed.key, listed.status, listed.error, at)
            if metrics is not None:
                metrics.on_code_list(listed)
        self.health.record_run_finished(finished)
        if metrics is not None:
            metrics.on_run(result.status, time.monotonic() - started, finished)
        # The run's result line (with its fields) is logged by the run itself (engine/report.py).

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
        self.metrics = Metrics(
            self.source_names,
            {source.name: source.code_lists for source in self.config.sources},
        )
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
            ) from error
        self.server = server.start()
        log.info(
            "serving /metrics and /healthz on http://%s:%d",
            self.config.metrics.host,
            self.server.port,
        )

    def serve(self, *, install_signals: bool = True) -> int:
        """Run until a signal (or :meth:`request_shutdown`); return the exit code."""
        from apscheduler.schedulers.background import BackgroundScheduler  # heavy: `run` only

        if install_signals:
            self.install_signal_handlers()
        self.start_metrics()
        try:
            self.job.prepare()
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
            # One run at a time; missed fire times collapse into one run.
            job_defaults={"coalesce": True, "max_instances": 1},
            executors={"default": {"type": "threadpool", "max_workers": 1}},
        )
        scheduler.add_job(
            self.run_once,
            self.trigger,
            id="sync",
            name="obs-sync run",
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
            plural(len(self.vdn_keys), "VDN"),
            what,
            ", first run now" if schedule.run_at_start else "",
        )
        scheduler.start()
        watch = threading.Thread(target=self._watch_runs, name="obs-sync-watch", daemon=True)
        watch.start()
        try:
            while not self.shutdown_requested.wait(timeout=1.0):
                pass
        finally:
            # Stop scheduling first so no new run starts, then wait for the one in flight.
            scheduler.shutdown(wait=False)
        return self._drain(schedule.shutdown_timeout_seconds)

    def _watch_runs(self) -> None:
        """Every ``sync.heartbeat_seconds``: runs whose process is gone (a replica killed,
        this host's previous process) are marked abandoned, ended at their last heartbeat,
        without waiting for a run; counted in obs_sync_runs{status="abandoned"} and said
        by /healthz."""
        abandon: Callable[[], list[int]] | None = getattr(self.job, "abandon_dead_runs", None)
        if abandon is None:
            return
        while not self.shutdown_requested.wait(timeout=self.config.sync.heartbeat_seconds):
            try:
                found = abandon()
            except Exception as error:  # the database is away: the runs say so themselves
                log.debug("cannot look for abandoned runs: %s", one_line(error))
                continue
            if not found:
                continue
            log.warning(
                "marked run(s) %s abandoned: their process is gone (no liveness lock, no "
                "heartbeat for 2 x sync.heartbeat_seconds); each ended at its last heartbeat",
                ", ".join(map(str, found)),
            )
            self.health.record_abandoned(found, self.clock())
            if self.metrics is not None:
                self.metrics.on_abandoned(len(found))

    def _seed_from_records(self, *, quiet: bool = False) -> None:
        """Health and metrics from the run records; retried before each run until it works
        (the database may be down when the daemon starts)."""
        if self.seeded:
            return
        try:
            rows: Sequence[VdnRow] = self.job.recorded()
        except Exception as error:
            if not quiet:
                log.warning(
                    "cannot read earlier run records yet: %s (read before the next run)",
                    one_line(error),
                )
            return
        # A list's streak is read and seeded as a VDN's (ListStreakRow: a VdnRow per list).
        lists = [row for row in rows if isinstance(row, ListStreakRow)]
        rows = [row for row in rows if not isinstance(row, ListStreakRow)]
        keyed: list[tuple[Subject, VdnRow]] = [
            *(((row.source, row.vdn_id), row) for row in rows),
            *(((row.source, row.vdn_id, row.code_list), row) for row in lists),
        ]
        failing: dict[Subject, Failure] = {
            key: Failure(since=row.failing_since, count=row.streak, error=row.last_error)
            for key, row in keyed
            if row.streak and row.failing_since is not None
        }
        self.health.seed_failing(failing)
        if self.metrics is not None:
            last_success = {
                (row.source, row.vdn_id): row.last_success for row in rows if row.last_success
            }
            # Empty: the VDN's latest result succeeded with totalCount 0.
            empty = [
                (row.source, row.vdn_id)
                for row in rows
                if row.last_status == "succeeded" and row.last_total_count == 0
            ]
            last_run: Callable[[], datetime | None] | None = getattr(
                self.job, "last_run_success", None
            )
            try:
                last_run_success = last_run() if last_run is not None else None
            except Exception as error:
                log.warning("cannot read the last successful run: %s", one_line(error))
                last_run_success = None
            vdns_failing = [k for k in failing if len(k) == 2]
            lists_failing: list[ListKey] = [k for k in failing if len(k) == 3]
            self.metrics.seed(
                last_success,
                vdns_failing,
                empty=empty,
                last_run_success=last_run_success,
                lists_failing=lists_failing,
            )
        if failing:
            first = min(failing, key=lambda key: failing[key].since)
            log.warning(
                "%s already failing before this start, %s since %s",
                count_subjects(failing),
                subject_name(first),
                failing[first].since.isoformat(timespec="seconds"),
            )
        self.seeded = True  # last: health and metrics hold the records once this is set

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
        self.job.close()
        log.info("stopped cleanly")
        return EXIT_OK


def run_daemon(config: Config, *, job: Job | None = None, install_signals: bool = True) -> int:
    """``obs-sync run``: serve until SIGTERM/SIGINT; return the process exit code. Raises
    :class:`ScheduleError` / :class:`StartError` when it cannot start as configured."""
    code = Daemon(config, job=job).serve(install_signals=install_signals)
    if code != EXIT_OK:
        # The run in flight is still going in a worker thread that the interpreter would
        # join at exit; only a hard exit keeps the shutdown bound.
        logging.shutdown()
        os._exit(code)
    return code
