"""Sources: several iSales servers, keys and languages in one schema (issue 18).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Issue 18 calls this migration "0004": that number was planned before 0005 (edges) landed
on main, so it is 0006 here, after 0005.

- ``source text NOT NULL`` in every data table (``result_code``, ``result_code_history``),
  the run records (``sync_run_vdn``), the VDN registry (``vdn``) and ``vdn_state``, first
  in every key: a VDN is ``(source, vdn_id)``. Existing rows become ``default`` (the
  source of a configuration written with the single ``isales:`` section), which stays the
  column's default (obs-sync always writes it; a writer of the older schema's columns
  writes the source default). The views gain
  a ``source`` column (at the end: a query naming its columns sees the same rows).
- ``sync_run.sources``: the sources a run covered.
- ``source`` (table): one row per source with the locale its data is written in;
  ``locale_switch``: one row per switch of a source's language (``obs-sync sync
  --switch-locale``), the one event a switch is. ``vdn.locale``: the language of a VDN's
  stored descriptions. Versions opened by a switch (``result_code_history.relabelled``)
  are translations, not changes: ``result_code_change`` leaves them out and
  ``sync_run_vdn.relabelled`` counts them (not ``updated``).
- ``result_code_desc_at(source, vdn_id, obs_code, at)`` beside today's
  ``result_code_desc_at(vdn_id, obs_code, at)``, which reads the only source and refuses
  (an error naming the four-argument form) once several sources are stored
  (``sole_source()``). Both stay inlinable (one plain SELECT, STABLE).

Downgrade: only while every row is of the source ``default`` (else it refuses, saying
which sources exist and what to do); relabelled versions then count as ``updated``.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Statements are separated by a line holding only ";;" (function bodies contain ";").
UPGRADE = """
ALTER TABLE {s}.result_code ADD COLUMN source text NOT NULL DEFAULT 'default'
;;
ALTER TABLE {s}.result_code DROP CONSTRAINT result_code_pkey
;;
ALTER TABLE {s}.result_code ADD CONSTRAINT result_code_pkey
    PRIMARY KEY (source, vdn_id, obs_code)
;;
ALTER TABLE {s}.result_code_history ADD COLUMN source text NOT NULL DEFAULT 'default'
;;
ALTER TABLE {s}.result_code_history ADD COLUMN relabelled boolean NOT NULL DEFAULT false
;;
DROP INDEX {s}.result_code_history_open_uq
;;
CREATE UNIQUE INDEX result_code_history_open_uq
    ON {s}.result_code_history (source, vdn_id, obs_code) WHERE valid_to IS NULL
;;
DROP INDEX {s}.result_code_history_at_uq
;;
CREATE UNIQUE INDEX result_code_history_at_uq
    ON {s}.result_code_history (source, vdn_id, obs_code, valid_from) INCLUDE (valid_to)
;;
ALTER TABLE {s}.sync_run_vdn ADD COLUMN source text NOT NULL DEFAULT 'default'
;;
ALTER TABLE {s}.sync_run_vdn ADD COLUMN relabelled integer NOT NULL DEFAULT 0
;;
ALTER TABLE {s}.sync_run_vdn DROP CONSTRAINT sync_run_vdn_pkey
;;
ALTER TABLE {s}.sync_run_vdn ADD CONSTRAINT sync_run_vdn_pkey
    PRIMARY KEY (sync_run_id, source, vdn_id)
;;
DROP INDEX {s}.sync_run_vdn_vdn_finished_idx
;;
CREATE INDEX sync_run_vdn_vdn_finished_idx
    ON {s}.sync_run_vdn (source, vdn_id, finished_at)
