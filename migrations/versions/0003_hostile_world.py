"""Any description length; the snapshot instant per VDN; why a VDN was skipped.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

- ``result_code_history_at_uq`` no longer INCLUDEs ``obs_code_desc``: a btree entry holds
  at most ~2.7 kB, so a long description (900 CJK characters) failed its whole VDN. The
  index still serves "which version of a code at time T" and keeps versions of a code from
  starting at the same instant; the description is read from the heap row.
- ``vdn_state``: per VDN, when the fetch began of the snapshot that wrote its current
  state (database clock). An older snapshot is never applied over it (docs/semantics.md,
  "Concurrency").
- ``sync_run_vdn.skip_reason``: why a VDN was not applied (``locked``, ``superseded``,
  ``stopped``, ``deadline``), so lock skips can be counted per VDN (``sync.max_lock_skips``).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
DROP INDEX {s}.result_code_history_at_uq;
CREATE UNIQUE INDEX result_code_history_at_uq
    ON {s}.result_code_history (vdn_id, obs_code, valid_from) INCLUDE (valid_to);

CREATE TABLE {s}.vdn_state (
    vdn_id              integer PRIMARY KEY,
    snapshot_started_at timestamptz NOT NULL
);
COMMENT ON TABLE {s}.vdn_state IS
    'obs-sync: per VDN, when the fetch of the snapshot that wrote its current state began';
COMMENT ON COLUMN {s}.vdn_state.vdn_id IS
    'The VDN (virtual call center id, 1..9999); one row per VDN obs-sync has written';
COMMENT ON COLUMN {s}.vdn_state.snapshot_started_at IS
    'When the fetch began (database clock, timestamptz, UTC instant) of the snapshot that '
    'wrote this VDN''s current rows; a snapshot whose fetch began earlier is not applied '
    'over them (skipped as superseded). Never NULL';

ALTER TABLE {s}.sync_run_vdn ADD COLUMN skip_reason text
    CONSTRAINT sync_run_vdn_skip_reason_check
    CHECK (skip_reason IN ('locked', 'superseded', 'stopped', 'deadline'));
COMMENT ON COLUMN {s}.sync_run_vdn.skip_reason IS
    'Why a skipped VDN was not applied: locked (another session held its lock), superseded '
    '(a newer snapshot was already applied), stopped (stop requested), deadline (the run '
    'deadline passed). NULL when the VDN was not skipped, and for records written before '
    'migration 0003';
"""

# Fails while a stored description is too long for the old index (nothing is changed then).
DOWNGRADE = """
ALTER TABLE {s}.sync_run_vdn DROP COLUMN skip_reason;
DROP TABLE {s}.vdn_state;
DROP INDEX {s}.result_code_history_at_uq;
CREATE UNIQUE INDEX result_code_history_at_uq
    ON {s}.result_code_history (vdn_id, obs_code, valid_from) INCLUDE (valid_to, obs_code_desc);
"""


def _run(script: str) -> None:
    context = op.get_context()
    schema = context.version_table_schema
    assert schema, "obs-sync always sets the schema (migrations/env.py)"
    quoted = context.dialect.identifier_preparer.quote_identifier(schema)
    for statement in script.format(s=quoted).split(";\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _run(UPGRADE)


def downgrade() -> None:
    _run(DOWNGRADE)
