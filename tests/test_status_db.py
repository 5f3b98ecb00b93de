"""``status``, ``check`` and ``db grant-reader`` against real runs on PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from obs_sync.cli import main
from obs_sync.config import Config, parse_config
from obs_sync.db import migrate
from obs_sync.simulator import Fault, Simulator
from obs_sync.store.status_query import ListStreakRow, RunRow, VdnRow, read_status
from tests.fixtures_sim import isales_config_dict

run_sync = pytest.importorskip("obs_sync.engine.run").run_sync

SCHEMA = "obs_sync_status_test"


def _admin_url() -> str:
    """The server for throwaway test databases: $OBS_SYNC_TEST_DATABASE_URL or local trust."""
    return os.environ.get(
        "OBS_SYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, uniquely named database, dropped afterwards (SQLAlchemy psycopg URL)."""
    from sqlalchemy.engine import make_url

    base = make_url(_admin_url()).set(drivername="postgresql")
    name = f"obs_sync_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(base.render_as_string(hide_password=False), autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL for tests: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _plain(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _config(sim: Simulator, database_url: str, **isales: Any) -> Config:
    return parse_config(
        {
            "isales": isales_config_dict(sim, vdn_ids=["1-3"], max_retries=0, **isales),
            "database": {"url": database_url, "schema": SCHEMA},
        },
        env={},
    )


