"""The store's SQL statements for one schema: written once, formatted with the quoted schema.

Parameters are in the DB-API ``%(name)s`` style; arrays go in binary format (``%(name)b``).
"""

from __future__ import annotations

from dataclasses import dataclass

from obs_sync.db.url import quote_identifier

# sync_run_vdn columns written per VDN (the parameter name "vdn" is VdnResult.vdn_id).
RECORD_COLUMNS = (
    ("source", "text"),
    ("vdn", "integer"),
    ("status", "text"),
    ("started_at", "timestamptz"),
    ("finished_at", "timestamptz"),
    ("pages", "integer"),
    ("requests", "integer"),
    ("total_count", "integer"),
    ("inserted", "integer"),
    ("updated", "integer"),
    ("deleted", "integer"),
    ("restored", "integer"),
    ("unchanged", "integer"),
    ("withheld", "integer"),
    ("relabelled", "integer"),
    ("error", "text"),
    ("skip_reason", "text"),
)


@dataclass(frozen=True)
class Statements:
    """Every statement the store runs, for one schema."""

    lock: str
    finish_baseline: str
    claim: str
    read: str
    read_locked: str
    lock_holder: str
    insert_codes: str
    update_codes: str
    delete_codes: str
    close_versions: str
    record: str
    record_applied: str
    start_run: str
    abandon: str
    finish_run: str
    next_run_id: str
    heartbeat: str
    relock: str
    finish_lost: str
    abort_run: str


