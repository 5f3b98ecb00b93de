"""The scheduler shell with an injected job: one run at a time, deadline, stop, health."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from obs_sync.config import Config, parse_config
from obs_sync.daemon.daemon import Daemon
from obs_sync.logcontext import PendingRun


@dataclass
class _Vdn:
    vdn_id: int
    status: str
    error: str | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    finished_at: Any = None
    total_count: int | None = None
    skip_reason: str | None = None
    source: str = "default"

    @property
    def key(self) -> tuple[str, int]:
        return (self.source, self.vdn_id)


@dataclass
class _Run:
    status: str
    vdns: list[_Vdn]
    run_id: int | None = None


@dataclass
class FakeJob:
    """Records calls; behaviour per call is chosen by ``script``."""

    script: Callable[[int, threading.Event, float], _Run]
    calls: list[float] = field(default_factory=list)
    concurrent: int = 0
    max_concurrent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self) -> None:
        pass  # nothing to reach

    def recorded(self) -> list[Any]:
        return []  # no run records

    def close(self) -> None:
        pass

    def __call__(
        self,
        *,
        stop: threading.Event,
        deadline: float,
        on_vdn: Callable[[Any], None],
        on_request: Callable[[Any], None] | None,
        log_run: PendingRun,
    ) -> _Run:
        with self.lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            n = len(self.calls)
            self.calls.append(deadline)
        try:
            run = self.script(n, stop, deadline)
            log_run.resolve(run.run_id)  # as run_sync does once the run's row exists
            for vdn in run.vdns:
                on_vdn(vdn)
            return run
        finally:
            with self.lock:
                self.concurrent -= 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(**schedule: Any) -> Config:
    return parse_config(
        {
            "isales": {
                "base_url": "http://127.0.0.1:9",
                "access_key": "ak",
                "secret_key": "sk",
                "vdn_ids": [1, 2],
            },
            "schedule": {"interval_minutes": 0.01, "run_at_start": True, **schedule},
            "metrics": {"host": "127.0.0.1", "port": free_port(), "max_failing_minutes": 0.001},
        },
        env={},
        database=False,  # the jobs here are stand-ins that never open it
    )


def serve_in_thread(daemon: Daemon) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(
        target=lambda: code.append(daemon.serve(install_signals=False)), daemon=True
    )
    thread.start()
    return thread, code


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    limit = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < limit, "condition not met in time"
        time.sleep(0.02)


def test_runs_repeat_one_at_a_time_and_stop_cleanly() -> None:
    def script(n: int, stop: threading.Event, deadline: float) -> _Run:
        time.sleep(0.3)  # longer than the 0.6 s interval's half: overlapping would show
        return _Run("succeeded", [_Vdn(1, "succeeded"), _Vdn(2, "succeeded")], run_id=n)

    job = FakeJob(script)
    daemon = Daemon(make_config(), job=job)
    thread, code = serve_in_thread(daemon)
    wait_for(lambda: daemon.runs_finished >= 3)
    daemon.request_shutdown("test")
    thread.join(timeout=30)
    assert code == [0]
    assert job.max_concurrent == 1
    # Each run got a deadline 0.9 x interval after its start.
    assert all(d > 0 for d in job.calls)
    assert daemon.health.check().ok


def test_stop_event_reaches_the_run_in_flight() -> None:
    entered = threading.Event()
    saw_stop: list[bool] = []

    def script(n: int, stop: threading.Event, deadline: float) -> _Run:
        entered.set()
        saw_stop.append(stop.wait(timeout=30))
        return _Run("failed", [_Vdn(1, "succeeded"), _Vdn(2, "skipped")])

    daemon = Daemon(make_config(interval_minutes=10), job=FakeJob(script))
    thread, code = serve_in_thread(daemon)
    assert entered.wait(timeout=30)
    daemon.request_shutdown("test")
    thread.join(timeout=30)
    assert saw_stop == [True]
    assert code == [0]


def test_shutdown_timeout_gives_nonzero() -> None:
    release = threading.Event()
    entered = threading.Event()

    def script(n: int, stop: threading.Event, deadline: float) -> _Run:
        entered.set()
        release.wait(timeout=30)  # ignores stop: a run that will not end in time
        return _Run("succeeded", [])

    daemon = Daemon(
        make_config(interval_minutes=10, shutdown_timeout_seconds=0.2), job=FakeJob(script)
    )
    thread, code = serve_in_thread(daemon)
    assert entered.wait(timeout=30)
    daemon.request_shutdown("test")
    thread.join(timeout=30)
    release.set()
    assert code == [1]


def _healthz(daemon: Daemon) -> tuple[int, dict[str, str]]:
    assert daemon.server is not None
    url = f"http://127.0.0.1:{daemon.server.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_job_exception_is_survived_and_health_follows() -> None:
    mode = {"fail": True}

    def script(n: int, stop: threading.Event, deadline: float) -> _Run:
        if mode["fail"]:
            raise RuntimeError("connection to server failed: Connection refused")
        return _Run("succeeded", [_Vdn(1, "succeeded"), _Vdn(2, "succeeded")])

    job = FakeJob(script)
    daemon = Daemon(make_config(), job=job)
    thread, code = serve_in_thread(daemon)
    try:
        wait_for(lambda: daemon.server is not None)
        # max_failing_minutes is 0.06 s: a failure that lasts that long is unhealthy.
        wait_for(lambda: _healthz(daemon)[0] == 503)
        _, body = _healthz(daemon)
        assert body["status"] == "unhealthy"
        assert "Connection refused" in body["reason"]
        mode["fail"] = False
        wait_for(lambda: _healthz(daemon)[0] == 200)
        assert _healthz(daemon)[1]["status"] == "ok"
    finally:
        daemon.request_shutdown("test")
        thread.join(timeout=30)
    assert code == [0]
    assert len(job.calls) >= 2


def test_run_rejects_a_bad_cron_with_exit_2(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from obs_sync.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: ak, secret_key: sk, vdn_ids: [1]}\n"
        "schedule: {cron: '0 25 * * *'}\ndatabase: {url: 'postgresql://nobody@127.0.0.1:1/none'}\n"
    )
    result = CliRunner().invoke(main, ["--config", str(path), "run"])
    assert result.exit_code == 2
    assert f"configuration error: {path}: schedule.cron '0 25 * * *'" in result.output


_CHILD = """
import sys, threading, time
from obs_sync.config import parse_config
from obs_sync.observability import setup_logging_for
from obs_sync.daemon.daemon import run_daemon

