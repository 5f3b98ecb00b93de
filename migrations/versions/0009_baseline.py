"""The first sync as a baseline: the initial load is marked, and may be valid since ever.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Issue 19 item 5. Until a list of a VDN has had one complete snapshot applied, what it
stores is its **initial load**, not a change upstream:

- ``initial`` (boolean, ``false`` by default) on the four history tables
  (``result_code_history``, ``display_result_history``, ``display_result_obs_code_history``,
  ``business_result_history``): ``true`` for a version opened by the initial load;
- ``baseline_done_at`` on ``vdn_state`` (OBS codes) and ``code_list_state`` (the other
  lists): when the list's first complete snapshot was applied; ``NULL`` while its initial
  load is still under way (a first snapshot that was incomplete: the codes it lacked are
  initial too when they arrive);
- the four ``_change`` views get a last column ``initial_load`` (``true`` on the ``new``
  rows of the initial load), so "what changed upstream" is ``WHERE NOT initial_load``;
  every row and column they had stays as it was.

With ``first_sync_as_baseline: true`` (per source) the initial load's versions start at
``-infinity`` instead of the instant they were stored: calls made before the first sync
then join to the first description seen. That is the writer's business (no schema
change); this revision only makes it recognisable.

Data already stored: every list that has a state row has had its initial load
(``baseline_done_at`` = the fetch start of its latest snapshot), and ``initial`` is set on
the first versions that the earliest run writing to that list of that VDN opened.

Downgrade drops the columns; the views are recreated as 0008 had them, with their
comments and grants kept.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (history table, key columns after source and vdn_id): the lists' history tables.
HISTORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("result_code_history", ("obs_code",)),
    ("display_result_history", ("def_id",)),
    ("display_result_obs_code_history", ("def_id", "obs_code")),
    ("business_result_history", ("parent_code", "code")),
)
STATES = ("vdn_state", "code_list_state")


def _backfill(table: str, keys: tuple[str, ...]) -> str:
    """The first versions that the earliest run writing to each VDN's list opened."""
    same = " AND ".join(f"e.{c} = h.{c}" for c in ("source", "vdn_id", *keys))
    return f"""UPDATE {{s}}.{table} AS h SET initial = true
FROM (SELECT source, vdn_id, min(sync_run_id) AS first_run
      FROM {{s}}.{table} GROUP BY source, vdn_id) AS f
WHERE h.source = f.source AND h.vdn_id = f.vdn_id AND h.sync_run_id = f.first_run
  AND NOT EXISTS (SELECT FROM {{s}}.{table} AS e WHERE {same} AND e.valid_from < h.valid_from)"""


RESULT_CODE_CHANGE = """CREATE OR REPLACE VIEW {s}.result_code_change AS
SELECT h.vdn_id, h.obs_code,
       CASE WHEN p.valid_to IS NULL THEN 'new'
            WHEN p.valid_to = h.valid_from THEN 'changed'
            ELSE 'restored' END AS kind,
       p.obs_code_desc AS old_desc,
       h.obs_code_desc AS new_desc,
       h.valid_from AS changed_at,
       h.sync_run_id,
       h.id AS history_id,
       h.source,
       h.initial AS initial_load
FROM {s}.result_code_history AS h
LEFT JOIN LATERAL (
    SELECT e.valid_to, e.obs_code_desc
    FROM {s}.result_code_history AS e
    WHERE e.source = h.source AND e.vdn_id = h.vdn_id AND e.obs_code = h.obs_code
      AND e.valid_from < h.valid_from
    ORDER BY e.valid_from DESC
    LIMIT 1
) AS p ON true
WHERE NOT h.relabelled
UNION ALL
SELECT h.vdn_id, h.obs_code, 'removed', h.obs_code_desc, NULL, h.valid_to,
       h.closed_by_sync_run_id, h.id, h.source, false
FROM {s}.result_code_history AS h
WHERE h.valid_to IS NOT NULL
  AND NOT EXISTS (
    SELECT FROM {s}.result_code_history AS n
    WHERE n.source = h.source AND n.vdn_id = h.vdn_id AND n.obs_code = h.obs_code
      AND n.valid_from = h.valid_to)"""

