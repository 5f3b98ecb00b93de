"""Labelling scenario: 2,000,000 calls labelled with all four descriptions valid at call time.

    python -m bench.labels [--calls N] [--repeat N] [--database-url URL] [--keep-database]
                           [--reuse] [--scratch]

Data (database ``obs_sync_bench_labels``, recreated each run): the code lists of issue 19's
benchmark, 200 VDNs x (120 OBS codes, 20 display results grouping 6 OBS codes each, 10
business results with 3 sub-statuses each), one source ``default``; an initial sync and 8
change rounds 4 days apart (seeded, deterministic). Per round: an OBS description or a
display label or a business result's name changes with p = 0.285, an entry is removed with
p = 0.02 and a removed one comes back with p = 0.4 (the OBS codes exactly as bench/bi.py,
its generator reused); an OBS code moves to another display result with p = 0.03. The
versions are computed in Python and loaded with COPY into the tables of obs-sync's own
migrations (``--scratch``: into tables of the same public names created by
``bench/labels_scratch.sql``, for before the migrations existed).

Calls: ``bench_call (call_id, source, vdn_id, obs_code, called_at)``, 2,000,000 calls as
bench/bi.py makes them (a random VDN, one of its codes, a time uniform over 36 days), and
``label_call``, the same calls carrying the two more codes: ``result_code`` the display code
their OBS code was grouped under at call time (2% carry ``OB99999``, a system code in no
list), ``busi_result`` one of the VDN's 10 business results (10% none, 1% an unknown code)
and ``sub_status`` one of its 3 sub-statuses (20% none). Indexes as docs/bi.md advises:
``(source, vdn_id, obs_code, called_at) INCLUDE (...)`` covering what the query reads.

Queries, at PostgreSQL's default settings: the **baseline**, today's recommended call-time
join (docs/bi.md) of ``bench_call`` to ``result_code_history``; and the labelling shapes
(`SHAPES`) over ``label_call``. Each the median of ``--repeat`` interleaved runs after a
warm-up round; two figures: **delivered** (every row to the client, ``COPY (query) TO
STDOUT``) and **server** (``EXPLAIN (ANALYZE, TIMING OFF)``). Every shape's labels are
checked against an independent lookup (``tstzrange @>``, one correlated subquery per code:
no join logic shared with the shapes): count and checksum over all calls.

Output: progress on stderr, ``bench/results/labels-<stamp>.json`` and ``.md``; exit 1 when
the documented shape (``RECOMMENDED``) takes longer than 1.5x the baseline (delivered), or
any shape labels a call wrongly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from bench.bi import BASE, CALL_DAYS, CODES, ROUND_DAYS, ROUNDS, VDNS, generate_history
from bench.measure import DEFAULT_DATABASE_URL, BenchDatabase, log

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE = "obs_sync_bench_labels"
SCHEMA = "obs_sync"
SOURCE = "default"
DISPLAY = 20  # display results per VDN
PER_DISPLAY = CODES // DISPLAY  # OBS codes grouped under each
BUSINESS = 10  # business results per VDN
SUBS = 3  # sub-statuses per business result
TARGET_RATIO = 1.5
P_CHANGE, P_REMOVE, P_RESTORE, P_MOVE = 0.285, 0.02, 0.4, 0.03


def instant(round_: int, vdn: int) -> Any:
    return BASE + timedelta(days=round_ * ROUND_DAYS, milliseconds=vdn * 37)


def timeline(rng: random.Random, vdn: int) -> list[tuple[int, Any, Any, int, int | None]]:
    """Versions of one entry: (generation, valid_from, valid_to, opened by, closed by)."""
    out: list[tuple[int, Any, Any, int, int | None]] = []
    open_: list[Any] | None = None
    generation = 0
    for r in range(ROUNDS + 1):
        ts = instant(r, vdn)
        if r == 0:
            event = "insert"
        elif open_ is not None:
            u = rng.random()
            event = "update" if u < P_CHANGE else "delete" if u < P_CHANGE + P_REMOVE else ""
        else:
            event = "restore" if rng.random() < P_RESTORE else ""
        if not event:
            continue
        if open_ is not None:
            out.append((open_[0], open_[1], ts, open_[2], r + 1))
            open_ = None
        if event == "delete":
            continue
        if event != "restore" or rng.random() < 0.5:
            generation += 1
        open_ = [generation, ts, r + 1]
    if open_ is not None:
        out.append((open_[0], open_[1], None, open_[2], None))
    return out


def def_id(vdn: int, k: int) -> str:
    return str(1_400_000_000 + vdn * 100 + k)


def display_code(k: int) -> str:
    return f"{k + 1:03d}"


def business_code(p: int) -> str:
    return f"1234{p:02d}"


def sub_code(p: int, c: int) -> str:
    return f"1000{p:02d}{c}"


def obs_code(k: int) -> str:
    return f"{600 + k * 7:05d}"  # as bench/bi.py


def generate_lists(seed: int = 19) -> dict[str, list[tuple[Any, ...]]]:
    """Display results, their OBS codes and business results with their versions."""
    rng = random.Random(seed)
    display: list[tuple[Any, ...]] = []
    grouping: list[tuple[Any, ...]] = []
    business: list[tuple[Any, ...]] = []
    for vdn in range(1, VDNS + 1):
        for k in range(DISPLAY):
            for g, start, end, opened, closed in timeline(rng, vdn):
                label = f"VDN {vdn} display {display_code(k)}: label v{g}"
                display.append(
                    (SOURCE, vdn, def_id(vdn, k), display_code(k), label, start, end, opened,
                     closed)
                )
        for k in range(CODES):
            group = k // PER_DISPLAY
            start, opened = instant(0, vdn), 1
            for r in range(1, ROUNDS + 1):
                if rng.random() < P_MOVE:
                    ts = instant(r, vdn)
                    grouping.append(
                        (SOURCE, vdn, def_id(vdn, group), obs_code(k), start, ts, opened, r + 1)
                    )
                    group = (group + rng.randint(1, DISPLAY - 1)) % DISPLAY
                    start, opened = ts, r + 1
            grouping.append((SOURCE, vdn, def_id(vdn, group), obs_code(k), start, None, opened,
                             None))
        for p in range(BUSINESS):
            for g, start, end, opened, closed in timeline(rng, vdn):
                name = f"VDN {vdn} business {business_code(p)} v{g}"
                business.append(
                    (SOURCE, vdn, "", business_code(p), name, 1, start, end, opened, closed)
                )
            for c in range(SUBS):
                for g, start, end, opened, closed in timeline(rng, vdn):
                    name = f"VDN {vdn} sub-status {sub_code(p, c)} v{g}"
                    business.append(
                        (SOURCE, vdn, business_code(p), sub_code(p, c), name, 2, start, end,
                         opened, closed)
                    )
    return {"display": display, "grouping": grouping, "business": business}


def load(connection: psycopg.Connection[Any], scratch: bool) -> dict[str, int]:
    """The OBS history (bench/bi.py's generator) and the other three lists, by COPY."""
    s = SCHEMA
    obs = generate_history()
    lists = generate_lists()
    with connection.transaction():
        if not scratch:
            with connection.cursor().copy(
                f"COPY {s}.sync_run (id, started_at, finished_at, status, trigger, vdns, "
                "succeeded, inserted, updated, deleted, restored) FROM STDIN"
            ) as copy:
                for row in obs["runs"]:
                    copy.write_row(row)
        with connection.cursor().copy(
            f"COPY {s}.result_code_history (source, vdn_id, obs_code, obs_code_desc, "
            "valid_from, valid_to, sync_run_id, closed_by_sync_run_id) FROM STDIN"
        ) as copy:
            for v in obs["versions"]:
                copy.write_row((SOURCE, *v[1:]))
        with connection.cursor().copy(
            f"COPY {s}.display_result_history (source, vdn_id, def_id, result_code, "
            "display_result, valid_from, valid_to, sync_run_id, closed_by_sync_run_id) "
            "FROM STDIN"
        ) as copy:
            for row in lists["display"]:
                copy.write_row(row)
        with connection.cursor().copy(
            f"COPY {s}.display_result_obs_code_history (source, vdn_id, def_id, obs_code, "
            "valid_from, valid_to, sync_run_id, closed_by_sync_run_id) FROM STDIN"
        ) as copy:
            for row in lists["grouping"]:
                copy.write_row(row)
        with connection.cursor().copy(
            f"COPY {s}.business_result_history (source, vdn_id, parent_code, code, name, "
            "level, valid_from, valid_to, sync_run_id, closed_by_sync_run_id) FROM STDIN"
        ) as copy:
            for row in lists["business"]:
                copy.write_row(row)
    for table in (
        "result_code_history",
        "display_result_history",
        "display_result_obs_code_history",
        "business_result_history",
    ):
        connection.execute(f"VACUUM ANALYZE {s}.{table}")
    return {
        "obs_versions": len(obs["versions"]),
        "display_versions": len(lists["display"]),
        "grouping_versions": len(lists["grouping"]),
        "business_versions": len(lists["business"]),
    }


# The calls: bench/bi.py's generation (same seed, same distribution), with a source, then
# the two more codes a call record carries.
CALLS_SQL = """
CREATE TABLE bench_call (
    call_id   bigint PRIMARY KEY,
    source    text NOT NULL,
    vdn_id    integer NOT NULL,
    obs_code  text NOT NULL,
    called_at timestamptz NOT NULL
);
CREATE TEMP TABLE code_pick AS
    SELECT vdn_id, obs_code,
           (row_number() OVER (PARTITION BY vdn_id ORDER BY obs_code) - 1)::int AS k
    FROM (SELECT DISTINCT vdn_id, obs_code FROM obs_sync.result_code_history) AS d;
CREATE INDEX ON code_pick (vdn_id, k);
SELECT setseed(0.12);
INSERT INTO bench_call
SELECT i, 'default', p.vdn_id, p.obs_code, %(base)s::timestamptz + r.t * %(span)s::interval
FROM (SELECT i, 1 + floor(random() * %(vdns)s)::int AS v, floor(random() * %(codes)s)::int AS k,
             random() AS t
      FROM generate_series(1, %(calls)s) AS i) AS r
JOIN code_pick AS p ON p.vdn_id = r.v AND p.k = r.k
ORDER BY i;
CREATE INDEX bench_call_code_idx ON bench_call (source, vdn_id, obs_code, called_at)
    INCLUDE (call_id);
SELECT setseed(0.19);
CREATE TABLE label_call AS
SELECT c.call_id, c.source, c.vdn_id, c.obs_code,
       CASE WHEN random() < 0.02 THEN 'OB99999' ELSE coalesce(d.result_code, 'OB99999') END
           AS result_code,
       b.busi_result,
       CASE WHEN b.busi_result IS NULL OR random() < 0.2 THEN NULL
            ELSE '1000' || substr(b.busi_result, 5) || floor(random() * %(subs)s)::int
       END AS sub_status,
       c.called_at
FROM bench_call AS c
CROSS JOIN LATERAL (
    SELECT CASE WHEN u < 0.1 THEN NULL WHEN u < 0.11 THEN 'X-unknown'
                ELSE '1234' || lpad(floor(random() * %(business)s)::int::text, 2, '0') END
    FROM (SELECT random() + 0 * c.call_id AS u) AS x) AS b (busi_result)
LEFT JOIN LATERAL (
    SELECT dr.result_code
    FROM obs_sync.display_result_obs_code_history AS g
    JOIN obs_sync.display_result_history AS dr
      ON dr.source = g.source AND dr.vdn_id = g.vdn_id AND dr.def_id = g.def_id
     AND tstzrange(dr.valid_from, dr.valid_to) @> c.called_at
    WHERE g.source = c.source AND g.vdn_id = c.vdn_id AND g.obs_code = c.obs_code
      AND tstzrange(g.valid_from, g.valid_to) @> c.called_at
    LIMIT 1) AS d ON true
ORDER BY c.call_id;
ALTER TABLE label_call ADD PRIMARY KEY (call_id);
CREATE INDEX label_call_code_idx ON label_call (source, vdn_id, obs_code, called_at)
    INCLUDE (call_id, result_code, busi_result, sub_status);
VACUUM ANALYZE bench_call;
VACUUM ANALYZE label_call
"""


def make_calls(connection: psycopg.Connection[Any], calls: int) -> None:
    params = {
        "base": BASE,
        "span": f"{CALL_DAYS} days",
        "vdns": VDNS,
        "codes": CODES,
        "calls": calls,
        "subs": SUBS,
        "business": BUSINESS,
    }
    for statement in CALLS_SQL.split(";\n"):
        if statement.strip():
            connection.execute(statement, params if "%(" in statement else None)