def statements(schema: str) -> Statements:
    """The store's statements with ``{s}`` replaced by the quoted ``schema``."""
    s = quote_identifier(schema)

    def sql(statement: str) -> str:
        return statement.format(s=s)

    # The VDN's lock: its vdn_state row, FOR NO KEY UPDATE NOWAIT (held until the VDN's
    # transaction ends; a row lock needs UPDATE on the table, which a reader made by
    # grant-reader lacks). False when the VDN has no row yet: claim inserts it. Then the
    # database clock, and whether the VDN's initial load is still under way (migration 0009).
    lock = sql(
        "WITH l AS (SELECT baseline_done_at FROM {s}.vdn_state WHERE source = %(source)s::text "
        "AND vdn_id = %(vdn)s::int4 "
        "FOR NO KEY UPDATE NOWAIT) SELECT EXISTS (SELECT FROM l), clock_timestamp(), "
        "NOT EXISTS (SELECT FROM l WHERE baseline_done_at IS NOT NULL)"
    )
    # The VDN's first complete snapshot is applied: what it stores later are changes.
    finish_baseline = sql(
        "UPDATE {s}.vdn_state SET baseline_done_at = %(ts)s::timestamptz "
        "WHERE source = %(source)s::text AND vdn_id = %(vdn)s::int4 AND baseline_done_at IS NULL"
    )
    # A VDN's first write: its vdn_state row, inserted in the VDN's transaction (a
    # concurrent first writer waits on the key, at most database.lock_timeout_seconds);
    # no row back: another transaction inserted it first (lock it then).
    claim = sql(
        "INSERT INTO {s}.vdn_state (source, vdn_id, snapshot_started_at) VALUES ("
        "%(source)s::text, %(vdn)s::int4, %(started_at)s::timestamptz) "
        "ON CONFLICT (source, vdn_id) DO NOTHING RETURNING clock_timestamp()"
    )
    # The unlocked read; also the database clock, which keeps the store's estimate of it
    # fresh (one row of NULLs and the clock for a VDN without codes), and whether its
    # initial load is under way (through to_jsonb: a dry run may read a schema before 0009).
    read = sql(
        "SELECT obs_code, obs_code_desc, deleted_at IS NOT NULL, t.now, t.pending "
        "FROM (SELECT clock_timestamp(), NOT EXISTS (SELECT FROM {s}.vdn_state AS v "
        "WHERE v.source = %(source)s::text AND v.vdn_id = %(vdn)s::int4 "
        "AND to_jsonb(v) ->> 'baseline_done_at' IS NOT NULL)) AS t(now, pending) "
        "LEFT JOIN {s}.result_code ON source = %(source)s::text AND vdn_id = %(vdn)s::int4"
    )
    # Under the lock: also the latest change instant, so the VDN's new instant is later,
    # and when the fetch of the snapshot that wrote the current state began.
    read_locked = sql(
        "SELECT obs_code, obs_code_desc, deleted_at IS NOT NULL, "
        "greatest(updated_at, deleted_at), "
        "(SELECT snapshot_started_at FROM {s}.vdn_state WHERE source = %(source)s::text "
        "AND vdn_id = %(vdn)s::int4) "
        "FROM {s}.result_code WHERE source = %(source)s::text AND vdn_id = %(vdn)s::int4"
    )
    # The lock was not free: who holds it, and how many runs in a row found it held (lock
    # skips since the VDN's last result that was not one, or a superseded skip).
    lock_holder = sql(
        "SELECT h.pid, h.application_name, h.usename, h.state, (SELECT count(*) "
        " FROM {s}.sync_run_vdn AS v "
        " WHERE v.source = %(source)s::text AND v.vdn_id = %(vdn)s::int4 "
        " AND v.skip_reason = 'locked' AND v.finished_at > coalesce(("
        "  SELECT max(w.finished_at) FROM {s}.sync_run_vdn AS w "
        "  WHERE w.source = %(source)s::text AND w.vdn_id = %(vdn)s::int4 "
        "  AND (w.skip_reason IS NULL OR w.skip_reason = 'superseded')), '-infinity')) "
        "FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
        " SELECT a.pid, a.application_name, a.usename, a.state "
        " FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
        " WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted "
        " AND l.transactionid = (SELECT xmax FROM {s}.vdn_state "
        " WHERE source = %(source)s::text AND vdn_id = %(vdn)s::int4) "
        " LIMIT 1) AS h ON true"
    )
    # Arrays go in binary format (%b): psycopg dumps a text[] in text format with a
    # regular-expression escape per element, about 4x the client CPU (measured: 240 vs
    # 60 us for 2 x 120 strings).
    # Each statement that gives codes a description also opens their new version, from
    # its own RETURNING rows. New codes of the initial load (%(initial)s) are marked so;
    # with first_sync_as_baseline (%(baseline)s) their version is valid since ever.
    # Versions are closed first (close_versions): at most one open version per code is
    # enforced at every row.
    insert_codes = sql(
        "WITH new AS (INSERT INTO {s}.result_code (source, vdn_id, obs_code, obs_code_desc, "
        "first_seen_at, updated_at) SELECT %(source)s::text, %(vdn)s::int4, c, d, %(ts)s, "
        "%(ts)s FROM unnest(%(codes)b::text[], %(descs)b::text[]) AS u(c, d) "
        "RETURNING obs_code, obs_code_desc) "
        "INSERT INTO {s}.result_code_history (source, vdn_id, obs_code, obs_code_desc, "
        "valid_from, sync_run_id, initial) SELECT %(source)s::text, %(vdn)s::int4, obs_code, "
        "obs_code_desc, CASE WHEN %(baseline)s::boolean THEN '-infinity' "
        "ELSE %(ts)s::timestamptz END, %(run)s::int8, %(initial)s::boolean FROM new"
    )
    # Changed and restored codes: new description, present again, new version instant.
    update_codes = sql(
        "WITH changed AS (UPDATE {s}.result_code AS r SET obs_code_desc = u.d, "
        "updated_at = %(ts)s, deleted_at = NULL "
        "FROM unnest(%(codes)b::text[], %(descs)b::text[]) AS u(c, d) "
        "WHERE r.source = %(source)s::text AND r.vdn_id = %(vdn)s::int4 AND r.obs_code = u.c "
        "RETURNING r.obs_code, r.obs_code_desc) "
        "INSERT INTO {s}.result_code_history (source, vdn_id, obs_code, obs_code_desc, "
        "valid_from, sync_run_id, relabelled) SELECT %(source)s::text, %(vdn)s::int4, "
        "obs_code, obs_code_desc, %(ts)s, %(run)s::int8, %(relabelled)s::boolean "
        "FROM changed"
    )
    delete_codes = sql(
        "UPDATE {s}.result_code SET deleted_at = %(ts)s "
        "WHERE source = %(source)s::text AND vdn_id = %(vdn)s::int4 "
        "AND obs_code = ANY(%(codes)b::text[]) AND deleted_at IS NULL"
    )
    close_versions = sql(
        "UPDATE {s}.result_code_history SET valid_to = %(ts)s, "
        "closed_by_sync_run_id = %(run)s::int8 WHERE source = %(source)s::text "
        "AND vdn_id = %(vdn)s::int4 "
        "AND obs_code = ANY(%(codes)b::text[]) AND valid_to IS NULL"
    )
    # sync_run_vdn rows, one or many per statement (parallel arrays, one per column).
    record = sql(
        "INSERT INTO {s}.sync_run_vdn (sync_run_id, source, vdn_id, status, started_at, "
        "finished_at, pages, requests, total_count, inserted, updated, deleted, restored, "
        "unchanged, withheld, relabelled, error, skip_reason) SELECT %(run)s::int8, * FROM unnest("
        + ", ".join(f"%({name})b::{kind}[]" for name, kind in RECORD_COLUMNS)
        + ")"
    )
    # The record of a VDN that took its lock, in its transaction: its times from the
    # database clock around the change instant %(ts)s (started_at <= ts <= finished_at),
    # and, when it wrote (%(wrote)s), the instant its fetch began, in vdn_state.
    names = [name for name, _ in RECORD_COLUMNS]
    values = ", ".join(
        {
            "vdn": "%(vdn)s::int4",
            "source": "%(source)s::text",
            "started_at": "least(%(started_at)s::timestamptz, %(ts)s::timestamptz)",
            "finished_at": "greatest(clock_timestamp(), %(ts)s::timestamptz)",
        }.get(name, f"%({name})s::{kind}")
        for name, kind in RECORD_COLUMNS
    )
    record_applied = sql(
        "WITH mark AS (INSERT INTO {s}.vdn_state AS s (source, vdn_id, snapshot_started_at) "
        "SELECT %(source)s::text, %(vdn)s::int4, %(started_at)s::timestamptz "
        "WHERE %(wrote)s::boolean "
        "ON CONFLICT (source, vdn_id) DO UPDATE SET snapshot_started_at = "
        "greatest(s.snapshot_started_at, EXCLUDED.snapshot_started_at)), "
        # The language the VDN's descriptions are now in (docs/semantics.md, "Languages").
        "language AS (UPDATE {s}.vdn SET locale = %(locale)s::text "
        "WHERE source = %(source)s::text AND vdn_id = %(vdn)s::int4 "
        "AND locale IS DISTINCT FROM %(locale)s::text) "
        "INSERT INTO {s}.sync_run_vdn (sync_run_id, "
        + ", ".join("vdn_id" if name == "vdn" else name for name in names)
        + ") VALUES (%(run)s::int8, "
        + values
        + ") RETURNING started_at, finished_at"
    )
    # The id is drawn first and its liveness lock taken (try, never wait: any role can take
    # an advisory lock, so a key someone else holds is skipped, not waited for).
    next_run_id = sql(
        "SELECT id, pg_try_advisory_lock(%(cls)s::int4, (id %% 2147483647)::int4) "
        "FROM (SELECT nextval(pg_get_serial_sequence('{s}.sync_run', 'id')) AS id) AS n"
    )
    start_run = sql(
        "INSERT INTO {s}.sync_run (id, started_at, heartbeat_at, status, trigger, hostname, "
        "pid, obs_sync_version, dry_run, sources) OVERRIDING SYSTEM VALUE VALUES ("
        "%(id)s::int8, clock_timestamp(), clock_timestamp(), 'running', %(trigger)s, "
        "%(hostname)s, %(pid)s::int4, %(version)s, false, %(sources)s::text[]) "
        "RETURNING id, started_at"
    )
    # A 'running' run whose liveness lock no writer holds belongs to a process that is
    # gone, or that lost its database connection: it ended at its last heartbeat.
    abandon = sql(
        "UPDATE {s}.sync_run AS r SET status = 'abandoned', "
        "finished_at = greatest(r.started_at, least(coalesce(r.heartbeat_at, r.started_at), "
        "clock_timestamp())), error = CASE WHEN r.hostname = %(hostname)s "
        "AND r.pid = %(pid)s::int4 THEN %(lost)s ELSE %(error)s END "
        "WHERE r.status = 'running' AND r.id <> %(me)s::int8 AND NOT "
        + run_alive("r", "%(cls)s", "%(heartbeat)s")
        + " RETURNING r.id, r.hostname = %(hostname)s AND r.pid = %(pid)s::int4"
    )
    heartbeat = sql(
        "UPDATE {s}.sync_run SET heartbeat_at = clock_timestamp() "
        "WHERE id = %(run)s::int8 AND status = 'running'"
    )
    finish_run = sql(
        "UPDATE {s}.sync_run SET finished_at = clock_timestamp(), status = %(status)s, "
        "vdns = %(vdns)s::int4, succeeded = %(succeeded)s::int4, "
        "failed = %(failed)s::int4, incomplete = %(incomplete)s::int4, "
        "guarded = %(guarded)s::int4, skipped = %(skipped)s::int4, "
        "inserted = %(inserted)s::int8, updated = %(updated)s::int8, "
        "deleted = %(deleted)s::int8, restored = %(restored)s::int8, "
        "unchanged = %(unchanged)s::int8, error = %(error)s "
        "WHERE id = %(run)s::int8 RETURNING finished_at"
    )
    # The run's lock, taken again on a new connection after its own was lost.
    relock = "SELECT pg_try_advisory_lock(%(cls)s::int4, %(key)s::int4)"
    # Closing a run whose own connection was lost (a fresh one: the lock went with it).
    finish_lost = finish_run.replace(
        "WHERE id = %(run)s::int8", "WHERE id = %(run)s::int8 AND status = 'running'"
    )
    # A run aborted at once: failed, its counts from the VDN records committed so far.
    counted = ", ".join(
        f"{name} = (SELECT count(*) FROM {{s}}.sync_run_vdn WHERE sync_run_id = r.id "
        f"AND status = '{name}')"
        for name in ("succeeded", "failed", "incomplete", "guarded", "skipped")
    )
    summed = ", ".join(
        f"{name} = (SELECT coalesce(sum({name}), 0) FROM {{s}}.sync_run_vdn "
        "WHERE sync_run_id = r.id)"
        for name in ("inserted", "updated", "deleted", "restored", "unchanged")
    )
    abort_run = sql(
        "UPDATE {s}.sync_run AS r SET status = 'failed', finished_at = clock_timestamp(), "
        "error = %(error)s, vdns = (SELECT count(*) FROM {s}.sync_run_vdn "
        f"WHERE sync_run_id = r.id), {counted}, {summed} "
        "WHERE r.id = %(run)s::int8 AND r.status = 'running'"
    )
    return Statements(
        lock=lock,
        finish_baseline=finish_baseline,
        claim=claim,
        read=read,
        read_locked=read_locked,
        lock_holder=lock_holder,
        insert_codes=insert_codes,
        update_codes=update_codes,
        delete_codes=delete_codes,
        close_versions=close_versions,
        record=record,
        record_applied=record_applied,
        start_run=start_run,
        abandon=abandon,
        finish_run=finish_run,
        next_run_id=next_run_id,
        heartbeat=heartbeat,
        relock=relock,
        finish_lost=finish_lost,
        abort_run=abort_run,
    )