# (table, key columns after source and vdn_id, value columns), as 0007's LIST_TABLES.
LIST_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("display_result", ("def_id",), ("result_code", "display_result")),
    ("display_result_obs_code", ("def_id", "obs_code"), ()),
    ("business_result", ("parent_code", "code"), ("name", "level")),
)


def _list_change_view(table: str, keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    """0007's ``<table>_change`` with the last column ``initial_load``."""
    key = ["source", "vdn_id", *keys]
    same = " AND ".join(f"e.{c} = h.{c}" for c in key)
    same_n = " AND ".join(f"n.{c} = h.{c}" for c in key)
    cols = ", ".join(f"h.{c}" for c in key)
    old_new = "".join(f", p.{v} AS old_{v}, h.{v} AS new_{v}" for v in values)
    old_new_removed = "".join(f", h.{v}, NULL" for v in values)
    picked = "".join(f", e.{v}" for v in values)
    return f"""CREATE OR REPLACE VIEW {{s}}.{table}_change AS
SELECT {cols},
       CASE WHEN p.valid_to IS NULL THEN 'new'
            WHEN p.valid_to = h.valid_from THEN 'changed'
            ELSE 'restored' END AS kind{old_new},
       h.valid_from AS changed_at, h.sync_run_id, h.id AS history_id,
       h.initial AS initial_load
FROM {{s}}.{table}_history AS h
LEFT JOIN LATERAL (
    SELECT e.valid_to{picked}
    FROM {{s}}.{table}_history AS e
    WHERE {same} AND e.valid_from < h.valid_from
    ORDER BY e.valid_from DESC
    LIMIT 1
) AS p ON true
UNION ALL
SELECT {cols}, 'removed'{old_new_removed}, h.valid_to, h.closed_by_sync_run_id, h.id, false
FROM {{s}}.{table}_history AS h
WHERE h.valid_to IS NOT NULL
  AND NOT EXISTS (SELECT FROM {{s}}.{table}_history AS n
                  WHERE {same_n} AND n.valid_from = h.valid_to)"""


def _upgrade_statements() -> list[str]:
    statements: list[str] = []
    for state in STATES:
        statements += [
            f"ALTER TABLE {{s}}.{state} ADD COLUMN baseline_done_at timestamptz",
            f"UPDATE {{s}}.{state} SET baseline_done_at = snapshot_started_at",
        ]
    for table, keys in HISTORIES:
        statements += [
            f"ALTER TABLE {{s}}.{table} ADD COLUMN initial boolean NOT NULL DEFAULT false",
            _backfill(table, keys),
            # A version valid since ever is the initial load's (the writer sets both).
            f"ALTER TABLE {{s}}.{table} ADD CONSTRAINT {table}_baseline_check "
            "CHECK (valid_from <> '-infinity' OR initial)",
        ]
    statements.append(RESULT_CODE_CHANGE)
    statements += [_list_change_view(*spec) for spec in LIST_TABLES]
    return statements


_INITIAL = (
    "true for a version opened by the list's initial load (before its first complete "
    "snapshot was applied): the codes as first found, not a change upstream. With "
    "first_sync_as_baseline (per source) such a version starts at -infinity."
)
_INITIAL_LOAD = (
    "true on the new rows of the list's initial load (its first complete snapshot, and any "
    "incomplete one before it): what obs-sync found when it started, not a change upstream. "
    "Changes upstream: WHERE NOT initial_load. false on every other row."
)
_BASELINE_DONE = (
    "When the list's first complete snapshot was applied (database clock); NULL while its "
    "initial load is under way (what is stored then is marked initial)."
)

COMMENTS: dict[str, str] = {
    **{f"COLUMN {table}.initial": _INITIAL for table, _ in HISTORIES},
    **{f"COLUMN {state}.baseline_done_at": _BASELINE_DONE for state in STATES},
    "COLUMN result_code_change.initial_load": _INITIAL_LOAD,
    **{f"COLUMN {table}_change.initial_load": _INITIAL_LOAD for table, _, _ in LIST_TABLES},
}


def _sibling(name: str) -> ModuleType:
    """An earlier revision's module (its view definitions, for the downgrade)."""
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(f"obs_sync_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous_views() -> dict[str, str]:
    """The four change views as 0008 had them: 0006's result_code_change, 0007's others."""
    sources = _sibling("0006_sources.py")
    (result_code,) = [
        statement
        for statement in sources.UPGRADE.split("\n;;\n")
        if statement.strip().startswith("CREATE OR REPLACE VIEW {s}.result_code_change ")
    ]
    views = {"result_code_change": result_code.strip()}
    code_lists = _sibling("0007_code_lists.py")
    for spec in code_lists.LIST_TABLES:
        views[f"{spec[0]}_change"] = code_lists._change_view(*spec)
    return views


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _schema() -> tuple[str, str]:
    context = op.get_context()
    schema = context.version_table_schema
    assert schema, "obs-sync always sets the schema (migrations/env.py)"
    return schema, context.dialect.identifier_preparer.quote_identifier(schema)


def upgrade() -> None:
    _, s = _schema()
    for statement in _upgrade_statements():
        op.execute(statement.replace("{s}", s))
    for target, comment in COMMENTS.items():
        kind, _, name = target.partition(" ")
        op.execute(f"COMMENT ON {kind} {s}.{name} IS {_literal(comment)}")


def _replace_view(schema: str, s: str, view: str, definition: str) -> None:
    """Drop and create ``view`` (a column goes: CREATE OR REPLACE cannot), keeping the
    comments of the view and of its remaining columns, and the roles that may read it."""
    bind = op.get_bind()
    quote = op.get_context().dialect.identifier_preparer.quote_identifier
    name = f"{s}.{view}"
    oid = f"{_literal(name)}::regclass"
    comment = bind.exec_driver_sql(f"SELECT obj_description({oid}, 'pg_class')").scalar()
    columns = bind.exec_driver_sql(
        f"SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
        f"WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped"
    ).fetchall()
    granted = bind.exec_driver_sql(
        "SELECT grantee FROM information_schema.role_table_grants WHERE table_schema = "
        f"{_literal(schema)} AND table_name = {_literal(view)} AND privilege_type = 'SELECT' "
        "AND grantee <> current_user"
    ).scalars()
    readers = ["PUBLIC" if r == "PUBLIC" else quote(r) for r in granted]
    op.execute(f"DROP VIEW {name}")
    op.execute(definition.replace("CREATE OR REPLACE VIEW", "CREATE VIEW", 1).replace("{s}", s))
    if comment is not None:
        op.execute(f"COMMENT ON VIEW {name} IS {_literal(comment)}")
    kept = {
        row[0]
        for row in bind.exec_driver_sql(
            f"SELECT attname FROM pg_attribute WHERE attrelid = {oid} AND attnum > 0"
        )
    }
    for column, text in columns:
        if text is not None and column in kept:
            op.execute(f"COMMENT ON COLUMN {name}.{quote(column)} IS {_literal(text)}")
    for reader in readers:
        op.execute(f"GRANT SELECT ON {name} TO {reader}")


def downgrade() -> None:
    schema, s = _schema()
    for view, definition in _previous_views().items():
        _replace_view(schema, s, view, definition)
    for table, _ in HISTORIES:
        op.execute(f"ALTER TABLE {s}.{table} DROP CONSTRAINT {table}_baseline_check")
        op.execute(f"ALTER TABLE {s}.{table} DROP COLUMN initial")
    for state in STATES:
        op.execute(f"ALTER TABLE {s}.{state} DROP COLUMN baseline_done_at")
