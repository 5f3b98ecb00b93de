"""The other code lists a call record carries: display results with their OBS codes, and
business results, each with its history, views and as-of functions; their run records.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Issue 19 (spec: isales-code-lists.md). Every table is keyed by ``source`` first, as since
0006. The history tables follow ``result_code_history`` (0001-0003): one row per version,
valid over ``[valid_from, valid_to)``; the database enforces that versions of one key do
not overlap in the same ways (at most one open version per key, no two versions of a key
starting at the same instant, ``valid_to > valid_from``, closed iff a run closed it); the
writer gives every change of one list of one VDN one instant, later than anything stored
for it, so a closed version ends where its successor starts.

- ``display_result`` / ``display_result_history``: key ``(source, vdn_id, def_id)``;
  ``result_code`` (the display code a call carries) and ``display_result`` (its label).
- ``display_result_obs_code`` / ``display_result_obs_code_history``: which OBS codes
  (failCodes) are grouped under which display result, when; key ``(source, vdn_id, def_id,
  obs_code)``, no other value.
- ``business_result`` / ``business_result_history``: key ``(source, vdn_id, parent_code,
  code)``, ``parent_code`` ``''`` for a top-level result; ``name``, ``level`` (1 or 2).
- ``<table>_current`` and ``<table>_change`` views; ``display_result_at``,
  ``display_result_of_obs_code_at`` and ``business_result_at``: plain ``LANGUAGE sql
  STABLE`` functions of one SELECT, which the planner inlines (as 0002's
  ``result_code_desc_at``).
- ``code_list_state``: per source, VDN and list, when the fetch began of the snapshot that
  wrote its current rows (an older one is never applied over it) and the row a writer
  locks. ``sync_run_code_list``: one run record per VDN and list.

Downgrade drops exactly these objects (their data is lost: say so before running it).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

STATUSES = "'succeeded', 'failed', 'incomplete', 'skipped', 'guarded'"
LISTS = "'display_results', 'business_results'"
SKIPS = "'locked', 'superseded', 'stopped', 'deadline', 'auth_rejected', 'unreachable'"

# Statements are separated by a line holding only ";;" (function bodies contain ";").
UPGRADE = f"""
CREATE TABLE {{s}}.code_list_state (
    source              text NOT NULL DEFAULT 'default',
    vdn_id              integer NOT NULL,
    code_list           text NOT NULL,
    snapshot_started_at timestamptz NOT NULL,
    PRIMARY KEY (source, vdn_id, code_list),
    CONSTRAINT code_list_state_code_list_check CHECK (code_list IN ({LISTS}))
)
;;
CREATE TABLE {{s}}.sync_run_code_list (
    sync_run_id     bigint NOT NULL REFERENCES {{s}}.sync_run (id) ON DELETE CASCADE,
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    code_list       text NOT NULL,
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
    skip_reason     text,
    unexpected      text,
    PRIMARY KEY (sync_run_id, source, vdn_id, code_list),
    CONSTRAINT sync_run_code_list_code_list_check CHECK (code_list IN ({LISTS})),
    CONSTRAINT sync_run_code_list_status_check CHECK (status IN ({STATUSES})),
    CONSTRAINT sync_run_code_list_skip_reason_check CHECK (skip_reason IN ({SKIPS}))
)
;;
CREATE INDEX sync_run_code_list_finished_idx
    ON {{s}}.sync_run_code_list (source, vdn_id, code_list, finished_at)
;;
CREATE TABLE {{s}}.display_result (
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    def_id          text NOT NULL,
    result_code     text NOT NULL,
    display_result  text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    PRIMARY KEY (source, vdn_id, def_id)
)
;;
CREATE TABLE {{s}}.display_result_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    def_id          text NOT NULL,
    result_code     text NOT NULL,
    display_result  text NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    sync_run_id     bigint NOT NULL REFERENCES {{s}}.sync_run (id),
    closed_by_sync_run_id bigint REFERENCES {{s}}.sync_run (id),
    CONSTRAINT display_result_history_valid_check CHECK (valid_to > valid_from),
    CONSTRAINT display_result_history_closed_check
        CHECK ((valid_to IS NULL) = (closed_by_sync_run_id IS NULL))
)
;;
CREATE UNIQUE INDEX display_result_history_open_uq
    ON {{s}}.display_result_history (source, vdn_id, def_id) WHERE valid_to IS NULL
