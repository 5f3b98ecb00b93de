"""What ``obs-sync status`` prints: the run records read by :mod:`obs_sync.store.status`,
as a table for people or JSON for tools."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from obs_sync.store.status import Status
from obs_sync.text import plural


def _fixed_zone(now: datetime, zone: tzinfo | None) -> timezone:
    """``zone`` (None: this host's local time) as its UTC offset at ``now``: every time in the
    table is shown at that one offset, so the offset stated once is true for all of them,
    also across a daylight-saving change."""
    offset = now.astimezone(zone).utcoffset()
    return timezone(offset if offset is not None else timedelta(0))


def _zone_name(zone: timezone) -> str:
    offset = zone.utcoffset(None)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _when(value: datetime | None, zone: timezone) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _age(now: datetime, value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = max((now - value).total_seconds(), 0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


# A URL's path and query (``scheme://host:port`` is kept): the part of an error a narrow
# LAST ERROR cell can lose first. ``--format json`` keeps the whole text.
_URL_TAIL = re.compile(r"\b(https?://[^\s/?#]+)[/?#][^\s)]*")


def _short_error(error: str, width: int) -> str:
    """An error on one line in at most ``width`` characters, its cause kept: URLs lose
    their path first, then the end goes, at a word boundary where one is near."""
    text = " ".join(error.split())
    if len(text) <= width:
        return text
    text = _URL_TAIL.sub(r"\1/...", text)
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    space = cut.rfind(" ")
    if space >= width * 3 // 4:
        return cut[:space].rstrip(",;:(") + " ..."
    return cut + "..."


def format_table(
    status: Status, *, error_width: int = 80, zone: tzinfo | None = None, database: str = ""
) -> str:
    """The report for a terminal; times in ``zone`` (None: local time), which the first
    line names, since logs and JSON carry their own offsets and these would not.
    ``database``: which database this was read from (see ``describe_database``)."""
    fixed = _fixed_zone(status.now, zone)
    lines = [f"warning: {warning}" for warning in status.warnings]
    lines.append(
        f"Times are in {_zone_name(fixed)} (local time); now {_when(status.now, fixed)}"
        if zone is None
        else f"Times are in {_zone_name(fixed)}; now {_when(status.now, fixed)}"
    )
    if database:
        lines.append(f"Database: {database}")
    lines += ["", "Recent runs:"]
    if not status.runs:
        lines.append("  (none yet)")
    else:
        run_rows = []
        for run in status.runs:
            duration = (
                f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
                if run.finished_at
                else "running"
            )
            changed = f"+{run.inserted} ~{run.updated} -{run.deleted} ^{run.restored}"
            run_rows.append(
                [
                    str(run.run_id),
                    _when(run.started_at, fixed),
                    duration,
                    run.status,
                    run.trigger or "-",
                    str(run.vdns),
                    str(run.succeeded),
                    str(run.failed),
                    str(run.skipped),
                    changed,
                ]
            )
        header = ["RUN", "STARTED", "DURATION", "STATUS", "TRIGGER", "VDNS", "OK", "FAILED"]
        lines += [
            "  " + line
            for line in _grid(
                [*header, "SKIPPED", "CHANGES (+new ~changed -deleted ^restored)"], run_rows
            )
        ]
    lines.append("")
    lines.append("VDNs:")
    vdn_rows = []
    for vdn in status.vdns:
        error = _short_error(vdn.last_error or "", error_width)
        vdn_rows.append(
            [
                str(vdn.vdn_id),
                vdn.last_status or "never synced",
                _when(vdn.last_success, fixed),
                _age(status.now, vdn.last_success),
                str(vdn.streak),
                _when(vdn.failing_since, fixed),
                error if vdn.streak else "",
            ]
        )
    header = ["VDN", "LAST RESULT", "LAST SUCCESS", "AGE", "STREAK", "FAILING SINCE", "LAST ERROR"]
    lines += ["  " + line for line in _grid(header, vdn_rows)]
    failing = sum(1 for vdn in status.vdns if vdn.streak)
    never = sum(1 for vdn in status.vdns if vdn.last_success is None)
    lines.append("")
    lines.append(
        f"{plural(len(status.vdns), 'VDN')} configured: {failing} failing, "
        f"{never} never synced successfully"
    )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def format_json(status: Status, *, database: str = "") -> str:
    def row(item: Any) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(item).items()}

    return json.dumps(
        {
            "now": status.now.isoformat(),
            "database": database or None,
            "warnings": status.warnings,
            "runs": [row(r) for r in status.runs],
            "vdns": [row(v) for v in status.vdns],
        },
        ensure_ascii=False,
        indent=2,
    )
