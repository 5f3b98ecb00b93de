"""Command-line conventions: ``--config`` on either side of the command, and commands that
only touch the database run without the iSales keys (an operator or DBA has no access to
the service's secrets)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def obs_sync(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "ISALES_"))}
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_database_commands_need_no_isales_keys_and_take_config_after_the_command(
    tmp_path: Path, database_url: str
) -> None:
    config = tmp_path / "service.yaml"
    config.write_text(
        "isales:\n"
        "  base_url: http://127.0.0.1:9\n"
        "  access_key: ${ISALES_ACCESS_KEY}\n"
        "  secret_key: ${ISALES_SECRET_KEY}\n"
        "  vdn_ids: [1, 2]\n"
        f"database: {{url: '{database_url}'}}\n"
    )
    upgrade = obs_sync(tmp_path, "db", "--config", str(config), "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    again = obs_sync(tmp_path, "db", "upgrade", "--config", str(config))
    assert again.returncode == 0 and "already at" in again.stdout, again.stderr
    status = obs_sync(tmp_path, "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "Summary: 2 VDNs: 0 failing, 2 never synced" in status.stdout
    # A command that signs requests still needs them, and says which.
    sync = obs_sync(tmp_path, "sync", "--config", str(config))
    assert sync.returncode == 2
    assert "isales.access_key: environment variable ISALES_ACCESS_KEY is not set" in sync.stderr


def test_check_exits_2_for_an_invalid_schedule(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: a, secret_key: s, vdn_ids: [1]}\n"
        "database: {url: 'postgresql://nobody@127.0.0.1:1/none'}\n"
        "schedule: {cron: '61 * * * *'}\n"
        "metrics: {port: 0}\n"
    )
    result = obs_sync(tmp_path, "check", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAIL  config" in result.stdout and "the minute (0-59) field '61'" in result.stdout
