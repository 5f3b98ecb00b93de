"""A run's heartbeat; VDNs a run did not attempt because it stopped asking the server.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-07

- ``sync_run.heartbeat_at``: when the run's process last said it was alive (every
  ``sync.heartbeat_seconds``). A run whose process is gone ends there: an abandoned run's
  ``finished_at`` is its last heartbeat, not the moment another process noticed.
- ``sync_run_vdn.skip_reason`` also takes ``auth_rejected`` (the server rejected the run's
  credentials ``sync.max_auth_failures`` times: the rest were not asked for) and
  ``unreachable`` (``sync.max_unreachable_vdns`` VDNs in a row could not reach the server).

Downgrade drops the column and records the two new reasons as ``stopped`` (their error
text, which says why, is kept).
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE {s}.sync_run ADD COLUMN heartbeat_at timestamptz;
COMMENT ON COLUMN {s}.sync_run.heartbeat_at IS
    'When the process running this run last said it was alive (database clock, '
    'timestamptz, UTC instant; every sync.heartbeat_seconds while it runs). An abandoned '
    'run finished at its last heartbeat. NULL for runs before migration 0005, and for a run '
    'that ended before its first heartbeat';
ALTER TABLE {s}.sync_run_vdn DROP CONSTRAINT sync_run_vdn_skip_reason_check;
ALTER TABLE {s}.sync_run_vdn ADD CONSTRAINT sync_run_vdn_skip_reason_check
    CHECK (skip_reason IN ('locked', 'superseded', 'stopped', 'deadline', 'auth_rejected',
                           'unreachable'));
COMMENT ON COLUMN {s}.sync_run_vdn.skip_reason IS
    'Why a skipped VDN was not applied: locked (another session held its lock), superseded '
    '(a newer snapshot was already applied), stopped (stop requested), deadline (the run '
    'deadline passed), auth_rejected (not attempted: the server had rejected the run''s '
    'credentials sync.max_auth_failures times), unreachable (not attempted: the server '
    'could not be reached for sync.max_unreachable_vdns VDNs in a row). NULL when the VDN '
    'was not skipped, and for records written before migration 0003';
"""

DOWNGRADE = """
ALTER TABLE {s}.sync_run_vdn DROP CONSTRAINT sync_run_vdn_skip_reason_check;
UPDATE {s}.sync_run_vdn SET skip_reason = 'stopped'
    WHERE skip_reason IN ('auth_rejected', 'unreachable');
ALTER TABLE {s}.sync_run_vdn ADD CONSTRAINT sync_run_vdn_skip_reason_check
    CHECK (skip_reason IN ('locked', 'superseded', 'stopped', 'deadline'));
COMMENT ON COLUMN {s}.sync_run_vdn.skip_reason IS
    'Why a skipped VDN was not applied: locked (another session held its lock), superseded '
    '(a newer snapshot was already applied), stopped (stop requested), deadline (the run '
    'deadline passed). NULL when the VDN was not skipped, and for records written before '
    'migration 0003';
ALTER TABLE {s}.sync_run DROP COLUMN heartbeat_at;
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
