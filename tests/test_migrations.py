"""Migrations: head detection without Alembic, round trips, locking, the commands, env.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.cli import main
from obs_sync.db import migrate
from obs_sync.db.migrate import needs_upgrade, upgrade
from obs_sync.db.revision import revision_sa
from obs_sync.simulator import Simulator
from tests.fixtures_db import write_config

SCHEMA = "obs_sync_mig"
TABLES_0001 = {"result_code", "result_code_history", "sync_run", "sync_run_vdn"}
TABLES_0002 = TABLES_0001 | {"vdn"}  # 0002 adds the VDN registry
TABLES_0005 = TABLES_0002 | {"vdn_state"}  # 0003 adds each VDN's snapshot marker
TABLES_0006 = TABLES_0005 | {"source", "locale_switch"}  # 0006: the sources, their locales
LISTS = ("display_result", "display_result_obs_code", "business_result")
TABLES = TABLES_0006 | {  # 0007: the other code lists, their state and run records
    *LISTS,
    *(f"{t}_history" for t in LISTS),
    "code_list_state",
    "sync_run_code_list",
}
REPO = Path(__file__).resolve().parent.parent


def tables(engine: Engine, schema: str = SCHEMA) -> set[str]:
    with engine.connect() as connection:
        return set(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
        )


def revision(engine: Engine, schema: str = SCHEMA) -> str | None:
    with engine.connect() as connection:
        return revision_sa(connection, schema)


def test_head_from_file_names_matches_alembic() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrate.migrations_dir()))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [migrate.head_revision()]  # linear history, one head
    ordered = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(ordered) == migrate.known_revisions()


def test_fast_path_does_not_import_alembic(db_engine: Engine) -> None:
    migrate.upgrade(db_engine, SCHEMA)
    code = (
        "import sys\n"
        "from sqlalchemy import create_engine\n"
        "from obs_sync.db import migrate\n"
        "from obs_sync.db.revision import revision_sa\n"
        f"engine = create_engine({str(db_engine.url.render_as_string(False))!r})\n"
        "with engine.connect() as connection:\n"
        f"    current = revision_sa(connection, {SCHEMA!r})\n"
        f"assert not migrate.needs_upgrade(current, {SCHEMA!r}, migrate=True)\n"
        "assert 'alembic' not in sys.modules, 'alembic imported on the fast path'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_upgrade_downgrade_upgrade_round_trip(db_engine: Engine) -> None:
    assert migrate.upgrade(db_engine, SCHEMA) == (None, migrate.head_revision())
    assert tables(db_engine) == TABLES | {"alembic_version"}
    assert migrate.upgrade(db_engine, SCHEMA) == (migrate.head_revision(),) * 2
    assert migrate.downgrade(db_engine, SCHEMA, "base") == (migrate.head_revision(), None)
    assert tables(db_engine) == {"alembic_version"}  # every obs-sync table dropped
    assert migrate.downgrade(db_engine, SCHEMA, "base") == (None, None)
    migrate.upgrade(db_engine, SCHEMA)
    assert tables(db_engine) == TABLES | {"alembic_version"}
    assert revision(db_engine) == migrate.head_revision()


def test_constraints_are_enforced_by_the_database(db_engine: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    migrate.upgrade(db_engine, SCHEMA)
    s = SCHEMA
    with db_engine.begin() as connection:
        run = connection.execute(
            text(
                f"INSERT INTO {s}.sync_run (started_at, status, trigger) "
                "VALUES (now(), 'running', 't') RETURNING id"
            )
        ).scalar_one()
        connection.execute(
            text(
                f"INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, "
                f"valid_from, sync_run_id) VALUES (1, 'a', 'x', now(), {run})"
            )
        )
    bad = [
        # a second open version of the same code
        f"INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, valid_from, "
        f"sync_run_id) VALUES (1, 'a', 'y', now() + interval '1 s', {run})",
        # valid_to not after valid_from
        f"INSERT INTO {s}.result_code_history (vdn_id, obs_code, obs_code_desc, valid_from, "
        f"valid_to, sync_run_id, closed_by_sync_run_id) VALUES (1, 'b', 'y', now(), now(), "
        f"{run}, {run})",
        f"INSERT INTO {s}.sync_run (started_at, status, trigger) VALUES (now(), 'bogus', 't')",
        f"INSERT INTO {s}.sync_run_vdn (sync_run_id, vdn_id, status, started_at, finished_at) "
        f"VALUES ({run}, 1, 'bogus', now(), now())",
    ]
    for statement in bad:
        with pytest.raises(IntegrityError), db_engine.begin() as connection:
            connection.execute(text(statement))


def ensure_current(engine: Engine, schema: str, *, migrate: bool) -> None:
    """What a sync does before it writes: read the revision, upgrade only when behind."""
    with engine.connect() as connection:
        current = revision_sa(connection, schema)
    if needs_upgrade(current, schema, migrate=migrate):
        upgrade(engine, schema)


def test_concurrent_upgrades_are_serialized(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def up(engine: Engine) -> None:
        try:
            ensure_current(engine, SCHEMA, migrate=True)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=up, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert revision(engines[0]) == migrate.head_revision()
    for engine in engines:
        engine.dispose()


def test_no_migrate_on_a_behind_schema_names_the_command(db_engine: Engine) -> None:
    with pytest.raises(migrate.MigrationError, match="obs-sync db upgrade"):
        ensure_current(db_engine, SCHEMA, migrate=False)
    with db_engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        connection.execute(text(f"CREATE TABLE {SCHEMA}.alembic_version (version_num text)"))
        connection.execute(text(f"INSERT INTO {SCHEMA}.alembic_version VALUES ('9999')"))
    with pytest.raises(migrate.MigrationError, match="does not know"):
        ensure_current(db_engine, SCHEMA, migrate=True)


def test_db_commands(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, schema=SCHEMA)
    runner = CliRunner()
    result = runner.invoke(main, ["--config", path, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"upgraded from base to {migrate.head_revision()}" in result.output
    result = runner.invoke(main, ["--config", path, "db", "upgrade"])
    assert "already at" in result.output and result.exit_code == 0
    with db_engine.begin() as connection:
        connection.execute(
            text(
                f"INSERT INTO {SCHEMA}.sync_run (started_at, status, trigger) "
                "VALUES (now(), 'running', 'manual')"
            )
        )
    # Not on a terminal and no --yes: says what would be lost, changes nothing.
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--revision", "base"])
    assert result.exit_code == 2, result.output
    assert f"schema {SCHEMA}: downgrade from {migrate.head_revision()} drops every" in result.output
    assert "sync_run (1 rows)" in result.output and "add --yes" in result.output
    assert tables(db_engine) == TABLES | {"alembic_version"}
    # One step back (the default) at a time: 0009's columns, 0008's function, 0007's
    # tables, 0006's tables and columns, 0005's column, 0003's table goes, then 0002's
    # objects; 0001's stay.
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0009 to 0008" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0008 to 0007" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0007 to 0006" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES_0006 | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0006 to 0005" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES_0005 | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0005 to 0003" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES_0005 | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])
    assert result.exit_code == 2 and "reverts migration(s) 0003 to 0002" in result.output
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES_0002 | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == TABLES_0001 | {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 0 and tables(db_engine) == {"alembic_version"}
    result = runner.invoke(main, ["--config", path, "db", "downgrade"])  # nothing left: no ask
    assert result.exit_code == 0 and "already at base" in result.output
    result = runner.invoke(main, ["--config", path, "db", "upgrade", "--revision", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


def test_alembic_command_line_reads_obs_sync_config(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    """`alembic -c migrations/alembic.ini -x config=...` from another directory."""
    path = write_config(tmp_path / "c.yaml", simulator, database_url, schema=SCHEMA)
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "migrations" / "alembic.ini")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    offline = subprocess.run(
        [*alembic, "-x", f"config={path}", "upgrade", "head", "--sql"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert offline.returncode == 0, offline.stderr
    assert f'CREATE TABLE "{SCHEMA}".result_code_history (' in offline.stdout
    assert tables(db_engine) == set()  # --sql only prints
    online = subprocess.run(
        [*alembic, "-x", f"config={path}", "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert online.returncode == 0, online.stderr
    assert revision(db_engine) == migrate.head_revision()


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("-1", (True, "0008", ("0009",))),
        ("-2", (True, "0007", ("0009", "0008"))),
        ("-3", (True, "0006", ("0009", "0008", "0007"))),
        ("-4", (True, "0005", ("0009", "0008", "0007", "0006"))),
        ("-5", (True, "0003", ("0009", "0008", "0007", "0006", "0005"))),
        ("-6", (True, "0002", ("0009", "0008", "0007", "0006", "0005", "0003"))),
        ("-7", (True, "0001", ("0009", "0008", "0007", "0006", "0005", "0003", "0002"))),
        ("-8", (True, None, ("0009", "0008", "0007", "0006", "0005", "0003", "0002", "0001"))),
        ("base", (True, None, ("0009", "0008", "0007", "0006", "0005", "0003", "0002", "0001"))),
        ("0001", (True, "0001", ("0009", "0008", "0007", "0006", "0005", "0003", "0002"))),
        ("0002", (True, "0002", ("0009", "0008", "0007", "0006", "0005", "0003"))),
        ("0003", (True, "0003", ("0009", "0008", "0007", "0006", "0005"))),
        ("0005", (True, "0005", ("0009", "0008", "0007", "0006"))),
        ("0006", (True, "0006", ("0009", "0008", "0007"))),
        ("0007", (True, "0007", ("0009", "0008"))),
        ("0008", (True, "0008", ("0009",))),
        ("0009", (True, "0009", ())),
        ("-9", (False, None, ())),  # below base: left for Alembic to reject
        ("head", (False, None, ())),
        ("nope", (False, None, ())),
    ],
)
def test_downgrade_target(revision: str, expected: tuple[object, ...]) -> None:
    known = ("0001", "0002", "0003", "0005", "0006", "0007", "0008", "0009")
    assert migrate.known_revisions() == known, "extend these cases with each migration"
    assert migrate.downgrade_target("0009", revision) == expected


def test_downgrade_asks_on_a_terminal(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    import pty

    path = write_config(tmp_path / "c.yaml", simulator, database_url, schema=SCHEMA)
    migrate.upgrade(db_engine, SCHEMA)

    command = [sys.executable, "-m", "obs_sync", "--config", path]

    def downgrade(answer: str) -> tuple[int, str]:
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                [*command, "db", "downgrade", "--revision", "base"],
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            os.write(controller, answer.encode() + b"\n")
            out, err = process.communicate(timeout=60)
        finally:
            os.close(controller)
            os.close(terminal)
        return process.returncode, out + err

    code, output = downgrade("n")
    assert code == 1 and "Go ahead? [y/N]" in output and "nothing changed" in output
    assert tables(db_engine) == TABLES | {"alembic_version"}
    code, output = downgrade("y")
    assert code == 0, output
    assert f"downgraded from {migrate.head_revision()} to base" in output
    assert tables(db_engine) == {"alembic_version"}


def test_db_commands_on_a_schema_from_a_newer_obs_sync_name_the_fix(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, schema=SCHEMA)
    migrate.upgrade(db_engine, SCHEMA)
    with db_engine.begin() as connection:
        connection.execute(text(f"UPDATE {SCHEMA}.alembic_version SET version_num = '0099'"))
    result = CliRunner().invoke(main, ["--config", path, "db", "downgrade", "--yes"])
    assert result.exit_code == 1, result.output
    assert "at migration 0099, which this obs-sync version does not know" in result.output
    assert "downgrade it with the obs-sync version that migrated it" in result.output
    assert tables(db_engine) == TABLES | {"alembic_version"}
    result = CliRunner().invoke(main, ["--config", path, "db", "upgrade"])
    assert result.exit_code == 1, result.output
    assert "at migration 0099, which this obs-sync version does not know" in result.output
    assert "upgrade obs-sync on this host" in result.output


def test_downgrade_to_the_current_or_an_unknown_revision_asks_nothing(
    tmp_path: Path, simulator: Simulator, database_url: str, db_engine: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, schema=SCHEMA)
    migrate.upgrade(db_engine, SCHEMA)
    head = migrate.head_revision()
    same = CliRunner().invoke(main, ["--config", path, "db", "downgrade", "--revision", head])
    assert same.exit_code == 0, same.output
    assert f"already at {head}; nothing to downgrade" in same.output
    bogus = CliRunner().invoke(main, ["--config", path, "db", "downgrade", "--revision", "nope"])
    assert bogus.exit_code == 2, bogus.output
    assert "downgrade --revision nope: not a revision at or below" in bogus.output
    assert "add --yes" not in bogus.output
    assert tables(db_engine) == TABLES | {"alembic_version"}
