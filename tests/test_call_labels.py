"""Labelling calls in one step (issue 19 item 4, migration 0008): ``call_labels_at`` and
docs/bi.md's set-based query, on data written by real syncs (run_sync against the simulator
over loopback, real PostgreSQL), before and after upstream renames."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from tests.fixtures_db import TEST_SCHEMA, make_config

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]

# docs/bi.md "Each call with every description valid at call time" (kept equal: the docs
# test runs the page's copy; this one checks it against the function row by row).
SET_BASED = """
SELECT c.call_id, h.obs_code_desc, d.display_result, b.name AS business_result_name,
       s.name AS sub_status_name
FROM call_record3 AS c
LEFT JOIN {s}.result_code_history AS h
       ON h.source = c.source AND h.vdn_id = c.vdn_id AND h.obs_code = c.obs_code
      AND h.valid_from <= c.called_at AND c.called_at < coalesce(h.valid_to, 'infinity')
LEFT JOIN LATERAL (
    SELECT x.display_result FROM {s}.display_result_history AS x
    WHERE x.source = c.source AND x.vdn_id = c.vdn_id AND x.result_code = c.result_code
      AND x.valid_from <= c.called_at AND c.called_at < coalesce(x.valid_to, 'infinity')
    ORDER BY x.def_id LIMIT 1) AS d ON true
LEFT JOIN {s}.business_result_history AS b
       ON b.source = c.source AND b.vdn_id = c.vdn_id AND b.parent_code = ''
      AND b.code = c.busi_result
      AND b.valid_from <= c.called_at AND c.called_at < coalesce(b.valid_to, 'infinity')
LEFT JOIN {s}.business_result_history AS s
       ON s.source = c.source AND s.vdn_id = c.vdn_id AND s.parent_code = c.busi_result
      AND s.code = c.sub_status
      AND s.valid_from <= c.called_at AND c.called_at < coalesce(s.valid_to, 'infinity')
ORDER BY c.call_id"""

FUNCTION = """
SELECT c.call_id, l.obs_code_desc, l.display_result, l.business_result_name,
       l.sub_status_name
FROM call_record3 AS c
CROSS JOIN LATERAL {s}.call_labels_at(c.source, c.vdn_id, c.obs_code, c.result_code,
                                      c.busi_result, c.sub_status, c.called_at) AS l
ORDER BY c.call_id"""


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_engine(database_url)
    yield made
    made.dispose()


def q(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.begin() as connection:
        result = connection.execute(text(sql.format(s=S)), params)
        return [tuple(r) for r in result] if result.returns_rows else []


def now(engine: Engine) -> datetime:
    return q(engine, "SELECT clock_timestamp()")[0][0]  # type: ignore[no-any-return]


def current(engine: Engine, vdn: int) -> dict[str, Any]:
    """Today's codes and names of one VDN, as the sync stored them."""
    obs = dict(
        q(
            engine,
            "SELECT obs_code, obs_code_desc FROM {s}.result_code_current "
            "WHERE vdn_id = :v ORDER BY 1",
            v=vdn,
        )
    )
    display = dict(
        q(
            engine,
            "SELECT result_code, display_result FROM "
            "{s}.display_result_current WHERE vdn_id = :v ORDER BY def_id",
            v=vdn,
        )
    )
    business = q(
        engine,
        "SELECT parent_code, code, name FROM {s}.business_result_current "
        "WHERE vdn_id = :v ORDER BY 1, 2",
        v=vdn,
    )
    return {"obs": obs, "display": display, "business": business}


def make_calls(engine: Engine, calls: list[tuple[Any, ...]]) -> None:
    q(engine, "DROP TABLE IF EXISTS call_record3")
    q(
        engine,
        "CREATE TABLE call_record3 (call_id bigint PRIMARY KEY, source text NOT NULL, "
        "vdn_id integer NOT NULL, obs_code text, result_code text, busi_result text, "
        "sub_status text, called_at timestamptz NOT NULL)",
    )
    for row in calls:
        q(
            engine,
            "INSERT INTO call_record3 VALUES (:i, :src, :v, :o, :r, :b, :s, :t)",
            **dict(zip(("i", "src", "v", "o", "r", "b", "s", "t"), row, strict=True)),
        )


def labels(engine: Engine) -> list[tuple[Any, ...]]:
    by_function = q(engine, FUNCTION)
    assert q(engine, SET_BASED) == by_function  # the two shapes agree, call by call
    return by_function


