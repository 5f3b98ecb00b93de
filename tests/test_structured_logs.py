"""JSON logs carry a run's and each VDN's results as fields; an empty VDN is a warning.

A real ``obs-sync sync`` process against the simulator and PostgreSQL, its stderr parsed
line by line as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from obs_sync.daemon.metrics import Metrics
from obs_sync.results import VdnResult
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_db import write_config

pytestmark = pytest.mark.slow
MISSING_VDN = 777  # configured, but the simulator has no data for it: totalCount 0
COUNTS = ("inserted", "updated", "deleted", "restored", "unchanged", "withheld")


def sync_json(path: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", path, "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    return result, lines


def test_run_and_vdn_results_are_fields_and_an_empty_vdn_warns(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    simulator.faults.add(Fault(kind="http_status", status=503, times=None, vdn_id=2))
    path = write_config(
        tmp_path / "c.yaml",
        simulator,
        database_url,
        vdn_ids=[1, 2, 3, MISSING_VDN],
        max_retries=0,
        logging={"format": "json", "level": "DEBUG"},
    )
    result, lines = sync_json(path)
    assert result.returncode == 1, result.stderr  # VDN 2 failed
    assert lines, result.stderr

    vdns = {line["vdn"]: line for line in lines if line.get("event") == "vdn_result"}
    assert sorted(vdns) == [1, 2, 3, MISSING_VDN]
    ok = vdns[1]
    assert ok["status"] == "succeeded" and ok["inserted"] == 120 and ok["error_category"] is None
    assert ok["pages"] >= 3 and ok["requests"] >= ok["pages"] and ok["total_count"] == 120
    assert all(isinstance(ok[name], int) for name in COUNTS)
    assert ok["duration_seconds"] >= 0 and ok["vdn_id"] == 1 and ok["run_id"] is not None
    failed = vdns[2]
    assert failed["status"] == "failed" and failed["error_category"] == "transport"
    assert failed["level"] == "WARNING" and failed["requests"] == 1
    empty = vdns[MISSING_VDN]
    assert empty["status"] == "succeeded" and empty["empty"] is True
    assert empty["total_count"] == 0 and empty["level"] == "WARNING"
    assert "empty" in empty["message"] and "isales.vdn_ids" in empty["message"]
    assert not ok["empty"]

    runs = [line for line in lines if line.get("event") == "run_result"]
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "failed" and run["vdns"] == 4 and run["run"] == run["run_id"]
    assert run["vdns_by_status"] == {"succeeded": 3, "failed": 1}
    assert run["vdns_empty"] == 1
    assert run["inserted"] == 2 * 120 and run["requests"] == sum(
        v["requests"] for v in vdns.values()
    )
    assert run["duration_seconds"] >= 0 and run["level"] == "INFO"


def test_text_lines_stay_readable_and_still_warn_about_an_empty_vdn(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, vdn_ids=[1, MISSING_VDN])
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", path, "sync"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr  # empty is a warning, not a failure
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert any(f"VDN {MISSING_VDN} is empty" in line for line in warnings), result.stderr
    assert "error_category=" not in result.stderr  # fields are for JSON, not text lines
    assert any("finished: succeeded" in line for line in result.stderr.splitlines())


def test_the_empty_vdn_gauge_follows_the_latest_success() -> None:
    metrics = Metrics()
    now = datetime.now(timezone.utc)

    def vdn(vdn_id: int, total: int | None, status: str = "succeeded") -> VdnResult:
        return VdnResult("default", vdn_id, status, now, now, total_count=total)  # type: ignore[arg-type]

    def empty() -> float:
        text = metrics.render()[0].decode()
        line = next(
            x for x in text.splitlines() if x.startswith('obs_sync_vdns_empty{source="default"} ')
        )
        return float(line.split()[1])

    assert empty() == 0
    metrics.on_vdn(vdn(1, 0), now)
    metrics.on_vdn(vdn(2, 0), now)
    metrics.on_vdn(vdn(3, 5), now)
    assert empty() == 2
    metrics.on_vdn(vdn(1, None, "failed"), now)  # a failure says nothing about emptiness
    assert empty() == 2
    metrics.on_vdn(vdn(1, 4), now)  # codes appeared
    assert empty() == 1
