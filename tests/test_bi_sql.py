"""Every SQL block of docs/bi.md runs against a really synced database and gives the
documented answers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from obs_sync.simulator import Simulator
from obs_sync.sync import run_sync
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
    assert len(sql_blocks()) >= 8


def db_now(connection: Connection) -> datetime:
    value: datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value


def test_bi_queries(simulator: Simulator, database_url: str) -> None:
    blocks = sql_blocks()
    config = make_config(simulator, database_url, vdn_ids=[1, 2], max_retries=0)
    engine = create_engine(database_url)
    data = simulator.data
    codes = list(data.codes(1))
    renamed, removed = codes[0], codes[1]
    old_desc, removed_desc = data.codes(1)[renamed], data.codes(1)[removed]
    try:
        with engine.connect() as connection:
            before_first = db_now(connection)
        assert run_sync(config, engine=engine).exit_code == 0
        with engine.connect() as connection:
            between = db_now(connection)
        data.set_code(1, renamed, "renamed")
        data.remove_code(1, removed)
        assert run_sync(config, engine=engine).exit_code == 0
        with engine.begin() as connection:
            after = db_now(connection)
            connection.execute(text(blocks["a call-records table"]))
            calls = [
                (1, 1, renamed, between),  # before the rename: old description
                (2, 1, renamed, after),  # after: new one
                (3, 1, removed, between),  # while it existed
                (4, 1, removed, after),  # after its deletion: none
                (5, 1, renamed, before_first - timedelta(days=1)),  # before any sync
                (6, 1, "NO-SUCH-CODE", after),
                (7, 2, renamed, after),  # same code on another VDN
            ]
            connection.execute(
                text("INSERT INTO call_record VALUES (:i, :v, :c, :t)"),
                [{"i": i, "v": v, "c": c, "t": t} for i, v, c, t in calls],
            )

        def run(name: str) -> list[tuple[Any, ...]]:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(blocks[name]))]

        at_call = {row[0]: row[4] for row in run("description at call time")}
        vdn2 = data.codes(2).get(renamed)
        assert at_call == {
            1: old_desc,
            2: "renamed",
            3: removed_desc,
            4: None,
            5: None,
            6: None,
            7: vdn2,
        }
        fallback = {
            row[0]: (row[2], row[3]) for row in run("description at call time with fallback")
        }
        assert fallback[1] == (old_desc, True) and fallback[2] == ("renamed", True)
        assert fallback[4] == (removed_desc, False)  # nearest: the version before deletion
        assert fallback[5] == (old_desc, False)  # nearest: the first version
        assert fallback[6] == (None, None)

        current = run("current descriptions")
        assert len(current) == 240 - 1
        assert (1, renamed, "renamed") in {row[:3] for row in current}
        assert removed not in {row[1] for row in current if row[0] == 1}

        relabeled = {row[0]: row[2:] for row in run("calls with current description")}
        assert relabeled[1] == ("renamed", False) and relabeled[3] == (removed_desc, True)
        assert relabeled[6] == (None, None)  # a code never seen: unknown, not "exists"

        instant = run("description at an instant")
        assert len(instant) <= 1

        changes = run("recent changes")
        assert (1, renamed, old_desc, "renamed") in {row[:4] for row in changes}
        assert len(changes) == 240 + 1  # every first version, and the rename
        assert [row[:3] for row in run("recent deletions")] == [(1, removed, removed_desc)]
        fresh = run("freshness")
        assert [row[0] for row in fresh] == [1, 2]
        assert all(between < row[1] < after for row in fresh)  # the second run's records
    finally:
        engine.dispose()
