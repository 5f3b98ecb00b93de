"""Several sources in one run, on real processes: simulators over loopback (several
Simulator instances are several servers) and a real PostgreSQL.

Two servers with overlapping VDN ids and different keys; one server with two keys for
disjoint VDNs; one server in two locales; the refusal of a changed locale and the switch;
a server down during a two-source run (docs/semantics.md, "Sources" and "Languages").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from obs_sync.config import Config, parse_config
from obs_sync.engine.run import run_sync
from obs_sync.results import RunResult
from obs_sync.simulator import Simulator
from tests.fixtures_db import TEST_SCHEMA, assert_history_invariants, row_versions
from tests.fixtures_sim import SECOND_KEY, SIM_VDNS, TENANT_A, TENANT_B, source_config_dict

S = TEST_SCHEMA


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url, pool_size=10)
    yield engine
    engine.dispose()


def config_of(database_url: str, *sources: dict[str, Any], **sections: Any) -> Config:
    data = {"sources": list(sources), "database": {"url": database_url, "schema": S}}
    data.update(sections)
    return parse_config(data, env={})


def sync(config: Config, engine: Engine, **kwargs: Any) -> RunResult:
    return run_sync(config, engine=engine, trigger="test", **kwargs)


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql.format(s=S)), params).all()]


def stored(engine: Engine, source: str) -> dict[int, dict[str, str]]:
    result: dict[int, dict[str, str]] = {}
    for vdn, code, desc in rows(
        engine,
        "SELECT vdn_id, obs_code, obs_code_desc FROM {s}.result_code_current "
        "WHERE source = :source ORDER BY vdn_id, obs_code",
        source=source,
    ):
        result.setdefault(vdn, {})[code] = desc
    return result


def upstream(sim: Simulator, locale: str = "zh_CN") -> dict[int, dict[str, str]]:
    return {vdn: sim.data.codes(vdn, locale) for vdn in SIM_VDNS}


def test_two_servers_with_overlapping_vdn_ids_and_different_keys(
    simulator: Simulator, second_simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = config_of(
        database_url,
        source_config_dict(simulator, "north"),
        source_config_dict(second_simulator, "south", SECOND_KEY),
    )
    result = sync(config, engine)
    assert result.exit_code == 0, [v.error for v in result.vdns if v.error]
    assert [(v.source, v.vdn_id) for v in result.vdns] == [
        *(("north", vdn) for vdn in SIM_VDNS),
        *(("south", vdn) for vdn in SIM_VDNS),
    ]
    # The same VDN ids, different codes: each source keeps its server's.
    assert stored(engine, "north") == upstream(simulator)
    assert stored(engine, "south") == upstream(second_simulator)
    assert stored(engine, "north") != stored(engine, "south")
    assert_history_invariants(engine)
    assert rows(engine, "SELECT sources FROM {s}.sync_run") == [(["north", "south"],)]
    # The registry: one row per (source, VDN).
    assert rows(engine, "SELECT count(*) FROM {s}.vdn WHERE configured") == [(10,)]
    # The source-taking function answers per source; today's form refuses to mix them.
    code, desc = next(iter(upstream(second_simulator)[1].items()))
    assert rows(
        engine,
        "SELECT obs_code_desc FROM {s}.result_code_desc_at('south', 1, :code, now())",
        code=code,
    ) == [(desc,)]
    with pytest.raises(DBAPIError) as error:
        rows(engine, "SELECT * FROM {s}.result_code_desc_at(1, :code, now())", code=code)
    assert "several sources" in str(error.value)
    assert "result_code_desc_at(source, vdn_id, obs_code, at)" in str(error.value)
    # --source: one source alone, its registry flags only.
    again = sync(config, engine, sources=["south"], vdn_ids=[2])
    assert [(v.source, v.vdn_id, v.status) for v in again.vdns] == [("south", 2, "succeeded")]
    assert rows(engine, "SELECT count(*) FROM {s}.vdn WHERE configured") == [(10,)]


def test_one_server_two_keys_for_disjoint_vdns(
    tenant_simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = config_of(
        database_url,
        source_config_dict(tenant_simulator, "tenant-a", TENANT_A, vdn_ids=["1-2"]),
        source_config_dict(tenant_simulator, "tenant-b", TENANT_B, vdn_ids=["3-5"]),
    )
    result = sync(config, engine)
    assert result.exit_code == 0, [v.error for v in result.vdns if v.error]
    assert sorted(stored(engine, "tenant-a")) == [1, 2]
    assert sorted(stored(engine, "tenant-b")) == [3, 4, 5]
    by_key = tenant_simulator.stats.by_access_key
    assert by_key.get(TENANT_A.access_key) and by_key.get(TENANT_B.access_key)
    assert tenant_simulator.stats.forbidden == 0


def test_a_key_not_granted_its_vdns_fails_only_its_own_source(
    tenant_simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = config_of(
        database_url,
        source_config_dict(tenant_simulator, "tenant-a", TENANT_A, vdn_ids=["1-2"]),
        # The key of tenant A is not granted VDNs 3-5 (HTTP 403 for each).
        source_config_dict(
            tenant_simulator, "tenant-b", TENANT_A, vdn_ids=["3-5"], max_concurrency=1
        ),
        sync={"max_auth_failures": 2},
    )
    result = sync(config, engine)
    assert result.exit_code == 1
    statuses = {(v.source, v.vdn_id): (v.status, v.skip_reason) for v in result.vdns}
    assert statuses == {
        ("tenant-a", 1): ("succeeded", None),
        ("tenant-a", 2): ("succeeded", None),
        ("tenant-b", 3): ("failed", None),
        ("tenant-b", 4): ("failed", None),
        ("tenant-b", 5): ("skipped", "auth_rejected"),  # fail-fast, per source
    }
    assert sorted(stored(engine, "tenant-a")) == [1, 2] and stored(engine, "tenant-b") == {}
    # The fix names the source's own keys.
    assert "sources[1].access_key" in (result.vdns[-1].error or "")
    assert tenant_simulator.stats.forbidden == 2


def test_one_server_in_two_locales_side_by_side(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = config_of(
        database_url,
        source_config_dict(simulator, "zh"),
        source_config_dict(simulator, "en", locale="en_US"),
    )
    assert sync(config, engine).exit_code == 0
    assert stored(engine, "zh") == upstream(simulator, "zh_CN")
    assert stored(engine, "en") == upstream(simulator, "en_US")
    assert rows(engine, "SELECT source, locale FROM {s}.source ORDER BY 1") == [
        ("en", "en_US"),
        ("zh", "zh_CN"),
    ]
    assert rows(engine, "SELECT DISTINCT source, locale FROM {s}.vdn ORDER BY 1") == [
        ("en", "en_US"),
        ("zh", "zh_CN"),
    ]


def test_a_changed_locale_is_refused_then_switched_as_one_event(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    zh = config_of(database_url, source_config_dict(simulator, "call-center"))
    assert sync(zh, engine).exit_code == 0
    before = row_versions(engine)
    en = config_of(database_url, source_config_dict(simulator, "call-center", locale="en_US"))
    requests = simulator.stats.requests

    refused = sync(en, engine)
    assert refused.exit_code == 1
    assert {v.status for v in refused.vdns} == {"failed"}
    error = refused.vdns[0].error or ""
    assert "zh_CN" in error and "en_US" in error and "sources[0].locale" in error
    assert "obs-sync sync --source call-center --switch-locale" in error
    assert row_versions(engine) == before  # nothing written for it
    # (The first fetches run while the database side is checked: at most the VDNs fetched
    # meanwhile were asked for, none after the refusal was known.)
    assert simulator.stats.requests - requests <= 5 * 3
    assert rows(engine, "SELECT count(*) FROM {s}.locale_switch") == [(0,)]

    # A dry run says the same, and so does a dry run of the switch (nothing recorded).
    dry = sync(en, engine, dry_run=True)
    assert dry.exit_code == 1 and "--switch-locale" in (dry.vdns[0].error or "")
    dry = sync(en, engine, dry_run=True, switch_locale=True)
    assert dry.exit_code == 0 and dry.total("relabelled") == 600 and dry.total("updated") == 0
    assert row_versions(engine) == before
    assert rows(engine, "SELECT locale FROM {s}.source") == [("zh_CN",)]

    switched = sync(en, engine, switch_locale=True)
    assert switched.exit_code == 0
    assert switched.total("updated") == 0 and switched.total("relabelled") == 5 * 120
    assert stored(engine, "call-center") == upstream(simulator, "en_US")
    # One event, not 600 description changes.
    assert rows(
        engine, "SELECT source, from_locale, to_locale, sync_run_id FROM {s}.locale_switch"
    ) == [("call-center", "zh_CN", "en_US", switched.run_id)]
    assert rows(
        engine,
        "SELECT count(*) FROM {s}.result_code_change WHERE sync_run_id = :run",
        run=switched.run_id,
    ) == [(0,)]
    assert rows(
        engine,
        "SELECT sum(updated), sum(relabelled) FROM {s}.sync_run_vdn WHERE sync_run_id = :run",
        run=switched.run_id,
    ) == [(0, 600)]
    # The past keeps its language: a call before the switch reads the Chinese text.
    code, zh_desc = next(iter(upstream(simulator, "zh_CN")[1].items()))
    assert rows(
        engine,
        "SELECT d.obs_code_desc FROM {s}.sync_run AS r, "
        "LATERAL {s}.result_code_desc_at('call-center', 1, :code, r.finished_at) AS d "
        "WHERE r.id = :run",
        code=code,
        run=switched.run_id - 1,
    ) == [(zh_desc,)]
    assert_history_invariants(engine)
    # From now on en_US is the source's language: a plain run succeeds, a real change is
    # a change again.
    simulator.data.set_code(1, code, {"zh_CN": "新", "en_US": "Renamed"})
    after = sync(en, engine)
    assert after.exit_code == 0 and after.total("updated") == 1 and after.total("relabelled") == 0


def test_a_server_down_fails_only_its_own_sources_vdns(
    simulator: Simulator, second_simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = config_of(
        database_url,
        source_config_dict(simulator, "north"),
        source_config_dict(second_simulator, "south", SECOND_KEY, max_retries=0),
        sync={"max_unreachable_vdns": 2},
    )
    second_simulator.stop()
    result = sync(config, engine)
    assert result.exit_code == 1 and result.status == "failed"
    north = [v for v in result.vdns if v.source == "north"]
    south = [v for v in result.vdns if v.source == "south"]
    assert [v.status for v in north] == ["succeeded"] * 5
    assert stored(engine, "north") == upstream(simulator)
    assert stored(engine, "south") == {}
    # Fail-fast for the south only: after 2 unreachable VDNs its others are not attempted.
    assert {v.status for v in south} <= {"failed", "skipped"}
    skipped = [v for v in south if v.status == "skipped"]
    assert skipped and all(v.skip_reason == "unreachable" for v in skipped)
    assert all("sources[1].base_url" in (v.error or "") for v in skipped)
    # Every message names the source's own keys, never the isales: section's.
    assert all("isales." not in (v.error or "") for v in south), [v.error for v in south]
    assert sum(v.requests for v in south) <= 4  # two VDNs asked, no retries


def test_a_switch_that_changes_no_description_still_records_the_new_language(
    make_simulator: Any, database_url: str, engine: Engine
) -> None:
    from obs_sync.simulator import SimulatorData

    # One text for every locale (codes whose names are not translated).
    sim = make_simulator(SimulatorData({1: {"001": "OK", "002": "Busy"}}))
    zh = config_of(database_url, source_config_dict(sim, "cc", vdn_ids=[1]))
    assert sync(zh, engine).exit_code == 0
    en = config_of(database_url, source_config_dict(sim, "cc", vdn_ids=[1], locale="en_US"))
    switched = sync(en, engine, switch_locale=True)
    assert switched.exit_code == 0 and switched.total("relabelled") == 0
    assert rows(engine, "SELECT locale FROM {s}.vdn WHERE source = 'cc'") == [("en_US",)]
    # A later rename is a change, not taken for a translation.
    sim.data.set_code(1, "001", "Done")
    after = sync(en, engine)
    assert after.total("updated") == 1 and after.total("relabelled") == 0
