"""Progress off a terminal: a log line every logging.progress_interval_seconds during a run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from obs_sync.progress import Counts, progress_line
from obs_sync.simulator import Simulator, SimulatorData
from tests.fixtures_db import write_config

VDNS = range(1, 41)


def test_the_line_says_done_of_total_pages_failures_rate_and_time_left() -> None:
    line = progress_line(Counts(total=9999, done=120, failed=2, pages=360), elapsed=30.0)
    assert line.startswith("progress: 120 of 9999 VDNs (1.2%), 360 pages, 2 failed")
    assert "4.0 VDNs/s" in line and "about 41 min left" in line
    # Before the first VDN finished there is no rate to estimate from.
    assert progress_line(Counts(total=5), elapsed=3.0) == (
        "progress: 0 of 5 VDNs (0.0%), 0 pages, 0 failed"
    )


def _sync(path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    return subprocess.run(  # stderr is a pipe, not a terminal: as under cron or systemd
        [sys.executable, "-m", "obs_sync", "--config", path, "sync"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.mark.slow
def test_a_real_sync_logs_progress_during_the_run(
    tmp_path: Path, make_simulator: Callable[..., Simulator], database_url: str
) -> None:
    data = SimulatorData.generate(vdn_ids=VDNS, codes_per_vdn=60, seed=3)
    sim = make_simulator(data, latency_seconds=0.03)  # slowed: the run lasts a few seconds
    path = write_config(
        tmp_path / "c.yaml",
        sim,
        database_url,
        vdn_ids=[f"{VDNS.start}-{VDNS.stop - 1}"],
        page_size=20,
        max_concurrency=2,
        logging={"format": "json", "progress_interval_seconds": 0.25},
    )
    result = _sync(path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line.get("event") == "progress"]
    assert len(progress) >= 3, result.stderr
    done = [line["vdns_done"] for line in progress]
    assert done == sorted(done) and done[-1] > done[0]  # counts increase
    assert all(line["vdns_total"] == len(VDNS) for line in progress)
    # During the run: before its result line, with VDNs still to go.
    finished = next(i for i, line in enumerate(lines) if line.get("event") == "run_result")
    assert lines.index(progress[0]) < finished and done[0] < len(VDNS)
    first = progress[0]["message"]
    assert re.match(rf"progress: \d+ of {len(VDNS)} VDNs \(\d+\.\d%\), \d+ pages?, 0 failed", first)
    assert all(line["run_id"] is not None for line in progress)  # they name the run
    assert any(line["seconds_left"] is not None for line in progress)


@pytest.mark.slow
def test_an_interval_of_zero_logs_no_progress(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    simulator.latency_seconds = 0.02
    path = write_config(
        tmp_path / "c.yaml",
        simulator,
        database_url,
        logging={"format": "json", "progress_interval_seconds": 0},
    )
    result = _sync(path)
    assert result.returncode == 0, result.stderr
    assert '"event": "progress"' not in result.stderr
