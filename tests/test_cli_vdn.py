"""``--vdn`` and verify's edges, as an operator meets them (issue 17, item 7): the same
forms in every command (one parser), ``verify --vdn`` of a VDN obs-sync knows nothing of is
a usage error, ``verify --upstream`` says what it compared and logs in the configured
format. Real processes against the bundled simulator and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from obs_sync.errors import EXIT_USAGE
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_db import write_config

pytestmark = pytest.mark.slow


def obs_sync(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def config(tmp_path: Path, simulator: Simulator, database_url: str) -> str:
    # VDNs 1..5 on the simulator; 1..4 and 6 configured (6 does not exist upstream).
    return write_config(
        tmp_path / "c.yaml",
        simulator,
        database_url,
        vdn_ids=["1-4"],
        max_retries=1,
        backoff_max_seconds=0.05,
        logging={"format": "json"},
    )


def test_every_command_takes_the_same_vdn_forms(config: str) -> None:
    synced = obs_sync("--config", config, "sync", "--vdn", "1,3-4")
    assert synced.returncode == 0, synced.stderr
    rows = [line.split()[0] for line in synced.stdout.splitlines()[1:-1]]
    assert rows == ["1", "3", "4"]
    verified = obs_sync("--config", config, "verify", "--vdn", "1,3-4", "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    status = obs_sync("--config", config, "status", "--vdn", "1,3-4", "--format", "json")
    assert status.returncode == 0, status.stderr
    fetched = obs_sync("--config", config, "fetch", "--vdn", "2-2", "--format", "json")
    assert fetched.returncode == 0, fetched.stderr
    several = obs_sync("--config", config, "fetch", "--vdn", "2-3")
    assert several.returncode == EXIT_USAGE and "one VDN" in several.stderr
    for command in ("sync", "verify", "status", "fetch"):
        bad = obs_sync("--config", config, command, "--vdn", "4-1")
        assert bad.returncode == EXIT_USAGE, (command, bad.stderr)
        assert "reversed" in bad.stderr and "Traceback" not in bad.stderr


def test_sync_of_unconfigured_vdns_names_them_as_ranges(config: str) -> None:
    refused = obs_sync("--config", config, "sync", "--vdn", "3-4,10-9999")
    assert refused.returncode == EXIT_USAGE
    assert "--vdn 10-9999:" in refused.stderr and "isales.vdn_ids" in refused.stderr


def test_verify_of_a_vdn_neither_configured_nor_stored_is_a_usage_error(
    tmp_path: Path, simulator: Simulator, database_url: str, config: str
) -> None:
    assert obs_sync("--config", config, "sync").returncode == 0
    unknown = obs_sync("--config", config, "verify", "--vdn", "42")
    assert unknown.returncode == EXIT_USAGE, unknown.stdout + unknown.stderr
    assert "42" in unknown.stderr and "obs-sync status" in unknown.stderr  # the fix
    assert "every check holds" not in unknown.stdout
    # Stored but no longer configured: still verifiable (its history is kept).
    fewer = write_config(tmp_path / "fewer.yaml", simulator, database_url, vdn_ids=[1])
    kept = obs_sync("--config", fewer, "verify", "--vdn", "2")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "every check holds" in kept.stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_verify_upstream_reports_what_it_compared_and_logs_in_the_configured_format(
    simulator: Simulator, config: str
) -> None:
    assert obs_sync("--config", config, "sync").returncode == 0
    # VDN 2 answers 500 once (a retry, logged); VDN 3 answers 403 (its fetch fails).
    simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=2, times=1))
    simulator.faults.add(Fault(kind="http_status", status=403, vdn_id=3, times=None))
    text = obs_sync("--config", config, "verify", "--upstream")
    assert text.returncode == 1, text.stdout + text.stderr  # the failed fetch is a finding
    first = text.stdout.splitlines()[0]
    assert first.startswith("upstream: compared 3 VDNs (1-2, 4) with " + simulator.url)
    assert "fetch failed: 3" in first
    records = json_lines(text.stderr)  # every log line is a JSON object
    assert records and all("level" in r and "message" in r for r in records)
    assert any(r["level"] == "WARNING" and "VDN 2" in r["message"] for r in records)

    simulator.faults.clear()
    as_json = obs_sync("--config", config, "verify", "--upstream", "--format", "json")
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    upstream = json.loads(as_json.stdout)["upstream"]
    assert upstream["compared"] == [1, 2, 3, 4] and upstream["failed"] == []
    assert upstream["codes_fetched"] == upstream["codes_stored"] > 0
    assert upstream["base_url"] == simulator.url
