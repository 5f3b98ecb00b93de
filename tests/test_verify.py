"""`obs-sync verify`: a clean synced database passes; each planted corruption is found.

Every check runs against a really synced database (simulator + PostgreSQL); corruption is
planted with plain SQL, as a buggy tool or a hand edit would. Verify itself runs as a
reader role (SELECT only) in a read-only transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from obs_sync.cli import main
from obs_sync.commands.verify import compare_snapshot
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.store.grants import grant_reader
from obs_sync.store.integrity import CHECKS, Finding, verify_database
from tests.fixtures_db import TEST_SCHEMA, make_config, write_config

S = TEST_SCHEMA


@pytest.fixture
def reader_url(database_url: str, db_engine: Engine) -> Iterator[str]:
    """A URL of the same database as a fresh LOGIN role with SELECT only (grant-reader)."""
    role = f"obs_reader_{uuid.uuid4().hex[:8]}"
    with db_engine.begin() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"))
    try:
        yield (
            make_url(database_url)
            .set(username=role, password="reader-pw")
            .render_as_string(hide_password=False)
        )
    finally:
        with db_engine.begin() as connection:
            connection.execute(text(f"DROP OWNED BY {role}"))
            connection.execute(text(f"DROP ROLE {role}"))


@pytest.fixture
def synced(simulator: Simulator, database_url: str, db_engine: Engine) -> Engine:
    """VDNs 1..3 synced three times: a change, a removal, a new code, then a restore."""
    config = make_config(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0)
    data = simulator.data
    assert run_sync(config, engine=db_engine).exit_code == 0
    codes = list(data.codes(1))
    data.set_code(1, codes[0], "changed once")
    data.remove_code(1, codes[1])
    removed = codes[1]
    data.set_code(2, "NEW-1", "a new code")
    assert run_sync(config, engine=db_engine).exit_code == 0
    data.set_code(1, removed, "restored with a new text")
    assert run_sync(config, engine=db_engine).exit_code == 0
    return db_engine


def findings(url: str | Engine, **kwargs: object) -> list[Finding]:
    return verify_database(url, S, **kwargs)  # type: ignore[arg-type]


def test_a_clean_synced_database_passes_as_the_reader_role(synced: Engine, reader_url: str) -> None:
    grant_reader(synced, S, make_url(reader_url).username or "")
    assert findings(reader_url) == []
    # The reader role really cannot write: verify never needed to.
    reader = create_engine(reader_url)
    try:
        with pytest.raises(Exception, match="permission denied"), reader.begin() as c:
            c.execute(text(f"DELETE FROM {S}.result_code"))
    finally:
        reader.dispose()


def test_verify_runs_in_a_read_only_transaction(synced: Engine) -> None:
    """Every check is a read: the same SQL fails loudly if it tried to write."""
    with synced.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        for sql in CHECKS.values():
            from obs_sync.store.integrity import _FILTERS

            connection.exec_driver_sql(
                sql.format(s=S, **_FILTERS),
                {"vdns": None, "sources": None, "keep_days": 90, "run_cls": 1, "heartbeat": 5},
            ).all()
        assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"


def first_code(engine: Engine, vdn: int = 1, deleted: bool = False) -> str:
    with engine.connect() as connection:
        code: str = connection.execute(
            text(
                f"SELECT obs_code FROM {S}.result_code WHERE vdn_id = :v "
                f"AND (deleted_at IS NOT NULL) = :d ORDER BY obs_code LIMIT 1"
            ),
            {"v": vdn, "d": deleted},
        ).scalar_one()
    return code


def changed_code(engine: Engine) -> tuple[str, int, int]:
    """A code of VDN 1 with two contiguous versions: (code, old id, new id)."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f"SELECT a.obs_code, a.id, b.id FROM {S}.result_code_history a "
                f"JOIN {S}.result_code_history b ON b.vdn_id = a.vdn_id "
                "AND b.obs_code = a.obs_code AND b.valid_from = a.valid_to WHERE a.vdn_id = 1 "
                "LIMIT 1"
            )
        ).one()
    return row[0], row[1], row[2]


Plant = Callable[[Engine], tuple[str | None, str]]  # -> (code expected, check expected)


def _open_version_missing(engine: Engine) -> tuple[str | None, str]:
    code = first_code(engine, 3)
    _sql(engine, f"DELETE FROM {S}.result_code_history WHERE vdn_id = 3 AND obs_code = '{code}'")
    return code, "open-version"


def _deleted_code_open(engine: Engine) -> tuple[str | None, str]:
    code = first_code(engine, 3)
    _sql(
        engine,
        f"UPDATE {S}.result_code SET deleted_at = now() WHERE vdn_id = 3 AND obs_code = '{code}'",
    )
    return code, "open-version"