def _write(tmp_path: Any, config: Config, database_url: str) -> str:
    import yaml

    data = {
        "isales": {
            "base_url": config.isales.base_url,
            "access_key": config.isales.access_key,
            "secret_key": config.isales.secret_key.get_secret_value(),
            "vdn_ids": ["1-3"],
            "max_retries": 0,
        },
        "database": {"url": database_url, "schema": SCHEMA},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def synced(simulator: Simulator, database_url: str) -> Iterator[Config]:
    """Two runs: all succeed, then VDN 2 fails (HTTP 503)."""
    config = _config(simulator, database_url)
    assert run_sync(config).exit_code == 0
    simulator.faults.add(Fault(kind="http_status", status=503, times=None, vdn_id=2))
    assert run_sync(config).exit_code == 1
    simulator.faults.clear()
    yield config


def test_status_json(synced: Config, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["runs"]) == 2
    latest, first = data["runs"]
    assert latest["run_id"] > first["run_id"]
    assert first["succeeded"] == 3 and latest["failed"] == 1 and latest["succeeded"] == 2
    assert first["inserted"] == 3 * 120
    vdns = {v["vdn_id"]: v for v in data["vdns"]}
    assert vdns[1]["streak"] == 0 and vdns[1]["last_status"] == "succeeded"
    assert vdns[2]["streak"] == 1 and vdns[2]["last_status"] == "failed"
    assert "503" in vdns[2]["last_error"]
    assert vdns[2]["last_success"] is not None and vdns[2]["failing_since"] is not None
    # Which database was read: its name and schema, never a password.
    assert f"database {make_url(database_url).database}, schema {SCHEMA}" in data["database"]


def test_status_table(synced: Config, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Times are in UTC")
    assert result.output.splitlines()[1].startswith("Database: PostgreSQL at ")
    assert "Recent runs:" in result.output
    lines = result.output.splitlines()
    assert lines[3].startswith("Summary: 3 VDNs: 1 failing, 0 never synced, 0 stale")
    assert lines[5].startswith("  longest failure: VDN 2, failing since")
    listed = [line.split()[:2] for line in lines if line.startswith("  ") and line[2:3].isdigit()]
    assert listed[-3:] == [["2", "failing"], ["1", "ok"], ["3", "ok"]]  # failing first


def test_status_before_any_table(simulator: Simulator, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, _config(simulator, database_url), database_url)
    for fmt in ("table", "json"):
        result = CliRunner().invoke(main, ["--config", path, "status", "--format", fmt])
        assert result.exit_code == 1
        assert (
            f"schema {SCHEMA} has no obs-sync tables: run `obs-sync sync` "
            "(or `obs-sync db upgrade`) first"
        ) in result.output


def test_status_with_tables_but_no_runs(
    simulator: Simulator, database_url: str, tmp_path: Any
) -> None:
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, SCHEMA)
    finally:
        engine.dispose()
    path = _write(tmp_path, _config(simulator, database_url), database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Times are in UTC")
    assert lines[1].startswith("Database: PostgreSQL at ")
    runs = lines.index("Recent runs:")
    assert lines[runs + 1] == "  (none yet)"
    assert lines[3].startswith("Summary: 3 VDNs: 0 failing, 3 never synced")
    result = CliRunner().invoke(main, ["--config", path, "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["runs"] == [] and data["warnings"] == []
    assert [(v["vdn_id"], v["last_status"], v["streak"]) for v in data["vdns"]] == [
        (1, None, 0),
        (2, None, 0),
        (3, None, 0),
    ]


def test_status_of_a_schema_from_a_newer_obs_sync(
    synced: Config, database_url: str, tmp_path: Any
) -> None:
    newer = f"{int(migrate.head_revision()) + 1:04d}"
    with psycopg.connect(_plain(database_url), autocommit=True) as connection:
        connection.execute(f"UPDATE {SCHEMA}.alembic_version SET version_num = %s", (newer,))
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 0, result.output
    warning = (
        f"schema {SCHEMA} is at migration {newer}, which this obs-sync version does not know "
        f"(its newest is {migrate.head_revision()}): a newer obs-sync migrated it, so anything "
        "it added is not shown; upgrade obs-sync"
    )
    assert result.output.splitlines()[0] == f"warning: {warning}"
    assert "Summary: 3 VDNs: 1 failing" in result.output  # what can be read is shown
    result = CliRunner().invoke(main, ["--config", path, "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["warnings"] == [warning] and len(data["runs"]) == 2


def test_status_filters_failing_and_vdn_ranges(
    synced: Config, database_url: str, tmp_path: Any
) -> None:
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status", "--failing", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [v["vdn_id"] for v in data["vdns"]] == [2] and data["vdns"][0]["state"] == "failing"
    assert data["summary"]["by_state"] == {
        "failing": 1,
        "never_synced": 0,
        "stale": 0,
        "empty": 0,
        "ok": 2,
    }
    for args in (["--vdn", "1", "--vdn", "3"], ["--vdn", "1,3"], ["--vdn", "1-1", "--vdn", "3"]):
        result = CliRunner().invoke(main, ["--config", path, "status", *args, "--format", "json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert [v["vdn_id"] for v in data["vdns"]] == [1, 3]
        assert data["summary"]["vdns"] == 2 and data["filter"]["vdns"] == [1, 3]
    table = CliRunner().invoke(main, ["--config", path, "status", "--failing"])
    assert table.exit_code == 0 and "Failing VDNs (1)" in table.output
    # A VDN that is not configured, or not a VDN id: a usage error naming the option.
    for bad, needle in ((["--vdn", "4"], "not in isales.vdn_ids"), (["--vdn", "3-1"], "reversed")):
        result = CliRunner().invoke(main, ["--config", path, "status", *bad])
        assert result.exit_code == 2 and needle in result.output and "--vdn" in result.output


def test_status_shows_an_empty_vdn(simulator: Simulator, database_url: str, tmp_path: Any) -> None:
    """VDN 9 is configured but the simulator has no data for it: totalCount 0."""
    config = parse_config(
        {
            "isales": isales_config_dict(simulator, vdn_ids=[1, 9], max_retries=0),
            "database": {"url": database_url, "schema": SCHEMA},
        },
        env={},
    )
    assert run_sync(config).exit_code == 0  # empty is not a failure
    path = _write(tmp_path, config, database_url)
    text = Path(path).read_text().replace("- 1-3", "- 1\n  - 9")
    Path(path).write_text(text)
    result = CliRunner().invoke(main, ["--config", path, "status", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    vdns = {v["vdn_id"]: v for v in data["vdns"]}
    assert vdns[9]["state"] == "empty" and vdns[9]["empty"] is True
    assert vdns[9]["last_status"] == "succeeded"
    assert vdns[1]["state"] == "ok" and vdns[1]["empty"] is False
    assert data["summary"]["by_state"]["empty"] == 1
    table = CliRunner().invoke(main, ["--config", path, "status"]).output
    assert "1 empty" in table and any(
        line.split()[:2] == ["9", "empty"] for line in table.splitlines()
    )


def test_check_all_pass(simulator: Simulator, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, _config(simulator, database_url), database_url)
    result = CliRunner().invoke(main, ["--config", path, "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [
        ["PASS", "config"],
        ["PASS", "database"],
        ["PASS", "isales"],
    ]
    assert lines[-1] == "all checks passed"


def test_check_bad_database(simulator: Simulator, tmp_path: Any) -> None:
    url = "postgresql+psycopg://nobody:pw-not-shown@127.0.0.1:1/none"
    path = _write(tmp_path, _config(simulator, url), url)
    result = CliRunner().invoke(main, ["--config", path, "check"])
    assert result.exit_code == 1
    assert "FAIL  database" in result.output
    assert "fix: nothing answers at the host:port in database.url" in result.output
    assert "PASS  isales" in result.output  # the other checks still run
    assert "pw-not-shown" not in result.output


def _role_connect(database_url: str, role: str) -> psycopg.Connection[Any]:
    url = make_url(database_url).set(drivername="postgresql", username=role, password=None)
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def test_grant_reader(synced: Config, database_url: str, tmp_path: Any) -> None:
    role = f"obs_reader_{uuid.uuid4().hex[:8]}"
    path = _write(tmp_path, synced, database_url)
    admin = _role_connect(database_url, make_url(database_url).username or "postgres")
    try:
        missing = CliRunner().invoke(main, ["--config", path, "db", "grant-reader", role])
        assert missing.exit_code == 1
        assert f"role '{role}' does not exist" in missing.output
        assert "CREATE ROLE" in missing.output

        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        # Typed with another case (either way round): the hint names the existing role.
        upper = CliRunner().invoke(main, ["--config", path, "db", "grant-reader", role.upper()])
        assert upper.exit_code == 1 and f"did you mean '{role}'?" in upper.output
        result = CliRunner().invoke(main, ["--config", path, "db", "grant-reader", role])
        assert result.exit_code == 0, result.output
        assert "GRANT SELECT ON" in result.output

        with _role_connect(database_url, role) as reader:
            count = reader.execute(f"SELECT count(*) FROM {SCHEMA}.result_code").fetchone()
            assert count is not None and count[0] == 3 * 120
            for table in ("result_code_history", "sync_run", "sync_run_vdn"):
                reader.execute(f"SELECT * FROM {SCHEMA}.{table} LIMIT 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                reader.execute(
                    f"INSERT INTO {SCHEMA}.result_code (vdn_id, obs_code, obs_code_desc) "
                    "VALUES (1, 'x', 'y')"
                )
        # A hostile name is quoted, never executed.
        evil = 'x"; DROP TABLE result_code; --'
        hostile = CliRunner().invoke(main, ["--config", path, "db", "grant-reader", evil])
        assert hostile.exit_code == 1 and "does not exist" in hostile.output
    finally:
        admin.execute(f'DROP OWNED BY "{role}"') if _role_exists(admin, role) else None
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


def _role_exists(connection: psycopg.Connection[Any], role: str) -> bool:
    row = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return row is not None


# ----------------------------------------------------------------- queries vs. a reference

FAILING = ("failed", "incomplete", "guarded")
STATUSES = ("succeeded", "succeeded", "failed", "incomplete", "guarded", "skipped")


def _random_history(connection: psycopg.Connection[Any], schema: str, seed: int) -> None:
    """Runs 5 minutes apart; each VDN in most of them with a random result. VDN 1 always
    succeeds, 2 never does, 3 is only ever skipped; 9 is configured but never recorded."""
    import random

    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    runs = rng.randint(1, 60)
    for index in range(runs):
        started = base + timedelta(minutes=5 * index)
        running = index == runs - 1 and rng.random() < 0.3
        row = connection.execute(
            f"INSERT INTO {schema}.sync_run (started_at, finished_at, status, trigger) "
            "VALUES (%s, %s, %s, 'schedule') RETURNING id",
            (
                started,
                None if running else started + timedelta(minutes=4),
                "running" if running else "succeeded",
            ),
        ).fetchone()
        assert row is not None
        for vdn in range(1, 9):
            if vdn > 3 and rng.random() < 0.15:
                continue  # not in this run (configuration changed)
            status = {1: "succeeded", 2: "failed", 3: "skipped"}.get(vdn) or rng.choice(STATUSES)
            error = None
            if status != "succeeded" and rng.random() < 0.75:
                error = f"VDN {vdn}: {status} in run {row[0]}"
            # Distinct per VDN and in run order: the queries order by finished_at.
            finished = started + timedelta(seconds=vdn + rng.random())
            connection.execute(
                f"INSERT INTO {schema}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, "
                "finished_at, inserted, updated, deleted, restored, error) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row[0],
                    vdn,
                    status,
                    started,
                    finished,
                    *(rng.randint(0, 5) for _ in range(4)),
                    error,
                ),
            )


def _reference(connection: psycopg.Connection[Any], schema: str, vdn_ids: list[int]) -> Any:
    """What ``status`` should say, computed row by row in Python."""
    runs = connection.execute(
        f"SELECT id, started_at, finished_at, status, trigger, heartbeat_at FROM {schema}.sync_run "
        "ORDER BY id DESC LIMIT 10"
    ).fetchall()
    records = connection.execute(
        f"SELECT sync_run_id, vdn_id, status, finished_at, inserted, updated, deleted, "
        f"restored, error FROM {schema}.sync_run_vdn"
    ).fetchall()
    run_rows = []
    for run_id, started, finished, status, trigger, heartbeat in runs:
        mine = [r for r in records if r[0] == run_id]
        if status == "running":  # no process holds its lock here, its heartbeat is old
            status, finished = "abandoned", max(started, heartbeat or started)
        run_rows.append(
            RunRow(
                run_id,
                started,
                finished,
                status,
                trigger,
                len(mine),
                sum(1 for r in mine if r[2] == "succeeded"),
                sum(1 for r in mine if r[2] in FAILING),
                sum(1 for r in mine if r[2] == "skipped"),
                *(sum(r[i] for r in mine) for i in (4, 5, 6, 7)),
            )
        )
    vdn_rows = [
        VdnRow(vdn, *_streak([(r[2], r[3], r[8]) for r in records if r[1] == vdn]))
        for vdn in vdn_ids
    ]
    return run_rows, vdn_rows


def _streak(records: list[tuple[str, datetime, str | None]]) -> tuple[Any, ...]:
    """From one VDN's (or list's) (status, finished_at, error) records: last success, last
    status and attempt, streak length, its first failure and its latest error."""
    history = sorted(records, key=lambda r: r[1])
    successes = [r[1] for r in history if r[0] == "succeeded"]
    last_success = successes[-1] if successes else None
    attempts = [r for r in history if r[0] != "skipped"]
    last = attempts[-1] if attempts else None
    streak = [
        r for r in history if r[0] in FAILING and (last_success is None or r[1] > last_success)
    ]
    errors = [r[2] for r in streak if r[2] is not None]
    return (
        last_success,
        last[0] if last else None,
        last[1] if last else None,
        len(streak),
        streak[0][1] if streak else None,
        errors[-1] if errors else None,
    )


@pytest.mark.parametrize("seed", range(8))
def test_queries_match_a_reference_on_a_random_history(database_url: str, seed: int) -> None:
    # "order" is a reserved word the configuration allows as a schema: it must be quoted.
    schema, quoted = "order", '"order"'
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, schema)
        with psycopg.connect(_plain(database_url), autocommit=True) as connection:
            _random_history(connection, quoted, seed)
            vdn_ids = list(range(1, 10))
            want_runs, want_vdns = _reference(connection, quoted, vdn_ids)
        got = read_status(engine, schema, vdn_ids)
    finally:
        engine.dispose()
    assert got.runs == want_runs
    assert got.vdns == want_vdns
    assert got.warnings == []
    by_id = {v.vdn_id: v for v in got.vdns}
    assert by_id[1].streak == 0 and by_id[1].last_error is None
    assert by_id[2].last_success is None and by_id[2].streak > 0
    assert by_id[3].last_status is None and by_id[3].streak == 0
    assert by_id[9] == VdnRow(9, None, None, None, 0, None, None)


LISTS = ("business_results", "display_results")


@pytest.mark.parametrize("seed", range(4))
def test_the_list_streaks_match_a_reference_on_a_random_history(
    database_url: str, seed: int
) -> None:
    """The same query over sync_run_code_list, keyed by list too (the daemon's health reads
    it at start): each list has its own streak, whatever the VDN's other list did."""
    import random

    rng = random.Random(seed)
    engine = create_engine(database_url)
    keys = [("default", vdn, name) for vdn in (1, 2, 3, 9) for name in LISTS]
    try:
        migrate.upgrade(engine, SCHEMA)
        with psycopg.connect(_plain(database_url), autocommit=True) as connection:
            _random_history(connection, SCHEMA, seed)
            for run_id, started in connection.execute(
                f"SELECT id, started_at FROM {SCHEMA}.sync_run ORDER BY id"
            ).fetchall():
                for vdn in (1, 2, 3):  # 9 is configured but never recorded
                    for index, name in enumerate(LISTS):
                        status = rng.choice(STATUSES)
                        failed = status != "succeeded" and rng.random() < 0.75
                        error = f"{name} {status}" if failed else None
                        connection.execute(
                            f"INSERT INTO {SCHEMA}.sync_run_code_list (sync_run_id, vdn_id, "
                            "code_list, status, started_at, finished_at, error) "
                            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (
                                run_id,
                                vdn,
                                name,
                                status,
                                started,
                                started + timedelta(seconds=vdn, milliseconds=index + 1),
                                error,
                            ),
                        )
            records = connection.execute(
                f"SELECT vdn_id, code_list, status, finished_at, error "
                f"FROM {SCHEMA}.sync_run_code_list"
            ).fetchall()
        got = read_status(engine, SCHEMA, [1, 2, 3, 9], code_lists=keys)
        assert read_status(engine, SCHEMA, [1]).code_lists == []  # none asked for
    finally:
        engine.dispose()
    want = [
        ListStreakRow(
            vdn,
            *_streak([(r[2], r[3], r[4]) for r in records if (r[0], r[1]) == (vdn, name)]),
            code_list=name,
        )
        for _, vdn, name in keys
    ]
    assert got.code_lists == want


def test_no_list_streaks_before_the_lists_have_run_records(database_url: str) -> None:
    # A daemon may read the records before its first run applies migration 0007.
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, SCHEMA, "0006")
        got = read_status(engine, SCHEMA, [1], code_lists=[("default", 1, "display_results")])
    finally:
        engine.dispose()
    assert got.code_lists == [] and [v.vdn_id for v in got.vdns] == [1]


def test_status_of_a_newer_schema_it_cannot_read(
    synced: Config, database_url: str, tmp_path: Any
) -> None:
    """Should a newer obs-sync ever drop what status reads, the message says why."""
    with psycopg.connect(_plain(database_url), autocommit=True) as connection:
        connection.execute(f"UPDATE {SCHEMA}.alembic_version SET version_num = '9999'")
        connection.execute(f"ALTER TABLE {SCHEMA}.sync_run_vdn DROP COLUMN restored")
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 1
    assert (
        f"schema {SCHEMA} was migrated by a newer obs-sync (migration 9999) and this version "
        "cannot read it (column v.restored does not exist): upgrade obs-sync"
    ) in result.output
