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
                    (
                        SOURCE,
                        vdn,
                        def_id(vdn, k),
                        display_code(k),
                        label,
                        start,
                        end,
                        opened,
                        closed,
                    )
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
            grouping.append(
                (SOURCE, vdn, def_id(vdn, group), obs_code(k), start, None, opened, None)
            )
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
                        (
                            SOURCE,
                            vdn,
                            business_code(p),
                            sub_code(p, c),
                            name,
                            2,
                            start,
                            end,
                            opened,
                            closed,
                        )
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


# The queries. {scope} is a WHERE on the calls (all of them here).
BASELINE = "baseline: recommended call-time join (OBS description only)"
SHAPES: dict[str, str] = {
    BASELINE: """
SELECT c.call_id, c.called_at, h.obs_code_desc
FROM bench_call AS c
LEFT JOIN obs_sync.result_code_history AS h
       ON h.source = c.source AND h.vdn_id = c.vdn_id AND h.obs_code = c.obs_code
      AND h.valid_from <= c.called_at
      AND c.called_at < coalesce(h.valid_to, 'infinity')""",
    "set-based (docs/bi.md): 3 range joins + display LATERAL LIMIT 1": """
SELECT c.call_id, c.called_at, h.obs_code_desc, d.display_result,
       b.name AS business_result_name, s.name AS sub_status_name
FROM label_call AS c
LEFT JOIN obs_sync.result_code_history AS h
       ON h.source = c.source AND h.vdn_id = c.vdn_id AND h.obs_code = c.obs_code
      AND h.valid_from <= c.called_at AND c.called_at < coalesce(h.valid_to, 'infinity')
LEFT JOIN LATERAL (
    SELECT x.display_result FROM obs_sync.display_result_history AS x
    WHERE x.source = c.source AND x.vdn_id = c.vdn_id AND x.result_code = c.result_code
      AND x.valid_from <= c.called_at AND c.called_at < coalesce(x.valid_to, 'infinity')
    ORDER BY x.def_id LIMIT 1) AS d ON true
LEFT JOIN obs_sync.business_result_history AS b
       ON b.source = c.source AND b.vdn_id = c.vdn_id AND b.parent_code = ''
      AND b.code = c.busi_result
      AND b.valid_from <= c.called_at AND c.called_at < coalesce(b.valid_to, 'infinity')
LEFT JOIN obs_sync.business_result_history AS s
       ON s.source = c.source AND s.vdn_id = c.vdn_id AND s.parent_code = c.busi_result
      AND s.code = c.sub_status
      AND s.valid_from <= c.called_at AND c.called_at < coalesce(s.valid_to, 'infinity')""",
    "4 range joins (display may duplicate a call if two share a code)": """
SELECT c.call_id, c.called_at, h.obs_code_desc, d.display_result,
       b.name AS business_result_name, s.name AS sub_status_name
FROM label_call AS c
LEFT JOIN obs_sync.result_code_history AS h
       ON h.source = c.source AND h.vdn_id = c.vdn_id AND h.obs_code = c.obs_code
      AND h.valid_from <= c.called_at AND c.called_at < coalesce(h.valid_to, 'infinity')
LEFT JOIN obs_sync.display_result_history AS d
       ON d.source = c.source AND d.vdn_id = c.vdn_id AND d.result_code = c.result_code
      AND d.valid_from <= c.called_at AND c.called_at < coalesce(d.valid_to, 'infinity')
LEFT JOIN obs_sync.business_result_history AS b
       ON b.source = c.source AND b.vdn_id = c.vdn_id AND b.parent_code = ''
      AND b.code = c.busi_result
      AND b.valid_from <= c.called_at AND c.called_at < coalesce(b.valid_to, 'infinity')
LEFT JOIN obs_sync.business_result_history AS s
       ON s.source = c.source AND s.vdn_id = c.vdn_id AND s.parent_code = c.busi_result
      AND s.code = c.sub_status
      AND s.valid_from <= c.called_at AND c.called_at < coalesce(s.valid_to, 'infinity')""",
    "call_labels_at() (CROSS JOIN LATERAL, inlined)": """
SELECT c.call_id, c.called_at, l.obs_code_desc, l.display_result,
       l.business_result_name, l.sub_status_name
FROM label_call AS c
CROSS JOIN LATERAL obs_sync.call_labels_at(c.source, c.vdn_id, c.obs_code, c.result_code,
                                           c.busi_result, c.sub_status, c.called_at) AS l""",
}
RECOMMENDED = "set-based (docs/bi.md): 3 range joins + display LATERAL LIMIT 1"

