"""Migration 0006 (sources) on a database that obs-sync of the previous revision (0005)
populated with real syncs: every query of that version's docs/bi.md returns the same rows
after the upgrade; the downgrade is refused once another source has written.

The previous version is the commit where migration 0005 was the head (PREVIOUS), taken
from this repository with ``git archive`` and run as its own ``obs-sync sync`` process.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from obs_sync.commands.demo import CHANGED_CODE, DEMO_CODES, NEW_CODE, REMOVED_CODE
from obs_sync.config import parse_config
from obs_sync.db import migrate
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator, SimulatorData
from tests.fixtures_db import TEST_SCHEMA, config_dict
from tests.fixtures_sim import source_config_dict

ROOT = Path(__file__).resolve().parent.parent
PREVIOUS = "d7cade7"  # main with migration 0005 as its head (before sources)
BLOCK = re.compile(r"```sql\n(.*?)```", re.DOTALL)
S = TEST_SCHEMA


def previous_version(into: Path) -> tuple[Path, str]:
    """The previous version's package and migrations, and its docs/bi.md."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS, "obs_sync", "migrations", "docs/bi.md"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="tar")
    return into, (into / "docs" / "bi.md").read_text("utf-8")


def queries(bi: str) -> dict[str, str]:
    blocks = {}
    for body in BLOCK.findall(bi):
        name = re.match(r"--\s*(query|example):\s*(.+)", body.splitlines()[0])
        assert name, body
        blocks[name.group(2).strip()] = body
    return blocks


def old_sync(package: Path, config: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(package)}
    done = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(config), "sync"],
        env=env,
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def answers(engine: Engine, blocks: dict[str, str], calls: list[tuple[Any, ...]]) -> dict:
    """Every query's rows, over the same example calls."""
    result: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection, connection.begin():
        connection.execute(text(blocks["a call-records table"]))
        for call in calls:
            connection.execute(
                text("INSERT INTO call_record VALUES (:i, :v, :c, :t)"),
                dict(zip("ivct", call, strict=True)),
            )
        for name, sql in blocks.items():
            if name == "a call-records table":
                continue
            got = [tuple(row) for row in connection.execute(text(sql)).all()]
            if name == "freshness":  # its age column is now() - last success: moves on
                got = [row[:2] + row[3:] for row in got]
            result[name] = got
        connection.rollback()
    return result


def now(connection: Connection) -> Any:
    return connection.execute(text("SELECT clock_timestamp()")).scalar_one()


def test_a_populated_0005_database_upgrades_with_the_same_bi_answers(
    tmp_path: Path, make_simulator: Any, database_url: str, db_engine: Engine
) -> None:
    package, bi = previous_version(tmp_path / "previous")
    blocks = queries(bi)
    assert len(blocks) >= 11
    data = SimulatorData({vdn: dict(codes) for vdn, codes in DEMO_CODES.items()})
    simulator: Simulator = make_simulator(data)
    path = tmp_path / "c.yaml"
    legacy = config_dict(simulator, database_url, vdn_ids=sorted(DEMO_CODES), max_retries=0)
    path.write_text(yaml.safe_dump(legacy), "utf-8")

    stamps = []
    old_sync(package, path)
    with db_engine.connect() as connection:
        stamps.append(now(connection))
    (new_vdn, new_code, new_desc), (ch_vdn, ch_code, ch_desc) = NEW_CODE, CHANGED_CODE
    rm_vdn, rm_code = REMOVED_CODE
    data.set_code(new_vdn, new_code, new_desc)
    data.set_code(ch_vdn, ch_code, ch_desc)
    data.remove_code(rm_vdn, rm_code)
    old_sync(package, path)
    with db_engine.connect() as connection:
        stamps.append(now(connection))
    data.set_code(rm_vdn, rm_code, DEMO_CODES[rm_vdn][rm_code])
    old_sync(package, path)
    with db_engine.connect() as connection:
        stamps.append(now(connection))
        version = connection.execute(text(f"SELECT version_num FROM {S}.alembic_version"))
        assert version.scalar() == "0005"
    calls = [
        (1, ch_vdn, ch_code, stamps[0]),
        (2, ch_vdn, ch_code, stamps[2]),
        (3, rm_vdn, rm_code, stamps[0]),
        (4, rm_vdn, rm_code, stamps[1]),
        (5, new_vdn, new_code, stamps[0]),
        (6, 999, "00000", stamps[2]),  # a code never seen
    ]
    before = answers(db_engine, blocks, calls)
    assert before["description at call time"] and before["recent changes"]

    assert migrate.upgrade(db_engine, S) == ("0005", migrate.head_revision())
    assert answers(db_engine, blocks, calls) == before

    # Today's sync over the upgraded database (isales: = the source default): nothing
    # changed upstream, so every answer stays (freshness moves on: a run succeeded).
    config = parse_config(legacy, env={})
    assert run_sync(config, engine=db_engine).exit_code == 0
    after = answers(db_engine, blocks, calls)
    assert {k: v for k, v in after.items() if k != "freshness"} == {
        k: v for k, v in before.items() if k != "freshness"
    }
    assert sorted(row[0] for row in after["freshness"]) == [101, 102, 103]
    before = after
    with db_engine.connect() as connection:
        sources = connection.execute(text(f"SELECT DISTINCT source FROM {S}.result_code"))
        assert sources.all() == [("default",)]
        # The source's locale is recorded by the first run after the upgrade.
        assert connection.execute(text(f"SELECT source, locale FROM {S}.source")).all() == [
            ("default", "zh_CN")
        ]

    # Down again while only default exists: the previous schema, the same answers.
    assert migrate.downgrade(db_engine, S, "0005") == (migrate.head_revision(), "0005")
    assert answers(db_engine, blocks, calls) == before
    assert migrate.upgrade(db_engine, S) == ("0005", migrate.head_revision())

    # A second source writes: the downgrade is refused, saying why; nothing changes.
    two = parse_config(
        {
            "sources": [
                source_config_dict(simulator, "default", vdn_ids=sorted(DEMO_CODES)),
                source_config_dict(simulator, "english", vdn_ids=[101], locale="en_US"),
            ],
            "database": legacy["database"],
        },
        env={},
    )
    assert run_sync(two, engine=db_engine).exit_code == 0
    with pytest.raises(DBAPIError) as refused:
        migrate.downgrade(db_engine, S, "0005")
    message = str(refused.value)
    assert "cannot downgrade below migration 0006" in message and "english" in message
    with db_engine.connect() as connection:
        version = connection.execute(text(f"SELECT version_num FROM {S}.alembic_version"))
        assert version.scalar() == migrate.head_revision()  # (0007 and up: after 0006)
    # Today's form of the function refuses to mix the two sources.
    with pytest.raises(DBAPIError, match="several sources"):
        answers(db_engine, blocks, calls)
