"""Retention of per-VDN run records (``sync_run_vdn``), so years of runs stay small.

Every run writes one ``sync_run_vdn`` row per VDN: 9,999 VDNs every 5 minutes would be
about 2.9 million rows a day. Rows older than ``sync.keep_run_records_days`` are deleted,
in bounded batches after each run, except each VDN's newest ``succeeded`` row (so "last
success" stays known however long a VDN fails). ``sync_run`` rows (one per run) are kept:
``result_code_history`` refers to them and they are small.

The SQL is plain and parameterised in the DB-API ``%(name)s`` style, so it runs on a
psycopg connection or through SQLAlchemy's ``exec_driver_sql`` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from obs_sync.db.url import quote_identifier

log = logging.getLogger("obs_sync.retention")  # the name logs have always shown

# Rows deleted per statement: bounded so one prune never holds locks for long. Called after
# every run, a batch larger than a run's own rows keeps up and catches up on a backlog.
BATCH_ROWS = 50_000

_PRUNE = """
DELETE FROM {s}.sync_run_vdn
WHERE ctid IN (
    SELECT v.ctid
    FROM {s}.sync_run_vdn AS v
    JOIN {s}.sync_run AS r ON r.id = v.sync_run_id
    WHERE r.started_at < now() - %(days)s::float8 * interval '1 day'
      AND (
        v.status <> 'succeeded'
        OR EXISTS (
            SELECT 1 FROM {s}.sync_run_vdn AS newer
            WHERE newer.source = v.source AND newer.vdn_id = v.vdn_id
              AND newer.status = 'succeeded'
              AND newer.finished_at > v.finished_at
        )
      )
    LIMIT %(batch)s
)
"""

# execute(sql, params) -> rows affected
Execute = Callable[[str, Mapping[str, Any]], int]


def prune_run_records(
    execute: Execute, schema: str, keep_days: float, *, max_batches: int = 4
) -> int:
    """Delete run records older than ``keep_days``; return how many. 0 days: keep all."""
    if keep_days <= 0:
        return 0
    sql = _PRUNE.format(s=quote_identifier(schema))
    deleted = 0
    for _ in range(max_batches):
        count = execute(sql, {"days": keep_days, "batch": BATCH_ROWS})
        deleted += count
        if count < BATCH_ROWS:
            break
    if deleted:
        log.info(
            "pruned %d sync_run_vdn rows older than %g days (sync.keep_run_records_days)",
            deleted,
            keep_days,
        )
    return deleted