# Independent labels: tstzrange containment, one correlated subquery per code (no shared
# join logic). Reduced with each shape to a count and an order-independent checksum.
INDEPENDENT = """
SELECT k.call_id,
  (SELECT x.obs_code_desc FROM obs_sync.result_code_history AS x
   WHERE x.source = k.source AND x.vdn_id = k.vdn_id AND x.obs_code = k.obs_code
     AND tstzrange(x.valid_from, x.valid_to) @> k.called_at) AS obs_code_desc,
  (SELECT min(x.display_result) FROM obs_sync.display_result_history AS x
   WHERE x.source = k.source AND x.vdn_id = k.vdn_id AND x.result_code = k.result_code
     AND tstzrange(x.valid_from, x.valid_to) @> k.called_at) AS display_result,
  (SELECT x.name FROM obs_sync.business_result_history AS x
   WHERE x.source = k.source AND x.vdn_id = k.vdn_id AND x.parent_code = ''
     AND x.code = k.busi_result AND tstzrange(x.valid_from, x.valid_to) @> k.called_at)
     AS business_result_name,
  (SELECT x.name FROM obs_sync.business_result_history AS x
   WHERE x.source = k.source AND x.vdn_id = k.vdn_id AND x.parent_code = k.busi_result
     AND x.code = k.sub_status AND tstzrange(x.valid_from, x.valid_to) @> k.called_at)
     AS sub_status_name
FROM label_call AS k"""
CHECKSUM = """
SELECT count(*), sum(hashtextextended(concat_ws('|', call_id, coalesce(obs_code_desc, '-'),
    coalesce(display_result, '-'), coalesce(business_result_name, '-'),
    coalesce(sub_status_name, '-')), 0)::numeric)
FROM ({query}) AS q"""


def execution_ms(connection: psycopg.Connection[Any], sql: str) -> tuple[float, int]:
    row = connection.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql).fetchone()
    assert row is not None
    plan = row[0][0]
    return float(plan["Execution Time"]), int(plan["Plan"]["Actual Rows"])


def delivered_ms(connection: psycopg.Connection[Any], sql: str) -> float:
    started = time.perf_counter()
    with connection.cursor().copy(f"COPY ({sql}) TO STDOUT") as copy:
        for _ in copy:
            pass
    return (time.perf_counter() - started) * 1000


def measure(connection: psycopg.Connection[Any], repeat: int) -> dict[str, Any]:
    server: dict[str, list[float]] = {name: [] for name in SHAPES}
    delivered: dict[str, list[float]] = {name: [] for name in SHAPES}
    rows: dict[str, int] = {}
    for round_ in range(repeat + 1):  # round 0 warms the caches, not counted
        for name, sql in SHAPES.items():
            ms, rows[name] = execution_ms(connection, sql)
            wall = delivered_ms(connection, sql)
            log(f"round {round_} {name[:60]:60} server {ms:9.0f} ms delivered {wall:9.0f} ms")
            if round_:
                server[name].append(ms)
                delivered[name].append(wall)
    out: dict[str, Any] = {}
    for name, sql in SHAPES.items():
        plan = connection.execute("EXPLAIN " + sql).fetchall()
        out[name] = {
            "server_ms": statistics.median(server[name]),
            "delivered_ms": statistics.median(delivered[name]),
            "server_samples": server[name],
            "delivered_samples": delivered[name],
            "rows": rows[name],
            "plan": "\n".join(r[0] for r in plan),
        }
    return out


