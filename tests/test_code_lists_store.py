"""The code lists on real PostgreSQL, fetched over loopback from the simulator: each
list's lifecycle (new, changed, regrouped, removed, restored), the faults, bad data, the
guarantees of today's store (no writes when unchanged, incomplete deletes nothing, the
guard, superseded, locked), the views and as-of functions, migration 0007."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from obs_sync.db import migrate
from obs_sync.db.pool import EnginePool
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_lists import fetch_business_results, fetch_display_results
from obs_sync.simulator import Simulator
from obs_sync.simulator.code_lists import (
    BusinessResult,
    CodeListFault,
    DisplayResult,
)
from obs_sync.store.code_lists import CodeListStore, ListResult
from tests.fixtures_sim import isales_config

S = "obs_sync_cl"
LIMITS = {"max_code_bytes": 1024, "max_delete_fraction": 0.5}


def q(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.begin() as connection:
        result = connection.execute(text(sql.format(s=S)), params)
        return [tuple(row) for row in result] if result.returns_rows else []


class Env:
    def __init__(self, engine: Engine, sim: Simulator, client: ISalesClient) -> None:
        self.engine, self.sim, self.client = engine, sim, client
        self.store = CodeListStore(EnginePool(engine), S)
        self.run_id = 0

    def new_run(self) -> int:
        self.run_id = q(
            self.engine,
            "INSERT INTO {s}.sync_run (started_at, status, trigger) "
            "VALUES (now(), 'running', 'cli') RETURNING id",
        )[0][0]
        return self.run_id

    def now(self) -> datetime:
        return q(self.engine, "SELECT clock_timestamp()")[0][0]  # type: ignore[no-any-return]

    def display(self, vdn: int = 1, **limits: Any) -> ListResult:
        started = self.now()
        snapshot = fetch_display_results(self.client, vdn)
        self.new_run()
        return self.store.apply(self.run_id, snapshot, started_at=started, **{**LIMITS, **limits})

    def business(self, vdn: int = 1, **limits: Any) -> ListResult:
        started = self.now()
        snapshot = fetch_business_results(self.client, vdn)
        self.new_run()
        return self.store.apply(self.run_id, snapshot, started_at=started, **{**LIMITS, **limits})


@pytest.fixture
def env(db_engine: Engine, simulator: Simulator) -> Iterator[Env]:
    migrate.upgrade(db_engine, S)
    with ISalesClient(isales_config(simulator)) as client:
        yield Env(db_engine, simulator, client)


def data_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """Every data row of the code-list tables with its xmin: any write shows here."""
    rows: list[tuple[Any, ...]] = []
    for table in ("display_result", "display_result_obs_code", "business_result"):
        for suffix in ("", "_history"):
            rows += q(engine, f"SELECT '{table}{suffix}', xmin::text, * FROM {{s}}.{table}{suffix}")
    return sorted(rows, key=repr)


def test_first_sync_then_a_no_op_resync_writes_no_data_row(env: Env) -> None:
    first = env.display()
    assert (first.status, first.inserted, first.requests) == ("succeeded", 20 + 120, 21)
    business = env.business()
    assert (business.status, business.inserted) == ("succeeded", 40)
    before = data_rows(env.engine)
    again, again_business = env.display(), env.business()
    assert (again.status, again.inserted, again.unchanged) == ("succeeded", 0, 140)
    assert again_business.unchanged == 40
    assert data_rows(env.engine) == before
    records = q(
        env.engine,
        "SELECT code_list, status, inserted, unchanged, requests FROM {s}.sync_run_code_list "
        "ORDER BY sync_run_id",
    )
    assert records == [
        ("display_results", "succeeded", 140, 0, 21),
        ("business_results", "succeeded", 40, 0, 1),
        ("display_results", "succeeded", 0, 140, 21),
        ("business_results", "succeeded", 0, 40, 1),
    ]


def test_display_results_lifecycle_and_the_change_views(env: Env) -> None:
    lists = env.sim.code_lists
    lists.set_display(
        1,
        [
            DisplayResult("11", "002", "No answer", ("00603", "00604")),
            DisplayResult("12", "007", "Wrong number", ("00605",)),
            DisplayResult("13", "009", "Busy", ("00606",)),
        ],
    )
    assert env.display().inserted == 3 + 4
    t1 = env.now()
    # Changed label, 00604 regrouped from 11 to 12, 13 removed.
    lists.set_display(
        1,
        [
            DisplayResult("11", "002", "Not answered", ("00603",)),
            DisplayResult("12", "007", "Wrong number", ("00605", "00604")),
        ],
    )
    changed = env.display(max_delete_fraction=1.0)
    assert (changed.updated, changed.inserted, changed.deleted) == (1, 1, 3)
    t2 = env.now()
    # 13 restored, with its failCode.
    lists.set_display(
        1,
        [
            DisplayResult("11", "002", "Not answered", ("00603",)),
            DisplayResult("12", "007", "Wrong number", ("00605", "00604")),
            DisplayResult("13", "009", "Busy", ("00606",)),
        ],
    )
    restored = env.display()
    assert restored.restored == 2 and restored.status == "succeeded"

    kinds = q(
        env.engine,
        "SELECT def_id, kind, old_display_result, new_display_result "
        "FROM {s}.display_result_change ORDER BY changed_at, def_id, kind",
    )
    assert kinds == [
        ("11", "new", None, "No answer"),
        ("12", "new", None, "Wrong number"),
        ("13", "new", None, "Busy"),
        ("11", "changed", "No answer", "Not answered"),
        ("13", "removed", "Busy", None),
        ("13", "restored", "Busy", "Busy"),
    ]
    moves = q(
        env.engine,
        "SELECT def_id, obs_code, kind FROM {s}.display_result_obs_code_change "
        "WHERE obs_code = '00604' ORDER BY changed_at, def_id",
    )
    assert moves == [("11", "00604", "new"), ("11", "00604", "removed"), ("12", "00604", "new")]
    # As of an instant: the label of a display code, and the display result of a failCode.
    at = "SELECT * FROM {s}.display_result_at('default', 1, '002', :at)"
    assert q(env.engine, at, at=t1) == [("11", "No answer")]
    assert q(env.engine, at, at=t2) == [("11", "Not answered")]
    of = "SELECT * FROM {s}.display_result_of_obs_code_at('default', 1, '00604', :at)"
    assert q(env.engine, of, at=t1) == [("11", "002", "No answer")]
    assert q(env.engine, of, at=t2) == [("12", "007", "Wrong number")]
    before = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert q(env.engine, of, at=before) == []
    current = q(
        env.engine,
        "SELECT def_id, obs_code FROM {s}.display_result_obs_code_current ORDER BY 1, 2",
    )
    assert current == [("11", "00603"), ("12", "00604"), ("12", "00605"), ("13", "00606")]


def test_business_results_lifecycle(env: Env) -> None:
    lists = env.sim.code_lists
    lists.set_business(1, [BusinessResult("1", "Failed", (("11", "Hung up"), ("12", "Off")))])
    assert env.business().inserted == 3
    t1 = env.now()
    lists.set_business(
        1,
        [
            BusinessResult("1", "Call failed", (("11", "Hung up"),)),
            BusinessResult("2", "Interested"),
        ],
    )
    result = env.business(max_delete_fraction=1.0)
    assert (result.inserted, result.updated, result.deleted) == (1, 1, 1)
    rows = q(
        env.engine,
        "SELECT parent_code, code, name, level FROM {s}.business_result_current ORDER BY 1, 2",
    )
    assert rows == [
        ("", "1", "Call failed", 1),
        ("", "2", "Interested", 1),
        ("1", "11", "Hung up", 2),
    ]
    at = "SELECT * FROM {s}.business_result_at('default', 1, :parent, :code, :at)"
    assert q(env.engine, at, parent="", code="1", at=t1) == [("Failed", 1)]
    assert q(env.engine, at, parent="1", code="12", at=t1) == [("Off", 2)]
    assert q(env.engine, at, parent="1", code="12", at=env.now()) == []
    changes = q(
        env.engine,
        "SELECT parent_code, code, kind FROM {s}.business_result_change "
        "WHERE kind <> 'new' ORDER BY 1, 2",
    )
    assert changes == [("", "1", "changed"), ("1", "12", "removed")]


def test_a_failing_detail_call_deletes_nothing(env: Env) -> None:
    env.display()
    lists = env.sim.code_lists
    gone = lists.display(1)[5]
    lists.set_display(1, [r for r in lists.display(1) if r.def_id != gone.def_id])
    lists.add_fault(CodeListFault("detail_status", vdn_id=1, status=500, times=None))
    result = env.display()
    assert result.status == "incomplete" and result.deleted == 0
    assert result.error is not None and "could not be read" in result.error
    assert "nothing deleted" in result.error
    present = q(env.engine, "SELECT count(*) FROM {s}.display_result_current")[0][0]
    assert present == 20


def test_a_display_result_deleted_between_list_and_detail(env: Env) -> None:
    env.display()
    lists = env.sim.code_lists
    target = lists.display(1)[0]
    lists.add_fault(CodeListFault("detail_gone", vdn_id=1, def_id=target.def_id))
    result = env.display()
    assert result.status == "incomplete" and result.deleted == 0
    # Its grouping is kept as stored.
    kept = q(
        env.engine,
        "SELECT count(*) FROM {s}.display_result_obs_code_current WHERE def_id = :d",
        d=target.def_id,
    )
    assert kept == [(6,)]


def test_bad_data_fails_only_that_list_and_writes_nothing(env: Env) -> None:
    env.display(), env.business()
    before = data_rows(env.engine)
    lists = env.sim.code_lists
    shared = lists.display(1)[0].fail_codes[0]
    first, second, *rest = lists.display(1)
    lists.set_display(1, [first, replace(second, fail_codes=(*second.fail_codes, shared)), *rest])
    display = env.display()
    assert display.status == "failed" and display.error_kind == "data"
    assert display.error is not None
    assert f"failCode '{shared}' is grouped under two display results" in display.error
    assert "nothing of this list was stored (the stored rows are kept)" in display.error
    lists.set_business(1, [BusinessResult(None, "No code", (("1", "Orphan"),))])
    business = env.business()
    assert business.status == "failed"
    assert business.error is not None and "child without a parent code" in business.error
    assert data_rows(env.engine) == before
    record = q(
        env.engine,
        "SELECT status, error FROM {s}.sync_run_code_list WHERE sync_run_id = :r",
        r=env.run_id,
    )
    assert record[0][0] == "failed" and "has no code" in record[0][1]


def test_the_mass_deletion_guard(env: Env) -> None:
    env.business()
    env.sim.code_lists.set_business(1, [BusinessResult("100000", "Call failed 0")])
    result = env.business()
    assert result.status == "guarded" and result.withheld == 39 and result.deleted == 0


def test_an_older_snapshot_is_not_applied_over_a_newer_one(env: Env) -> None:
    env.display()
    early = env.now() - timedelta(seconds=5)
    env.sim.code_lists.set_display(1, env.sim.code_lists.display(1)[:19])
    newer = env.display(max_delete_fraction=1.0)
    assert newer.deleted > 0
    old = fetch_display_results(env.client, 1)
    env.sim.code_lists.set_display(
        1, [*env.sim.code_lists.display(1), DisplayResult("9", "X", "x")]
    )
    stale = replace(old, entries=(*old.entries, *fetch_display_results(env.client, 1).entries[-1:]))
    env.new_run()
    result = env.store.apply(env.run_id, stale, started_at=early, **LIMITS)
    assert (result.status, result.skip_reason) == ("skipped", "superseded")


def test_a_list_locked_by_another_session_is_skipped(env: Env, database_url: str) -> None:
    env.display()
    env.sim.code_lists.set_display(1, env.sim.code_lists.display(1)[:19])
    url = database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as other:
        other.execute(
            f"SELECT * FROM {S}.code_list_state WHERE vdn_id = 1 AND code_list = "
            "'display_results' FOR UPDATE"
        )
        result = env.display(max_delete_fraction=1.0)
        assert (result.status, result.skip_reason) == ("skipped", "locked")
    assert env.display(max_delete_fraction=1.0).deleted == 7


def test_unexpected_fields_are_kept_in_the_record(env: Env) -> None:
    env.sim.code_lists.add_fault(CodeListFault("numbers_as_strings", vdn_id=1, times=None))
    assert env.business().status == "succeeded"
    unexpected = q(env.engine, "SELECT unexpected FROM {s}.sync_run_code_list")[0][0]
    assert "defLevel sent as a number" in unexpected
    assert "totalCount sent as a string" in unexpected


def test_as_of_functions_are_inlined(env: Env) -> None:
    env.display()
    plan = "\n".join(
        row[0]
        for row in q(
            env.engine,
            "EXPLAIN SELECT c.x, d.* FROM (VALUES ('002'), ('003')) AS c(x) LEFT JOIN LATERAL "
            "{s}.display_result_at('default', 1, c.x, now()) AS d ON true",
        )
    )
    assert "Function Scan" not in plan, plan


def test_every_column_of_the_new_objects_is_commented(env: Env) -> None:
    missing = q(
        env.engine,
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT "
        "a.attisdropped WHERE n.nspname = :s AND (c.relname LIKE 'display_result%' OR "
        "c.relname LIKE 'business_result%' OR c.relname IN ('code_list_state', "
        "'sync_run_code_list')) AND c.relkind IN ('r', 'v') "
        "AND col_description(c.oid, a.attnum) IS NULL",
        s=S,
    )
    assert missing == []


def test_migration_0007_round_trips_on_a_populated_database(env: Env) -> None:
    env.display()
    codes_before = q(env.engine, "SELECT count(*) FROM {s}.sync_run")
    assert migrate.downgrade(env.engine, S, "0006") == (migrate.head_revision(), "0006")
    assert q(env.engine, "SELECT to_regclass('{s}.display_result')") == [(None,)]
    assert q(env.engine, "SELECT count(*) FROM {s}.sync_run") == codes_before
    assert migrate.upgrade(env.engine, S) == ("0006", migrate.head_revision())
    assert env.display().inserted == 140
