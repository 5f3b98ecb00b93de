"""Every SQL block of docs/bi.md runs against a really synced database (the demo's codes),
as a read-only role made by grant-reader, and gives the documented answers; and on the
demo's own database, with the replacements the page gives for it, run as it prints them
(sed and psql)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url

from obs_sync.commands.demo import (
    CHANGED_CODE,
    CHINESE,
    DEMO_CODES,
    DEMO_SCHEMA,
    NEW_CODE,
    REMOVED_CODE,
)
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator, SimulatorData
from obs_sync.store.demo import CALL_TIME_QUERY, CALLS_TABLE
from obs_sync.store.grants import grant_reader
from tests.fixtures_db import TEST_SCHEMA, make_config

BI = Path(__file__).resolve().parent.parent / "docs" / "bi.md"
BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


# docs/bi.md's blocks for calls carrying all three codes: the demo does not sync the display
# and business result lists yet, so tests/test_call_labels.py runs them on simulator data.
LABEL_BLOCKS = (
    "a call-records table with all three codes",
    "every description at call time",
    "every description at call time through the function",
)


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


def demo_command() -> str:
    """The shell command docs/bi.md gives for running a query on the demo's database."""
    section = BI.read_text("utf-8").split("### On the demo's database", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "docs/bi.md: no sh block in 'On the demo's database'"
    return match.group(1)


def demo_replacements() -> str:
    """The command's replacing part (``sed ... query.sql``)."""
    return demo_command().split("|", 1)[0].replace("\\\n", " ").strip()


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

    role = f"obs_bi_reader_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"))
    reader_url = make_url(database_url).set(username=role, password="reader-pw")
    reader = create_engine(reader_url)
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
        grant_reader(engine, TEST_SCHEMA, role)
        # One session of the read-only role: the example table is a temporary one.
        session = reader.connect()
        with session.begin():
            connection = session
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
            with session.begin():  # a transaction per query: now() is the query's time
                found = [tuple(row) for row in session.execute(text(blocks[name]))]
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
        # Two languages: here only the source default exists (the English column); the
        # other source's column is NULL, no call is dropped.
        two = {row[0]: row[4:] for row in run("description at call time in two languages")}
        assert two == {i: (None, d) for i, d in expected.items()}
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
        session.close()
    finally:
        reader.dispose()
        with engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))
        engine.dispose()


def test_the_demo_prints_the_documented_query_with_the_documented_replacements(
    tmp_path: Path,
) -> None:
    block = sql_blocks()["description at call time in two languages"]
    (tmp_path / "query.sql").write_text("".join(block.splitlines(keepends=True)[1:]))
    replaced = subprocess.run(
        ["bash", "-c", demo_replacements()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert replaced == CALL_TIME_QUERY.format(schema=DEMO_SCHEMA, calls=CALLS_TABLE)


@pytest.mark.slow
def test_every_query_runs_on_the_demos_database_as_documented(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    """``obs-sync demo`` as a newcomer runs it, then each query of docs/bi.md through the
    page's own sed | psql command, with the URL the demo printed."""
    from obs_sync.db import embedded

    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env[embedded.DATA_DIR_ENV] = str(embedded_data_dir)
    demo = subprocess.run(
        [sys.executable, "-m", "obs_sync", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    printed = re.search(r"psql '(postgresql://[^']+)'", demo.stdout)
    assert printed, demo.stdout
    command = demo_command()
    assert "'postgresql://postgres:@/obs_sync?host=DIR'" in command
    command = command.replace("'postgresql://postgres:@/obs_sync?host=DIR'", f"'{printed[1]}'")
    # psql: the one the embedded server ships, else this host's.
    bin_dir = embedded.find_bin_dir(embedded_data_dir / "pg")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    out: dict[str, str] = {}
    for name, block in sql_blocks().items():
        if name == "a call-records table":
            continue  # the demo made its table (the page says to skip this block)
        if name in LABEL_BLOCKS:
            continue  # no display or business results in the demo (see LABEL_BLOCKS)
        (tmp_path / "query.sql").write_text(block)
        ran = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0 and not ran.stderr, f"{name}: {ran.stderr}"
        rows = re.search(r"^\((\d+) rows?\)$", ran.stdout, re.MULTILINE)
        assert rows and int(rows[1]) > 0, f"{name} returned no rows on the demo's database"
        out[name] = ran.stdout
    ch_vdn, ch_code, ch_desc = CHANGED_CODE
    at_call_time = out["description at call time"]
    assert "(4 rows)" in at_call_time  # the demo's four calls, none dropped
    for description in (DEMO_CODES[ch_vdn][ch_code], ch_desc, NEW_CODE[2], "Fax tone detected."):
        assert description in at_call_time
    assert out["description at an instant"].count(ch_desc) == 1
    # The demo's two sources side by side, as its step 7 prints them.
    two = out["description at call time in two languages"]
    assert "(4 rows)" in two
    for description in (ch_desc, CHINESE[ch_desc], CHINESE[NEW_CODE[2]], "传真音"):
        assert description in two
    # The demo only removes 00622 (as the page says): removed, not back.
    rm_code = REMOVED_CODE[1]
    removal = [line for line in out["recent removals"].splitlines() if rm_code in line]
    assert len(removal) == 1 and removal[0].rstrip().endswith("| f"), removal
    assert "restored" not in out["recent changes"]
    assert "(3 rows)" in out["freshness"]
