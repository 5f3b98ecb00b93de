"""``obs-sync status`` output, from fixed rows (the queries are tested on PostgreSQL elsewhere)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from obs_sync.commands.status import format_json, format_table, make_view, vdn_state
from obs_sync.store.status_query import RunRow, Status, VdnRow

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
UTC8 = timezone(timedelta(hours=8))


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
    text = format_table(sample(), zone=UTC8)
    lines = text.splitlines()
    assert lines[0] == "Times are in UTC+08:00; now 2024-05-01 20:00:00"
    # The summary first: counts by state, the oldest success, the longest failure.
    assert lines[2] == (
        "Summary: 3 VDNs: 1 failing, 1 never synced, 0 stale (no success for over 180 min), "
        "0 empty, 1 ok"
    )
    assert lines[3].split()[:5] == ["oldest", "success:", "VDN", "2,", "2024-04-28"]
    assert lines[4].startswith("  longest failure: VDN 2, failing since 2024-05-01 16:00:00")
    assert "4 results" in lines[4] and "HTTP 401" in lines[4]
    runs = lines.index("Recent runs:")
    header = lines[runs + 1].split()
    assert header[:8] == ["RUN", "STARTED", "DURATION", "STATUS", "TRIGGER", "VDNS", "OK", "FAILED"]
    assert "running" in lines[runs + 2] and "2024-05-01 19:55:00" in lines[runs + 2]
    assert "60.0 s" in lines[runs + 3] and "+5 ~1 -0 ^0" in lines[runs + 3]
    vdn_lines = {line.split()[0]: line for line in lines if line.strip()[:1].isdigit()}
    assert "59 min" in vdn_lines["1"]
    assert "3.0 d" in vdn_lines["2"] and "HTTP 401" in vdn_lines["2"] and "..." in vdn_lines["2"]
    assert "2024-04-28 20:00:00" in vdn_lines["2"]  # last success, at UTC+08:00
    assert "2024-05-01 16:00:00" in vdn_lines["2"]  # failing since
    assert "never synced" in vdn_lines["3"] and "never" in vdn_lines["3"]
    # Failing first, then never synced, then the healthy.
    assert [line.split()[0] for line in lines if line.strip()[:1].isdigit()][-3:] == [
        "2",
        "3",
        "1",
    ]


def test_json() -> None:
    data = json.loads(format_json(sample()))
    assert data["warnings"] == []
    assert [r["run_id"] for r in data["runs"]] == [8, 7]
    assert data["runs"][0]["finished_at"] is None
    assert data["format_version"] == 1
    vdn2 = next(v for v in data["vdns"] if v["vdn_id"] == 2)
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


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone set from $TZ, restored afterwards."""
    if not Path("/usr/share/zoneinfo/Asia/Kolkata").exists():
        pytest.skip("no system time zone database")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()
        assert os.environ.get("TZ") != "Asia/Kolkata"


def test_table_times_are_local_and_say_their_offset(local_zone: None) -> None:
    lines = format_table(sample()).splitlines()
    assert lines[0] == "Times are in UTC+05:30 (local time); now 2024-05-01 17:30:00"
    run7 = next(line for line in lines if line.strip().startswith("7 "))
    assert "2024-05-01 16:30:00" in run7  # run 7 started 11:00 UTC


def test_table_times_use_one_offset_across_daylight_saving() -> None:
    """Times from winter shown in summer keep the offset the first line states."""
    from zoneinfo import ZoneInfo

    try:
        berlin = ZoneInfo("Europe/Berlin")
    except Exception:
        pytest.skip("no time zone database")
    now = datetime(2024, 7, 1, 12, 0, tzinfo=timezone.utc)
    winter = datetime(2024, 1, 15, 12, 0, tzinfo=timezone.utc)
    row = VdnRow(1, winter, "succeeded", winter, 0, None, None)
    lines = format_table(Status([], [row], now), zone=berlin).splitlines()
    assert lines[0] == "Times are in UTC+02:00; now 2024-07-01 14:00:00"
    assert "2024-01-15 14:00:00" in next(line for line in lines if line.startswith("  1 "))


def test_negative_and_zero_offsets() -> None:
    west = timezone(-timedelta(hours=3, minutes=30))
    assert format_table(sample(), zone=west).splitlines()[0] == (
        "Times are in UTC-03:30; now 2024-05-01 08:30:00"
    )
    assert format_table(sample(), zone=timezone.utc).splitlines()[0] == (
        "Times are in UTC; now 2024-05-01 12:00:00"
    )


def test_a_warning_comes_first_and_is_in_json() -> None:
    warning = "schema obs_sync is at migration 0042, which this obs-sync version does not know"
    status = Status(sample().runs, sample().vdns, NOW, [warning])
    lines = format_table(status, zone=UTC8).splitlines()
    assert lines[0] == f"warning: {warning}"
    assert lines[1].startswith("Times are in UTC+08:00")
    assert json.loads(format_json(status))["warnings"] == [warning]


