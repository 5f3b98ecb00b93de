"""A one-shot ``obs-sync sync`` stops like the daemon (what a Kubernetes CronJob relies on):
at ``schedule.run_deadline_seconds`` (when set) and on SIGTERM, no new VDN starts, the VDN
in flight finishes whole, the rest are recorded as skipped, and the run is closed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import Engine

from obs_sync.simulator import Simulator
from tests.fixtures_db import TEST_SCHEMA, assert_history_invariants, config_dict

pytestmark = pytest.mark.slow
VDNS = [1, 2, 3, 4, 5]


def write(path: Path, sim: Simulator, database_url: str, **schedule: Any) -> str:
    settings = config_dict(sim, database_url, vdn_ids=VDNS, max_concurrency=1)
    settings["schedule"] = schedule
    path.write_text(yaml.safe_dump(settings), "utf-8")
    return str(path)


def command(path: str) -> list[str]:
    return [sys.executable, "-m", "obs_sync", "--config", path, "sync"]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}


def vdn_rows(engine: Engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT vdn_id, status, error FROM {TEST_SCHEMA}.sync_run_vdn ORDER BY vdn_id")
        ).all()
    return {vdn: (status, error) for vdn, status, error in rows}


def run_closed(engine: Engine) -> bool:
    with engine.connect() as connection:
        finished = connection.execute(
            text(f"SELECT finished_at FROM {TEST_SCHEMA}.sync_run ORDER BY id DESC LIMIT 1")
        ).scalar()
    return finished is not None


def test_sync_stops_starting_vdns_at_the_run_deadline(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    # One VDN at a time, each of 3 pages taking 0.4 s: VDN 1 is running when the 1 s
    # deadline passes; it finishes, the ones after it never start.
    simulator.latency_seconds = 0.4
    path = write(tmp_path / "c.yaml", simulator, database_url, run_deadline_seconds=1)
    done = subprocess.run(command(path), capture_output=True, text=True, timeout=120, env=env())
    assert done.returncode == 1, done.stdout + done.stderr  # not every VDN succeeded
    rows = vdn_rows(db_engine)
    assert rows[1][0] == "succeeded"
    skipped = [vdn for vdn, (status, _) in rows.items() if status == "skipped"]
    assert skipped and skipped[-1] == VDNS[-1], rows
    assert all("deadline" in (rows[vdn][1] or "") for vdn in skipped), rows
    assert run_closed(db_engine)
    assert_history_invariants(db_engine)


def test_sigterm_stops_a_sync_cleanly(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    simulator.latency_seconds = 0.3
    path = write(tmp_path / "c.yaml", simulator, database_url)
    proc = subprocess.Popen(
        command(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    try:
        deadline = time.monotonic() + 60
        while simulator.stats.by_vdn[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert simulator.stats.by_vdn[1] >= 1, "VDN 1 never started"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "SIGTERM received: stopping" in stderr
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr  # as issue 17 settled
    rows = vdn_rows(db_engine)
    assert rows[1][0] == "succeeded", rows  # the VDN in flight finished whole
    assert [vdn for vdn, (status, _) in rows.items() if status == "skipped"] == VDNS[1:], rows
    assert run_closed(db_engine)
    assert_history_invariants(db_engine)
