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


def failing(error: str) -> Status:
    row = VdnRow(5, None, "failed", NOW, 2, NOW - timedelta(hours=1), error)
    return Status([], [row], NOW)


def error_cell(text: str) -> str:
    line = next(line for line in text.splitlines() if line.strip().startswith("5 "))
    return line[line.index("VDN 5:") :]


def test_a_long_error_keeps_its_cause_and_loses_the_url_path_first() -> None:
    url = "https://isales.example.com:28090/rest/isales/v1/openapi/campaigns/5/queryOBSResultCode"
    error = f"VDN 5: HTTP 404 from {url}?pageSize=50&pageNum=1 (not retried): error=Not Found"
    cell = error_cell(format_table(failing(error), error_width=90))
    assert cell == (
        "VDN 5: HTTP 404 from https://isales.example.com:28090/... (not retried): error=Not Found"
    )


def test_a_cut_error_ends_at_a_word_with_a_marker() -> None:
    error = (
        "VDN 5: DNS lookup failed for host 'isales.example.com': Temporary failure in name "
        "resolution; failed after 4 attempts (GET https://isales.example.com:28090/rest/x?a=1)"
    )
    cell = error_cell(format_table(failing(error)))
    assert (
        cell == "VDN 5: DNS lookup failed for host 'isales.example.com': Temporary failure in ..."
    )
    assert len(cell) <= 80


def test_an_error_is_one_line() -> None:
    cell = error_cell(format_table(failing("VDN 5: first\n  second")))
    assert cell == "VDN 5: first second"