;;
CREATE UNIQUE INDEX display_result_history_at_uq
    ON {{s}}.display_result_history (source, vdn_id, def_id, valid_from) INCLUDE (valid_to)
;;
-- "The label of display code C at time T" (calls carry the code, not the defId).
CREATE INDEX display_result_history_code_idx
    ON {{s}}.display_result_history (source, vdn_id, result_code, valid_from) INCLUDE (valid_to)
;;
CREATE TABLE {{s}}.display_result_obs_code (
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    def_id          text NOT NULL,
    obs_code        text NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    PRIMARY KEY (source, vdn_id, def_id, obs_code)
)
;;
CREATE TABLE {{s}}.display_result_obs_code_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    def_id          text NOT NULL,
    obs_code        text NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    sync_run_id     bigint NOT NULL REFERENCES {{s}}.sync_run (id),
    closed_by_sync_run_id bigint REFERENCES {{s}}.sync_run (id),
    CONSTRAINT display_result_obs_code_history_valid_check CHECK (valid_to > valid_from),
    CONSTRAINT display_result_obs_code_history_closed_check
        CHECK ((valid_to IS NULL) = (closed_by_sync_run_id IS NULL))
)
;;
CREATE UNIQUE INDEX display_result_obs_code_history_open_uq
    ON {{s}}.display_result_obs_code_history (source, vdn_id, def_id, obs_code)
    WHERE valid_to IS NULL
;;
CREATE UNIQUE INDEX display_result_obs_code_history_at_uq
    ON {{s}}.display_result_obs_code_history (source, vdn_id, def_id, obs_code, valid_from)
    INCLUDE (valid_to)
;;
-- "Which display result was failCode F grouped under at time T".
CREATE INDEX display_result_obs_code_history_code_idx
    ON {{s}}.display_result_obs_code_history (source, vdn_id, obs_code, valid_from)
    INCLUDE (valid_to, def_id)
;;
CREATE TABLE {{s}}.business_result (
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    parent_code     text NOT NULL,
    code            text NOT NULL,
    name            text NOT NULL,
    level           integer NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    PRIMARY KEY (source, vdn_id, parent_code, code),
    CONSTRAINT business_result_level_check CHECK ((level = 1) = (parent_code = '')
                                                  AND level IN (1, 2))
)
;;
CREATE TABLE {{s}}.business_result_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL DEFAULT 'default',
    vdn_id          integer NOT NULL,
    parent_code     text NOT NULL,
    code            text NOT NULL,
    name            text NOT NULL,
    level           integer NOT NULL,
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    sync_run_id     bigint NOT NULL REFERENCES {{s}}.sync_run (id),
    closed_by_sync_run_id bigint REFERENCES {{s}}.sync_run (id),
    CONSTRAINT business_result_history_valid_check CHECK (valid_to > valid_from),
    CONSTRAINT business_result_history_closed_check
        CHECK ((valid_to IS NULL) = (closed_by_sync_run_id IS NULL))
)
;;
CREATE UNIQUE INDEX business_result_history_open_uq
    ON {{s}}.business_result_history (source, vdn_id, parent_code, code) WHERE valid_to IS NULL
;;
CREATE UNIQUE INDEX business_result_history_at_uq
    ON {{s}}.business_result_history (source, vdn_id, parent_code, code, valid_from)
    INCLUDE (valid_to)
