"""The code lists in a whole run: `obs-sync sync` with code_lists, in process and as a real
process, on real PostgreSQL and the simulator over loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.config import ConfigError
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator
from obs_sync.simulator.code_lists import BusinessResult, CodeListFault
from obs_sync.store.integrity import verify_database
from tests.fixtures_db import TEST_SCHEMA, make_config, write_config
from tests.fixtures_db import query as q

S = TEST_SCHEMA
ALL = ["obs_result_codes", "display_results", "business_results"]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = create_engine(database_url)
    yield made
    made.dispose()


def test_a_run_syncs_every_configured_list_and_a_no_op_resync_writes_no_data_row(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=["1-3"], code_lists=ALL)
    first = run_sync(config, engine=engine, trigger="test")
    assert first.exit_code == 0 and first.status == "succeeded"
    assert sorted((r.vdn_id, r.code_list, r.status) for r in first.code_lists) == [
        (v, name, "succeeded")
        for v in (1, 2, 3)
        for name in ("business_results", "display_results")
    ]
    counts = q(
        engine,
        "SELECT (SELECT count(*) FROM {s}.display_result_current), "
        "(SELECT count(*) FROM {s}.display_result_obs_code_current), "
        "(SELECT count(*) FROM {s}.business_result_current), "
        "(SELECT count(*) FROM {s}.result_code_current)",
    )
    assert counts == [(60, 360, 120, 360)]
    history = "SELECT xmin::text, id FROM {s}.{t}_history ORDER BY id"
    tables = ("display_result", "display_result_obs_code", "business_result", "result_code")
    before = {t: q(engine, history.replace("{t}", t)) for t in tables}
    again = run_sync(config, engine=engine, trigger="test")
    assert again.exit_code == 0
    assert all(r.unchanged > 0 and r.inserted == 0 for r in again.code_lists)
    assert {t: q(engine, history.replace("{t}", t)) for t in tables} == before
    records = q(
        engine,
        "SELECT code_list, count(*) FROM {s}.sync_run_code_list GROUP BY 1 ORDER BY 1",
    )
    assert records == [("business_results", 6), ("display_results", 6)]


def test_default_code_lists_are_todays(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1])
    result = run_sync(config, engine=engine, trigger="test")
    assert result.exit_code == 0 and result.code_lists == []
    assert simulator.stats.requests == 3  # OBS code pages only
    assert q(engine, "SELECT count(*) FROM {s}.display_result") == [(0,)]


def test_a_failing_list_fails_only_itself_and_the_exit_code_says_so(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    simulator.code_lists.set_business(2, [BusinessResult(None, "No code")])
    simulator.code_lists.add_fault(CodeListFault("detail_status", vdn_id=3, times=None))
    config = make_config(simulator, database_url, vdn_ids=["1-3"], code_lists=ALL)
    result = run_sync(config, engine=engine, trigger="test")
    assert result.exit_code == 1 and result.status == "failed"
    assert [v.status for v in result.vdns] == ["succeeded"] * 3  # OBS codes unaffected
    by = {(r.vdn_id, r.code_list): r for r in result.code_lists}
    assert by[(2, "business_results")].status == "failed"
    assert by[(2, "display_results")].status == "succeeded"
    assert by[(3, "display_results")].status == "incomplete"
    assert any("business_results of VDN 2 (source default): failed" in n for n in result.notes)
    stored = q(
        engine,
        "SELECT vdn_id, code_list, status FROM {s}.sync_run_code_list "
        "WHERE status <> 'succeeded' ORDER BY 1, 2",
    )
    assert stored == [(2, "business_results", "failed"), (3, "display_results", "incomplete")]


def test_code_lists_without_obs_result_codes_is_a_configuration_error(
    simulator: Simulator, database_url: str
) -> None:
    with pytest.raises(ConfigError, match=r"isales\.code_lists: include obs_result_codes"):
        make_config(simulator, database_url, code_lists=["display_results"])


@pytest.mark.slow
def test_the_sync_command_with_code_lists(
    tmp_path: Path, simulator: Simulator, database_url: str, engine: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, code_lists=ALL)
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    command = [sys.executable, "-m", "obs_sync", "--config", path, "sync"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert q(engine, "SELECT count(*) FROM {s}.sync_run_code_list WHERE status = 'succeeded'") == [
        (10,)
    ]
    simulator.code_lists.set_business(1, [BusinessResult("1", "")])
    failed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert failed.returncode == 1
    assert "business_results of VDN 1 (source default): failed" in failed.stdout + failed.stderr
    assert "has an empty name" in failed.stdout + failed.stderr


def fetch(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    command = [sys.executable, "-m", "obs_sync", "--config", path, "fetch", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_fetch_code_list_prints_each_list(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url)
    display = fetch(path, "--vdn", "1", "--code-list", "display_results", "--format", "json")
    assert display.returncode == 0, display.stderr
    first = json.loads(display.stdout.splitlines()[0])
    expected = simulator.code_lists.display(1)[0]
    assert first == {
        "def_id": expected.def_id,
        "result_code": expected.result_code,
        "display_result": "客户未接听1",
        "obs_codes": ",".join(expected.fail_codes),
    }
    assert "VDN 1 display_results: 20 entries (totalCount 20), 1 page, 21 requests" in (
        display.stderr
    )
    business = fetch(path, "--vdn", "1", "--code-list", "business_results")
    assert business.returncode == 0
    assert business.stdout.splitlines()[0].split() == ["PARENT_CODE", "CODE", "NAME", "LEVEL"]
    simulator.code_lists.set_business(1, [BusinessResult(None, "No code")])
    bad = fetch(path, "--vdn", "1", "--code-list", "business_results")
    assert bad.returncode == 1
    assert "would not be stored: business result 'No code'" in bad.stderr
    assert "has no code" in bad.stderr
    unknown = fetch(path, "--vdn", "1", "--code-list", "labels")
    assert unknown.returncode == 2 and "--code-list" in unknown.stderr


def test_status_shows_each_list_and_the_failing_ones(
    tmp_path: Path, simulator: Simulator, database_url: str, engine: Engine
) -> None:
    simulator.code_lists.set_business(2, [BusinessResult(None, "No code")])
    config = make_config(simulator, database_url, vdn_ids=["1-3"], code_lists=ALL)
    run_sync(config, engine=engine, trigger="test")
    path = write_config(
        tmp_path / "c.yaml", simulator, database_url, vdn_ids=["1-3"], code_lists=ALL
    )
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    base = [sys.executable, "-m", "obs_sync", "--config", path, "status"]
    table = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert table.returncode == 0, table.stderr
    assert "business_results: 1 failed, 2 succeeded" in table.stdout
    assert "display_results: 3 succeeded" in table.stdout
    failing = [line for line in table.stdout.splitlines() if line.startswith("business_results ")]
    assert failing and failing[0].split()[:5] == [
        "business_results", "default", "2", "failed", "never"
    ]  # fmt: skip
    document = subprocess.run(
        [*base, "--format", "json"], capture_output=True, text=True, timeout=60, env=env
    )
    lists = json.loads(document.stdout)["code_lists"]
    assert len(lists) == 6
    assert {
        (r["vdn_id"], r["code_list"], r["status"]) for r in lists if r["status"] != "succeeded"
    } == {(2, "business_results", "failed")}


def test_verify_checks_the_code_lists_history(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=["1-2"], code_lists=ALL)
    run_sync(config, engine=engine, trigger="test")
    assert verify_database(engine, S) == []
    with engine.begin() as connection:
        connection.execute(
            text(
                f"UPDATE {S}.display_result SET display_result = 'edited by hand' "
                "WHERE vdn_id = 2 AND def_id = (SELECT min(def_id) FROM "
                f"{S}.display_result WHERE vdn_id = 2)"
            )
        )
    findings = verify_database(engine, S)
    assert [(f.vdn_id, f.check) for f in findings] == [(2, "display_result:current-mismatch")]
    assert findings[0].obs_code is not None and findings[0].obs_code.startswith("def_id=")
    assert findings[0].source == "default"
    assert verify_database(engine, S, vdn_ids=[1]) == []


def test_check_makes_a_signed_request_per_configured_list(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, code_lists=ALL)
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    command = [sys.executable, "-m", "obs_sync", "--config", path, "check"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    lines = done.stdout.splitlines()
    assert any(
        line.split()[:2] == ["PASS", "display_results"] and "totalCount 20" in line
        for line in lines
    ), done.stdout
    assert any(
        line.split()[:2] == ["PASS", "business_results"] and "totalCount 10" in line
        for line in lines
    ), done.stdout
    simulator.code_lists._business_page = (  # type: ignore[method-assign]
        lambda vdn_id, size, num, locale: (500, b'{"error": "down"}')
    )
    failed = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert failed.returncode == 1
    assert any(
        line.split()[:2] == ["FAIL", "business_results"] for line in failed.stdout.splitlines()
    )


def test_verify_upstream_compares_each_list_with_a_fresh_fetch(
    tmp_path: Path, simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=["1-2"], code_lists=ALL)
    run_sync(config, engine=engine, trigger="test")
    lists = simulator.code_lists
    first, *rest = lists.display(2)
    lists.set_display(2, [replace(first, label="Renamed upstream"), *rest[1:]])
    path = write_config(
        tmp_path / "c.yaml", simulator, database_url, vdn_ids=["1-2"], code_lists=ALL
    )
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    command = [sys.executable, "-m", "obs_sync", "--config", path, "verify", "--upstream"]
    done = subprocess.run(
        [*command, "--format", "json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1, done.stderr
    found = {
        (f["vdn_id"], f["check"], f["obs_code"].split()[0], f["detail"].split(",")[0])
        for f in json.loads(done.stdout)["findings"]
    }
    assert (2, "upstream-display_results", "display_result", "stored ('001'") in found
    assert (2, "upstream-display_results", "display_result", "iSales no longer has it") in found
    assert any(code == "display_result_obs_code" for _, _, code, _ in found)
    assert all(vdn == 2 for vdn, *_ in found), found


def test_a_dry_run_says_it_does_not_fetch_the_other_lists(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(simulator, database_url, vdn_ids=[1], code_lists=ALL)
    result = run_sync(config, engine=engine, trigger="test", dry_run=True)
    assert result.code_lists == []
    assert "dry run: the other code lists (display, business results) not fetched" in (result.notes)
    assert simulator.stats.requests == 3  # the OBS code pages only


def test_the_lists_are_synced_even_when_the_obs_codes_fail(
    simulator: Simulator, database_url: str, engine: Engine
) -> None:
    simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=2, times=None))
    config = make_config(simulator, database_url, vdn_ids=["1-2"], code_lists=ALL, max_retries=0)
    result = run_sync(config, engine=engine, trigger="test")
    assert [v.status for v in result.vdns] == ["succeeded", "failed"]
    assert {(r.vdn_id, r.code_list, r.status) for r in result.code_lists} == {
        (v, name, "succeeded") for v in (1, 2) for name in ("display_results", "business_results")
    }
