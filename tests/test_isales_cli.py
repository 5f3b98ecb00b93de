"""`obs-sync fetch` in a subprocess, against the simulator: output formats and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obs_sync.simulator import Fault, Simulator, SimulatorData

AK, SK = "cli-access-key", "cli-secret-key-never-printed"


@pytest.fixture(scope="module")
def data() -> SimulatorData:
    return SimulatorData.generate(vdn_ids=range(1, 4), codes_per_vdn=60, seed=3)


@pytest.fixture(scope="module")
def server(data: SimulatorData) -> Iterator[Simulator]:
    with Simulator(data, access_key=AK, secret_key=SK) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _clean(server: Simulator) -> None:
    server.faults.clear()


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "isales:\n"
        f"  base_url: {url}\n"
        f"  access_key: {AK}\n"
        "  secret_key: ${ISALES_SECRET_KEY}\n"
        "  vdn_ids: [1-3]\n"
        "  backoff_initial_seconds: 0.001\n"
        "  backoff_max_seconds: 0.01\n"
        "  max_requests_per_second: 0\n"
        f"{extra}",
        encoding="utf-8",
    )
    return path


def fetch(config: Path, *args: str, secret: str = SK) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ISALES_SECRET_KEY": secret, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(config), "fetch", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
    )


def test_json_lines(tmp_path: Path, server: Simulator, data: SimulatorData) -> None:
    result = fetch(write_config(tmp_path, server.url), "--vdn", "2", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["obs_code"], r["obs_code_desc"]) for r in rows] == list(data.codes(2).items())
    assert all(set(r) == {"obs_code", "obs_code_desc"} for r in rows)
    # ensure_ascii=False: descriptions are written as text, not \\u escapes.
    if any(not desc.isascii() for desc in data.codes(2).values()):
        assert "\\u" not in result.stdout
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("VDN 2: 60 codes (totalCount 60), 2 pages, 2 requests")
    assert summary.endswith("; complete")


def test_table(tmp_path: Path, server: Simulator, data: SimulatorData) -> None:
    result = fetch(write_config(tmp_path, server.url), "--vdn", "1")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["OBS_CODE", "DESCRIPTION"]
    column = header.index("DESCRIPTION")
    codes = data.codes(1)
    assert len(lines) == len(codes)
    for line, (code, desc) in zip(lines, codes.items(), strict=True):
        assert line[:column].rstrip() == code
        assert line[column:] == desc


def test_retries_are_logged_and_succeed(tmp_path: Path, server: Simulator) -> None:
    server.faults.add(Fault(kind="http_status", status=503, page_num=1))
    result = fetch(write_config(tmp_path, server.url), "--vdn", "3", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "HTTP 503: error=Service Unavailable; retry 1 of 5" in result.stderr
    assert "(1 retry, 0 restarts)" in result.stderr


def test_auth_failure_exits_1_with_one_line(tmp_path: Path, server: Simulator) -> None:
    result = fetch(write_config(tmp_path, server.url), "--vdn", "1", secret="wrong-secret")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("obs-sync: VDN 1: HTTP 401 from ")
    assert "check isales.access_key/secret_key" in lines[0]
    assert "wrong-secret" not in result.stderr and SK not in result.stderr


def test_vendor_error_exits_1(tmp_path: Path, server: Simulator) -> None:
    server.faults.add(Fault(kind="result_code", code="02000007", desc="vdnId out of range"))
    result = fetch(write_config(tmp_path, server.url), "--vdn", "1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "obs-sync: VDN 1: iSales failure code 02000007 (parameter value out of range): "
        "vdnId out of range"
    )


def test_incomplete_snapshot_prints_codes_and_exits_1(tmp_path: Path, server: Simulator) -> None:
    config = write_config(tmp_path, server.url, "  max_pages: 1\n")
    result = fetch(config, "--vdn", "1", "--format", "json")
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 50
    assert "INCOMPLETE: stopped at isales.max_pages" in result.stderr


def test_unreachable_server_exits_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", "  max_retries: 1\n")
    result = fetch(config, "--vdn", "1")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("obs-sync: VDN 1: connection refused; failed after 2 attempts; ")
    assert "isales.base_url" in last  # the fix to try
    assert f"(GET http://127.0.0.1:{port}/rest/" in last


def test_config_error_exits_2(tmp_path: Path, server: Simulator) -> None:
    config = write_config(tmp_path, server.url)
    env = {k: v for k, v in os.environ.items() if k != "ISALES_SECRET_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(config), "fetch", "--vdn", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "isales.secret_key: environment variable ISALES_SECRET_KEY is not set" in result.stderr


def test_repeated_vdn_is_a_usage_error_not_the_last_one(tmp_path: Path, server: Simulator) -> None:
    before = server.stats.requests
    result = fetch(write_config(tmp_path, server.url), "--vdn", "1", "--vdn", "2")
    assert result.returncode == 2
    assert "fetch prints one VDN per call" in result.stderr
    assert result.stdout == "" and server.stats.requests == before
