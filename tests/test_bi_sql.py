"""Every SQL block of docs/bi.md runs against a really synced database (the demo's codes)
and gives the documented answers."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from obs_sync.commands.demo import CHANGED_CODE, DEMO_CODES, NEW_CODE, REMOVED_CODE
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator, SimulatorData
from tests.fixtures_db import TEST_SCHEMA, make_config

BI = Path(__file__).resolve().parent.parent / "docs" / "bi.md"
BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


def sql_blocks() -> dict[str, str]:
    """{name from the leading `-- query: name` / `-- example: name` comment: SQL}."""
    blocks: dict[str, str] = {}
    for body in BLOCK.findall(BI.read_text("utf-8")):
        first = body.splitlines()[0]
        match = re.match(r"--\s*(query|example):\s*(.+)", first)
        assert match, f"docs/bi.md SQL block without a '-- query: name' first line: {first!r}"
        name = match.group(2).strip()
        assert name not in blocks, f"duplicate block name {name!r}"
        blocks[name] = body
    return blocks


def test_docs_use_the_default_schema() -> None:
    assert TEST_SCHEMA == "obs_sync"
    assert len(sql_blocks()) >= 11


def db_now(connection: Connection) -> datetime:
    value: datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value


def test_bi_queries(make_simulator: Any, database_url: str) -> None:
    blocks = sql_blocks()
    data = SimulatorData({vdn: dict(codes) for vdn, codes in DEMO_CODES.items()})
    simulator: Simulator = make_simulator(data)
    config = make_config(simulator, database_url, vdn_ids=sorted(DEMO_CODES), max_retries=0)
    engine = create_engine(database_url)
    new_vdn, new_code, new_desc = NEW_CODE
    ch_vdn, ch_code, ch_desc = CHANGED_CODE
    old_desc = DEMO_CODES[ch_vdn][ch_code]
    rm_vdn, rm_code = REMOVED_CODE
    rm_desc = DEMO_CODES[rm_vdn][rm_code]

    def stamp() -> datetime:
        time.sleep(0.002)
        with engine.connect() as connection:
            return db_now(connection)

    try:
        before_first = stamp()
        assert run_sync(config, engine=engine).exit_code == 0
        between1 = stamp()
        data.set_code(new_vdn, new_code, new_desc)
        data.set_code(ch_vdn, ch_code, ch_desc)
        data.remove_code(rm_vdn, rm_code)
        assert run_sync(config, engine=engine).exit_code == 0
        between2 = stamp()
        data.set_code(rm_vdn, rm_code, rm_desc)  # back, with its old description
        assert run_sync(config, engine=engine).exit_code == 0
        after = stamp()
        with engine.begin() as connection:
            connection.execute(text(blocks["a call-records table"]))
            calls = [
                (1, ch_vdn, ch_code, between1),  # before the rename: the old description
                (2, ch_vdn, ch_code, after),  # after it: the new one
                (3, rm_vdn, rm_code, between1),  # while it existed
                (4, rm_vdn, rm_code, between2),  # while removed upstream: none
                (5, new_vdn, new_code, between1),  # before the code existed
                (6, 101, "00601", before_first - timedelta(days=1)),  # before any sync
                (7, 101, "NO-SUCH-CODE", after),  # never seen
                (8, rm_vdn, rm_code, after),  # restored
                (9, 102, "00610", after),
            ]
            connection.execute(
                text("INSERT INTO call_record VALUES (:i, :v, :c, :t)"),
                [{"i": i, "v": v, "c": c, "t": t} for i, v, c, t in calls],
            )

        def run(name: str) -> list[tuple[Any, ...]]:
            with engine.connect() as connection:
                found = [tuple(row) for row in connection.execute(text(blocks[name]))]
            assert found, f"docs/bi.md query {name!r} returned no rows on the demo data"
            return found

        expected = {
            1: old_desc,
            2: ch_desc,
            3: rm_desc,
            4: None,
            5: None,
            6: None,
            7: None,
            8: rm_desc,
            9: DEMO_CODES[102]["00610"],
        }
        assert {row[0]: row[4] for row in run("description at call time")} == expected
        windowed = {row[0]: row[2] for row in run("description at call time in a time window")}
        assert windowed == {i: d for i, d in expected.items() if i != 6}  # 6: a day earlier
        via_function = {
            row[0]: row[2] for row in run("description at call time through the function")
        }
        assert via_function == {i: d for i, d in expected.items() if calls[i - 1][1] == 102}

        assert run("description at an instant") == [(ch_desc,)]

        fallback = {row[0]: row[2:] for row in run("description at call time with fallback")}
        assert fallback[1] == (old_desc, True) and fallback[2] == (ch_desc, True)
        assert fallback[4] == (rm_desc, False)  # next version: the restored one
        assert fallback[5] == (new_desc, False)  # next version: the code's first
        assert fallback[6] == (DEMO_CODES[101]["00601"], False)
        assert fallback[7] == (None, False)

        per_day = run("calls per description and day")
        assert sum(row[3] for row in per_day) == len(calls)
        assert (ch_vdn, old_desc) in {(row[1], row[2]) for row in per_day}
        assert (101, "(unknown: NO-SUCH-CODE)") in {(row[1], row[2]) for row in per_day}

        current = run("current descriptions")
        assert len(current) == sum(len(c) for c in DEMO_CODES.values()) + 1
        assert (ch_vdn, ch_code, ch_desc) in {row[:3] for row in current}

        relabeled = {row[0]: row[2:] for row in run("calls with current description")}
        assert relabeled[1] == (ch_desc, False) and relabeled[3] == (rm_desc, False)
        assert relabeled[7] == (None, None)  # a code never seen: unknown, not "exists"

        changes = run("recent changes")
        kinds = {(row[1], row[2], row[3]): row[4:6] for row in changes if row[3] != "new"}
        assert kinds == {
            (ch_vdn, ch_code, "changed"): (old_desc, ch_desc),
            (rm_vdn, rm_code, "removed"): (rm_desc, None),
            (rm_vdn, rm_code, "restored"): (rm_desc, rm_desc),
        }
        assert sum(row[3] == "new" for row in changes) == len(current)  # every first version
        assert [row[:3] + row[4:] for row in run("recent removals")] == [
            (rm_vdn, rm_code, rm_desc, True)
        ]

        fresh = run("freshness")
        assert sorted(row[0] for row in fresh) == [101, 102, 103]
        assert all(between2 < row[1] < after and row[3] == "succeeded" for row in fresh)
        # A configured VDN that never succeeded is listed first, without an age.
        simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=104, times=None))
        more = make_config(simulator, database_url, vdn_ids=[101, 102, 103, 104], max_retries=0)
        assert run_sync(more, engine=engine).exit_code == 1
        first = run("freshness")[0]
        assert first[0] == 104 and first[1] is None and first[2] is None
        assert first[3] == "failed" and first[5]
    finally:
        engine.dispose()
