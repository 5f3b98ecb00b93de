"""``obs-sync demo`` in a subprocess, in an empty directory (no config), to completion,
as a new user runs it: on its own embedded PostgreSQL, two sources (one simulated server
asked in English and in Chinese)."""

from __future__ import annotations

import os
import re
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
    assert "Sources     default (en_US), zh (zh_CN)" in out
    # Both syncs ran against the simulator and succeeded, for each source and VDN.
    assert "3. First sync  run" in out and "5. Second sync run" in out
    syncs = out.split("3. First sync")[1].split("6. What run")[0]
    for source in ("default", "zh"):
        for vdn in (101, 102, 103):
            assert len(re.findall(rf"^ +{source} +VDN {vdn}  succeeded", syncs, re.M)) == 2
            # ... and its other two code lists, in each sync.
            for code_list in ("display_results", "business_results"):
                found = re.findall(rf"^ +{source} +VDN {vdn}  {code_list}: +succeeded", syncs, re.M)
                assert len(found) == 2, syncs
    # What changed, read back from result_code_history / result_code: in each language,
    # under its own source.
    changes = out.split("6. What run")[1].split("7. BI query")[0]
    for expected in (
        "default  VDN 101  00699  new          'The customer asked to be called back later.'",
        "zh       VDN 101  00699  new          '客户要求稍后回电'",
        "default  VDN 102  00603  description  'The called party does not answer the call.' "
        "-> 'No answer after 30 seconds of ringing.'",
        "zh       VDN 102  00603  description  '被叫无应答' -> '振铃30秒后无应答'",
        "default  VDN 103  00622  removed      (was 'Fax tone detected.')",
        "zh       VDN 103  00622  removed      (was '传真音')",
    ):
        assert expected in changes, changes
    # The BI query: the same code resolves to the description valid at each call's time,
    # in English (source default) and Chinese (source zh) side by side, one row per call.
    query = out.split("7. BI query")[1].split("8. Every code")[0]
    rows = [line.split() for line in query.splitlines() if re.match(r" +\d+ +\d+ +\d+ ", line)]
    # call_id, vdn, code, date, time, the Chinese description, the English words.
    by_call = {row[0]: (" ".join(row[6:]), row[5]) for row in rows}
    assert len(rows) == 5
    assert by_call["1"] == ("The called party does not answer the call.", "被叫无应答")
    assert by_call["2"] == ("No answer after 30 seconds of ringing.", "振铃30秒后无应答")
    assert by_call["3"] == ("Fax tone detected.", "传真音")
    assert by_call["4"] == ("The customer asked to be called back later.", "客户要求稍后回电")
    assert by_call["5"] == ("NULL", "NULL")  # failCode "0" is not "00000"
    # Every code of each call labelled (tests/test_bi_sql.py checks the labels): one row
    # per call, the query to run again printed at the end.
    labels = out.split("8. Every code")[1].split("history rows in")[0]
    assert len([line for line in labels.splitlines() if re.match(r" +\d+ +\d+ ", line)]) == 5
    assert "call_labels_at(c.source, c.vdn_id, c.obs_code" in out.split("history rows in")[1]
    assert "demo-secret-key" not in out + result.stderr

    again = demo(tmp_path, data_dir)  # reuses the running server, resets the demo schema
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("00699  new") == 2  # once per source: the schema was reset
