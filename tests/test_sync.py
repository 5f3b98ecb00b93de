"""run_sync against the simulator (real HTTP) and real PostgreSQL: every rule of the store.

See docs/semantics.md for the rules; tests/fixtures_db.py for the invariant checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from obs_sync.config import Config
from obs_sync.engine.run import run_sync
from obs_sync.results import LOCKED_ERROR, RunResult
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_db import (
    TEST_SCHEMA,
    assert_history_invariants,
    make_config,
    present_codes,
    row_versions,
)
from tests.fixtures_sim import SIM_VDNS

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


def upstream(sim: Simulator) -> dict[int, dict[str, str]]:
    return {vdn: sim.data.codes(vdn) for vdn in SIM_VDNS if sim.data.codes(vdn)}


# ------------------------------------------------------------------------ initial sync


def test_initial_sync_copies_everything(config: Config, engine: Engine, simulator: Simulator):
    result = sync(config, engine)
    assert result.exit_code == 0 and result.status == "succeeded"
    assert [v.vdn_id for v in result.vdns] == list(SIM_VDNS)
    for vdn in result.vdns:
        assert (vdn.status, vdn.inserted, vdn.unchanged, vdn.pages) == ("succeeded", 120, 0, 3)
        assert vdn.total_count == 120 and vdn.requests == 3 and vdn.finished_at is not None
    assert present_codes(engine) == upstream(simulator)
    assert_history_invariants(engine)
    # One open version per code, opened by this run at the code's first_seen_at.
    ((count, runs, mismatched),) = rows(
        engine,
        "SELECT count(*), count(DISTINCT h.sync_run_id), count(*) FILTER "
        "(WHERE h.valid_from <> r.first_seen_at OR h.valid_from <> r.updated_at) "
        "FROM {s}.result_code_history h JOIN {s}.result_code r USING (vdn_id, obs_code) "
        "WHERE h.valid_to IS NULL",
    )
    assert (count, runs, mismatched) == (600, 1, 0)
    (run,) = rows(engine, "SELECT id, status, trigger, vdns, succeeded, inserted FROM {s}.sync_run")
    assert tuple(run) == (result.run_id, "succeeded", "test", 5, 5, 600)
    records = rows(
        engine,
        "SELECT vdn_id, status, pages, requests, total_count, inserted, error "
        "FROM {s}.sync_run_vdn ORDER BY vdn_id",
    )
    assert [tuple(r) for r in records] == [(v, "succeeded", 3, 3, 120, 120, None) for v in SIM_VDNS]


# ------------------------------------------------------------------------ changes


def test_new_changed_deleted_restored(config: Config, engine: Engine, simulator: Simulator):
    data = simulator.data
    sync(config, engine)
    codes = list(data.codes(1))
    changed, deleted = codes[0], codes[1]
    old_desc = data.codes(1)[changed]
    data.set_code(1, "NEW-1", "brand new")
    data.set_code(1, changed, "changed description")
    data.remove_code(1, deleted)
    second = sync(config, engine)
    vdn1 = by_vdn(second)[1]
    assert (vdn1.status, vdn1.inserted, vdn1.updated, vdn1.deleted, vdn1.restored) == (
        "succeeded",
        1,
        1,
        1,
        0,
    )
    assert vdn1.unchanged == 118
    assert all(v.unchanged == 120 for k, v in by_vdn(second).items() if k != 1)
    assert present_codes(engine) == upstream(simulator)
    assert_history_invariants(engine)

    # Changed: old version closed and new one opened at the same instant (= updated_at).
    versions = rows(
        engine,
        "SELECT obs_code_desc, valid_from, valid_to, sync_run_id, closed_by_sync_run_id "
        "FROM {s}.result_code_history WHERE vdn_id = 1 AND obs_code = :c ORDER BY valid_from",
        c=changed,
    )
    assert [v[0] for v in versions] == [old_desc, "changed description"]
    assert versions[0][2] == versions[1][1]
    assert versions[1][2] is None and versions[1][3] == second.run_id == versions[0][4]
    ((updated_at, first_seen),) = rows(
        engine,
        "SELECT updated_at, first_seen_at FROM {s}.result_code WHERE vdn_id = 1 AND obs_code = :c",
        c=changed,
    )
    assert updated_at == versions[1][1] and first_seen == versions[0][1]
    # Every write of one VDN transaction carries one instant.
    (instants,) = rows(
        engine,
        "SELECT count(DISTINCT t) FROM (SELECT valid_from AS t FROM {s}.result_code_history "
        "WHERE sync_run_id = :r UNION SELECT valid_to FROM {s}.result_code_history "
        "WHERE closed_by_sync_run_id = :r UNION SELECT deleted_at FROM {s}.result_code "
        "WHERE deleted_at IS NOT NULL) x",
        r=second.run_id,
    )
    assert instants[0] == 1

    # Deleted: row kept with its description, deleted_at = its last version's valid_to.
    (gone,) = rows(
        engine,
        "SELECT r.deleted_at, r.obs_code_desc, h.valid_to FROM {s}.result_code r "
        "JOIN {s}.result_code_history h USING (vdn_id, obs_code) "
        "WHERE vdn_id = 1 AND obs_code = :c",
        c=deleted,
    )
    assert gone[0] is not None and gone[0] == gone[2]

    # Restored: comes back with a new version after a gap; first_seen_at unchanged.
    data.set_code(1, deleted, "back again")
    third = sync(config, engine)
    assert by_vdn(third)[1].restored == 1 and by_vdn(third)[1].inserted == 0
    assert present_codes(engine) == upstream(simulator)
    assert_history_invariants(engine)
    versions = rows(
        engine,
        "SELECT obs_code_desc, valid_from, valid_to FROM {s}.result_code_history "
        "WHERE vdn_id = 1 AND obs_code = :c ORDER BY valid_from",
        c=deleted,
    )
    assert [v[0] for v in versions][1:] == ["back again"]
    assert versions[0][2] < versions[1][1] and versions[1][2] is None
    (row,) = rows(
        engine,
        "SELECT deleted_at, first_seen_at, updated_at FROM {s}.result_code "
        "WHERE vdn_id = 1 AND obs_code = :c",
        c=deleted,
    )
    assert row[0] is None and row[1] == versions[0][1] and row[2] == versions[1][1]


def test_restore_with_same_description_opens_new_version(
    config: Config, engine: Engine, simulator: Simulator
):
    code, desc = next(iter(simulator.data.codes(2).items()))
    sync(config, engine, vdn_ids=[2])
    simulator.data.remove_code(2, code)
    sync(config, engine, vdn_ids=[2])
    simulator.data.set_code(2, code, desc)
    result = sync(config, engine, vdn_ids=[2])
    assert by_vdn(result)[2].restored == 1
    versions = rows(
        engine,
        "SELECT obs_code_desc FROM {s}.result_code_history WHERE vdn_id = 2 AND obs_code = :c",
        c=code,
    )
    assert [v[0] for v in versions] == [desc, desc]
    assert_history_invariants(engine)


# ------------------------------------------------------------------------ no change


def count_statements(engine: Engine) -> tuple[list[str], Callable[[], None]]:
    """Every statement the engine's psycopg connections execute until the returned stop().

    The store runs plain SQL on the connections it borrows from the engine's pool, so the
    statements are seen at the psycopg cursor (BEGIN/COMMIT are not counted).
    """
    seen: list[str] = []

    class Counting(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query))
            return super().execute(query, *args, **kwargs)

    def checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.cursor_factory = Counting

    def checkin(dbapi_connection: Any, *_: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.cursor_factory = psycopg.Cursor

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)

    def stop() -> None:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)

    return seen, stop


def test_no_change_resync_writes_nothing_and_is_set_based(
    config: Config, engine: Engine, simulator: Simulator
):
    sync(config, engine)
    before = row_versions(engine)
    statements, stop = count_statements(engine)
    result = sync(config, engine, migrate=False)
    stop()
    assert result.exit_code == 0 and result.total("unchanged") == 600
    assert row_versions(engine) == before  # no row of result_code/history rewritten
    writes = [s for s in statements if "result_code" in s and not s.lstrip().startswith("SELECT")]
    assert writes == []
    # Per VDN: one unlocked read, nothing else (its record is batched). Per run: schema
    # check (2), VDN registry, start (insert + liveness lock), abandon check, records,
    # finish, unlock, retention prune; the sources' locales (one read).
    reads = [s for s in statements if s.lstrip().startswith("SELECT obs_code")]
    assert len(reads) == 5
    assert not any("FOR NO KEY UPDATE" in s for s in statements)
    assert len(statements) <= 5 + 11, statements
    assert sum("DELETE FROM" in s and "sync_run_vdn" in s for s in statements) == 1


def test_first_sync_on_tables_it_created_skips_the_unlocked_reads(
    config: Config, engine: Engine, simulator: Simulator
):
    def unlocked_reads(statements: list[str]) -> int:
        return sum(
            1
            for s in statements
            if s.lstrip().startswith("SELECT obs_code") and "greatest" not in s
        )

    statements, stop = count_statements(engine)
    first = sync(config, engine)  # creates the tables: every VDN is known to start empty
    stop()
    assert first.total("inserted") == 600 and unlocked_reads(statements) == 0
    statements, stop = count_statements(engine)
    second = sync(config, engine)
    stop()
    assert second.total("unchanged") == 600 and unlocked_reads(statements) == 5
    assert_history_invariants(engine)


def test_statements_per_changed_vdn_do_not_grow_with_codes(
    config: Config, engine: Engine, simulator: Simulator
):
    sync(config, engine)
    data = simulator.data

    def changed_vdn_statements(n: int) -> int:
        codes = list(data.codes(3))
        for i, code in enumerate(codes[:n]):
            data.set_code(3, code, f"changed {n} {i}")
        for code in codes[n : 2 * n]:
            data.remove_code(3, code)
        for i in range(n):
            data.set_code(3, f"N{n}-{i}", "new")
        statements, stop = count_statements(engine)
        result = sync(config, engine, vdn_ids=[3], migrate=False)
        stop()
        vdn = by_vdn(result)[3]
        assert (vdn.updated, vdn.deleted, vdn.inserted) == (n, n, n), vdn
        return len(statements)

    assert changed_vdn_statements(1) == changed_vdn_statements(20)
    assert_history_invariants(engine)


# ------------------------------------------------------------------------ failures


def test_failed_vdn_is_isolated(config: Config, engine: Engine, simulator: Simulator):
    sync(config, engine)
    before = rows(engine, "SELECT * FROM {s}.result_code WHERE vdn_id = 2 ORDER BY obs_code")
    for vdn in SIM_VDNS:
        simulator.data.set_code(vdn, "LATE", "added later")
    simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=2, times=None))
    result = sync(config, engine)
    assert result.exit_code == 1 and result.status == "failed"
    assert by_vdn(result)[2].status == "failed"
    assert "500" in (by_vdn(result)[2].error or "")
    assert (
        rows(engine, "SELECT * FROM {s}.result_code WHERE vdn_id = 2 ORDER BY obs_code") == before
    )
    for vdn in (1, 3, 4, 5):
        assert by_vdn(result)[vdn].status == "succeeded" and by_vdn(result)[vdn].inserted == 1
    (record,) = rows(
        engine,
        "SELECT status, error FROM {s}.sync_run_vdn WHERE sync_run_id = :r AND vdn_id = 2",
        r=result.run_id,
    )
    assert record[0] == "failed" and "500" in record[1]
    (run,) = rows(engine, "SELECT status, failed FROM {s}.sync_run WHERE id = :r", r=result.run_id)
    assert tuple(run) == ("failed", 1)
    assert_history_invariants(engine)


def test_failed_vdn_reports_the_pages_and_requests_it_cost(
    config: Config, engine: Engine, simulator: Simulator
):
    # Page 1 is read, page 2 fails on every attempt.
    simulator.faults.add(Fault(kind="http_status", status=503, vdn_id=2, page_num=2, times=None))
    result = sync(config, engine, vdn_ids=[2])
    vdn = by_vdn(result)[2]
    attempts = config.isales.max_retries + 1
    assert (vdn.status, vdn.pages, vdn.requests) == ("failed", 1, 1 + attempts)
    (record,) = rows(
        engine,
        "SELECT pages, requests FROM {s}.sync_run_vdn WHERE sync_run_id = :r",
        r=result.run_id,
    )
    assert tuple(record) == (1, 1 + attempts)


def test_incomplete_snapshot_applies_but_deletes_nothing(
    config: Config, engine: Engine, simulator: Simulator
):
    sync(config, engine)
    codes = list(simulator.data.codes(1))
    simulator.data.set_code(1, codes[0], "changed while incomplete")
    simulator.faults.add(Fault(kind="empty_page", vdn_id=1, page_num=2, times=None))
    result = sync(config, engine, vdn_ids=[1])
    vdn = by_vdn(result)[1]
    assert (vdn.status, vdn.updated, vdn.deleted, vdn.unchanged) == ("incomplete", 1, 0, 49)
    assert "page 2 was empty" in (vdn.error or "") and result.exit_code == 1
    # The 70 codes missing from the incomplete answer are still present.
    assert len(present_codes(engine)[1]) == 120
    assert present_codes(engine)[1][codes[0]] == "changed while incomplete"
    assert_history_invariants(engine)


def test_mass_deletion_guard(database_url: str, engine: Engine, simulator: Simulator):
    config = make_config(simulator, database_url, max_retries=0, sync={"max_delete_fraction": 0.5})
    sync(config, engine)
    codes = list(simulator.data.codes(4))
    keep = {code: simulator.data.codes(4)[code] for code in codes[:50]}
    keep["ADDED"] = "added with the mass deletion"
    simulator.data.set_codes(4, keep)
    result = sync(config, engine)
    vdn = by_vdn(result)[4]
    assert (vdn.status, vdn.deleted, vdn.withheld, vdn.inserted) == ("guarded", 0, 70, 1)
    assert "70 of 120" in (vdn.error or "") and result.exit_code == 1
    assert len(present_codes(engine)[4]) == 121
    (record,) = rows(
        engine,
        "SELECT status, withheld, error FROM {s}.sync_run_vdn WHERE sync_run_id = :r "
        "AND vdn_id = 4",
        r=result.run_id,
    )
    assert record[0] == "guarded" and record[1] == 70 and "max_delete_fraction" in record[2]
    assert "obs-sync sync --vdn 4 --max-delete-fraction 1" in record[2]
    # An empty answer for a VDN that had codes is guarded too.
    simulator.data.set_codes(5, {})
    result = sync(config, engine, vdn_ids=[5])
    assert by_vdn(result)[5].status == "guarded" and len(present_codes(engine)[5]) == 120
    # Raising the fraction lets the real deletion through.
    lenient = make_config(simulator, database_url, max_retries=0, sync={"max_delete_fraction": 1})
    result = sync(lenient, engine, vdn_ids=[4, 5])
    assert [v.deleted for v in result.vdns] == [70, 120] and result.exit_code == 0
    assert present_codes(engine) == upstream(simulator)
    assert_history_invariants(engine)


def test_nul_character_fails_only_that_vdn(config: Config, engine: Engine, simulator: Simulator):
    sync(config, engine)
    simulator.data.set_code(2, "NUL", "before\x00after")
    simulator.data.set_code(3, "OK", "fine")
    result = sync(config, engine)
    vdn2 = by_vdn(result)[2]
    assert vdn2.status == "failed" and "NUL" in (vdn2.error or "")
    assert "'NUL'" in (vdn2.error or "") and "data error" in (vdn2.error or "")
    assert by_vdn(result)[3].inserted == 1 and result.exit_code == 1
    assert "NUL" not in present_codes(engine)[2]
    assert_history_invariants(engine)


def test_unicode_emoji_and_long_text_stored_exactly(
    config: Config, engine: Engine, simulator: Simulator
):
    values = {
        "EMOJI": "呼叫成功 ✅ 😀👍🏽 — ok",
        "COMBINING": "cafe\u0301 ",  # decomposed é and a trailing space: kept as sent
        "COMPOSED": "caf\u00e9",
        "LONG": "长" * 5000 + "x" * 20000,
        "CONTROL": "tab\tnew\nline\r",
    }
    simulator.data.set_codes(1, values)
    result = sync(config, engine, vdn_ids=[1])
    assert by_vdn(result)[1].inserted == len(values)
    assert present_codes(engine)[1] == values
    history = dict(
        (row[0], row[1])
        for row in rows(
            engine, "SELECT obs_code, obs_code_desc FROM {s}.result_code_history WHERE vdn_id = 1"
        )
    )
    assert history == values
    # A change of only the Unicode normalization is a change.
    simulator.data.set_code(1, "COMBINING", "caf\u00e9 ")
    assert by_vdn(sync(config, engine, vdn_ids=[1]))[1].updated == 1


# ------------------------------------------------------------------------ dry run


def test_dry_run_writes_nothing(config: Config, engine: Engine, simulator: Simulator):
    result = sync(config, engine, dry_run=True)
    assert result.run_id is None and result.dry_run and result.exit_code == 0
    assert result.total("inserted") == 600
    assert any("no obs-sync tables" in note for note in result.notes)
    assert rows(engine, "SELECT to_regnamespace(:n)", n=S) == [(None,)]  # not even the schema
    sync(config, engine)
    simulator.data.set_code(1, "DRY", "dry")
    before = row_versions(engine)
    (runs_before,) = rows(engine, "SELECT count(*) FROM {s}.sync_run")
    result = sync(config, engine, dry_run=True)
    assert by_vdn(result)[1].inserted == 1 and result.total("unchanged") == 600
    assert row_versions(engine) == before
    assert rows(engine, "SELECT count(*) FROM {s}.sync_run") == [runs_before]


# ------------------------------------------------------------------------ stop, deadline, locks


def test_stop_and_deadline_skip_remaining_vdns(config: Config, engine: Engine):
    stop = threading.Event()
    stop.set()
    result = sync(config, engine, stop=stop)
    assert [v.status for v in result.vdns] == ["skipped"] * 5
    assert result.exit_code == 1 and result.status == "stopped"
    assert all("stop requested" in (v.error or "") for v in result.vdns)
    result = sync(config, engine, deadline=time.monotonic() - 1)
    assert all("deadline" in (v.error or "") for v in result.vdns)
    (count,) = rows(engine, "SELECT count(*) FROM {s}.sync_run_vdn WHERE status = 'skipped'")
    assert count[0] == 10


def test_stop_mid_run_finishes_vdns_in_flight(
    database_url: str, engine: Engine, make_simulator: Callable[..., Simulator]
):
    sim = make_simulator(latency_seconds=0.05)
    config = make_config(sim, database_url, max_retries=0, max_concurrency=1)
    stop = threading.Event()
    result = sync(config, engine, stop=stop, on_vdn=lambda vdn: stop.set())
    statuses = [v.status for v in result.vdns]
    # In flight when the stop came: VDN 1 (being written), and at most the one VDN the
    # other worker took into the free fetch slot (2 x max_concurrency workers).
    done = statuses.count("succeeded")
    assert done in (1, 2) and statuses == ["succeeded"] * done + ["skipped"] * (5 - done)
    assert present_codes(engine).keys() == set(range(1, done + 1))
    assert_history_invariants(engine)


def test_vdn_held_by_another_process_is_skipped(
    config: Config, engine: Engine, simulator: Simulator
):
    sync(config, engine)
    for vdn in SIM_VDNS:
        simulator.data.set_code(vdn, "NEW", "needs the lock to be written")
    with engine.connect() as holder:
        holder.execute(text(f"SELECT 1 FROM {S}.vdn_state WHERE vdn_id = 2 FOR NO KEY UPDATE"))
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        result = sync(config, engine)
        holder.rollback()
    vdn2 = by_vdn(result)[2]
    # The skip names the session holding the lock.
    assert vdn2.status == "skipped" and vdn2.skip_reason == "locked"
    assert (vdn2.error or "").startswith(LOCKED_ERROR) and f"pid {pid}," in (vdn2.error or "")
    assert result.exit_code == 0 and result.status == "succeeded"
    assert all(v.status == "succeeded" for k, v in by_vdn(result).items() if k != 2)


def test_abandoned_runs_are_closed_by_the_next_run(config: Config, engine: Engine):
    first = sync(config, engine)
    with engine.begin() as connection:
        # What a killed process leaves: a running row whose liveness lock is gone, and
        # whose last heartbeat is older than two heartbeat intervals.
        connection.execute(
            text(
                f"INSERT INTO {S}.sync_run (started_at, heartbeat_at, status, trigger) "
                "VALUES (now() - interval '1 hour', now() - interval '50 minutes', "
                "'running', 'test')"
            )
        )
    later = sync(config, engine)
    runs = rows(
        engine,
        "SELECT id, status, finished_at IS NOT NULL, error, finished_at = heartbeat_at "
        "FROM {s}.sync_run ORDER BY id",
    )
    assert [r[1] for r in runs] == ["succeeded", "abandoned", "succeeded"]
    assert runs[0][0] == first.run_id and runs[2][0] == later.run_id
    assert all(r[2] for r in runs) and "ended before finishing" in runs[1][3]
    assert runs[1][4]  # it ended when it was last known alive, not when it was noticed


def test_running_run_of_a_live_process_is_not_abandoned(config: Config, engine: Engine):
    from obs_sync.store.store import Store

    store = Store(engine, S)
    sync(config, engine)  # creates the schema
    handle = store.start_run(trigger="test", hostname="h", pid=1, version="x")
    try:
        sync(config, engine)
        (status,) = rows(engine, "SELECT status FROM {s}.sync_run WHERE id = :r", r=handle.run_id)
        assert status[0] == "running"
    finally:
        store.finish_run(handle, "succeeded", [])


def test_concurrent_runs_in_one_process_never_duplicate(
    database_url: str, engine: Engine, make_simulator: Callable[..., Simulator]
):
    sim = make_simulator(latency_seconds=0.01)
    config = make_config(sim, database_url, max_retries=0, max_concurrency=2)
    sync(config, engine, vdn_ids=[1])  # schema exists before the race
    results: list[RunResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(sync(config, engine))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 3 and all(r.exit_code == 0 for r in results)
    inserted = sum(r.total("inserted") for r in results)
    assert inserted == 480  # VDNs 2..5, each inserted by exactly one run
    assert present_codes(engine) == upstream(sim)
    assert_history_invariants(engine)


def test_a_server_echoing_the_secret_does_not_put_it_in_the_run_records(
    config: Config, engine: Engine, simulator: Simulator
):
    from tests.fixtures_sim import SIM_SECRET_KEY

    echo = f"parameter error near {SIM_SECRET_KEY}"
    simulator.faults.add(Fault(kind="result_code", code="0200001", desc=echo, vdn_id=2, times=None))
    result = sync(config, engine, vdn_ids=[2])
    vdn = by_vdn(result)[2]
    assert vdn.status == "failed" and "parameter error near ***" in (vdn.error or "")
    (stored,) = rows(
        engine, "SELECT error FROM {s}.sync_run_vdn WHERE sync_run_id = :r", r=result.run_id
    )
    assert SIM_SECRET_KEY not in stored[0] and "***" in stored[0]