def run_alive(run: str, cls: str, heartbeat: str) -> str:
    """SQL: true while sync_run row ``run`` may still be running: its process holds its
    liveness lock (the session-level advisory lock ``(cls, id mod 2^31-1)``), or its last
    heartbeat is younger than two heartbeat intervals (``heartbeat``: SQL of the seconds;
    a run whose connection was lost takes its lock again at its next beat). ``cls``: the
    SQL of the lock's class.

    Any role can take an advisory lock, so only a holder that may write the run records
    (UPDATE on sync_run, which a reader made by ``grant-reader`` lacks) counts: a reader
    cannot make a dead run look alive. Readers (status, verify, the daemon) use it too: no
    ``%`` in it, so it fits any paramstyle.
    """
    return (
        # heartbeat_at through to_jsonb: a schema before migration 0005 has no such column.
        f"(coalesce((to_jsonb({run}) ->> 'heartbeat_at')::timestamptz, {run}.started_at) "
        "> clock_timestamp() - "
        f"make_interval(secs => 2 * ({heartbeat})::float8) OR "
        "EXISTS (SELECT 1 FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND l.classid::bigint = {cls}::int8 "
        f"AND l.objid::bigint = mod({run}.id, 2147483647) "
        "AND l.objsubid = 2 AND a.usesysid IS NOT NULL "
        f"AND has_table_privilege(a.usesysid, {run}.tableoid, 'UPDATE')))"
    )