;;
CREATE VIEW {{s}}.display_result_current AS
SELECT source, vdn_id, def_id, result_code, display_result, first_seen_at, updated_at
FROM {{s}}.display_result WHERE deleted_at IS NULL
;;
CREATE VIEW {{s}}.display_result_obs_code_current AS
SELECT source, vdn_id, def_id, obs_code, first_seen_at, updated_at
FROM {{s}}.display_result_obs_code WHERE deleted_at IS NULL
;;
CREATE VIEW {{s}}.business_result_current AS
SELECT source, vdn_id, parent_code, code, name, level, first_seen_at, updated_at
FROM {{s}}.business_result WHERE deleted_at IS NULL
;;
{{changes}}
;;
-- Inlined by the planner: keep each one plain SELECT, never SECURITY DEFINER, SET, STRICT
-- or VOLATILE. Versions of a key never overlap; ORDER BY ... LIMIT 1 gives one row even
-- where two display results share a display code (the latest version, then the lowest
-- defId).
CREATE FUNCTION {{s}}.display_result_at(source text, vdn_id integer, result_code text,
                                        at timestamptz)
RETURNS TABLE (def_id text, display_result text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.def_id, h.display_result
    FROM {{s}}.display_result_history AS h
    WHERE h.source = $1 AND h.vdn_id = $2 AND h.result_code = $3 AND h.valid_from <= $4
      AND (h.valid_to IS NULL OR $4 < h.valid_to)
    ORDER BY h.valid_from DESC, h.def_id
    LIMIT 1
$$
;;
CREATE FUNCTION {{s}}.display_result_of_obs_code_at(source text, vdn_id integer,
                                                    obs_code text, at timestamptz)
RETURNS TABLE (def_id text, result_code text, display_result text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT m.def_id, d.result_code, d.display_result
    FROM {{s}}.display_result_obs_code_history AS m
    JOIN {{s}}.display_result_history AS d
      ON d.source = m.source AND d.vdn_id = m.vdn_id AND d.def_id = m.def_id
     AND d.valid_from <= $4 AND (d.valid_to IS NULL OR $4 < d.valid_to)
    WHERE m.source = $1 AND m.vdn_id = $2 AND m.obs_code = $3 AND m.valid_from <= $4
      AND (m.valid_to IS NULL OR $4 < m.valid_to)
    ORDER BY m.valid_from DESC, m.def_id
    LIMIT 1
$$
;;
CREATE FUNCTION {{s}}.business_result_at(source text, vdn_id integer, parent_code text,
                                         code text, at timestamptz)
RETURNS TABLE (name text, level integer)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.name, h.level
    FROM {{s}}.business_result_history AS h
    WHERE h.source = $1 AND h.vdn_id = $2 AND h.parent_code = $3 AND h.code = $4
      AND h.valid_from <= $5 AND (h.valid_to IS NULL OR $5 < h.valid_to)
    ORDER BY h.valid_from DESC
    LIMIT 1
$$
"""

# (table, key columns after source/vdn_id, value columns): each gets a _change view.
LIST_TABLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("display_result", ("def_id",), ("result_code", "display_result")),
    ("display_result_obs_code", ("def_id", "obs_code"), ()),
    ("business_result", ("parent_code", "code"), ("name", "level")),
)


def _change_view(table: str, keys: tuple[str, ...], values: tuple[str, ...]) -> str:
    """One row per change, as 0002's result_code_change: a version that starts is new,
    changed (its predecessor ends where it starts) or restored; one that ends with no
    successor at that instant is removed. Index lookups, no window functions."""
    key = ["source", "vdn_id", *keys]
    same = " AND ".join(f"e.{c} = h.{c}" for c in key)
    same_n = " AND ".join(f"n.{c} = h.{c}" for c in key)
    cols = ", ".join(f"h.{c}" for c in key)
    old_new = "".join(f", p.{v} AS old_{v}, h.{v} AS new_{v}" for v in values)
    old_new_removed = "".join(f", h.{v}, NULL" for v in values)
    picked = "".join(f", e.{v}" for v in values)
    return f"""CREATE VIEW {{s}}.{table}_change AS
SELECT {cols},
       CASE WHEN p.valid_to IS NULL THEN 'new'
            WHEN p.valid_to = h.valid_from THEN 'changed'
            ELSE 'restored' END AS kind{old_new},
       h.valid_from AS changed_at, h.sync_run_id, h.id AS history_id
FROM {{s}}.{table}_history AS h
LEFT JOIN LATERAL (
    SELECT e.valid_to{picked}
    FROM {{s}}.{table}_history AS e
    WHERE {same} AND e.valid_from < h.valid_from
    ORDER BY e.valid_from DESC
    LIMIT 1
) AS p ON true
UNION ALL
SELECT {cols}, 'removed'{old_new_removed}, h.valid_to, h.closed_by_sync_run_id, h.id
FROM {{s}}.{table}_history AS h
WHERE h.valid_to IS NOT NULL
  AND NOT EXISTS (SELECT FROM {{s}}.{table}_history AS n
                  WHERE {same_n} AND n.valid_from = h.valid_to)"""


DOWNGRADE = """
DROP FUNCTION {s}.business_result_at(text, integer, text, text, timestamptz)
;;
DROP FUNCTION {s}.display_result_of_obs_code_at(text, integer, text, timestamptz)
;;
DROP FUNCTION {s}.display_result_at(text, integer, text, timestamptz)
;;
DROP VIEW {s}.business_result_change
;;
DROP VIEW {s}.display_result_obs_code_change
;;
DROP VIEW {s}.display_result_change
;;
DROP VIEW {s}.business_result_current
;;
DROP VIEW {s}.display_result_obs_code_current
;;
DROP VIEW {s}.display_result_current
;;
DROP TABLE {s}.business_result_history
;;
DROP TABLE {s}.business_result
;;
DROP TABLE {s}.display_result_obs_code_history
;;
DROP TABLE {s}.display_result_obs_code
;;
DROP TABLE {s}.display_result_history
;;
DROP TABLE {s}.display_result
;;
DROP TABLE {s}.sync_run_code_list
;;
DROP TABLE {s}.code_list_state
"""

_SOURCE = "The source (sources[].name; 'default' for the isales: section)."
_VDN = "The VDN (iSales vdnId)."
_DEF_ID = "The display result's id (iSales defId, numeric text as sent)."
_RESULT_CODE = (
    "The display result code, exactly as iSales sends it (what a call record carries as "
    "resultCode; leading zeros kept)."
)
_LABEL = "The display result's label (displayResult) in the source's locale."
_OBS_CODE = (
    "An OBS result code (a call's failCode) grouped under the display result, exactly as "
    "iSales sends it."
)
_PARENT = "The parent business result's code for a sub-status; '' for a top-level result."
_CODE = "The business result's or sub-status's code, exactly as iSales sends it."
_NAME = "Its name in the source's locale."
_LEVEL = "1: a business result (busiResult); 2: a sub-status (subStatus)."
_FIRST = "When obs-sync first stored the row (timestamptz, database clock). Never changes."
_UPDATED = (
    "Start of the row's latest version: its insert, last change or restore (timestamptz, "
    "database clock)."
)
_DELETED = (
    "NULL while present upstream; otherwise when a complete sync of the list found it "
    "missing (timestamptz, database clock). Cleared when it comes back."
)
_ID = "Surrogate key of the version (identity)."
_FROM = (
    "Start of the version, inclusive (timestamptz, database clock): when obs-sync observed "
    "it, not when it was edited in iSales."
)
_TO = (
    "End of the version, exclusive; NULL = the current version. Equals the next version's "
    "valid_from after a change, or deleted_at after a removal."
)
_OPENED = "The sync_run that opened this version."
_CLOSED = "The sync_run that closed this version; NULL while it is open."

_COLUMNS: dict[str, str] = {
    "source": _SOURCE,
    "vdn_id": _VDN,
    "def_id": _DEF_ID,
    "result_code": _RESULT_CODE,
    "display_result": _LABEL,
    "obs_code": _OBS_CODE,
    "parent_code": _PARENT,
    "code": _CODE,
    "name": _NAME,
    "level": _LEVEL,
    "first_seen_at": _FIRST,
    "updated_at": _UPDATED,
    "deleted_at": _DELETED,
    "id": _ID,
    "valid_from": _FROM,
    "valid_to": _TO,
    "sync_run_id": _OPENED,
    "closed_by_sync_run_id": _CLOSED,
}

COMMENTS: dict[str, str] = {
    "TABLE display_result": (
        "obs-sync: one row per display result ever seen per source and VDN, with its current "
        "code and label (deleted_at NULL = present upstream). Never pruned."
    ),
    "TABLE display_result_history": (
        "obs-sync: one row per version of a display result (code and label), valid over "
        "[valid_from, valid_to). Never pruned."
    ),
    "TABLE display_result_obs_code": (
        "obs-sync: which OBS codes (failCodes) are grouped under which display result, one "
        "row per pair ever seen (deleted_at NULL = grouped so upstream now). Never pruned."
    ),
    "TABLE display_result_obs_code_history": (
        "obs-sync: one row per period an OBS code was grouped under a display result, valid "
        "over [valid_from, valid_to). Never pruned."
    ),
    "TABLE business_result": (
        "obs-sync: one row per business result (level 1) or sub-status (level 2) ever seen "
        "per source and VDN, with its current name. Never pruned."
    ),
    "TABLE business_result_history": (
        "obs-sync: one row per version of a business result's or sub-status's name, valid "
        "over [valid_from, valid_to). Never pruned."
    ),
    "TABLE code_list_state": (
        "obs-sync: per source, VDN and code list, when the fetch began of the snapshot that "
        "wrote its current rows; the row its writer locks."
    ),
    "TABLE sync_run_code_list": (
        "obs-sync: one row per VDN and code list (display_results, business_results) of a "
        "sync run; obs_result_codes are recorded in sync_run_vdn."
    ),
    "VIEW display_result_current": "obs-sync: the display results present upstream now.",
    "VIEW display_result_obs_code_current": (
        "obs-sync: the OBS codes grouped under each display result now."
    ),
    "VIEW business_result_current": (
        "obs-sync: the business results and sub-statuses present upstream now."
    ),
    "VIEW display_result_change": (
        "obs-sync: one row per change of a display result: new, changed (code or label), "
        "removed, restored; unique per (source, vdn_id, def_id, changed_at)."
    ),
    "VIEW display_result_obs_code_change": (
        "obs-sync: one row per change of the grouping: new (an OBS code grouped under a "
        "display result), removed, restored. A regrouped code is removed under one and new "
        "under the other at the same changed_at."
    ),
    "VIEW business_result_change": (
        "obs-sync: one row per change of a business result or sub-status: new, changed "
        "(name), removed, restored."
    ),
    "FUNCTION display_result_at(text, integer, text, timestamptz)": (
        "obs-sync: the display result whose code was result_code at instant at (source, "
        "VDN): one row (def_id, display_result), or none. Inlined: use in LEFT JOIN LATERAL."
    ),
    "FUNCTION display_result_of_obs_code_at(text, integer, text, timestamptz)": (
        "obs-sync: the display result OBS code obs_code was grouped under at instant at: one "
        "row (def_id, result_code, display_result), or none. Inlined."
    ),
    "FUNCTION business_result_at(text, integer, text, text, timestamptz)": (
        "obs-sync: the name and level of business result code under parent_code ('' for a "
        "top-level result) at instant at: one row, or none. Inlined."
    ),
    # -- code_list_state
    "COLUMN code_list_state.source": _SOURCE,
    "COLUMN code_list_state.vdn_id": _VDN,
    "COLUMN code_list_state.code_list": "display_results or business_results.",
    "COLUMN code_list_state.snapshot_started_at": (
        "When the fetch began (database clock) of the snapshot that wrote this list's current "
        "rows; a snapshot whose fetch began earlier is not applied over them (superseded)."
    ),
    # -- sync_run_code_list
    "COLUMN sync_run_code_list.sync_run_id": "The run (sync_run.id).",
    "COLUMN sync_run_code_list.source": _SOURCE,
    "COLUMN sync_run_code_list.vdn_id": _VDN,
    "COLUMN sync_run_code_list.code_list": "display_results or business_results.",
    "COLUMN sync_run_code_list.status": (
        "succeeded (complete list applied); incomplete (applied without deletions: a page or "
        "a detail call failed); guarded (deletions withheld by the mass-deletion guard); "
        "failed (nothing written: see error); skipped (not synced by this run)."
    ),
    "COLUMN sync_run_code_list.started_at": "When the list's fetch started (database clock).",
    "COLUMN sync_run_code_list.finished_at": "When the list was done (database clock).",
    "COLUMN sync_run_code_list.pages": "List pages read.",
    "COLUMN sync_run_code_list.requests": (
        "HTTP requests made for the list (pages and detail calls), retries included."
    ),
    "COLUMN sync_run_code_list.total_count": (
        "totalCount reported by iSales (display results, or top-level business results); "
        "NULL when no page was read."
    ),
    "COLUMN sync_run_code_list.inserted": "Rows inserted (all of the list's tables).",
    "COLUMN sync_run_code_list.updated": "Rows whose values changed.",
    "COLUMN sync_run_code_list.deleted": "Rows marked deleted.",
    "COLUMN sync_run_code_list.restored": "Deleted rows that came back.",
    "COLUMN sync_run_code_list.unchanged": "Rows fetched unchanged.",
    "COLUMN sync_run_code_list.withheld": "Deletions withheld by the mass-deletion guard.",
    "COLUMN sync_run_code_list.error": (
        "One-line reason for failed, incomplete, guarded and skipped; NULL when succeeded."
    ),
    "COLUMN sync_run_code_list.skip_reason": "Why a skipped list was not applied, as sync_run_vdn.",
    "COLUMN sync_run_code_list.unexpected": (
        "What iSales sent that the spec does not describe (unknown fields, numbers as "
        "strings), one line each; NULL when nothing was."
    ),
}


def _column_comments() -> None:
    for table, keys, values in LIST_TABLES:
        current = ["source", "vdn_id", *keys, *values, "first_seen_at", "updated_at"]
        for column in [*current, "deleted_at"]:
            COMMENTS[f"COLUMN {table}.{column}"] = _COLUMNS[column]
        history = ["id", "source", "vdn_id", *keys, *values, "valid_from", "valid_to"]
        for column in [*history, "sync_run_id", "closed_by_sync_run_id"]:
            COMMENTS[f"COLUMN {table}_history.{column}"] = _COLUMNS[column]
        for column in current:
            COMMENTS[f"COLUMN {table}_current.{column}"] = _COLUMNS[column]
        change = f"COLUMN {table}_change"
        for column in ["source", "vdn_id", *keys]:
            COMMENTS[f"{change}.{column}"] = _COLUMNS[column]
        COMMENTS[f"{change}.kind"] = (
            "new: first version; changed: a value changed; removed: a complete sync found it "
            "missing upstream; restored: it came back after a removal."
        )
        for value in values:
            COMMENTS[f"{change}.old_{value}"] = f"{value} before the change; NULL for new."
            COMMENTS[f"{change}.new_{value}"] = f"{value} after the change; NULL for removed."
        COMMENTS[f"{change}.changed_at"] = (
            "When obs-sync observed the change (database clock): the new version's "
            "valid_from, or for removed the last version's valid_to."
        )
        COMMENTS[f"{change}.sync_run_id"] = "The sync_run that made the change."
        COMMENTS[f"{change}.history_id"] = (
            f"The {table}_history row opened (new, changed, restored) or closed (removed)."
        )


_column_comments()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _schema() -> str:
    context = op.get_context()
    schema = context.version_table_schema
    assert schema, "obs-sync always sets the schema (migrations/env.py)"
    return context.dialect.identifier_preparer.quote_identifier(schema)


def _run(script: str, s: str) -> None:
    for statement in script.split("\n;;\n"):
        if statement.strip():
            op.execute(statement.replace("{s}", s))


def upgrade() -> None:
    s = _schema()
    changes = "\n;;\n".join(_change_view(*spec) for spec in LIST_TABLES)
    _run(UPGRADE.replace("{changes}", changes), s)
    for target, comment in COMMENTS.items():
        kind, _, name = target.partition(" ")
        op.execute(f"COMMENT ON {kind} {s}.{name} IS {_literal(comment)}")


def downgrade() -> None:
    _run(DOWNGRADE, s=_schema())
