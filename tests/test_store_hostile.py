"""The store against a hostile world (issue 11): an older snapshot never wins, values of any
length, integers the tables cannot hold, VDN record times from the database clock.

Real PostgreSQL and the simulator over real HTTP; concurrency with real threads. Locks
held by other sessions are in tests/test_store_locks.py.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.config import MAX_CODE_BYTES_CAP, Config
from obs_sync.engine.run import run_sync
from obs_sync.results import RunResult
from obs_sync.simulator import Fault, Simulator, SimulatorData
from tests.fixtures_db import (
    TEST_SCHEMA,
    assert_history_invariants,
    make_config,
    present_codes,
    write_config,
)

S = TEST_SCHEMA


@pytest.fixture
def config(simulator: Simulator, database_url: str) -> Config:
    return make_config(simulator, database_url, max_retries=0)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=6)
    yield engine
    engine.dispose()


def sync(config: Config, engine: Engine, **kwargs: Any) -> RunResult:
    return run_sync(config, engine=engine, trigger="test", **kwargs)


def by_vdn(result: RunResult) -> dict[int, Any]:
    return {vdn.vdn_id: vdn for vdn in result.vdns}


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(sql.format(s=S)), params).all())


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.01)


# ------------------------------------------------------------------ item 1: no stale snapshot


def test_an_older_snapshot_is_never_applied_over_a_newer_one(
    config: Config, engine: Engine, simulator: Simulator, database_url: str, tmp_path: Path
):
    sync(config, engine, vdn_ids=[1])
    old = simulator.data.codes(1)
    # B's first page is answered slowly, with the data as it was when the request came.
    simulator.faults.add(Fault(kind="slow", delay_seconds=3, vdn_id=1, page_num=1))
    outcome: dict[str, RunResult] = {}
    b = threading.Thread(target=lambda: outcome.setdefault("b", sync(config, engine, vdn_ids=[1])))
    b.start()
    wait_for(lambda: len(simulator.faults) == 0, "B's first request")
    new = {code: f"{desc} (new)" for code, desc in old.items()}
    simulator.data.set_codes(1, new)
    # A, another process, fetches after B began and applies the new state while B waits.
    path = write_config(tmp_path / "a.yaml", simulator, database_url, max_retries=0)
    a = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", path, "sync", "--vdn", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert b.is_alive(), "B finished before A: the race did not happen (a slower delay?)"
    assert a.returncode == 0, a.stderr
    assert present_codes(engine)[1] == new
    b.join(timeout=60)
    late = by_vdn(outcome["b"])[1]
    assert late.status == "skipped" and late.skip_reason == "superseded"
    assert (late.error or "").startswith("superseded:")
    # Not a failure: the VDN has newer data than B's.
    assert outcome["b"].exit_code == 0 and outcome["b"].status == "succeeded"
    assert present_codes(engine)[1] == new
    history = rows(
        engine,
        "SELECT obs_code, array_agg(obs_code_desc ORDER BY valid_from) "
        "FROM {s}.result_code_history WHERE vdn_id = 1 GROUP BY obs_code",
    )
    assert {code: descs for code, descs in history} == {c: [old[c], new[c]] for c in old}
    (record,) = rows(
        engine,
        "SELECT status, skip_reason FROM {s}.sync_run_vdn WHERE sync_run_id = :r",
        r=outcome["b"].run_id,
    )
    assert tuple(record) == ("skipped", "superseded")
    assert_history_invariants(engine)
    # The next sync is not superseded by anything: its fetch began after A's.
    simulator.data.set_code(1, next(iter(old)), "newest")
    again = by_vdn(sync(config, engine, vdn_ids=[1]))[1]
    assert (again.status, again.updated) == ("succeeded", 1)


# ------------------------------------------------------------------ item 2: any length


def test_descriptions_of_any_length_are_stored_as_sent(
    config: Config, engine: Engine, simulator: Simulator
):
    codes = {
        "cjk": "码" * 900,  # 2,700 bytes: over the btree limit of an index entry
        "long": "x" * 10_000,  # over 8,191 bytes
        "huge": "".join(random.Random(1).choices("abcdefghij 0123456789", k=1_000_000)),
        "short": "ok",
    }
    simulator.data.set_codes(1, codes)
    first = by_vdn(sync(config, engine, vdn_ids=[1]))[1]
    assert (first.status, first.inserted) == ("succeeded", 4), first.error
    assert present_codes(engine)[1] == codes
    # A new version of each: the old one closed, the new one opened, both read back.
    changed = {code: desc + "!" for code, desc in codes.items()}
    simulator.data.set_codes(1, changed)
    second = by_vdn(sync(config, engine, vdn_ids=[1]))[1]
    assert (second.status, second.updated) == ("succeeded", 4), second.error
    assert present_codes(engine)[1] == changed
    history = rows(
        engine,
        "SELECT obs_code, array_agg(obs_code_desc ORDER BY valid_from) "
        "FROM {s}.result_code_history WHERE vdn_id = 1 GROUP BY obs_code",
    )
    assert {code: descs for code, descs in history} == {
        code: [codes[code], changed[code]] for code in codes
    }
    assert_history_invariants(engine)


def test_a_code_longer_than_max_code_bytes_fails_only_that_code(
    simulator: Simulator, database_url: str, engine: Engine
):
    config = make_config(simulator, database_url, max_retries=0, sync={"max_code_bytes": 16})
    simulator.data.set_codes(1, {"kept": "stored before"})
    sync(config, engine, vdn_ids=[1])
    limit = {
        "k" * 16: "exactly the limit",
        "码" * 5 + "a": "16 bytes too",
        "k" * 17: "one byte over",
        "码" * 6: "18 bytes",
    }
    simulator.data.set_codes(1, limit)  # "kept" is gone upstream
    result = sync(config, engine, vdn_ids=[1])
    vdn = by_vdn(result)[1]
    assert vdn.status == "incomplete" and vdn.inserted == 2 and vdn.deleted == 0
    assert f"obsCode {'k' * 17!r} is 17 bytes" in (vdn.error or "")
    assert "sync.max_code_bytes = 16" in (vdn.error or "") and "(and 1 more)" in (vdn.error or "")
    assert result.exit_code == 1
    # The codes within the limit are stored; nothing was deleted (the snapshot lacks codes).
    assert present_codes(engine)[1] == {
        "kept": "stored before",
        "k" * 16: "exactly the limit",
        "码" * 5 + "a": "16 bytes too",
    }
    assert_history_invariants(engine)


def test_codes_at_the_hard_cap_are_storable(
    simulator: Simulator, database_url: str, engine: Engine
):
    config = make_config(
        simulator, database_url, max_retries=0, sync={"max_code_bytes": MAX_CODE_BYTES_CAP}
    )
    noise = random.Random(2)
    ascii_code = "".join(noise.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=2048))
    cjk_code = "".join(chr(noise.randrange(0x4E00, 0x9FFF)) for _ in range(682)) + "ab"
    assert len(ascii_code.encode()) == len(cjk_code.encode()) == MAX_CODE_BYTES_CAP
    simulator.data.set_codes(1, {ascii_code: "a", cjk_code: "b"})
    assert by_vdn(sync(config, engine, vdn_ids=[1]))[1].inserted == 2
    simulator.data.set_codes(1, {ascii_code: "a2", cjk_code: "b2"})  # second versions
    assert by_vdn(sync(config, engine, vdn_ids=[1]))[1].updated == 2
    assert present_codes(engine)[1] == {ascii_code: "a2", cjk_code: "b2"}
    assert_history_invariants(engine)


# ------------------------------------------------------------------ item 7: integers


@pytest.mark.parametrize("total", [2**31, 2**63])
def test_a_total_count_the_tables_cannot_hold_fails_only_its_vdn(
    config: Config, engine: Engine, simulator: Simulator, total: int
):
    delta = total - len(simulator.data.codes(2))
    for page in (1, None):  # None: every page from the second on
        simulator.faults.add(
            Fault(kind="total_drift", delta=delta, vdn_id=2, page_num=page, times=None)
        )
    result = sync(config, engine)
    vdn2 = by_vdn(result)[2]
    assert vdn2.status == "failed" and f"totalCount {total}" in (vdn2.error or "")
    assert "data error" in (vdn2.error or "")
    assert all(v.status == "succeeded" for k, v in by_vdn(result).items() if k != 2)
    # The run finished and recorded every VDN.
    (run,) = rows(
        engine, "SELECT status, vdns, failed FROM {s}.sync_run WHERE id = :r", r=result.run_id
    )
    assert tuple(run) == ("failed", 5, 1)
    records = rows(
        engine,
        "SELECT vdn_id, status, total_count FROM {s}.sync_run_vdn WHERE sync_run_id = :r "
        "ORDER BY vdn_id",
        r=result.run_id,
    )
    assert [tuple(r) for r in records] == [
        (v, "failed", None) if v == 2 else (v, "succeeded", 120) for v in range(1, 6)
    ]
    assert 2 not in present_codes(engine)


# ------------------------------------------------------------------ item 10: record times


def test_record_times_bracket_the_changes_of_every_vdn(
    make_simulator: Callable[..., Simulator], database_url: str, engine: Engine
):
    vdns = range(1, 41)
    sim = make_simulator(SimulatorData.generate(vdn_ids=vdns, codes_per_vdn=10, seed=2))
    config = make_config(sim, database_url, max_retries=0, vdn_ids=["1-40"])
    initial = sync(config, engine)
    # What a database clock set back leaves: VDN 1's stored instants an hour ahead. Its
    # next changes are written just after them (versions stay in order); its record's
    # times must still bracket them.
    with engine.begin() as connection:
        for sql in (
            "UPDATE {s}.result_code SET first_seen_at = first_seen_at + interval '1 hour', "
            "updated_at = updated_at + interval '1 hour' WHERE vdn_id = 1",
            "UPDATE {s}.result_code_history SET valid_from = valid_from + interval '1 hour' "
            "WHERE vdn_id = 1",
        ):
            connection.execute(text(sql.format(s=S)))
    for round_ in range(3):
        for vdn in vdns:
            code = list(sim.data.codes(vdn))[round_]
            sim.data.set_code(vdn, code, f"round {round_}")
            sim.data.set_code(vdn, f"NEW{round_}", "new")
        result = sync(config, engine)
        assert all(v.status == "succeeded" and v.updated == 1 for v in result.vdns)
    bad = rows(
        engine,
        """
        SELECT v.sync_run_id, v.vdn_id, v.started_at, c.first, c.last, v.finished_at
        FROM {s}.sync_run_vdn AS v JOIN LATERAL (
            SELECT min(t) AS first, max(t) AS last FROM (
                SELECT valid_from AS t FROM {s}.result_code_history AS h
                WHERE h.vdn_id = v.vdn_id AND h.sync_run_id = v.sync_run_id
                UNION ALL
                SELECT valid_to FROM {s}.result_code_history AS h
                WHERE h.vdn_id = v.vdn_id AND h.closed_by_sync_run_id = v.sync_run_id) AS x
        ) AS c ON c.first IS NOT NULL
        WHERE v.sync_run_id > :initial
          AND NOT (v.started_at <= c.first AND c.last <= v.finished_at)
        """,
        initial=initial.run_id,
    )
    assert bad == []
    (checked,) = rows(
        engine,
        "SELECT count(DISTINCT (sync_run_id, vdn_id)) FROM {s}.result_code_history "
        "WHERE sync_run_id > :initial",
        initial=initial.run_id,
    )
    assert checked[0] == 3 * 40  # three rounds of changes, every VDN
    assert_history_invariants(engine)