class Run:
    status = "succeeded"
    vdns = []
    run_id = 1

class Job:
    def prepare(self):
        pass

    def recorded(self):
        return []

    def close(self):
        pass

    def __call__(self, *, stop, deadline, on_vdn, on_request, log_run):
        log_run.resolve(1)
        print("job started", flush=True)
        stop.wait(timeout=float(sys.argv[1]))  # a run that honours the stop event (or not)
        time.sleep(float(sys.argv[2]))
        return Run()

config = parse_config({
    "isales": {"base_url": "http://127.0.0.1:9", "access_key": "ak", "secret_key": "sk",
               "vdn_ids": [1]},
    "schedule": {"interval_minutes": 60, "shutdown_timeout_seconds": 1},
    "metrics": {"port": 0},
}, env={}, database=False)
setup_logging_for(config)
run_daemon(config, job=Job())
"""


@pytest.mark.parametrize(
    ("stop_wait", "after_stop", "expected"),
    [(60, 0, 0), (0, 60, 1)],  # honours the stop event / overruns shutdown_timeout_seconds
)
def test_signal_in_a_real_process(stop_wait: float, after_stop: float, expected: int) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(stop_wait), str(after_stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "job started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == expected, err
    assert "SIGTERM received: stopping" in err
    if expected:
        assert "did not finish within schedule.shutdown_timeout_seconds" in err
    else:
        assert "stopped cleanly" in err