def _overlap(engine: Engine) -> tuple[str | None, str]:
    code, old, _ = changed_code(engine)
    _sql(
        engine,
        f"UPDATE {S}.result_code_history SET valid_to = valid_to + interval '1 ms' "
        f"WHERE id = {old}",
    )
    return code, "overlap"


def _redundant(engine: Engine) -> tuple[str | None, str]:
    code, old, new = changed_code(engine)
    _sql(
        engine,
        f"UPDATE {S}.result_code_history SET obs_code_desc = (SELECT obs_code_desc "
        f"FROM {S}.result_code_history WHERE id = {new}) WHERE id = {old}",
    )
    return code, "redundant-version"


def _current_desc(engine: Engine) -> tuple[str | None, str]:
    code = first_code(engine, 2)
    _sql(
        engine,
        f"UPDATE {S}.result_code SET obs_code_desc = 'hand edit' WHERE vdn_id = 2 "
        f"AND obs_code = '{code}'",
    )
    return code, "current-mismatch"


def _current_first_seen(engine: Engine) -> tuple[str | None, str]:
    code = first_code(engine, 2)
    _sql(
        engine,
        f"UPDATE {S}.result_code SET first_seen_at = first_seen_at - interval '1 day' "
        f"WHERE vdn_id = 2 AND obs_code = '{code}'",
    )
    return code, "current-mismatch"


def _orphan(engine: Engine) -> tuple[str | None, str]:
    _sql(
        engine,
        f"INSERT INTO {S}.result_code_history (vdn_id, obs_code, obs_code_desc, "
        f"valid_from, sync_run_id) SELECT 2, 'GHOST', 'x', started_at, id FROM {S}.sync_run "
        "ORDER BY id LIMIT 1",
    )
    return "GHOST", "orphan-version"


def _outside_run(engine: Engine) -> tuple[str | None, str]:
    code = first_code(engine, 2)
    _sql(
        engine,
        f"UPDATE {S}.result_code_history SET valid_from = valid_from - interval '1 h' "
        f"WHERE vdn_id = 2 AND obs_code = '{code}'",
    )
    _sql(
        engine,
        f"UPDATE {S}.result_code SET first_seen_at = first_seen_at - interval '1 h', "
        f"updated_at = updated_at - interval '1 h' WHERE vdn_id = 2 AND obs_code = '{code}'",
    )
    return code, "run-time"


def _gap(engine: Engine) -> tuple[str | None, str]:
    """A change turned into a removal + restore: the run recorded an update, not that."""
    _, old, _ = changed_code(engine)
    _sql(
        engine,
        f"UPDATE {S}.result_code_history SET valid_to = valid_to - interval '1 ms' "
        f"WHERE id = {old}",
    )
    return None, "run-record"


def _record_missing(engine: Engine) -> tuple[str | None, str]:
    _sql(engine, f"DELETE FROM {S}.sync_run_vdn WHERE vdn_id = 2 AND inserted > 0")
    return None, "run-record"


def _record_counts(engine: Engine) -> tuple[str | None, str]:
    _sql(
        engine,
        f"UPDATE {S}.sync_run_vdn SET inserted = inserted + 1 WHERE vdn_id = 3 AND inserted > 0",
    )
    return None, "run-record"


def _registry(engine: Engine) -> tuple[str | None, str]:
    _sql(engine, f"UPDATE {S}.vdn SET last_succeeded_at = NULL WHERE vdn_id = 2")
    return None, "registry"


def _dead_run(engine: Engine) -> tuple[str | None, str]:
    # What a process killed mid-run leaves: a running row, its lock gone, its heartbeat old.
    _sql(
        engine,
        f"INSERT INTO {S}.sync_run (started_at, heartbeat_at, status, trigger, hostname, pid) "
        "VALUES (now() - interval '1 hour', now() - interval '59 minutes', 'running', "
        "'schedule', 'host-a', 4242)",
    )
    return None, "dead-run"


def _sql(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement))


PLANTS: dict[str, Plant] = {
    "present code without its open version": _open_version_missing,
    "deleted code with an open version": _deleted_code_open,
    "overlapping versions": _overlap,
    "a version repeating its predecessor": _redundant,
    "current description not the open version's": _current_desc,
    "first_seen_at not the first version": _current_first_seen,
    "version without a code": _orphan,
    "version outside its run": _outside_run,
    "gap the run did not record": _gap,
    "run record missing": _record_missing,
    "run record counts wrong": _record_counts,
    "registry disagrees with the records": _registry,
    "a run whose process is gone": _dead_run,
}


