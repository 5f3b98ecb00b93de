"""``obs-sync status``: the other code lists' part: each VDN's latest result per list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from obs_sync.code_lists import OBS_RESULT_CODES
from obs_sync.commands.table import table_lines
from obs_sync.config import Config
from obs_sync.results import FAILING
from obs_sync.store.code_list_status import ListRow, read_code_list_status
from obs_sync.text import escape_controls


def read_lists(
    config: Config, vdn_ids: Sequence[int], sources: Sequence[str] = ()
) -> list[ListRow]:
    """The latest result of each configured list of each configured (or selected) VDN of
    the (selected) sources; [] when none syncs more than its OBS codes."""
    wanted = {
        (source.name, vdn, name)
        for source in config.sources
        if not sources or source.name in sources
        for vdn in (vdn_ids or source.vdn_list)
        for name in source.code_lists
        if name != OBS_RESULT_CODES
    }
    if not wanted:
        return []
    from obs_sync.db.engine import make_engine  # heavy: only when lists are configured

    engine = make_engine(config)
    try:
        rows = read_code_list_status(engine, config.database.schema_)
    finally:
        engine.dispose()
    return [row for row in rows if (row.source, row.vdn_id, row.code_list) in wanted]


def lists_table(rows: Sequence[ListRow]) -> str:
    """A summary per list, then the failing lists' rows."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        by_status = counts.setdefault(row.code_list, {})
        by_status[row.status] = by_status.get(row.status, 0) + 1
    lines = [
        f"{name}: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        for name, by_status in sorted(counts.items())
    ]
    failing = [r for r in rows if r.status in FAILING]
    if failing:
        shown = [
            (
                r.code_list,
                r.source,
                str(r.vdn_id),
                r.status,
                r.last_succeeded_at.isoformat(timespec="seconds")
                if r.last_succeeded_at
                else "never",
                escape_controls((r.error or "")[:120]),
            )
            for r in failing
        ]
        lines += table_lines(
            ["CODE_LIST", "SOURCE", "VDN", "STATUS", "LAST_SUCCESS", "ERROR"], shown
        )
    return "\n".join(lines)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "never"


def with_lists(document: str, rows: Sequence[ListRow]) -> str:
    """The status JSON document with a ``code_lists`` array (when lists are configured)."""
    if not rows:
        return document
    data: dict[str, Any] = json.loads(document)
    data["code_lists"] = [
        {
            "source": r.source,
            "vdn_id": r.vdn_id,
            "code_list": r.code_list,
            "status": r.status,
            "finished_at": r.finished_at.isoformat(),
            "last_succeeded_at": r.last_succeeded_at.isoformat() if r.last_succeeded_at else None,
            "error": r.error,
        }
        for r in rows
    ]
    return json.dumps(data, indent=2, ensure_ascii=False)
