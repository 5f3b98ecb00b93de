"""The BI interface: views, an as-of function, the VDN registry, a comment on every column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

docs/bi.md is the contract this creates. Plain SQL so a DBA can review exactly what runs;
every object is created in the configured schema (``database.schema``), as in 0001.

- ``result_code_current`` (view): the codes present upstream now.
- ``result_code_change`` (view): one row per change of a code (new, changed, removed,
  restored), derived from ``result_code_history``.
- ``result_code_desc_at(vdn_id, obs_code, at)``: the description valid at an instant. A
  set-returning ``LANGUAGE sql STABLE`` function with one SELECT, no ``SECURITY DEFINER``,
  no ``SET`` clause and not ``STRICT``: PostgreSQL inlines it into the calling query (an
  index lookup per row instead of a function call); tests/test_bi_interface.py checks it.
- ``vdn``: every VDN ever configured or synced, with its configured flag and its last
  attempt and success. The run's start sets the configured flags (obs_sync/registry.py);
  a trigger on ``sync_run_vdn`` keeps the ``last_*`` columns current, so every writer of
  run records (sync, daemon) maintains it and retention of run records loses nothing.
- ``COMMENT ON`` every column of every table and view: what \\d+, Metabase, Superset and
  dbt docs show.

Downgrade drops exactly these objects (and the comments on 0001's columns); the data of
0001's tables is untouched.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Statements are separated by a line holding only ";;" (function bodies contain ";").
UPGRADE = """
CREATE TABLE {s}.vdn (
    vdn_id              integer PRIMARY KEY,
    configured          boolean NOT NULL,
    first_seen_at       timestamptz NOT NULL,
    last_attempted_at   timestamptz,
    last_status         text,
    last_error          text,
    last_sync_run_id    bigint,
    last_succeeded_at   timestamptz,
    CONSTRAINT vdn_last_status_check
        CHECK (last_status IN ('succeeded', 'failed', 'incomplete', 'guarded')),
    CONSTRAINT vdn_last_attempt_check
        CHECK ((last_attempted_at IS NULL) = (last_status IS NULL)
               AND (last_attempted_at IS NULL) = (last_sync_run_id IS NULL))
)
;;
-- The latest attempt and success of each VDN in a set of sync_run_vdn rows. Skipped
-- records (another process had the VDN, or the run stopped) are not attempts. Upserted in
-- vdn_id order, so concurrent writers lock registry rows in one order (no deadlock), and
-- an older record arriving late (records are batched) never overwrites a newer one.
CREATE FUNCTION {s}.vdn_note_run_records() RETURNS trigger
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
CREATE TRIGGER sync_run_vdn_note_vdn
    AFTER INSERT ON {s}.sync_run_vdn
    REFERENCING NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.vdn_note_run_records()
;;
-- Backfill from the run records so far. Which VDNs are configured is not in the database
-- before this revision: every VDN with records or codes is taken as configured until the
-- next full run sets the flags from the configuration.
INSERT INTO {s}.vdn (vdn_id, configured, first_seen_at)
SELECT vdn_id, true, min(seen)
FROM (SELECT vdn_id, started_at AS seen FROM {s}.sync_run_vdn
      UNION ALL SELECT vdn_id, first_seen_at FROM {s}.result_code) AS known
