"""Labelling calls in one step (issue 19 item 4, migration 0008): ``call_labels_at`` and
docs/bi.md's set-based query, on data written by real syncs (run_sync against the simulator
over loopback, real PostgreSQL), before and after upstream renames."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine

from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store.grants import grant_reader
from tests.fixtures_db import TEST_SCHEMA, make_config
from tests.test_bi_sql import LABEL_BLOCKS, sql_blocks

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]

# docs/bi.md's blocks, run as printed there (the schema is obs_sync = TEST_SCHEMA).
BLOCKS = sql_blocks()
TABLE, SET_BASED, FUNCTION = (BLOCKS[name] for name in LABEL_BLOCKS)


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


class Reader:
    """One session of a read-only role made by grant-reader, with the docs' calls table."""

    def __init__(self, engine: Engine, database_url: str) -> None:
        self.role = f"obs_labels_reader_{uuid.uuid4().hex[:8]}"
        with engine.begin() as connection:
            connection.execute(text(f"CREATE ROLE {self.role} LOGIN PASSWORD 'reader-pw'"))
        url = make_url(database_url).set(username=self.role, password="reader-pw")
        self.engine, self.owner = create_engine(url), engine
        self.session: Any = None

    def calls(self, calls: list[tuple[Any, ...]]) -> None:
        """After a sync made the schema: the grant, a session, the docs' table and rows."""
        if self.session is None:
            grant_reader(self.owner, S, self.role)
            self.session = self.engine.connect()
        with self.session.begin():
            self.session.execute(text("DROP TABLE IF EXISTS call_record_codes"))
            self.session.execute(text(TABLE))
            self.session.execute(
                text("INSERT INTO call_record_codes VALUES (:i, :src, :v, :o, :r, :b, :s, :t)"),
                [
                    dict(zip(("i", "src", "v", "o", "r", "b", "s", "t"), row, strict=True))
                    for row in calls
                ],
            )

    def q(self, sql: str) -> list[tuple[Any, ...]]:
        with self.session.begin():
            return [tuple(r) for r in self.session.execute(text(sql))]

    def labels(self) -> list[tuple[Any, ...]]:
        """Per call (call_id, 4 descriptions); both documented shapes give the same."""
        by_function = [(r[0], *r[2:]) for r in self.q(FUNCTION)]
        assert [(r[0], *r[2:]) for r in self.q(SET_BASED)] == by_function
        return by_function

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.engine.dispose()
        with self.owner.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {self.role}"))
            connection.execute(text(f"DROP ROLE {self.role}"))


@pytest.fixture
def reader(engine: Engine, database_url: str) -> Iterator[Reader]:
    made = Reader(engine, database_url)
    yield made
    made.close()


def test_every_call_gets_every_description_valid_at_call_time(
    simulator: Simulator, database_url: str, engine: Engine, reader: Reader
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
    reader.calls(
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
    rows = reader.labels()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6, 7]  # one row per call, none dropped
    assert rows[0][1:] == (obs_desc, display_label, parent[2], child[2])
    assert rows[1][1:] == ("Renamed OBS", "Renamed display", "Renamed business", child[2])
    assert rows[2][1:] == (None, None, None, None)
    assert rows[3][1:] == (None, None, None, None)  # "0" is not "00000": no OBS description
    assert rows[4][1:] == ("Renamed OBS", "Renamed display", None, None)
    assert rows[5][1:] == (None, None, None, None)
    assert rows[6][1:] == (None, None, None, None)


def test_a_fail_code_zero_is_labelled_only_when_mapped_explicitly(
    simulator: Simulator, database_url: str, engine: Engine, reader: Reader
) -> None:
    simulator.data.set_code(1, "00000", "Call completed")
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    codes = current(engine, 1)["obs"]
    assert codes["00000"] == "Call completed"
    reader.calls([(1, "default", 1, "0", None, None, None, now(engine))])
    assert reader.q(FUNCTION)[0][2] is None
    mapped = FUNCTION.replace(
        "c.obs_code, c.result_code",
        "CASE WHEN c.obs_code = '0' THEN '00000' ELSE c.obs_code END, c.result_code",
    )
    assert reader.q(mapped)[0][2] == codes["00000"]


def test_the_function_is_inlined(
    simulator: Simulator, database_url: str, engine: Engine, reader: Reader
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    reader.calls([(1, "default", 1, "00603", "002", None, None, now(engine))])
    plan = "\n".join(r[0] for r in reader.q("EXPLAIN " + FUNCTION))
    assert "Function Scan" not in plan and "call_labels_at" not in plan
    assert plan.count("Index") >= 4  # one index lookup per description


def test_migration_0008_round_trips_on_a_populated_database(
    simulator: Simulator, database_url: str, engine: Engine, reader: Reader
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    assert run_sync(config, engine=engine, trigger="test").exit_code == 0
    reader.calls([(1, "default", 1, "00603", "002", None, None, now(engine))])
    before = reader.q(FUNCTION)
    assert migrate.downgrade(engine, S, "0007") == ("0009", "0007")
    assert q(
        engine,
        "SELECT to_regprocedure(:f)",
        f=f"{S}.call_labels_at(text, integer, text, text, text, text, timestamptz)",
    ) == [(None,)]
    assert migrate.upgrade(engine, S) == ("0007", "0009")
    assert reader.q(FUNCTION) == before
