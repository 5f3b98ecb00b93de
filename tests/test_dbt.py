"""integrations/dbt against a really synced database, with real dbt-core + dbt-postgres.

dbt lives in its own virtualenv, ``.venv-dbt`` in the repository root (git-ignored), made
on first use from ``integrations/dbt/requirements.txt`` and reused while that file is
unchanged. Without network access to a package index the test is skipped locally, but
FAILS in CI (``CI=true``): there dbt must really run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from obs_sync.config import parse_config
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Fault, Simulator
from obs_sync.store.grants import grant_reader
from tests.fixtures_db import TEST_SCHEMA
from tests.fixtures_sim import source_config_dict

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "integrations" / "dbt"
VENV = REPO / ".venv-dbt"
REQUIREMENTS = PROJECT / "requirements.txt"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"dbt is required in CI: {reason}")
    pytest.skip(f"dbt not available: {reason}")


@pytest.fixture(scope="session")
def dbt() -> Path:
    """The dbt executable of .venv-dbt, installed (once per requirements) when missing."""
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = VENV / "obs-sync-requirements.sha256"
    executable = VENV / "bin" / "dbt"
    if executable.exists() and marker.exists() and marker.read_text().strip() == stamp:
        return executable
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
    ]  # fmt: skip
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            _unavailable(f"{' '.join(step[:3])} took over 900 s")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            _unavailable(f"{' '.join(step[:4])} failed: {' | '.join(tail)}")
    marker.write_text(stamp)
    return executable


def run_dbt(dbt: Path, command: list[str], env: dict[str, str], tmp: Path) -> tuple[int, str]:
    done = subprocess.run(
        [str(dbt), *command, "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT),
         "--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")],
        env={**os.environ, **env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_dbt_sources_freshness_and_tests_on_a_synced_database(
    dbt: Path,
    simulator: Simulator,
    database_url: str,
    db_engine: Engine,
    tmp_path: Path,
) -> None:
    # Two sources on one server, in two languages: every VDN id is stored twice, so the
    # keys and relationships the dbt tests check must include the source.
    config = parse_config(
        {
            "sources": [
                source_config_dict(simulator, "zh", vdn_ids=[1, 2, 3], max_retries=0),
                source_config_dict(
                    simulator, "en", vdn_ids=[1, 2, 3], max_retries=0, locale="en_US"
                ),
            ],
            "database": {"url": database_url, "schema": TEST_SCHEMA},
        },
        env={},
    )
    data = simulator.data
    assert run_sync(config, engine=db_engine).exit_code == 0
    with db_engine.connect() as connection:
        stored = connection.execute(
            text(f"SELECT source, count(*) FROM {TEST_SCHEMA}.vdn GROUP BY 1 ORDER BY 1")
        ).all()
    assert [tuple(row) for row in stored] == [("en", 3), ("zh", 3)]
    code = next(iter(data.codes(1)))
    data.set_code(1, code, "renamed")
    data.remove_code(3, next(iter(data.codes(3))))
    assert run_sync(config, engine=db_engine).exit_code == 0

    # dbt connects as a read-only role, as a BI team's would.
    role = f"dbt_{uuid.uuid4().hex[:8]}"
    with db_engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'dbt-pw'"))
    try:
        grant_reader(db_engine, TEST_SCHEMA, role)
        url = make_url(database_url)
        env = {
            "OBS_SYNC_DBT_HOST": str(url.query.get("host") or url.host or "127.0.0.1"),
            "OBS_SYNC_DBT_PORT": str(url.port or 5432),
            "OBS_SYNC_DBT_USER": role,
            "OBS_SYNC_DBT_PASSWORD": "dbt-pw",
            "OBS_SYNC_DBT_DBNAME": str(url.database),
            "OBS_SYNC_SCHEMA": TEST_SCHEMA,
        }
        code_, output = run_dbt(dbt, ["source", "freshness"], env, tmp_path)
        assert code_ == 0, output
        assert "PASS freshness of obs_sync.vdn" in output
        code_, output = run_dbt(dbt, ["test"], env, tmp_path)
        assert code_ == 0, output
        assert "ERROR=0" in output and "PASS=" in output
        # The keys with the source first, and the tables of sources, are tested too.
        for test in (
            "source_unique_obs_sync_vdn_source_vdn_id",
            "source_unique_obs_sync_result_code_source_vdn_id_obs_code",
            "source_relationships_obs_sync_sync_run_vdn_source_vdn_id",
            "source_unique_obs_sync_source_source",
            "source_unique_obs_sync_locale_switch_id",
        ):
            assert f"PASS {test}" in output, (test, output)

        # VDN 2 stops syncing (iSales fails it) and 13 hours go by: its last success is
        # older than error_after (12 h). The other VDNs keep succeeding.
        simulator.faults.add(Fault(kind="http_status", status=500, vdn_id=2, times=None))
        assert run_sync(config, engine=db_engine).exit_code == 1
        with db_engine.begin() as connection:
            for table, column in (("vdn", "last_succeeded_at"), ("sync_run_vdn", "finished_at")):
                connection.execute(
                    text(
                        f"UPDATE {TEST_SCHEMA}.{table} SET {column} = {column} - "
                        "interval '13 hours' WHERE vdn_id = 2 AND "
                        + ("true" if table == "vdn" else "status = 'succeeded'")
                    )
                )
        code_, output = run_dbt(dbt, ["source", "freshness"], env, tmp_path)
        assert code_ != 0, output
        assert "ERROR STALE freshness of obs_sync.vdn" in output, output
        assert "PASS freshness of obs_sync.sync_run" in output  # runs still happen
        code_, output = run_dbt(dbt, ["test"], env, tmp_path)
        assert code_ == 0, output  # the data itself is still consistent
    finally:
        with db_engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


def test_missing_dbt_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dbt is required in CI"):
        _unavailable("no index")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="dbt not available"):
        _unavailable("no index")