def markdown(results: dict[str, Any]) -> str:
    base = results["timings"][BASELINE]
    lines = [
        f"Labelling scenario: {results['calls']:,} calls; versions {results['versions']}; "
        f"PostgreSQL {results['server']}, default settings; median of {results['repeat']} "
        f"interleaved runs; load average at start {results['load']}",
        "",
        "| shape | rows | delivered ms | / baseline | server ms | / baseline | labels |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for name, t in results["timings"].items():
        lines.append(
            f"| {name} | {t['rows']:,} | {t['delivered_ms']:,.0f} | "
            f"{t['delivered_ms'] / base['delivered_ms']:.2f} | {t['server_ms']:,.0f} | "
            f"{t['server_ms'] / base['server_ms']:.2f} | {results['checks'].get(name, '-')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OBS_SYNC_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database again")
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="tables from bench/labels_scratch.sql instead of obs-sync's migrations "
        "(no call_labels_at: that shape is left out)",
    )
    args = parser.parse_args(argv)

    from sqlalchemy import create_engine

    from obs_sync.db import migrate

    if args.scratch:
        SHAPES.pop("call_labels_at() (CROSS JOIN LATERAL, inlined)")
    database = BenchDatabase(args.database_url, DATABASE)
    database.claim()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
    versions: dict[str, int] = {}
    try:
        url = database.url.replace("postgresql+psycopg://", "postgresql://")
        if not args.reuse:
            database.recreate()
            if not args.scratch:
                engine = create_engine(database.url)
                try:
                    migrate.upgrade(engine, SCHEMA)
                finally:
                    engine.dispose()
        with psycopg.connect(url, autocommit=True) as connection:
            if not args.reuse:
                if args.scratch:
                    connection.execute((ROOT / "bench" / "labels_scratch.sql").read_text())
                log("generating the lists (Python) and loading them (COPY)")
                versions = load(connection, args.scratch)
                log(f"versions: {versions}; generating {args.calls:,} calls (SQL)")
                make_calls(connection, args.calls)
            row = connection.execute("SHOW server_version").fetchone()
            server = str(row[0]) if row else "?"
            count = connection.execute("SELECT count(*) FROM label_call").fetchone()
            calls = int(count[0]) if count else 0
            log("checking every shape's labels against the independent lookup")
            expected = connection.execute(CHECKSUM.format(query=INDEPENDENT)).fetchone()
            checks = {}
            for name, sql in SHAPES.items():
                if name == BASELINE:
                    continue
                got = connection.execute(CHECKSUM.format(query=sql)).fetchone()
                checks[name] = "same" if got == expected else f"DIFFERENT {got} != {expected}"
                log(f"{name}: {checks[name]}")
            timings = measure(connection, args.repeat)
    finally:
        if not args.keep_database and not args.reuse:
            database.drop()
        database.close()
        database.release()
    results = {
        "server": server,
        "calls": calls,
        "versions": versions,
        "repeat": args.repeat,
        "load": load_average,
        "checks": checks,
        "timings": timings,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"labels-{stamp}.json").write_text(json.dumps(results, indent=2), "utf-8")
    table = markdown(results)
    (RESULTS / f"labels-{stamp}.md").write_text(table, "utf-8")
    print(table)
    ratio = timings[RECOMMENDED]["delivered_ms"] / timings[BASELINE]["delivered_ms"]
    wrong = [name for name, verdict in checks.items() if verdict != "same"]
    if ratio > TARGET_RATIO:
        log(f"MISSED: {RECOMMENDED} at {ratio:.2f}x the baseline (target {TARGET_RATIO}x)")
    for name in wrong:
        log(f"WRONG: {name} labels calls differently from the independent lookup")
    return 1 if ratio > TARGET_RATIO or wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