;;
ALTER TABLE {s}.sync_run ADD COLUMN sources text[]
;;
UPDATE {s}.sync_run SET sources = ARRAY['default']
;;
ALTER TABLE {s}.vdn ADD COLUMN source text NOT NULL DEFAULT 'default'
;;
ALTER TABLE {s}.vdn ADD COLUMN locale text
;;
ALTER TABLE {s}.vdn DROP CONSTRAINT vdn_pkey
;;
ALTER TABLE {s}.vdn ADD CONSTRAINT vdn_pkey PRIMARY KEY (source, vdn_id)
;;
ALTER TABLE {s}.vdn_state ADD COLUMN source text NOT NULL DEFAULT 'default'
;;
ALTER TABLE {s}.vdn_state DROP CONSTRAINT vdn_state_pkey
;;
ALTER TABLE {s}.vdn_state ADD CONSTRAINT vdn_state_pkey PRIMARY KEY (source, vdn_id)
;;
CREATE TABLE {s}.source (
    source          text PRIMARY KEY,
    locale          text,
    first_seen_at   timestamptz NOT NULL,
    locale_since    timestamptz
)
;;
INSERT INTO {s}.source (source, locale, first_seen_at)
SELECT 'default', NULL, min(first_seen_at) FROM {s}.vdn HAVING count(*) > 0
;;
CREATE TABLE {s}.locale_switch (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL REFERENCES {s}.source (source),
    from_locale     text,
    to_locale       text NOT NULL,
    switched_at     timestamptz NOT NULL,
    sync_run_id     bigint REFERENCES {s}.sync_run (id)
)
;;
CREATE INDEX locale_switch_source_idx ON {s}.locale_switch (source, switched_at)
;;
CREATE OR REPLACE FUNCTION {s}.vdn_note_run_records() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.vdn AS v (source, vdn_id, configured, first_seen_at, last_attempted_at,
                              last_status, last_error, last_sync_run_id, last_succeeded_at)
    SELECT r.source, r.vdn_id, false, min(r.started_at),
           max(r.finished_at) FILTER (WHERE r.status <> 'skipped'),
           (array_agg(r.status ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           (array_agg(r.error ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           (array_agg(r.sync_run_id ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           max(r.finished_at) FILTER (WHERE r.status = 'succeeded')
    FROM new_records AS r
    GROUP BY r.source, r.vdn_id
    ORDER BY r.source, r.vdn_id
    ON CONFLICT (source, vdn_id) DO UPDATE SET
        first_seen_at = least(v.first_seen_at, excluded.first_seen_at),
        last_attempted_at = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_attempted_at,
            v.last_attempted_at) ELSE v.last_attempted_at END,
        last_status = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_status,
            v.last_status) ELSE v.last_status END,
        last_error = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR (v.last_attempted_at IS NULL AND excluded.last_attempted_at IS NOT NULL)
            THEN excluded.last_error ELSE v.last_error END,
        last_sync_run_id = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_sync_run_id,
            v.last_sync_run_id) ELSE v.last_sync_run_id END,
        last_succeeded_at = greatest(v.last_succeeded_at, excluded.last_succeeded_at);
    RETURN NULL;
END
$$
;;
CREATE OR REPLACE VIEW {s}.result_code_current AS
SELECT vdn_id, obs_code, obs_code_desc, first_seen_at, updated_at, source
FROM {s}.result_code
WHERE deleted_at IS NULL
;;
CREATE OR REPLACE VIEW {s}.result_code_change AS
SELECT h.vdn_id, h.obs_code,
       CASE WHEN p.valid_to IS NULL THEN 'new'
            WHEN p.valid_to = h.valid_from THEN 'changed'
            ELSE 'restored' END AS kind,
       p.obs_code_desc AS old_desc,
       h.obs_code_desc AS new_desc,
       h.valid_from AS changed_at,
       h.sync_run_id,
       h.id AS history_id,
       h.source
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
       h.closed_by_sync_run_id, h.id, h.source
FROM {s}.result_code_history AS h
WHERE h.valid_to IS NOT NULL
  AND NOT EXISTS (
    SELECT FROM {s}.result_code_history AS n
    WHERE n.source = h.source AND n.vdn_id = h.vdn_id AND n.obs_code = h.obs_code
      AND n.valid_from = h.valid_to)
;;
-- The one source stored, for the forms without a source argument; an error once there
-- are several (they would mix sources). min and max of the registry's leading key column:
-- two index lookups.
CREATE FUNCTION {s}.sole_source() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    first_source text;
    last_source text;
BEGIN
    SELECT min(v.source), max(v.source) INTO first_source, last_source FROM {s}.vdn AS v;
    IF first_source IS DISTINCT FROM last_source THEN
        RAISE EXCEPTION 'obs-sync: several sources are stored (% and %, ...): this form '
            'without a source would mix them', first_source, last_source
            USING ERRCODE = 'cardinality_violation',
                  HINT = 'name the source: result_code_desc_at(source, vdn_id, obs_code, at); '
                         'the sources are in the table source';
    END IF;
    RETURN coalesce(first_source, 'default');
END
$$
;;
CREATE OR REPLACE FUNCTION {s}.result_code_desc_at(vdn_id integer, obs_code text,
                                                    at timestamptz)
RETURNS TABLE (obs_code_desc text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.obs_code_desc
    FROM {s}.result_code_history AS h
    WHERE h.source = {s}.sole_source() AND h.vdn_id = $1 AND h.obs_code = $2
      AND h.valid_from <= $3 AND (h.valid_to IS NULL OR $3 < h.valid_to)
    ORDER BY h.valid_from DESC
    LIMIT 1
$$
;;
CREATE FUNCTION {s}.result_code_desc_at(source text, vdn_id bigint, obs_code text,
                                        at timestamptz)
RETURNS TABLE (obs_code_desc text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.obs_code_desc
    FROM {s}.result_code_history AS h
    WHERE h.source = $1 AND h.vdn_id = $2 AND h.obs_code = $3
      AND h.valid_from <= $4 AND (h.valid_to IS NULL OR $4 < h.valid_to)
    ORDER BY h.valid_from DESC
    LIMIT 1
$$
"""

SOURCE = (
    "The source (configuration sources[].name; default for the isales: section and every "
    "row written before migration 0006): one iSales server, key and locale. "
)

COMMENTS: dict[str, str] = {
    "COLUMN result_code.source": SOURCE + "Primary key with vdn_id and obs_code.",
    "COLUMN result_code_history.source": SOURCE + "With vdn_id and obs_code: the code.",
    "COLUMN result_code_history.relabelled": (
        "true for a version opened by a switch of its source's locale (obs-sync sync "
        "--switch-locale): its description is the predecessor's in the new language, not "
        "a change (result_code_change leaves it out). false otherwise."
    ),
    "COLUMN sync_run_vdn.source": SOURCE + "Primary key with sync_run_id and vdn_id.",
    "COLUMN sync_run_vdn.relabelled": (
        "Codes whose description was replaced by its translation in this run, after a "
        "switch of the source's locale (not counted in updated)."
    ),
    "COLUMN sync_run.sources": (
        "The sources this run covered (all configured ones, or those of --source); "
        "{default} for runs before migration 0006. NULL only while unknown."
    ),
    "COLUMN vdn.source": SOURCE + "Primary key with vdn_id.",
    "COLUMN vdn.locale": (
        "The locale the VDN's stored descriptions are in (e.g. zh_CN, en_US; zh_CN when "
        "its source sends no locale header). NULL: nothing recorded yet (before migration "
        "0006, taken to be its source's locale)."
    ),
    "COLUMN vdn_state.source": SOURCE + "Primary key with vdn_id.",
    "TABLE source": (
        "obs-sync: one row per source that has run, with the locale its data is written "
        "in. A run whose configured locale differs writes nothing for the source until "
        "obs-sync sync --switch-locale records the switch."
    ),
    "COLUMN source.source": "The source's name (configuration sources[].name). Primary key.",
    "COLUMN source.locale": (
        "The locale the source's data is written in; NULL: not known yet (data written "
        "before migration 0006): the next run records its configured locale."
    ),
    "COLUMN source.first_seen_at": (
        "When a run first had the source (timestamptz, database clock). Never NULL."
    ),
    "COLUMN source.locale_since": (
        "When the locale was recorded or last switched (timestamptz, database clock); "
        "NULL while locale is NULL."
    ),
    "TABLE locale_switch": (
        "obs-sync: one row per switch of a source's locale (obs-sync sync --switch-locale): "
        "the one event a change of language is. Never pruned."
    ),
    "COLUMN locale_switch.id": "Surrogate key (identity).",
    "COLUMN locale_switch.source": "The source whose locale was switched.",
    "COLUMN locale_switch.from_locale": (
        "The locale before the switch; NULL when it was not known (data from before "
        "migration 0006)."
    ),
    "COLUMN locale_switch.to_locale": "The locale after the switch. Never NULL.",
    "COLUMN locale_switch.switched_at": (
        "When the switch was recorded (timestamptz, database clock). Never NULL."
    ),
    "COLUMN locale_switch.sync_run_id": "The sync_run that recorded the switch.",
    "COLUMN result_code_current.source": SOURCE + "Unique with vdn_id and obs_code.",
    "COLUMN result_code_change.source": SOURCE,
    "FUNCTION result_code_desc_at(integer, text, timestamptz)": (
        "obs-sync: the description of code obs_code of VDN vdn_id valid at instant at, of "
        "the only source stored: one row, or no row when the code had no description then. "
        "An error once several sources are stored: use result_code_desc_at(source, vdn_id, "
        "obs_code, at). LANGUAGE sql STABLE, inlined: use it in LEFT JOIN LATERAL ... ON true."
    ),
    "FUNCTION result_code_desc_at(text, bigint, text, timestamptz)": (
        "obs-sync: the description of code obs_code of VDN vdn_id of source source valid at "
        "instant at: one row, or no row when the code had no description then. LANGUAGE "
        "sql STABLE, inlined: use it in LEFT JOIN LATERAL ... ON true."
    ),
    "FUNCTION sole_source()": (
        "obs-sync: the only source stored (default when none); an error when there are "
        "several. Used by the forms that take no source."
    ),
}

GUARD = """
DO $$
DECLARE
    others text;
BEGIN
    SELECT string_agg(DISTINCT source, ', ' ORDER BY source) INTO others FROM (
        SELECT source FROM {s}.vdn UNION SELECT source FROM {s}.result_code
        UNION SELECT source FROM {s}.sync_run_vdn UNION SELECT source FROM {s}.vdn_state
        UNION SELECT source FROM {s}.source) AS known
    WHERE source <> 'default';
    IF others IS NOT NULL THEN
        RAISE EXCEPTION 'obs-sync: cannot downgrade below migration 0006: the schema holds '
            'data of sources other than default (%), which the older schema cannot tell '
            'apart', others
            USING HINT = 'keep this version, or move those sources to a schema of their own '
                         'first (the older schema has one source only)';
    END IF;
END
$$
"""

DOWNGRADE = """
DROP FUNCTION {s}.result_code_desc_at(text, bigint, text, timestamptz)
;;
CREATE OR REPLACE FUNCTION {s}.result_code_desc_at(vdn_id integer, obs_code text,
                                                    at timestamptz)
RETURNS TABLE (obs_code_desc text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.obs_code_desc
    FROM {s}.result_code_history AS h
    WHERE h.vdn_id = $1 AND h.obs_code = $2 AND h.valid_from <= $3
      AND (h.valid_to IS NULL OR $3 < h.valid_to)
    ORDER BY h.valid_from DESC
    LIMIT 1
$$
;;
DROP FUNCTION {s}.sole_source()
;;
DROP VIEW {s}.result_code_change
;;
CREATE VIEW {s}.result_code_change AS
SELECT h.vdn_id, h.obs_code,
       CASE WHEN p.valid_to IS NULL THEN 'new'
            WHEN p.valid_to = h.valid_from THEN 'changed'
            ELSE 'restored' END AS kind,
       p.obs_code_desc AS old_desc,
       h.obs_code_desc AS new_desc,
       h.valid_from AS changed_at,
       h.sync_run_id,
       h.id AS history_id
FROM {s}.result_code_history AS h
LEFT JOIN LATERAL (
    SELECT e.valid_to, e.obs_code_desc
    FROM {s}.result_code_history AS e
    WHERE e.vdn_id = h.vdn_id AND e.obs_code = h.obs_code AND e.valid_from < h.valid_from
    ORDER BY e.valid_from DESC
    LIMIT 1
) AS p ON true
UNION ALL
SELECT h.vdn_id, h.obs_code, 'removed', h.obs_code_desc, NULL, h.valid_to,
       h.closed_by_sync_run_id, h.id
FROM {s}.result_code_history AS h
WHERE h.valid_to IS NOT NULL
  AND NOT EXISTS (
    SELECT FROM {s}.result_code_history AS n
    WHERE n.vdn_id = h.vdn_id AND n.obs_code = h.obs_code AND n.valid_from = h.valid_to)
;;
DROP VIEW {s}.result_code_current
;;
CREATE VIEW {s}.result_code_current AS
SELECT vdn_id, obs_code, obs_code_desc, first_seen_at, updated_at
FROM {s}.result_code
WHERE deleted_at IS NULL
;;
CREATE OR REPLACE FUNCTION {s}.vdn_note_run_records() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {s}.vdn AS v (vdn_id, configured, first_seen_at, last_attempted_at,
                              last_status, last_error, last_sync_run_id, last_succeeded_at)
    SELECT r.vdn_id, false, min(r.started_at),
           max(r.finished_at) FILTER (WHERE r.status <> 'skipped'),
           (array_agg(r.status ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           (array_agg(r.error ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           (array_agg(r.sync_run_id ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1],
           max(r.finished_at) FILTER (WHERE r.status = 'succeeded')
    FROM new_records AS r
    GROUP BY r.vdn_id
    ORDER BY r.vdn_id
    ON CONFLICT (vdn_id) DO UPDATE SET
        first_seen_at = least(v.first_seen_at, excluded.first_seen_at),
        last_attempted_at = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_attempted_at,
            v.last_attempted_at) ELSE v.last_attempted_at END,
        last_status = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_status,
            v.last_status) ELSE v.last_status END,
        last_error = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR (v.last_attempted_at IS NULL AND excluded.last_attempted_at IS NOT NULL)
            THEN excluded.last_error ELSE v.last_error END,
        last_sync_run_id = CASE WHEN excluded.last_attempted_at >= v.last_attempted_at
            OR v.last_attempted_at IS NULL THEN coalesce(excluded.last_sync_run_id,
            v.last_sync_run_id) ELSE v.last_sync_run_id END,
        last_succeeded_at = greatest(v.last_succeeded_at, excluded.last_succeeded_at);
    RETURN NULL;
END
$$
;;
DROP TABLE {s}.locale_switch
;;
DROP TABLE {s}.source
;;
ALTER TABLE {s}.vdn_state DROP CONSTRAINT vdn_state_pkey
;;
ALTER TABLE {s}.vdn_state ADD CONSTRAINT vdn_state_pkey PRIMARY KEY (vdn_id)
;;
ALTER TABLE {s}.vdn_state DROP COLUMN source
;;
ALTER TABLE {s}.vdn DROP CONSTRAINT vdn_pkey
;;
ALTER TABLE {s}.vdn ADD CONSTRAINT vdn_pkey PRIMARY KEY (vdn_id)
;;
ALTER TABLE {s}.vdn DROP COLUMN locale
;;
ALTER TABLE {s}.vdn DROP COLUMN source
;;
ALTER TABLE {s}.sync_run DROP COLUMN sources
;;
DROP INDEX {s}.sync_run_vdn_vdn_finished_idx
;;
CREATE INDEX sync_run_vdn_vdn_finished_idx ON {s}.sync_run_vdn (vdn_id, finished_at)
;;
ALTER TABLE {s}.sync_run_vdn DROP CONSTRAINT sync_run_vdn_pkey
;;
ALTER TABLE {s}.sync_run_vdn ADD CONSTRAINT sync_run_vdn_pkey PRIMARY KEY (sync_run_id, vdn_id)
;;
UPDATE {s}.sync_run_vdn SET updated = updated + relabelled WHERE relabelled > 0
;;
ALTER TABLE {s}.sync_run_vdn DROP COLUMN relabelled
;;
ALTER TABLE {s}.sync_run_vdn DROP COLUMN source
;;
DROP INDEX {s}.result_code_history_at_uq
;;
CREATE UNIQUE INDEX result_code_history_at_uq
    ON {s}.result_code_history (vdn_id, obs_code, valid_from) INCLUDE (valid_to)
;;
DROP INDEX {s}.result_code_history_open_uq
;;
CREATE UNIQUE INDEX result_code_history_open_uq
    ON {s}.result_code_history (vdn_id, obs_code) WHERE valid_to IS NULL
;;
ALTER TABLE {s}.result_code_history DROP COLUMN relabelled
;;
ALTER TABLE {s}.result_code_history DROP COLUMN source
;;
ALTER TABLE {s}.result_code DROP CONSTRAINT result_code_pkey
;;
ALTER TABLE {s}.result_code ADD CONSTRAINT result_code_pkey PRIMARY KEY (vdn_id, obs_code)
;;
ALTER TABLE {s}.result_code DROP COLUMN source
"""

# 0002's comments, restored on the objects a downgrade recreates.
_0002_COMMENTS = {
    "VIEW result_code_current": (
        "obs-sync: the codes present upstream now, one row per (vdn_id, obs_code), with "
        "their current description."
    ),
    "VIEW result_code_change": (
        "obs-sync: one row per change of a code: kind new, changed, removed or restored, "
        "with the old and new description, when and by which run. Unique per "
        "(vdn_id, obs_code, changed_at)."
    ),
    "FUNCTION result_code_desc_at(integer, text, timestamptz)": (
        "obs-sync: the description of code obs_code of VDN vdn_id valid at instant at: one "
        "row, or no row when the code had no description then (not yet seen, deleted "
        "upstream, or unknown). LANGUAGE sql STABLE, inlined by the planner: use it in "
        "LEFT JOIN LATERAL ... ON true."
    ),
}
_VIEW_COLUMNS = {
    "result_code_current": {
        "vdn_id": "The VDN. Unique with obs_code.",
        "obs_code": "The result code, exactly as iSales sends it.",
        "obs_code_desc": "The current description. Never NULL.",
        "first_seen_at": "When obs-sync first stored the code (timestamptz, database clock).",
        "updated_at": (
            "Since when the current description is valid (timestamptz, database clock): the "
            "current version's valid_from."
        ),
    },
    "result_code_change": {
        "vdn_id": "The VDN.",
        "obs_code": "The result code.",
        "kind": (
            "new: the code's first version; changed: its description changed; removed: a "
            "complete sync found it missing upstream; restored: it came back after a "
            "removal."
        ),
        "old_desc": (
            "The description before the change: NULL for new; for restored, the description "
            "the code had when it was removed."
        ),
        "new_desc": "The description after the change; NULL for removed.",
        "changed_at": (
            "When obs-sync observed the change (timestamptz, database clock): the new "
            "version's valid_from, or for removed the last version's valid_to."
        ),
        "sync_run_id": "The sync_run that made the change.",
        "history_id": (
            "The result_code_history row: the version opened (new, changed, restored) or "
            "closed (removed)."
        ),
    },
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _qualify(target: str, s: str) -> str:
    kind, _, name = target.partition(" ")
    return f"{kind} {s}.{name}"


def _schema() -> str:
    context = op.get_context()
    schema = context.version_table_schema
    assert schema, "obs-sync always sets the schema (migrations/env.py)"
    return context.dialect.identifier_preparer.quote_identifier(schema)


def _run(script: str, s: str) -> None:
    for statement in script.format(s=s).split("\n;;\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    s = _schema()
    _run(UPGRADE, s)
    for target, comment in COMMENTS.items():
        op.execute(f"COMMENT ON {_qualify(target, s)} IS {_literal(comment)}")


def downgrade() -> None:
    s = _schema()
    _run(GUARD, s)
    _run(DOWNGRADE, s)
    for target, comment in _0002_COMMENTS.items():
        op.execute(f"COMMENT ON {_qualify(target, s)} IS {_literal(comment)}")
    for view, columns in _VIEW_COLUMNS.items():
        for column, comment in columns.items():
            op.execute(f"COMMENT ON COLUMN {s}.{view}.{column} IS {_literal(comment)}")
