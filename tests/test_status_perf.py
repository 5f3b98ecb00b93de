"""``status`` reads a bounded number of pages per VDN, however long the history.

No wall-clock assertions: the per-VDN query runs under EXPLAIN (ANALYZE, BUFFERS) on two
histories that end alike (same current streaks) but differ tenfold in length, and the
pages it touches are compared. A query that scans or sorts each VDN's whole history (as
``ORDER BY finished_at DESC NULLS LAST`` did) touches about ten times as many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from obs_sync.db import migrate
from obs_sync.store.status_query import _vdns_sql, read_status
from tests.test_status_db import database_url  # noqa: F401  (the fixture)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

VDNS = 20

# Run r of RUNS (ids ascending, 5 minutes apart): VDN 18 has failed in the last 5 runs
# (every third failure without an error), VDN 19 failed long ago and is healthy, VDN 20 is
# skipped every 4th run; the rest always succeed.
HISTORY = """
INSERT INTO {s}.sync_run (started_at, finished_at, status, trigger)
SELECT timestamptz '2024-01-01Z' + g * interval '5 min',
       timestamptz '2024-01-01Z' + g * interval '5 min' + interval '1 min', 'succeeded', 'schedule'
FROM generate_series(1, %(runs)s) AS g;
INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at, error)
SELECT r.id, v, s.status, r.started_at, r.finished_at + v * interval '1 ms',
       CASE WHEN s.status <> 'succeeded' AND mod(r.id, 3) <> 0 THEN 'VDN ' || v || ': HTTP 503' END
FROM {s}.sync_run AS r CROSS JOIN generate_series(1, %(vdns)s) AS v
CROSS JOIN LATERAL (SELECT CASE
    WHEN v = 18 AND r.id > %(runs)s - 5 THEN 'failed'
    WHEN v = 19 AND r.id BETWEEN 10 AND 20 THEN 'incomplete'
    WHEN v = 20 AND mod(r.id, 4) = 0 THEN 'skipped'
    ELSE 'succeeded' END AS status) AS s
ORDER BY r.id, v;
ANALYZE {s}.sync_run_vdn;
"""


def _pages(engine: Engine, schema: str) -> int:
    """Shared buffers (hit or read) the per-VDN query touches for VDNs 1..VDNS."""
    from sqlalchemy import text

    with engine.connect() as connection:
        plan = connection.execute(
            text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _vdns_sql(f'"{schema}"')),
            {"sources": ["default"] * VDNS, "vdns": list(range(1, VDNS + 1))},
        ).scalar_one()[0]["Plan"]
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


def test_pages_per_vdn_do_not_grow_with_history(database_url: str) -> None:  # noqa: F811
    engine = create_engine(database_url)
    plain = make_url(database_url).set(drivername="postgresql")
    try:
        pages = {}
        for schema, runs in (("short", 300), ("long", 3000)):
            migrate.upgrade(engine, schema)
            with psycopg.connect(plain.render_as_string(hide_password=False)) as connection:
                for statement in HISTORY.format(s=f'"{schema}"').split(";\n"):
                    if statement.strip():
                        connection.execute(statement, {"runs": runs, "vdns": VDNS})
                connection.commit()
            pages[schema] = _pages(engine, schema)
            vdns = {v.vdn_id: v for v in read_status(engine, schema, range(1, VDNS + 1)).vdns}
            assert vdns[18].streak == 5 and vdns[18].last_error == "VDN 18: HTTP 503"
            assert vdns[19].streak == 0 and vdns[19].last_error is None
            assert vdns[20].last_status == "succeeded" and vdns[20].streak == 0
    finally:
        engine.dispose()
    # Same work for ten times the history (a page or two more per VDN where the index gets
    # deeper: with source in its key, (source, vdn_id, finished_at) is one level deeper at
    # 60,000 rows than at 6,000, for each lookup of a VDN: 74 -> 99 pages measured).
    assert pages["long"] <= pages["short"] + 2 * VDNS, pages
    # and a few pages per VDN: an index descent and the newest rows
    assert pages["long"] <= 12 * VDNS, pages