GROUP BY vdn_id
;;
WITH records AS (
    SELECT r.vdn_id,
           max(r.finished_at) FILTER (WHERE r.status <> 'skipped') AS attempted,
           (array_agg(r.status ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1] AS status,
           (array_agg(r.error ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1] AS error,
           (array_agg(r.sync_run_id ORDER BY r.finished_at DESC, r.sync_run_id DESC)
                FILTER (WHERE r.status <> 'skipped'))[1] AS run,
           max(r.finished_at) FILTER (WHERE r.status = 'succeeded') AS succeeded
    FROM {s}.sync_run_vdn AS r GROUP BY r.vdn_id)
UPDATE {s}.vdn AS v
SET last_attempted_at = records.attempted, last_status = records.status,
    last_error = records.error, last_sync_run_id = records.run,
    last_succeeded_at = records.succeeded
FROM records WHERE records.vdn_id = v.vdn_id
;;
CREATE VIEW {s}.result_code_current AS
SELECT vdn_id, obs_code, obs_code_desc, first_seen_at, updated_at
FROM {s}.result_code
WHERE deleted_at IS NULL
;;
-- One row per change. A version that starts is 'new' (the code's first version),
-- 'changed' (its predecessor ends exactly where it starts) or 'restored' (its predecessor
-- ended earlier: the code was deleted in between); a version that ends with no successor
-- starting at that instant is 'removed'. Written with index lookups (not window functions)
-- so a filter on changed_at, vdn_id or obs_code is applied before the lookups.
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
-- Inlined by the planner (see the module docstring): keep it one plain SELECT, and never
-- add SECURITY DEFINER, SET, STRICT or VOLATILE. Versions never overlap, so at most one
-- row qualifies; the ORDER BY ... LIMIT 1 lets the index scan stop at the first one.
CREATE FUNCTION {s}.result_code_desc_at(vdn_id integer, obs_code text, at timestamptz)
RETURNS TABLE (obs_code_desc text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT h.obs_code_desc
    FROM {s}.result_code_history AS h
    WHERE h.vdn_id = $1 AND h.obs_code = $2 AND h.valid_from <= $3
      AND (h.valid_to IS NULL OR $3 < h.valid_to)
    ORDER BY h.valid_from DESC
    LIMIT 1
$$
"""

COMMENTS: dict[str, str] = {
    # -- tables and views
    "TABLE result_code": (
        "obs-sync: one row per OBS result code ever seen per VDN, with its current "
        "description (deleted_at NULL = present upstream). Never pruned."
    ),
    "TABLE result_code_history": (
        "obs-sync: one row per description version of a code, valid over the half-open "
        "interval [valid_from, valid_to). Never pruned."
    ),
    "TABLE sync_run": "obs-sync: one row per sync run (one-shot sync or daemon run). Never pruned.",
    "TABLE sync_run_vdn": (
        "obs-sync: one row per VDN of a sync run; rows older than "
        "sync.keep_run_records_days are pruned, except each VDN's newest succeeded row."
    ),
    "TABLE vdn": (
        "obs-sync: every VDN ever configured or synced, with whether it is configured now "
        "and its last attempt and success. Maintained by every run."
    ),
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
    "TRIGGER sync_run_vdn_note_vdn ON sync_run_vdn": (
        "obs-sync: keeps vdn.last_* current from the run records inserted."
    ),
    # -- result_code
    "COLUMN result_code.vdn_id": "The VDN (iSales vdnId). Primary key with obs_code.",
    "COLUMN result_code.obs_code": (
        "The result code exactly as iSales sends it (text: leading zeros kept, compared "
        "byte for byte). Primary key with vdn_id."
    ),
    "COLUMN result_code.obs_code_desc": (
        "The current description; for a deleted code (deleted_at set) the last description "
        "it had. Never NULL."
    ),
    "COLUMN result_code.first_seen_at": (
        "When obs-sync first stored the code (timestamptz, database clock). Never changes, "
        "also not on restore. Never NULL."
    ),
    "COLUMN result_code.updated_at": (
        "Start of the code's latest version: its insert, last description change or restore "
        "(timestamptz, database clock); not changed by a deletion. Never NULL."
    ),
    "COLUMN result_code.deleted_at": (
        "NULL while the code is present upstream; otherwise when a complete sync found it "
        "missing (timestamptz, database clock). Cleared when the code comes back."
    ),
    # -- result_code_history
    "COLUMN result_code_history.id": "Surrogate key of the version (identity).",
    "COLUMN result_code_history.vdn_id": "The VDN of the code.",
    "COLUMN result_code_history.obs_code": "The result code, exactly as iSales sends it.",
    "COLUMN result_code_history.obs_code_desc": (
        "The description during this version. Never NULL."
    ),
    "COLUMN result_code_history.valid_from": (
        "Start of the version, inclusive (timestamptz, database clock): when obs-sync "
        "observed the description, not when it was edited in iSales. Never NULL."
    ),
    "COLUMN result_code_history.valid_to": (
        "End of the version, exclusive (timestamptz, database clock). NULL = the current "
        "version. Equals the next version's valid_from after a change, or "
        "result_code.deleted_at after a deletion."
    ),
    "COLUMN result_code_history.sync_run_id": "The sync_run that opened this version.",
    "COLUMN result_code_history.closed_by_sync_run_id": (
        "The sync_run that closed this version; NULL while it is open (valid_to NULL)."
    ),
    # -- sync_run
    "COLUMN sync_run.id": "Run id (identity), referenced by sync_run_vdn and the history.",
    "COLUMN sync_run.started_at": "When the run started (timestamptz, database clock).",
    "COLUMN sync_run.finished_at": (
        "When the run finished (timestamptz, database clock); NULL while status = running."
    ),
    "COLUMN sync_run.status": (
        "running; succeeded; failed (some VDN failed, was incomplete or guarded); stopped "
        "(a stop request or the run deadline left VDNs unsynced); abandoned (its process "
        "died mid-run)."
    ),
    "COLUMN sync_run.trigger": (
        "What started the run: cli (obs-sync sync), schedule (the daemon), demo, ..."
    ),
    "COLUMN sync_run.hostname": "Host of the process that ran it; NULL if unknown.",
    "COLUMN sync_run.pid": "Process id of the run on that host; NULL if unknown.",
    "COLUMN sync_run.obs_sync_version": "obs-sync version that ran it; NULL if unknown.",
    "COLUMN sync_run.dry_run": "Always false: dry runs are not recorded.",
    "COLUMN sync_run.vdns": "Number of VDNs in the run (0 while running).",
    "COLUMN sync_run.succeeded": "VDNs with status succeeded (0 while running).",
    "COLUMN sync_run.failed": "VDNs with status failed (0 while running).",
    "COLUMN sync_run.incomplete": "VDNs with status incomplete (0 while running).",
    "COLUMN sync_run.guarded": "VDNs with status guarded (0 while running).",
    "COLUMN sync_run.skipped": "VDNs with status skipped (0 while running).",
    "COLUMN sync_run.inserted": "Codes inserted, all VDNs (0 while running).",
    "COLUMN sync_run.updated": "Codes whose description changed, all VDNs (0 while running).",
    "COLUMN sync_run.deleted": "Codes marked deleted, all VDNs (0 while running).",
    "COLUMN sync_run.restored": "Deleted codes that came back, all VDNs (0 while running).",
    "COLUMN sync_run.unchanged": "Codes fetched and unchanged, all VDNs (0 while running).",
    "COLUMN sync_run.error": "Why the whole run failed or was abandoned; NULL otherwise.",
    # -- sync_run_vdn
    "COLUMN sync_run_vdn.sync_run_id": "The run (sync_run.id). Primary key with vdn_id.",
    "COLUMN sync_run_vdn.vdn_id": "The VDN. Primary key with sync_run_id.",
    "COLUMN sync_run_vdn.status": (
        "succeeded (complete snapshot applied); incomplete (applied without deletions); "
        "guarded (deletions withheld by the mass-deletion guard); failed (nothing "
        "written); skipped (not synced by this run: another process had it, or a stop or "
        "the deadline came first)."
    ),
    "COLUMN sync_run_vdn.started_at": (
        "When the VDN's fetch started (timestamptz, database clock)."
    ),
    "COLUMN sync_run_vdn.finished_at": (
        "When the VDN was done (timestamptz, database clock): applied, failed or skipped."
    ),
    "COLUMN sync_run_vdn.pages": "Pages read from iSales for this VDN.",
    "COLUMN sync_run_vdn.requests": "HTTP requests made for this VDN, retries included.",
    "COLUMN sync_run_vdn.total_count": (
        "totalCount reported by iSales; NULL when no page was read (failed or skipped)."
    ),
    "COLUMN sync_run_vdn.inserted": "New codes inserted.",
    "COLUMN sync_run_vdn.updated": "Codes whose description changed.",
    "COLUMN sync_run_vdn.deleted": "Codes marked deleted.",
    "COLUMN sync_run_vdn.restored": "Deleted codes that came back.",
    "COLUMN sync_run_vdn.unchanged": "Codes fetched with the same description.",
    "COLUMN sync_run_vdn.withheld": "Deletions withheld by the mass-deletion guard.",
    "COLUMN sync_run_vdn.error": (
        "One-line reason for failed, incomplete, guarded and skipped; NULL when succeeded."
    ),
    # -- vdn
    "COLUMN vdn.vdn_id": "The VDN (iSales vdnId). Primary key.",
    "COLUMN vdn.configured": (
        "true when isales.vdn_ids lists it: set for every configured VDN at the start of "
        "each full run (a --vdn run sets it for its VDNs only); false once a full run finds "
        "it no longer configured."
    ),
    "COLUMN vdn.first_seen_at": (
        "When a run first had the VDN configured or recorded it (timestamptz, database "
        "clock). Never NULL."
    ),
    "COLUMN vdn.last_attempted_at": (
        "Finish of the latest run record of this VDN that was not skipped (timestamptz, "
        "database clock); NULL = never attempted."
    ),
    "COLUMN vdn.last_status": (
        "Status of that latest attempt: succeeded, failed, incomplete or guarded; NULL = "
        "never attempted."
    ),
    "COLUMN vdn.last_error": (
        "Error of that latest attempt; NULL when it succeeded or there was none."
    ),
    "COLUMN vdn.last_sync_run_id": "The run of that latest attempt; NULL = never attempted.",
    "COLUMN vdn.last_succeeded_at": (
        "Finish of the latest succeeded run record of this VDN (timestamptz, database "
        "clock): its data is complete as of then. NULL = never succeeded."
    ),
    # -- result_code_current
    "COLUMN result_code_current.vdn_id": "The VDN. Unique with obs_code.",
    "COLUMN result_code_current.obs_code": "The result code, exactly as iSales sends it.",
    "COLUMN result_code_current.obs_code_desc": "The current description. Never NULL.",
    "COLUMN result_code_current.first_seen_at": (
        "When obs-sync first stored the code (timestamptz, database clock)."
    ),
    "COLUMN result_code_current.updated_at": (
        "Since when the current description is valid (timestamptz, database clock): the "
        "current version's valid_from."
    ),
    # -- result_code_change
    "COLUMN result_code_change.vdn_id": "The VDN.",
    "COLUMN result_code_change.obs_code": "The result code.",
    "COLUMN result_code_change.kind": (
        "new: the code's first version; changed: its description changed; removed: a "
        "complete sync found it missing upstream; restored: it came back after a removal."
    ),
    "COLUMN result_code_change.old_desc": (
        "The description before the change: NULL for new; for restored, the description "
        "the code had when it was removed."
    ),
    "COLUMN result_code_change.new_desc": ("The description after the change; NULL for removed."),
    "COLUMN result_code_change.changed_at": (
        "When obs-sync observed the change (timestamptz, database clock): the new "
        "version's valid_from, or for removed the last version's valid_to."
    ),
    "COLUMN result_code_change.sync_run_id": "The sync_run that made the change.",
    "COLUMN result_code_change.history_id": (
        "The result_code_history row: the version opened (new, changed, restored) or "
        "closed (removed)."
    ),
}

DOWNGRADE = """
DROP FUNCTION {s}.result_code_desc_at(integer, text, timestamptz)
;;
DROP VIEW {s}.result_code_change
;;
DROP VIEW {s}.result_code_current
;;
DROP TRIGGER sync_run_vdn_note_vdn ON {s}.sync_run_vdn
;;
DROP FUNCTION {s}.vdn_note_run_records()
;;
DROP TABLE {s}.vdn
"""

# 0001's comments on its tables, restored by downgrade; its columns had none.
_0001_TABLE_COMMENTS = {
    "result_code": (
        "obs-sync: current OBS result codes per VDN (deleted_at NULL = present upstream)"
    ),
    "result_code_history": (
        "obs-sync: one row per description version, valid over [valid_from, valid_to)"
    ),
    "sync_run": "obs-sync: one row per sync run",
    "sync_run_vdn": "obs-sync: one row per VDN of a sync run",
}
_0001_COLUMNS = {
    name.split(" ", 1)[1]
    for name in COMMENTS
    if name.startswith("COLUMN ") and name.split(" ", 1)[1].split(".")[0] in _0001_TABLE_COMMENTS
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _qualify(target: str, s: str) -> str:
    """``TABLE x`` -> ``TABLE s.x``; ``COLUMN t.c`` -> ``COLUMN s.t.c``; ``TRIGGER n ON t``."""
    kind, _, name = target.partition(" ")
    if kind == "TRIGGER":
        trigger, _, table = name.partition(" ON ")
        return f"TRIGGER {trigger} ON {s}.{table}"
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
    _run(DOWNGRADE, s)
    for table, comment in _0001_TABLE_COMMENTS.items():
        op.execute(f"COMMENT ON TABLE {s}.{table} IS {_literal(comment)}")
    for column in sorted(_0001_COLUMNS):
        op.execute(f"COMMENT ON COLUMN {s}.{column} IS NULL")
