"""An interrupted `obs-sync sync`, as real processes: SIGINT and SIGTERM stop it like the
daemon (every VDN recorded, the summary printed, exit 128 + the signal), a second signal
aborts at once (no VDN half-applied, the run record says so), and a fetch still going past
schedule.shutdown_timeout_seconds is cancelled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.simulator import Fault, Simulator, SimulatorData
from tests.fixtures_db import TEST_SCHEMA, assert_history_invariants, config_dict

pytestmark = pytest.mark.slow
S = TEST_SCHEMA
VDNS = list(range(1, 11))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def ten(make_simulator: Any) -> Simulator:
    sim: Simulator = make_simulator(SimulatorData.generate(vdn_ids=VDNS, codes_per_vdn=60, seed=3))
    return sim


def write(path: Path, sim: Simulator, url: str, *, stop_timeout: float = 30, **isales: Any) -> str:
    data = config_dict(sim, url, vdn_ids=["1-10"], max_concurrency=1, **isales)
    data["schedule"] = {"shutdown_timeout_seconds": stop_timeout}
    path.write_text(yaml.safe_dump(data), "utf-8")
    return str(path)


def start(path: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "obs_sync", "--config", path, "sync"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql.format(s=S))))


def wait_for(engine: Engine, sql: str, *, limit: float = 60) -> None:
    """Until ``sql`` returns a row (polling; the tables may not exist yet)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if rows(engine, sql):
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def records(engine: Engine) -> dict[int, tuple[str, str | None, str | None]]:
    return {
        vdn: (status, reason, error)
        for vdn, status, reason, error in rows(
            engine, "SELECT vdn_id, status, skip_reason, error FROM {s}.sync_run_vdn"
        )
    }


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_and_records_every_vdn(
    tmp_path: Path, ten: Simulator, database_url: str, engine: Engine, signum: int, code: int
) -> None:
    # Every request takes 0.3 s: one VDN at a time, so the signal finds most not started.
    ten.faults.add(Fault(kind="slow", delay_seconds=0.3, times=None))
    process = start(write(tmp_path / "c.yaml", ten, database_url))
    try:
        wait_for(engine, "SELECT 1 FROM {s}.sync_run_vdn WHERE vdn_id = 2")
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, err
    name = signal.Signals(signum).name
    assert f"{name} received: stopping" in err
    # The summary: a row per configured VDN, the run stopped.
    table = [line.split()[:2] for line in out.splitlines()[1:-1]]
    assert [int(vdn) for vdn, _ in table] == VDNS
    assert "run 1: stopped" in out.splitlines()[-1]
    (status, vdns, error), *_ = rows(engine, "SELECT status, vdns, error FROM {s}.sync_run")
    assert (status, vdns, error) == ("stopped", 10, None)
    found = records(engine)
    assert sorted(found) == VDNS  # every configured VDN has its record
    applied = [vdn for vdn, (s, _, _) in found.items() if s == "succeeded"]
    skipped = [vdn for vdn, (s, _, _) in found.items() if s == "skipped"]
    assert applied and skipped and len(applied) + len(skipped) == 10
    assert all(found[vdn][1:] == ("stopped", "not started: stop requested") for vdn in skipped)
    # What was applied is whole: each applied VDN has all its codes, the others none.
    counts = dict(rows(engine, "SELECT vdn_id, count(*) FROM {s}.result_code GROUP BY 1"))
    assert counts == {vdn: 60 for vdn in applied}
    assert_history_invariants(engine)


def test_a_second_signal_aborts_at_once_and_the_record_says_so(
    tmp_path: Path, ten: Simulator, database_url: str, engine: Engine
) -> None:
    ten.faults.add(Fault(kind="slow", delay_seconds=0.3, times=None))
    process = start(write(tmp_path / "c.yaml", ten, database_url))
    try:
        wait_for(engine, "SELECT 1 FROM {s}.sync_run_vdn WHERE vdn_id = 2")
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "SIGINT received again: aborting now" in err
    ((status, vdns, succeeded, error, finished),) = rows(
        engine, "SELECT status, vdns, succeeded, error, finished_at FROM {s}.sync_run"
    )
    assert status == "failed" and finished is not None
    assert "aborted by a second signal (SIGINT)" in error
    found = records(engine)
    assert vdns == len(found) and succeeded == sum(s == "succeeded" for s, _, _ in found.values())
    # No VDN half-applied: a VDN has codes exactly when it has a succeeded record.
    counts = dict(rows(engine, "SELECT vdn_id, count(*) FROM {s}.result_code GROUP BY 1"))
    assert counts == {vdn: 60 for vdn, (s, _, _) in found.items() if s == "succeeded"}
    assert_history_invariants(engine)
    # The abort released everything: the next run starts, syncs all and abandons nothing.
    again = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(tmp_path / "c.yaml"), "sync"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "abandoned" not in again.stderr


def test_a_fetch_past_the_stop_timeout_is_cancelled_and_recorded(
    tmp_path: Path, ten: Simulator, database_url: str, engine: Engine
) -> None:
    # VDN 3's requests hang (longer than the 1 s attempt timeout): retried until cancelled.
    ten.faults.add(Fault(kind="slow", delay_seconds=30, vdn_id=3, times=None))
    path = write(
        tmp_path / "c.yaml",
        ten,
        database_url,
        stop_timeout=0.5,
        timeout_seconds=1,
        max_retries=20,
        backoff_initial_seconds=0.2,
        backoff_max_seconds=0.2,
    )
    process = start(path)
    try:
        wait_for(engine, "SELECT 1 FROM {s}.sync_run_vdn WHERE vdn_id = 2")
        time.sleep(0.3)  # VDN 3 is being fetched
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "cancelling their fetches" in err
    found = records(engine)
    assert sorted(found) == VDNS
    assert found[3] == ("skipped", "stopped", "stopped while fetching: not applied")
    assert [s for s, _, _ in found.values()].count("succeeded") == 2
    ((status,),) = rows(engine, "SELECT status FROM {s}.sync_run")
    assert status == "stopped"
    assert "run 1: stopped" in out
