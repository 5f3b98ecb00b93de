"""``obs-sync demo`` in a subprocess, in an empty directory (no config), to completion,
as a new user runs it: on its own embedded PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("obs_sync.engine.run")
pytestmark = pytest.mark.slow


def demo(tmp_path: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env["OBS_SYNC_DATA_DIR"] = str(data_dir)
    # A production database configured in the environment is never touched by the demo
    # (nothing listens on port 1: using it would fail the demo).
    env["OBS_SYNC_DATABASE_URL"] = "postgresql+psycopg://prod:prod-password@127.0.0.1:1/prod"
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_demo_runs_to_completion(tmp_path: Path, embedded_data_dir: Path) -> None:
    data_dir = embedded_data_dir
    result = demo(tmp_path, data_dir)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "2. Database    embedded PostgreSQL: postgresql://" in out
    assert f"host={data_dir / 'pg'}" in out
    # Both syncs ran against the simulator and succeeded.
    assert "3. First sync  run" in out and "5. Second sync run" in out
    assert out.count("succeeded") >= 6
    # What changed, read back from result_code_history / result_code.
    changes = out.split("6. What run")[1].split("7. BI query")[0]
    assert "00699  new          'The customer asked to be called back later.'" in changes
    assert (
        "00603  description  'The called party does not answer the call.' -> "
        "'No answer after 30 seconds of ringing.'" in changes
    )
    assert "00622  removed      (was 'Fax tone detected.')" in changes
    # The BI query: the same code resolves to the description valid at each call's time.
    query = out.split("7. BI query")[1]
    rows = [line.split() for line in query.splitlines() if line.strip()[:1].isdigit()]
    by_call = {row[0]: " ".join(row[5:]) for row in rows}  # call_id, vdn, code, date, time
    assert by_call["1"] == "The called party does not answer the call."
    assert by_call["2"] == "No answer after 30 seconds of ringing."
    assert by_call["3"] == "Fax tone detected."
    assert by_call["4"] == "The customer asked to be called back later."
    assert "demo-secret-key" not in out + result.stderr

    again = demo(tmp_path, data_dir)  # reuses the running server, resets the demo schema
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("00699  new") == 1