@pytest.mark.parametrize("corruption", list(PLANTS))
def test_each_planted_corruption_is_found(corruption: str, synced: Engine, reader_url: str) -> None:
    assert findings(synced) == []
    code, check = PLANTS[corruption](synced)
    grant_reader(synced, S, make_url(reader_url).username or "")
    found = findings(reader_url)
    assert any(f.check == check and (code is None or f.obs_code == code) for f in found), found
    assert all(f.detail for f in found)


def test_every_check_has_a_planted_corruption() -> None:
    planted = {
        "open-version",
        "overlap",
        "redundant-version",
        "current-mismatch",
        "orphan-version",
        "run-time",
        "run-record",
        "registry",
        "dead-run",
    }
    assert planted == set(CHECKS)


def test_pruned_run_records_are_not_findings(synced: Engine) -> None:
    """Retention deletes old records: a missing record of a run that started more than
    sync.keep_run_records_days ago is expected; a newer one is a finding."""
    _sql(synced, f"DELETE FROM {S}.sync_run_vdn WHERE vdn_id = 2 AND inserted > 0")
    # The runs started two days ago (their versions still start within them): whether
    # they are past retention never depends on how fast this machine ran the test.
    _sql(synced, f"UPDATE {S}.sync_run SET started_at = started_at - interval '2 days'")
    found = findings(synced)
    assert found and {(f.vdn_id, f.check) for f in found} == {(2, "run-record")}
    assert all("has no record of the VDN" in f.detail for f in found)
    assert findings(synced, keep_days=0) == found  # 0 keeps everything: still missing
    assert findings(synced, keep_days=3) == found  # within retention: missing
    assert findings(synced, keep_days=1) == []  # past retention: pruned, as expected


def test_cli_exit_codes_and_json(
    tmp_path: Path, simulator: Simulator, database_url: str, synced: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, vdn_ids=[1, 2, 3])
    runner = CliRunner()
    ok = runner.invoke(main, ["--config", path, "verify"])
    assert ok.exit_code == 0, ok.output
    assert "every check holds" in ok.output
    code = first_code(synced, 2)
    _sql(
        synced,
        f"UPDATE {S}.result_code SET obs_code_desc = 'hand edit' WHERE vdn_id = 2 "
        f"AND obs_code = '{code}'",
    )
    bad = runner.invoke(main, ["--config", path, "verify", "--format", "json"])
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.output)
    assert report["ok"] is False
    assert {"vdn_id": 2, "obs_code": code, "check": "current-mismatch"}.items() <= (
        report["findings"][0].items()
    )
    text_out = runner.invoke(main, ["--config", path, "verify", "--vdn", "1"])
    assert text_out.exit_code == 0  # the finding is on VDN 2
    usage = runner.invoke(main, ["--config", path, "verify", "--format", "yaml"])
    assert usage.exit_code == 2
    missing = runner.invoke(main, ["--config", str(tmp_path / "nope.yaml"), "verify"])
    assert missing.exit_code == 2


def test_no_tables_names_the_fix(tmp_path: Path, simulator: Simulator, database_url: str) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url)
    result = CliRunner().invoke(main, ["--config", path, "verify"])
    assert result.exit_code == 1
    assert "obs-sync db upgrade" in result.output


def test_upstream_compares_without_writing(
    tmp_path: Path, simulator: Simulator, database_url: str, synced: Engine
) -> None:
    from tests.fixtures_db import row_versions

    path = write_config(tmp_path / "c.yaml", simulator, database_url, vdn_ids=[1, 2, 3])
    runner = CliRunner()
    assert runner.invoke(main, ["--config", path, "verify", "--upstream"]).exit_code == 0
    data = simulator.data
    codes = list(data.codes(3))
    data.set_code(3, codes[0], "renamed upstream")
    data.remove_code(3, codes[1])
    data.set_code(3, "BRAND-NEW", "only upstream")
    before = row_versions(synced)
    result = runner.invoke(main, ["--config", path, "verify", "--upstream", "--format", "json"])
    assert result.exit_code == 1, result.output
    found = {(f["obs_code"], f["check"]) for f in json.loads(result.output)["findings"]}
    assert found == {
        (codes[0], "upstream-desc"),
        (codes[1], "upstream-extra"),
        ("BRAND-NEW", "upstream-missing"),
    }
    assert row_versions(synced) == before  # nothing written


def test_compare_snapshot_incomplete_reports_no_extras() -> None:
    assert compare_snapshot(1, {"a": "x", "b": "y"}, {"a": "x"}, complete=False) == []
    assert compare_snapshot(1, {"a": "x", "b": "y"}, {"a": "x"}, complete=True) == [
        Finding(1, "b", "upstream-extra", "iSales no longer has 'y'")
    ]
