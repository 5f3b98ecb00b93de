"""`obs-sync db stop-embedded`: stops the embedded PostgreSQL left running, keeps its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obs_sync.db import embedded

pytestmark = pytest.mark.slow


def obs_sync(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env[embedded.DATA_DIR_ENV] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stop_embedded_stops_the_server_and_keeps_its_data(embedded_data_dir: Path) -> None:
    root = embedded_data_dir
    pgdata = root / "pg"

    config = root / "c.yaml"
    config.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: a, secret_key: s, vdn_ids: [1]}\n"
        "database: {url: embedded}\n"
    )
    upgrade = ("--config", str(config), "db", "upgrade")

    idle = obs_sync(root, "db", "stop-embedded")
    assert idle.returncode == 0, idle.stderr
    assert "is not running" in idle.stdout

    start = obs_sync(root, *upgrade)  # empty database.url: starts the server
    assert start.returncode == 0, start.stderr
    assert (pgdata / "postmaster.pid").exists()

    stop = obs_sync(root, "db", "stop-embedded")
    assert stop.returncode == 0, stop.stderr
    assert f"stopped the embedded PostgreSQL in {pgdata}" in stop.stdout
    assert not (pgdata / "postmaster.pid").exists()
    assert (pgdata / "PG_VERSION").is_file()  # data kept

    again = obs_sync(root, *upgrade)  # the next use starts it again
    assert again.returncode == 0, again.stderr
    assert "already at" in again.stdout  # with the schema created the first time

    # A crash leaves a stale postmaster.pid: reported as not running, nothing started.
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    crashed = obs_sync(root, "db", "stop-embedded")
    assert crashed.returncode == 0, crashed.stderr
    assert "is not running (a stale postmaster.pid from a crash" in crashed.stdout