def test_every_call_gets_every_description_valid_at_call_time(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    before_first = now(engine)
    config = make_config(simulator, database_url, vdn_ids=[1, 2], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    first = now(engine)
    old = current(engine, 1)
    obs_code, obs_desc = next(iter(old["obs"].items()))
    display_code, display_label = next(iter(old["display"].items()))
    parent = next(r for r in old["business"] if r[0] == "")
    child = next(r for r in old["business"] if r[0] == parent[1])
    assert parent[2] and child[2]

    # Upstream renames: a display label, a business result, an OBS description.
    lists = simulator.code_lists
    lists.set_display(
        1,
        [
            replace(r, label="Renamed display") if r.result_code == display_code else r
            for r in lists.display(1)
        ],
    )
    lists.set_business(
        1,
        [
            replace(r, name="Renamed business") if r.code == parent[1] else r
            for r in lists.business(1)
        ],
    )
    simulator.data.set_code(1, obs_code, "Renamed OBS")
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    later = now(engine) + timedelta(seconds=1)
    assert current(engine, 1)["obs"][obs_code] == "Renamed OBS"

    source = "default"
    make_calls(
        engine,
        [
            # 1: between the two syncs: the old names
            (1, source, 1, obs_code, display_code, parent[1], child[1], first),
            # 2: after the second sync: the new names
            (2, source, 1, obs_code, display_code, parent[1], child[1], later),
            # 3: before obs-sync's first sync: nothing known, the call is kept
            (
                3,
                source,
                1,
                obs_code,
                display_code,
                parent[1],
                child[1],
                before_first - timedelta(days=1),
            ),
            # 4: no business result, unknown display code, failCode "0"
            (4, source, 1, "0", "OB99999", None, None, later),
            # 5: a sub-status under another parent is not this parent's
            (5, source, 1, obs_code, display_code, "no-such-parent", child[1], later),
            # 6: another source: nothing of it is stored
            (6, "other", 1, obs_code, display_code, parent[1], child[1], later),
            # 7: NULL codes everywhere
            (7, source, 2, None, None, None, None, later),
        ],
    )
    rows = labels(engine)
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # one row per call, none dropped
    assert rows[0][1:] == (obs_desc, display_label, parent[2], child[2])
    assert rows[1][1:] == ("Renamed OBS", "Renamed display", "Renamed business", child[2])
    assert rows[2][1:] == (None, None, None, None)
    assert rows[3][1:] == (None, None, None, None)  # "0" is not "00000": no OBS description
    assert rows[4][1:] == ("Renamed OBS", "Renamed display", None, None)
    assert rows[5][1:] == (None, None, None, None)
    assert rows[6][1:] == (None, None, None, None)


def test_a_fail_code_zero_is_labelled_only_when_mapped_explicitly(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    simulator.data.set_code(1, "00000", "Call completed")
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    codes = current(engine, 1)["obs"]
    assert codes["00000"] == "Call completed"
    make_calls(engine, [(1, "default", 1, "0", None, None, None, now(engine))])
    assert q(engine, FUNCTION)[0][1] is None
    mapped = FUNCTION.replace(
        "c.obs_code, c.result_code",
        "CASE WHEN c.obs_code = '0' THEN '00000' ELSE c.obs_code END, c.result_code",
    )
    assert q(engine, mapped)[0][1] == codes["00000"]


def test_the_function_is_inlined(simulator: Simulator, database_url: str, engine: Engine) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    make_calls(engine, [(1, "default", 1, "00603", "002", None, None, now(engine))])
    plan = "\n".join(r[0] for r in q(engine, "EXPLAIN " + FUNCTION))
    assert "Function Scan" not in plan and "call_labels_at" not in plan
    assert plan.count("Index") >= 4  # one index lookup per description


def test_migration_0008_round_trips_on_a_populated_database(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    make_calls(engine, [(1, "default", 1, "00603", "002", None, None, now(engine))])
    before = q(engine, FUNCTION)
    assert migrate.downgrade(engine, S) == ("0008", "0007")
    assert q(
        engine,
        "SELECT to_regprocedure(:f)",
        f=f"{S}.call_labels_at(text, integer, text, text, text, text, timestamptz)",
    ) == [(None,)]
    assert migrate.upgrade(engine, S) == ("0007", "0008")
    assert q(engine, FUNCTION) == before
