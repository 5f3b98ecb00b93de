"""The first sync as a baseline (issue 19 item 5): the initial load is marked in the history
and the change views, and with ``first_sync_as_baseline`` it is valid since ever, so calls
made before the first sync are labelled. Real PostgreSQL, the simulator over loopback."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from obs_sync.config import ConfigError
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator
from obs_sync.store.integrity import verify_database
from tests.fixtures_db import TEST_SCHEMA, make_config
from tests.fixtures_db import query as q

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]
LONG_AGO = "'2001-01-01 00:00+00'"


def changes(db_engine: Engine, view: str) -> list[tuple[Any, ...]]:
    """(kind, initial_load, changed_at is -infinity) of every row of a change view."""
    return q(
        db_engine,
        f"SELECT kind, initial_load, changed_at = '-infinity', count(*) FROM {{s}}.{view} "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )


def test_without_the_option_the_initial_load_is_marked_and_starts_when_stored(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1, 2], code_lists=ALL)
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    # 120 OBS codes per VDN: every one "new", and every one the initial load.
    assert changes(db_engine, "result_code_change") == [("new", True, False, 240)]
    assert changes(db_engine, "display_result_change") == [("new", True, False, 40)]
    assert changes(db_engine, "display_result_obs_code_change") == [("new", True, False, 240)]
    assert changes(db_engine, "business_result_change") == [("new", True, False, 80)]
    # Calls before the first sync find no description, as before 0009.
    assert q(
        db_engine,
        f"SELECT count(*) FROM {{s}}.result_code_desc_at('default', 1, '00603', {LONG_AGO})",
    ) == [(0,)]
    code, _ = next(iter(simulator.data.codes(1).items()))
    simulator.data.set_code(1, code, "edited upstream")
    simulator.data.set_code(1, "77777", "added upstream")
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    # What changed upstream is what is not the initial load.
    assert q(
        db_engine,
        "SELECT obs_code, kind FROM {s}.result_code_change WHERE NOT initial_load ORDER BY 1",
    ) == sorted([(code, "changed"), ("77777", "new")])
    assert verify_database(db_engine, S) == []


def test_with_the_option_the_first_snapshot_of_each_list_is_valid_since_ever(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    config = make_config(
        simulator, database_url, vdn_ids=[1], code_lists=ALL, first_sync_as_baseline=True
    )
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    assert changes(db_engine, "result_code_change") == [("new", True, True, 120)]
    assert changes(db_engine, "display_result_change") == [("new", True, True, 20)]
    assert changes(db_engine, "display_result_obs_code_change") == [("new", True, True, 120)]
    assert changes(db_engine, "business_result_change") == [("new", True, True, 40)]
    code, desc = next(iter(simulator.data.codes(1).items()))
    # A call made years before the first sync gets the first description seen.
    assert q(
        db_engine,
        f"SELECT obs_code_desc FROM {{s}}.result_code_desc_at('default', 1, '{code}', {LONG_AGO})",
    ) == [(desc,)]
    first = simulator.code_lists.display(1)[0]
    assert q(
        db_engine,
        "SELECT display_result FROM {s}.display_result_at("
        f"'default', 1, '{first.result_code}', {LONG_AGO})",
    ) == [(first.label["zh_CN"],)]  # type: ignore[index]
    labels = q(
        db_engine,
        "SELECT l.* FROM {s}.call_labels_at('default', 1, "
        f"'{first.fail_codes[0]}', '{first.result_code}', NULL, NULL, {LONG_AGO}) AS l",
    )
    assert labels[0][1] == first.label["zh_CN"]  # type: ignore[index]
    # The real load time stays known: first_seen_at, and the run that stored it.
    assert q(
        db_engine,
        "SELECT bool_and(r.first_seen_at >= s.started_at) FROM {s}.result_code AS r "
        "JOIN {s}.result_code_history AS h USING (source, vdn_id, obs_code) "
        "JOIN {s}.sync_run AS s ON s.id = h.sync_run_id",
    ) == [(True,)]
    assert verify_database(db_engine, S) == []

    # Later changes start when they are observed, and are not the initial load.
    simulator.data.set_code(1, code, "edited upstream")
    rest = simulator.code_lists.display(1)[1:]
    simulator.code_lists.set_display(1, [replace(first, label="relabelled upstream"), *rest])
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    assert q(
        db_engine,
        "SELECT kind, initial_load, changed_at > now() - interval '1 hour' "
        "FROM {s}.result_code_change WHERE obs_code = '" + code + "' ORDER BY changed_at",
    ) == [("new", True, False), ("changed", False, True)]
    assert ("changed", False, False, 1) in changes(db_engine, "display_result_change")
    assert q(
        db_engine,
        f"SELECT obs_code_desc FROM {{s}}.result_code_desc_at('default', 1, '{code}', {LONG_AGO})",
    ) == [(desc,)]
    assert verify_database(db_engine, S) == []


def test_an_incomplete_first_snapshot_leaves_the_initial_load_open_until_a_complete_one(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    config = make_config(
        simulator, database_url, vdn_ids=[1], max_retries=0, first_sync_as_baseline=True
    )
    simulator.faults.add(Fault(kind="empty_page", vdn_id=1, page_num=2, times=1))
    first = run_sync(config, engine=db_engine, trigger="test")
    assert first.vdns[0].status == "incomplete"
    stored_first = q(db_engine, "SELECT count(*) FROM {s}.result_code")[0][0]
    assert 0 < stored_first < 120
    assert q(db_engine, "SELECT baseline_done_at IS NULL FROM {s}.vdn_state") == [(True,)]
    second = run_sync(config, engine=db_engine, trigger="test")
    assert second.vdns[0].status == "succeeded" and second.vdns[0].inserted == 120 - stored_first
    # The codes the first snapshot lacked are the initial load too.
    assert changes(db_engine, "result_code_change") == [("new", True, True, 120)]
    assert q(db_engine, "SELECT baseline_done_at IS NULL FROM {s}.vdn_state") == [(False,)]
    simulator.data.set_code(1, "77777", "added upstream")
    run_sync(config, engine=db_engine, trigger="test")
    assert q(
        db_engine,
        "SELECT kind, changed_at = '-infinity' FROM {s}.result_code_change WHERE NOT initial_load",
    ) == [("new", False)]
    assert verify_database(db_engine, S) == []


def test_a_complete_snapshot_that_changes_nothing_still_ends_the_initial_load(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], max_retries=0)
    simulator.faults.add(Fault(kind="empty_page", vdn_id=1, page_num=2, times=1))
    assert run_sync(config, engine=db_engine, trigger="test").vdns[0].status == "incomplete"
    stored = {code for (code,) in q(db_engine, "SELECT obs_code FROM {s}.result_code")}
    # Upstream now holds exactly what was stored: the next snapshot is complete and the
    # same (the no-write path), yet it ends the initial load.
    simulator.data.set_codes(1, {c: d for c, d in simulator.data.codes(1).items() if c in stored})
    again = run_sync(config, engine=db_engine, trigger="test")
    assert again.vdns[0].status == "succeeded" and again.vdns[0].inserted == 0
    assert q(db_engine, "SELECT baseline_done_at IS NOT NULL FROM {s}.vdn_state") == [(True,)]
    simulator.data.set_code(1, "77777", "added upstream")
    run_sync(config, engine=db_engine, trigger="test")
    assert q(db_engine, "SELECT obs_code FROM {s}.result_code_change WHERE NOT initial_load") == [
        ("77777",)
    ]


def test_an_empty_first_snapshot_is_the_baseline_and_later_codes_are_changes(
    simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    simulator.data.set_codes(5, {})
    config = make_config(simulator, database_url, vdn_ids=[5], first_sync_as_baseline=True)
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    simulator.data.set_code(5, "00001", "the first code ever")
    assert run_sync(config, engine=db_engine, trigger="test").exit_code == 0
    assert changes(db_engine, "result_code_change") == [("new", False, False, 1)]


def test_the_option_is_per_source(simulator: Simulator, database_url: str) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], first_sync_as_baseline=True)
    assert config.sources[0].first_sync_as_baseline is True
    assert (
        make_config(simulator, database_url, vdn_ids=[1]).sources[0].first_sync_as_baseline is False
    )
    with pytest.raises(ConfigError, match="first_sync_as_baseline"):
        make_config(simulator, database_url, vdn_ids=[1], first_sync_as_baseline="sometimes")
