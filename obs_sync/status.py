"""``obs-sync status``: recent runs and each VDN's freshness, read from the run records.

Two read-only queries: the last runs with their per-status VDN counts, and per configured
VDN the last success, the current failure streak (failed / incomplete / guarded results
since that success; ``skipped`` does not count) and the latest error. The per-VDN query
is one index lookup per VDN (sync_run_vdn is indexed by vdn_id), so it stays fast however
long the history grows.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Engine

FAILING = ("failed", "incomplete", "guarded")


@dataclass(frozen=True)
class RunRow:
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    trigger: str | None
    vdns: int
    succeeded: int
    failed: int  # failed + incomplete + guarded
    skipped: int
    inserted: int
    updated: int
    deleted: int
    restored: int


@dataclass(frozen=True)
class VdnRow:
    vdn_id: int
    last_success: datetime | None
    last_status: str | None
    last_attempt: datetime | None
    streak: int
    failing_since: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class Status:
    runs: list[RunRow]
    vdns: list[VdnRow]
    now: datetime


class StatusError(Exception):
    """Nothing to show yet, or the database cannot be read; the message says why."""


def _runs_sql(schema: str) -> str:
    return f"""
        SELECT r.id, r.started_at, r.finished_at, r.status, r.trigger,
               count(v.vdn_id),
               count(*) FILTER (WHERE v.status = 'succeeded'),
               count(*) FILTER (WHERE v.status IN ('failed', 'incomplete', 'guarded')),
               count(*) FILTER (WHERE v.status = 'skipped'),
               coalesce(sum(v.inserted), 0), coalesce(sum(v.updated), 0),
               coalesce(sum(v.deleted), 0), coalesce(sum(v.restored), 0)
        FROM (SELECT * FROM {schema}.sync_run ORDER BY id DESC LIMIT :limit) AS r
        LEFT JOIN {schema}.sync_run_vdn AS v ON v.sync_run_id = r.id
        GROUP BY r.id, r.started_at, r.finished_at, r.status, r.trigger
        ORDER BY r.id DESC
    """


def _vdns_sql(schema: str) -> str:
    return f"""
        SELECT c.vdn_id, ok.last_success, last.status, last.finished_at,
               coalesce(f.streak, 0), f.since, last_error.error
        FROM unnest(CAST(:vdns AS integer[])) AS c(vdn_id)
        LEFT JOIN LATERAL (
            SELECT max(v.finished_at) AS last_success FROM {schema}.sync_run_vdn AS v
            WHERE v.vdn_id = c.vdn_id AND v.status = 'succeeded'
        ) AS ok ON true
        LEFT JOIN LATERAL (
            SELECT v.status, v.finished_at FROM {schema}.sync_run_vdn AS v
            WHERE v.vdn_id = c.vdn_id AND v.status <> 'skipped'
            ORDER BY v.finished_at DESC NULLS LAST LIMIT 1
        ) AS last ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS streak, min(v.finished_at) AS since
            FROM {schema}.sync_run_vdn AS v
            WHERE v.vdn_id = c.vdn_id AND v.status IN ('failed', 'incomplete', 'guarded')
              AND v.finished_at > coalesce(ok.last_success, '-infinity')
        ) AS f ON true
        LEFT JOIN LATERAL (
            SELECT v.error FROM {schema}.sync_run_vdn AS v
            WHERE v.vdn_id = c.vdn_id AND v.error IS NOT NULL
              AND v.status IN ('failed', 'incomplete', 'guarded')
            ORDER BY v.finished_at DESC NULLS LAST LIMIT 1
        ) AS last_error ON true
        ORDER BY c.vdn_id
    """


def read_status(engine: Engine, schema: str, vdn_ids: Sequence[int], *, limit: int = 10) -> Status:
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    try:
        with engine.connect() as connection:
            runs = [
                RunRow(*row)
                for row in connection.execute(text(_runs_sql(schema)), {"limit": limit})
            ]
            vdns = [
                VdnRow(*row)
                for row in connection.execute(text(_vdns_sql(schema)), {"vdns": list(vdn_ids)})
            ]
    except ProgrammingError as error:
        if "does not exist" in str(error.orig):
            raise StatusError(
                f"no run records in schema {schema} yet: run `obs-sync sync` (or the daemon) first"
            ) from None
        raise
    return Status(runs, vdns, datetime.now(timezone.utc))


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


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


def format_table(status: Status, *, error_width: int = 80) -> str:
    lines = ["Recent runs:"]
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
                    _when(run.started_at),
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
                _when(vdn.last_success),
                _age(status.now, vdn.last_success),
                str(vdn.streak),
                _when(vdn.failing_since),
                error if vdn.streak else "",
            ]
        )
    header = ["VDN", "LAST RESULT", "LAST SUCCESS", "AGE", "STREAK", "FAILING SINCE", "LAST ERROR"]
    lines += ["  " + line for line in _grid(header, vdn_rows)]
    failing = sum(1 for vdn in status.vdns if vdn.streak)
    never = sum(1 for vdn in status.vdns if vdn.last_success is None)
    lines.append("")
    lines.append(
        f"{len(status.vdns)} VDNs configured: {failing} failing, {never} never synced successfully"
    )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def format_json(status: Status) -> str:
    def row(item: Any) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(item).items()}

    return json.dumps(
        {
            "now": status.now.isoformat(),
            "runs": [row(r) for r in status.runs],
            "vdns": [row(v) for v in status.vdns],
        },
        ensure_ascii=False,
        indent=2,
    )
