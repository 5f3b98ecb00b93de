"""Initial schema: result_code, result_code_history, sync_run, sync_run_vdn.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

The table and column names are the BI contract (docs/bi.md): add columns in later
revisions, never rename. Plain SQL so a DBA can review exactly what runs; every object is
created in the configured schema (``database.schema``), which env.py creates if missing.
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE {s}.sync_run (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    status          text NOT NULL,
    trigger         text NOT NULL,
    hostname        text,
    pid             integer,
    obs_sync_version text,
    dry_run         boolean NOT NULL DEFAULT false,
    vdns            integer NOT NULL DEFAULT 0,
    succeeded       integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    incomplete      integer NOT NULL DEFAULT 0,
    guarded         integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    inserted        bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL DEFAULT 0,
    deleted         bigint NOT NULL DEFAULT 0,
    restored        bigint NOT NULL DEFAULT 0,
    unchanged       bigint NOT NULL DEFAULT 0,
    error           text,
    CONSTRAINT sync_run_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'stopped', 'abandoned')),
    CONSTRAINT sync_run_finished_check
        CHECK ((status = 'running') = (finished_at IS NULL))
);

CREATE TABLE {s}.sync_run_vdn (
    sync_run_id     bigint NOT NULL REFERENCES {s}.sync_run (id) ON DELETE CASCADE,
    vdn_id          integer NOT NULL,
    status          text NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    pages           integer NOT NULL DEFAULT 0,
    requests        integer NOT NULL DEFAULT 0,
    total_count     integer,
    inserted        integer NOT NULL DEFAULT 0,
    updated         integer NOT NULL DEFAULT 0,
    deleted         integer NOT NULL DEFAULT 0,
    restored        integer NOT NULL DEFAULT 0,
    unchanged       integer NOT NULL DEFAULT 0,
    withheld        integer NOT NULL DEFAULT 0,
    error           text,
    PRIMARY KEY (sync_run_id, vdn_id),
    CONSTRAINT sync_run_vdn_status_check
        CHECK (status IN ('succeeded', 'failed', 'incomplete', 'skipped', 'guarded'))
);
-- status / healthz: the latest results of one VDN.
CREATE INDEX sync_run_vdn_vdn_finished_idx ON {s}.sync_run_vdn (vdn_id, finished_at);

CREATE TABLE {s}.result_code (
    vdn_id          integer NOT NULL,
    obs_code        text NOT NULL,
    obs_code_desc   text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    PRIMARY KEY (vdn_id, obs_code)
);

CREATE TABLE {s}.result_code_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    vdn_id          integer NOT NULL,
    obs_code        text NOT NULL,
    obs_code_desc   text NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    sync_run_id     bigint NOT NULL REFERENCES {s}.sync_run (id),
    closed_by_sync_run_id bigint REFERENCES {s}.sync_run (id),
    CONSTRAINT result_code_history_valid_check CHECK (valid_to > valid_from),
    CONSTRAINT result_code_history_closed_check
        CHECK ((valid_to IS NULL) = (closed_by_sync_run_id IS NULL))
);
-- At most one open (current) version per code.
CREATE UNIQUE INDEX result_code_history_open_uq
    ON {s}.result_code_history (vdn_id, obs_code) WHERE valid_to IS NULL;
-- "The description of (vdn_id, obs_code) at time T" as an index-only lookup; also: no two
-- versions of a code start at the same instant.
CREATE UNIQUE INDEX result_code_history_at_uq
    ON {s}.result_code_history (vdn_id, obs_code, valid_from) INCLUDE (valid_to, obs_code_desc);

COMMENT ON TABLE {s}.result_code IS
    'obs-sync: current OBS result codes per VDN (deleted_at NULL = present upstream)';
COMMENT ON TABLE {s}.result_code_history IS
    'obs-sync: one row per description version, valid over [valid_from, valid_to)';
COMMENT ON TABLE {s}.sync_run IS 'obs-sync: one row per sync run';
COMMENT ON TABLE {s}.sync_run_vdn IS 'obs-sync: one row per VDN of a sync run';
"""

DOWNGRADE = """
DROP TABLE {s}.result_code_history;
DROP TABLE {s}.result_code;
DROP TABLE {s}.sync_run_vdn;
DROP TABLE {s}.sync_run;
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
