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
    ZERO_CALL,
    demo_calls,
    demo_code_lists,
    demo_data,
)
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator, SimulatorData
from obs_sync.store.demo import CALL_TIME_QUERY, CALLS_TABLE
from obs_sync.store.grants import grant_reader
from tests.fixtures_db import TEST_SCHEMA, make_config

BI = Path(__file__).resolve().parent.parent / "docs" / "bi.md"
BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)


# docs/bi.md's blocks for calls carrying all three codes: their table, the set-based query,
# the function. They run on the demo's database below, and on the lists' lifecycle (renames,
# unknown and NULL codes) in tests/test_call_labels.py.
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


def replaced(block: str, directory: Path) -> str:
    """``block`` with the page's replacements for the demo's database, by its own sed."""
    (directory / "query.sql").write_text(block)
    return subprocess.run(
        ["bash", "-c", demo_replacements()],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout


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
    query = replaced("".join(block.splitlines(keepends=True)[1:]), tmp_path)
    assert query == CALL_TIME_QUERY.format(schema=DEMO_SCHEMA, calls=CALLS_TABLE)


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
        if name in ("a call-records table", LABEL_BLOCKS[0]):
            continue  # the demo made its table (the page says to skip these blocks)
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
    assert "(5 rows)" in at_call_time  # the demo's five calls, none dropped
    for description in (DEMO_CODES[ch_vdn][ch_code], ch_desc, NEW_CODE[2], "Fax tone detected."):
        assert description in at_call_time
    assert out["description at an instant"].count(ch_desc) == 1
    # The demo's two sources side by side, as its step 7 prints them.
    two = out["description at call time in two languages"]
    assert "(5 rows)" in two
    for description in (ch_desc, CHINESE[ch_desc], CHINESE[NEW_CODE[2]], "传真音"):
        assert description in two
    # The demo only removes 00622 (as the page says): removed, not back.
    rm_code = REMOVED_CODE[1]
    removal = [line for line in out["recent removals"].splitlines() if rm_code in line]
    assert len(removal) == 1 and removal[0].rstrip().endswith("| f"), removal
    assert "restored" not in out["recent changes"]
    assert "(3 rows)" in out["freshness"]
    for name in LABEL_BLOCKS[1:]:
        assert "(5 rows)" in out[name]  # every call labelled, none dropped
    url = printed[1].replace("postgresql://", "postgresql+psycopg://", 1)
    labels_on_the_demos_data(url, tmp_path)


def labels_on_the_demos_data(url: str, directory: Path) -> None:
    """docs/bi.md's two labelling queries, with the page's replacements, on the demo's own
    calls and lists: one row per call, none dropped, the labels the simulator served, and
    failCode "0" as the page says (no OBS description; "00000"'s through its CASE)."""
    blocks = sql_blocks()
    set_based, function = (replaced(blocks[name], directory) for name in LABEL_BLOCKS[1:])
    mapped = function.replace(
        "c.obs_code, c.result_code",
        "CASE WHEN c.obs_code = '0' THEN '00000' ELSE c.obs_code END, c.result_code",
    )
    assert mapped != function
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            stored = {
                row[0]: tuple(row[1:])
                for row in connection.execute(
                    text(
                        "SELECT call_id, source, vdn_id, obs_code, result_code, busi_result, "
                        f"sub_status, called_at FROM {DEMO_SCHEMA}.{CALLS_TABLE}"
                    )
                )
            }
            second = connection.execute(
                text(f"SELECT started_at, finished_at FROM {DEMO_SCHEMA}.sync_run WHERE id = 2")
            ).one()
            rows = {
                name: [tuple(r) for r in connection.execute(text(sql))]
                for name, sql in (("function", function), ("set", set_based), ("mapped", mapped))
            }
    finally:
        engine.dispose()
    # The calls the demo stored are the ones it plans from the simulator's lists; each made
    # before the second sync (the upstream changes) or after it.
    early, late = datetime(2000, 1, 1).astimezone(), datetime(2001, 1, 1).astimezone()
    planned = demo_calls(demo_code_lists(demo_data()), early, late)
    assert {
        c["id"]: (
            c["source"],
            c["vdn"],
            c["code"],
            c["result_code"],
            c["busi_result"],
            c["sub_status"],
        )
        for c in planned
    } == {i: r[:6] for i, r in stored.items()}
    later = {c["id"]: c["at"] == late for c in planned}
    for call_id, row in stored.items():
        assert row[6] > second.finished_at if later[call_id] else row[6] < second.started_at
    # Every call has a display code, a business result and a sub-status but one (a failCode
    # its tenant did not group under a display result).
    assert sum(r[3] is None for r in stored.values()) == 1
    assert all(r[4] is not None and r[5] is not None for r in stored.values())

    expected = expected_labels({i: (*r[1:6], later[i]) for i, r in stored.items()})
    by_function = {row[0]: row[2:] for row in rows["function"]}
    # One row per call, none dropped; both documented shapes give the same rows.
    assert [row[0] for row in rows["function"]] == sorted(stored)
    assert rows["set"] == rows["function"]
    assert by_function == expected
    assert all(label is not None for labels in expected.values() for label in labels[2:])
    zero = next(i for i, r in stored.items() if r[1:3] == ZERO_CALL)
    assert by_function[zero][0] is None and by_function[zero][1] is not None
    remapped = {row[0]: row[2:] for row in rows["mapped"]}
    assert remapped[zero] == (DEMO_CODES[ZERO_CALL[0]]["00000"], *by_function[zero][1:])
    assert {i: v for i, v in remapped.items() if i != zero} == {
        i: v for i, v in by_function.items() if i != zero
    }


def expected_labels(calls: dict[int, tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    """Each demo call's four labels, looked up in the data the demo's simulator served
    (source default, en_US), not in the database: ``calls`` is {call_id: (vdn_id, obs_code,
    result_code, busi_result, sub_status, after_the_changes)}."""
    lists = demo_code_lists(demo_data())
    before = {vdn: dict(codes) for vdn, codes in DEMO_CODES.items()}
    after = {vdn: dict(codes) for vdn, codes in DEMO_CODES.items()}
    after[NEW_CODE[0]][NEW_CODE[1]] = NEW_CODE[2]
    after[CHANGED_CODE[0]][CHANGED_CODE[1]] = CHANGED_CODE[2]
    del after[REMOVED_CODE[0]][REMOVED_CODE[1]]
    expected = {}
    for call_id, (vdn, obs, display, busi, sub, later) in calls.items():
        labels = [
            d.label["en_US"]
            for d in sorted(lists.display(vdn), key=lambda d: int(d.def_id))
            if d.result_code == display
        ]
        parent = next((b for b in lists.business(vdn) if b.code == busi), None)
        children = dict(parent.children) if parent else {}
        expected[call_id] = (
            (after if later else before)[vdn].get(obs),
            labels[0] if labels else None,
            parent.name["en_US"] if parent else None,
            children[sub]["en_US"] if sub in children else None,
        )
    return expected