def test_no_runs_yet() -> None:
    status = Status([], [VdnRow(3, None, None, None, 0, None, None)], NOW)
    lines = format_table(status, zone=UTC8).splitlines()
    runs = lines.index("Recent runs:")
    assert lines[runs + 1] == "  (none yet)"
    assert lines[2].startswith("Summary: 1 VDN: 0 failing, 1 never synced")
    assert "oldest success" not in "\n".join(lines) and "longest failure" not in "\n".join(lines)


def _row(vdn_id: int, **fields: object) -> VdnRow:
    values: dict[str, object] = {
        "last_success": NOW - timedelta(minutes=10),
        "last_status": "succeeded",
        "last_attempt": NOW - timedelta(minutes=10),
        "streak": 0,
        "failing_since": None,
        "last_error": None,
        "last_total_count": 7,
    }
    values.update(fields)
    return VdnRow(vdn_id, **values)  # type: ignore[arg-type]


def many() -> Status:
    """9,999 VDNs: mostly healthy, a few failing, stale, empty and never synced."""
    rows = [_row(v) for v in range(1, 10_000)]
    for vdn, hours in ((5000, 2), (17, 30), (9000, 1)):
        rows[vdn - 1] = _row(
            vdn,
            last_status="failed",
            streak=hours,
            failing_since=NOW - timedelta(hours=hours),
            last_error=f"VDN {vdn}: HTTP 503",
        )
    rows[41] = _row(42, last_success=NOW - timedelta(hours=5))  # stale
    rows[43] = _row(44, last_success=NOW - timedelta(days=2))  # staler
    rows[99] = _row(100, last_total_count=0)  # empty
    rows[6] = _row(7, last_success=None, last_status=None, last_attempt=None)  # never
    return Status([], rows, NOW)


def test_ten_thousand_vdns_summary_first_then_those_needing_a_look() -> None:
    view = make_view(many(), timedelta(minutes=180))
    assert view.by_state == {"failing": 3, "never_synced": 1, "stale": 2, "empty": 1, "ok": 9992}
    assert view.longest_failure is not None and view.longest_failure.vdn_id == 17
    assert view.oldest_success is not None and view.oldest_success.vdn_id == 44
    order = [v.vdn_id for v in view.listed[:8]]
    assert order == [17, 5000, 9000, 7, 44, 42, 100, 1]  # failing (longest first), never, stale
    lines = format_table(view, zone=timezone.utc).splitlines()
    assert lines[2].startswith("Summary: 9999 VDNs: 3 failing, 1 never synced, 2 stale")
    assert "1 empty, 9992 ok" in lines[2]
    listed = [
        line.split()[:2] for line in lines if line.startswith("  ") and line.split()[0].isdigit()
    ]
    assert listed[:4] == [
        ["17", "failing"],
        ["5000", "failing"],
        ["9000", "failing"],
        ["7", "never"],
    ]
    assert ["100", "empty"] in listed[:8]


def test_failing_only_lists_the_failing_and_keeps_the_summary() -> None:
    view = make_view(many(), timedelta(minutes=180), failing_only=True)
    assert [v.vdn_id for v in view.listed] == [17, 5000, 9000]
    text = format_table(view, zone=timezone.utc)
    assert "Summary: 9999 VDNs: 3 failing" in text and "Failing VDNs (3)" in text
    data = json.loads(format_json(view))
    assert [v["vdn_id"] for v in data["vdns"]] == [17, 5000, 9000]
    assert data["summary"]["by_state"]["ok"] == 9992 and data["filter"]["failing"] is True


def test_json_is_a_stable_documented_document() -> None:
    view = make_view(many(), timedelta(minutes=180), selected=[1, 2], database="PostgreSQL at h")
    data = json.loads(format_json(view))
    assert set(data) == {
        "format_version",
        "now",
        "database",
        "warnings",
        "stale_after_minutes",
        "filter",
        "summary",
        "runs",
        "vdns",
    }
    assert data["format_version"] == 1 and data["stale_after_minutes"] == 180
    assert data["summary"]["longest_failure"] == {
        "source": "default",  # keys added with sources (format_version 1: keys may be added)
        "vdn_id": 17,
        "since": (NOW - timedelta(hours=30)).isoformat(),
        "streak": 30,
        "last_error": "VDN 17: HTTP 503",
    }
    assert data["summary"]["oldest_success"]["vdn_id"] == 44
    assert data["filter"] == {"failing": False, "vdns": [1, 2], "sources": None}
    empty = next(v for v in data["vdns"] if v["vdn_id"] == 100)
    assert empty["state"] == "empty" and empty["empty"] is True
    assert set(empty) >= {"vdn_id", "state", "last_status", "last_success", "streak", "last_error"}


def test_a_stale_vdn_is_one_whose_last_success_is_older_than_the_limit() -> None:
    row = _row(1, last_success=NOW - timedelta(minutes=180))
    assert vdn_state(row, NOW, timedelta(minutes=180)) == "ok"  # at the limit: not yet
    older = _row(1, last_success=NOW - timedelta(minutes=180, seconds=1))
    assert vdn_state(older, NOW, timedelta(minutes=180)) == "stale"
