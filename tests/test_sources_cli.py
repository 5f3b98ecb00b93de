"""The commands with several sources, as an operator runs them: sync --source, fetch
--source, check (a verdict per source), status (a source column, --source), verify
--source; bad --source values are usage errors (exit 2) before any request or write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import Engine

from obs_sync.cli import main
from obs_sync.db import migrate
from obs_sync.simulator import Simulator
from tests.fixtures_db import TEST_SCHEMA
from tests.fixtures_sim import SECOND_KEY, source_config_dict

S = TEST_SCHEMA


def write(path: Path, database_url: str, *sources: dict[str, Any]) -> str:
    data = {
        "sources": list(sources),
        "database": {"url": database_url, "schema": S},
        "metrics": {"port": 0},
    }
    path.write_text(yaml.safe_dump(data), "utf-8")
    return str(path)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_commands_with_two_sources(
    tmp_path: Path,
    simulator: Simulator,
    second_simulator: Simulator,
    database_url: str,
    db_engine: Engine,
) -> None:
    path = write(
        tmp_path / "c.yaml",
        database_url,
        source_config_dict(simulator, "north", vdn_ids=["1-2"]),
        source_config_dict(second_simulator, "south", SECOND_KEY, vdn_ids=["1-3"]),
    )
    # Bad --source / --vdn: exit 2, naming the option and the configured sources; nothing
    # asked, nothing written.
    result = run("--config", path, "sync", "--source", "west")
    assert result.exit_code == 2 and "--source west" in result.output
    assert "north, south" in result.output
    result = run("--config", path, "sync", "--source", "north", "--vdn", "3")
    assert result.exit_code == 2 and "--vdn 3" in result.output and "north" in result.output
    assert simulator.stats.requests == second_simulator.stats.requests == 0
    with db_engine.connect() as connection:
        assert (
            connection.execute(text("SELECT to_regclass(:t)"), {"t": f"{S}.vdn"}).scalar() is None
        )

    result = run("--config", path, "sync", "--source", "south")
    assert result.exit_code == 0, result.output
    assert any(line.startswith("SOURCE  VDN") for line in result.output.splitlines())
    assert simulator.stats.requests == 0  # the other source was not asked
    result = run("--config", path, "sync")
    assert result.exit_code == 0, result.output

    # status: a source column; --source narrows it.
    result = run("--config", path, "status", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert sorted((v["source"], v["vdn_id"]) for v in data["vdns"]) == [
        ("north", 1),
        ("north", 2),
        ("south", 1),
        ("south", 2),
        ("south", 3),
    ]
    table = run("--config", path, "status", "--source", "north").output
    assert "SOURCE" in table and "south" not in table.split("VDNs, those")[1]
    assert run("--config", path, "status", "--source", "west").exit_code == 2

    # fetch: one source per call, named once there are several.
    result = run("--config", path, "fetch", "--vdn", "1")
    assert result.exit_code == 2 and "--source" in result.output
    result = run("--config", path, "fetch", "--source", "south", "--vdn", "1")
    assert result.exit_code == 0 and "VDN 1 of south" in result.output

    # verify: every check holds per source; --source narrows; --upstream asks each source.
    result = run("--config", path, "verify", "--upstream")
    assert result.exit_code == 0, result.output
    assert simulator.url in result.output and second_simulator.url in result.output
    assert run("--config", path, "verify", "--source", "south", "--vdn", "3").exit_code == 0

    # check: one signed request per source, each verdict named.
    second_simulator.stop()
    result = run("--config", path, "check")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("PASS  isales:north") for line in lines), result.output
    assert any(line.startswith("FAIL  isales:south") for line in lines), result.output
    assert "sources[1].base_url" in result.output or "sources[1]" in result.output

    # db downgrade below 0006 with two sources stored: refused, saying why; nothing changed.
    result = run("--config", path, "db", "downgrade", "--revision", "0005", "--yes")
    assert result.exit_code == 1, result.output
    assert "cannot downgrade below migration 0006" in result.output
    assert "north, south" in result.output
    with db_engine.connect() as connection:
        version = connection.execute(text(f"SELECT version_num FROM {S}.alembic_version"))
        assert version.scalar() == migrate.head_revision()  # (0007 and up: after 0006)
