"""The command line handles every error in one place: one line on stderr (the fix named,
secrets masked) and the error's exit code; with ``logging.level: DEBUG`` the cause too."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from obs_sync.cli import main

SECRET = "sk-never-shown-1234"


def write_config(tmp_path: Path, level: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: ak, "
        f"secret_key: {SECRET}, vdn_ids: [1]}}\n"
        "schedule: {cron: '0 25 * * *'}\n"
        "database: {url: 'postgresql://nobody@127.0.0.1:1/none'}\n"
        f"logging: {{level: {level}}}\n"
    )
    return path


def test_an_error_is_one_line_and_its_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path, "INFO")
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"obs-sync: configuration error: {config}: schedule.cron")
    assert "Traceback" not in result.stderr


def test_the_debug_log_shows_the_cause_chained(tmp_path: Path) -> None:
    config = write_config(tmp_path, "DEBUG")
    result = CliRunner().invoke(main, ["--config", str(config), "run"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    # The error the command raised, and the one it was raised from.
    assert "ConfigurationError" in result.stderr and "ScheduleError" in result.stderr
    assert "direct cause" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("obs-sync: configuration error:")
    assert SECRET not in result.stdout + result.stderr


def test_a_database_error_is_one_line_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path, "INFO")
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("obs-sync: database error:")
    assert len(result.stderr.splitlines()) == 1
