"""``obs-sync status`` output, from fixed rows (the queries are tested on PostgreSQL elsewhere)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from obs_sync.status import RunRow, Status, VdnRow, format_json, format_table

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def sample() -> Status:
    runs = [
        RunRow(8, NOW - timedelta(minutes=5), None, "running", "schedule", 0, 0, 0, 0, 0, 0, 0, 0),
        RunRow(
            7,
            NOW - timedelta(hours=1),
            NOW - timedelta(minutes=59),
            "failed",
            "schedule",
            3,
            2,
            1,
            0,
            5,
            1,
            0,
            0,
        ),
    ]
    vdns = [
        VdnRow(
            1, NOW - timedelta(minutes=59), "succeeded", NOW - timedelta(minutes=59), 0, None, None
        ),
        VdnRow(
            2,
            NOW - timedelta(days=3),
            "failed",
            NOW - timedelta(minutes=59),
            4,
            NOW - timedelta(hours=4),
            "VDN 2: HTTP 401 from http://x: the server rejected " + "x" * 200,
        ),
        VdnRow(3, None, None, None, 0, None, None),
    ]
    return Status(runs, vdns, NOW)


def test_table() -> None:
    text = format_table(sample())
    lines = text.splitlines()
    assert lines[0] == "Recent runs:"
    header = lines[1].split()
    assert header[:8] == ["RUN", "STARTED", "DURATION", "STATUS", "TRIGGER", "VDNS", "OK", "FAILED"]
    assert "running" in lines[2]
    assert "60.0 s" in lines[3] and "+5 ~1 -0 ^0" in lines[3]
    vdn_lines = {line.split()[0]: line for line in lines if line.strip()[:1].isdigit()}
    assert "59 min" in vdn_lines["1"]
    assert "3.0 d" in vdn_lines["2"] and "HTTP 401" in vdn_lines["2"] and "..." in vdn_lines["2"]
    assert "never synced" in vdn_lines["3"] and "never" in vdn_lines["3"]
    assert lines[-1] == "3 VDNs configured: 1 failing, 1 never synced successfully"


def test_json() -> None:
    data = json.loads(format_json(sample()))
    assert [r["run_id"] for r in data["runs"]] == [8, 7]
    assert data["runs"][0]["finished_at"] is None
    vdn2 = data["vdns"][1]
    assert vdn2["streak"] == 4 and vdn2["last_error"].startswith("VDN 2: HTTP 401")
    assert datetime.fromisoformat(vdn2["failing_since"]) == NOW - timedelta(hours=4)
