"""``status``, ``check`` and ``db grant-reader`` against real runs on PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from obs_sync.cli import main
from obs_sync.config import Config, parse_config
from obs_sync.simulator import Fault, Simulator
from tests.fixtures_sim import isales_config_dict

run_sync = pytest.importorskip("obs_sync.sync").run_sync

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


def test_status_table(synced: Config, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, synced, database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 0, result.output
    assert "Recent runs:" in result.output
    assert result.output.strip().endswith(
        "3 VDNs configured: 1 failing, 0 never synced successfully"
    )


def test_status_before_any_run(simulator: Simulator, database_url: str, tmp_path: Any) -> None:
    path = _write(tmp_path, _config(simulator, database_url), database_url)
    result = CliRunner().invoke(main, ["--config", path, "status"])
    assert result.exit_code == 1
    assert "no run records" in result.output and "obs-sync sync" in result.output


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
