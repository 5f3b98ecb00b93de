"""The stored history's integrity checks (``obs-sync verify``): read-only SQL.

Every check is one SQL query over one snapshot (a ``REPEATABLE READ, READ ONLY``
transaction), so a sync running meanwhile cannot produce false findings, and a role with
SELECT only (``obs-sync db grant-reader``) can run it. The rules are docs/semantics.md's;
docs/operations.md says what to do about each finding.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from obs_sync.db.url import quote_identifier
from obs_sync.errors import ObsSyncError, UsageError
from obs_sync.results import DEFAULT_SOURCE
from obs_sync.store.code_list_integrity import list_findings
from obs_sync.store.locks import lock_class
from obs_sync.store.sql import run_alive
from obs_sync.text import id_ranges

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine


__all__ = [
    "CHECKS",
    "Finding",
    "UnknownVdnError",
    "VerifyError",
    "present_codes",
    "verify_database",
]


@dataclass(frozen=True)
class Finding:
    vdn_id: int
    obs_code: str | None  # None: about the VDN (a run record, the registry)
    check: str
    detail: str
    source: str = DEFAULT_SOURCE  # (the dead-run check: about the runs, default)

    def sort_key(self) -> tuple[str, int, str, str, str]:
        return (self.source, self.vdn_id, self.obs_code or "", self.check, self.detail)


class VerifyError(ObsSyncError):
    """The schema cannot be verified (no obs-sync tables, too old); the message says why."""


class UnknownVdnError(UsageError):
    """``--vdn`` named a VDN obs-sync knows nothing of: neither configured nor stored."""


# check name -> SQL returning (source, vdn_id, obs_code, detail). {s}: the schema;
# %(vdns)s, %(sources)s: the VDNs and sources to check (NULL: all); %(keep_days)s:
# sync.keep_run_records_days (0: keep all).
CHECKS: dict[str, str] = {
    # A present code has exactly one open version; a deleted one has none.
    "open-version": """
        SELECT r.source, r.vdn_id, r.obs_code,
               CASE WHEN r.deleted_at IS NULL
                    THEN 'present code has ' || count(h.id) || ' open versions, expected 1'
                    ELSE 'deleted code has ' || count(h.id) || ' open versions, expected 0'
               END
        FROM {s}.result_code AS r
        LEFT JOIN {s}.result_code_history AS h
               ON h.source = r.source AND h.vdn_id = r.vdn_id AND h.obs_code = r.obs_code
              AND h.valid_to IS NULL
        WHERE {vdn_filter_r}
        GROUP BY r.source, r.vdn_id, r.obs_code, r.deleted_at
        HAVING count(h.id) <> CASE WHEN r.deleted_at IS NULL THEN 1 ELSE 0 END""",
    # Versions of one code never overlap.
    "overlap": """
        SELECT a.source, a.vdn_id, a.obs_code,
               'versions ' || a.id || ' [' || a.valid_from || ', ' ||
               coalesce(a.valid_to::text, 'open') || ') and ' || b.id || ' [' ||
               b.valid_from || ', ' || coalesce(b.valid_to::text, 'open') || ') overlap'
        FROM {s}.result_code_history AS a
        JOIN {s}.result_code_history AS b
          ON b.source = a.source AND b.vdn_id = a.vdn_id AND b.obs_code = a.obs_code
         AND b.id > a.id
         AND b.valid_from < coalesce(a.valid_to, 'infinity')
         AND a.valid_from < coalesce(b.valid_to, 'infinity')
        WHERE {vdn_filter_a}""",
    # Consecutive versions: a change changes the description (no version repeats its
    # predecessor's description at the same instant).
    "redundant-version": """
        SELECT source, vdn_id, obs_code,
               'version ' || id || ' starts where version ' || prev_id ||
               ' ends with the same description'
        FROM (SELECT h.*, lag(h.id) OVER w AS prev_id, lag(h.valid_to) OVER w AS prev_to,
                     lag(h.obs_code_desc) OVER w AS prev_desc
              FROM {s}.result_code_history AS h WHERE {vdn_filter_h}
              WINDOW w AS (PARTITION BY h.source, h.vdn_id, h.obs_code ORDER BY h.valid_from)) AS x
        WHERE prev_to = valid_from AND prev_desc = obs_code_desc""",
    # result_code agrees with the versions: the open version is the current description
    # since updated_at; a deleted code's last version ends at deleted_at; the first
    # version starts at first_seen_at (or at -infinity: first_sync_as_baseline, when it
    # was stored at first_seen_at).
    "current-mismatch": """
        SELECT r.source, r.vdn_id, r.obs_code, concat_ws('; ',
            CASE WHEN r.deleted_at IS NULL AND o.id IS NOT NULL
                  AND o.obs_code_desc IS DISTINCT FROM r.obs_code_desc
                 THEN 'result_code.obs_code_desc differs from the open version ' || o.id END,
            CASE WHEN r.deleted_at IS NULL AND o.id IS NOT NULL
                  AND {o_start} IS DISTINCT FROM r.updated_at
                 THEN 'updated_at ' || r.updated_at || ' but the open version starts ' ||
                      o.valid_from END,
            CASE WHEN r.deleted_at IS NOT NULL AND f.last_to IS DISTINCT FROM r.deleted_at
                 THEN 'deleted_at ' || r.deleted_at || ' but the last version ends ' ||
                      coalesce(f.last_to::text, 'never') END,
            CASE WHEN {f_start} IS DISTINCT FROM r.first_seen_at
                 THEN 'first_seen_at ' || r.first_seen_at || ' but the first version starts ' ||
                      coalesce(f.first_from::text, 'never (no versions)') END)
        FROM {s}.result_code AS r
        LEFT JOIN {s}.result_code_history AS o
               ON o.source = r.source AND o.vdn_id = r.vdn_id AND o.obs_code = r.obs_code
              AND o.valid_to IS NULL
              AND r.deleted_at IS NULL
        LEFT JOIN LATERAL (
            SELECT min(h.valid_from) AS first_from, max(h.valid_to) AS last_to
            FROM {s}.result_code_history AS h
            WHERE h.source = r.source AND h.vdn_id = r.vdn_id
              AND h.obs_code = r.obs_code) AS f ON true
        WHERE {vdn_filter_r}
          AND ((r.deleted_at IS NULL AND o.id IS NOT NULL
                AND (o.obs_code_desc IS DISTINCT FROM r.obs_code_desc
                     OR {o_start} IS DISTINCT FROM r.updated_at))
               OR (r.deleted_at IS NOT NULL AND f.last_to IS DISTINCT FROM r.deleted_at)
               OR {f_start} IS DISTINCT FROM r.first_seen_at)""",
    # Every version belongs to a code of result_code.
    "orphan-version": """
        SELECT h.source, h.vdn_id, h.obs_code, 'version ' || h.id || ' has no result_code row'
        FROM {s}.result_code_history AS h
        WHERE {vdn_filter_h} AND NOT EXISTS (
            SELECT FROM {s}.result_code AS r
            WHERE r.source = h.source AND r.vdn_id = h.vdn_id AND r.obs_code = h.obs_code)""",
    # A version starts (and ends) within the run that opened (closed) it; one valid since
    # ever (first_sync_as_baseline) ends there.
    "run-time": """
        SELECT h.source, h.vdn_id, h.obs_code, concat_ws('; ',
            CASE WHEN {h_late} THEN 'version ' || h.id || ' starts ' || h.valid_from ||
                 ', outside its run ' || o.id || ' [' || o.started_at || ', ' ||
                 coalesce(o.finished_at::text, 'running') || ']' END,
            CASE WHEN h.valid_to < c.started_at OR h.valid_to > coalesce(c.finished_at,
                      'infinity') THEN 'version ' || h.id || ' ends ' || h.valid_to ||
                 ', outside its closing run ' || c.id || ' [' || c.started_at || ', ' ||
                 coalesce(c.finished_at::text, 'running') || ']' END)
        FROM {s}.result_code_history AS h
        JOIN {s}.sync_run AS o ON o.id = h.sync_run_id
        LEFT JOIN {s}.sync_run AS c ON c.id = h.closed_by_sync_run_id
        WHERE {vdn_filter_h}
          AND ({h_late}
               OR h.valid_to < c.started_at
               OR h.valid_to > coalesce(c.finished_at, 'infinity'))""",
    # Each VDN's changes commit with its run record: a run that changed a VDN has its
    # record (unless retention pruned it: runs older than sync.keep_run_records_days), with
    # a status that writes and the same counts as the changes in the history.
    "run-record": """
        WITH changes AS (
            SELECT sync_run_id, source, vdn_id,
                   count(*) FILTER (WHERE kind = 'new') AS inserted,
                   count(*) FILTER (WHERE kind = 'changed') AS updated,
                   count(*) FILTER (WHERE kind = 'removed') AS deleted,
                   count(*) FILTER (WHERE kind = 'restored') AS restored
            FROM {s}.result_code_change AS ch WHERE {vdn_filter_ch}
            GROUP BY sync_run_id, source, vdn_id)
        SELECT coalesce(c.source, v.source), coalesce(c.vdn_id, v.vdn_id), NULL::text,
               CASE WHEN v.sync_run_id IS NULL
                    THEN 'run ' || c.sync_run_id || ' changed codes (' ||
                         c.inserted || ' new, ' || c.updated || ' changed, ' || c.deleted ||
                         ' removed, ' || c.restored || ' restored) but has no record of the VDN'
                    WHEN v.status NOT IN ('succeeded', 'incomplete', 'guarded')
                         AND coalesce(c.inserted + c.updated + c.deleted + c.restored, 0) > 0
                    THEN 'run ' || v.sync_run_id || ' recorded the VDN as ' || v.status ||
                         ' (writes nothing) but changed codes'
                    ELSE 'run ' || v.sync_run_id || ' recorded ' || v.inserted || ' new, ' ||
                         v.updated || ' changed, ' || v.deleted || ' removed, ' ||
                         v.restored || ' restored; the history shows ' ||
                         coalesce(c.inserted, 0) || ', ' || coalesce(c.updated, 0) || ', ' ||
                         coalesce(c.deleted, 0) || ', ' || coalesce(c.restored, 0)
               END
        FROM changes AS c
        FULL JOIN (SELECT * FROM {s}.sync_run_vdn AS rv WHERE {vdn_filter_rv}) AS v
               ON v.sync_run_id = c.sync_run_id AND v.source = c.source AND v.vdn_id = c.vdn_id
        LEFT JOIN {s}.sync_run AS r ON r.id = coalesce(c.sync_run_id, v.sync_run_id)
        WHERE (v.sync_run_id IS NULL
               AND (%(keep_days)s = 0
                    OR r.started_at > now() - %(keep_days)s * interval '1 day'))
           OR (v.sync_run_id IS NOT NULL
               AND (coalesce(c.inserted, 0), coalesce(c.updated, 0), coalesce(c.deleted, 0),
                    coalesce(c.restored, 0))
                   <> (CASE WHEN v.status IN ('succeeded', 'incomplete', 'guarded')
                            THEN v.inserted ELSE 0 END,
                       CASE WHEN v.status IN ('succeeded', 'incomplete', 'guarded')
                            THEN v.updated ELSE 0 END,
                       CASE WHEN v.status IN ('succeeded', 'incomplete', 'guarded')
                            THEN v.deleted ELSE 0 END,
                       CASE WHEN v.status IN ('succeeded', 'incomplete', 'guarded')
                            THEN v.restored ELSE 0 END))""",
    # A run recorded running whose process is gone: no session that may write the run
    # records holds its liveness lock (VDN 0: about the runs). heartbeat_at via to_jsonb:
    # absent before migration 0005.
    "dead-run": """
        SELECT NULL::text, 0, NULL::text,
               'run ' || r.id || ' (host ' || coalesce(r.hostname, '?') ||
               ', pid ' || coalesce(r.pid::text, '?') || ') is recorded running but its ' ||
               'process is gone (no obs-sync session holds its liveness lock): it ended at ' ||
               'its last heartbeat ' || coalesce(to_jsonb(r) ->> 'heartbeat_at',
               r.started_at::text) || '; VDNs without a record of it were not applied; ' ||
               'the next run marks it abandoned'
        FROM {s}.sync_run AS r
        WHERE r.status = 'running' AND NOT """
    + run_alive("r", "%(run_cls)s", "%(heartbeat)s"),
    # The registry knows every VDN with records or codes, and its last success agrees
    # with the run records (each VDN's newest succeeded record is never pruned).
    "registry": """
        SELECT k.source, k.vdn_id, NULL::text,
               CASE WHEN g.vdn_id IS NULL THEN 'VDN has codes or run records but no vdn row'
                    ELSE 'vdn.last_succeeded_at ' || coalesce(g.last_succeeded_at::text, 'NULL')
                         || ' but its newest succeeded run record finished ' ||
                         coalesce(k.succeeded::text, 'never') END
        FROM (SELECT source, vdn_id, max(succeeded) AS succeeded FROM (
                  SELECT source, vdn_id, max(finished_at) FILTER (WHERE status = 'succeeded')
                         AS succeeded
                  FROM {s}.sync_run_vdn GROUP BY source, vdn_id
                  UNION ALL SELECT DISTINCT source, vdn_id, NULL::timestamptz
                  FROM {s}.result_code
              ) AS u GROUP BY source, vdn_id) AS k
        LEFT JOIN {s}.vdn AS g ON g.source = k.source AND g.vdn_id = k.vdn_id
        WHERE {vdn_filter_k}
          AND (g.vdn_id IS NULL OR g.last_succeeded_at IS DISTINCT FROM k.succeeded)""",
}


def _vdn_filter(alias: str) -> str:
    return (
        f"(%(vdns)s::int4[] IS NULL OR {alias}.vdn_id = ANY(%(vdns)s::int4[])) AND "
        f"(%(sources)s::text[] IS NULL OR {alias}.source = ANY(%(sources)s::text[]))"
    )


_FILTERS = {f"vdn_filter_{alias}": _vdn_filter(alias) for alias in ("r", "a", "h", "ch", "rv", "k")}
# A version valid since ever (first_sync_as_baseline, migration 0009) was stored when its
# code was first seen: that instant stands in for its start where times are compared.
_FILTERS.update(
    o_start="CASE WHEN o.valid_from = '-infinity' THEN r.first_seen_at ELSE o.valid_from END",
    f_start="CASE WHEN f.first_from = '-infinity' THEN r.first_seen_at ELSE f.first_from END",
    h_late="h.valid_from <> '-infinity' AND (h.valid_from < o.started_at "
    "OR h.valid_from > coalesce(o.finished_at, 'infinity'))",
)
_REQUIRED = ("result_code", "result_code_history", "sync_run", "sync_run_vdn", "vdn")


def verify_database(
    engine: Engine | str,
    schema: str,
    *,
    keep_days: float = 90,
    vdn_ids: Sequence[int] | None = None,
    configured: Collection[int] = (),
    heartbeat_seconds: float = 5,
    sources: Sequence[str] | None = None,
) -> list[Finding]:
    """Every finding of :data:`CHECKS` (sorted), read in one read-only snapshot.

    ``vdn_ids`` that are neither ``configured`` nor stored (no registry entry, codes or run
    records) raise :class:`UnknownVdnError`: "every check holds" would be said of nothing.
    ``sources``: only these sources' VDNs (None: every source).
    """
    from sqlalchemy import create_engine  # heavy: only verify pays

    own = isinstance(engine, str)
    if isinstance(engine, str):
        engine = create_engine(engine)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            _require_tables(connection, schema)
            if vdn_ids is not None:
                _require_known(connection, schema, vdn_ids, configured)
            findings = sorted(
                _run_checks(connection, schema, keep_days, vdn_ids, heartbeat_seconds, sources),
                key=Finding.sort_key,
            )
            connection.rollback()
    finally:
        if own:
            engine.dispose()
    return findings


def _require_tables(connection: Connection, schema: str) -> None:
    missing = [
        table
        for table in _REQUIRED
        if connection.exec_driver_sql(
            "SELECT to_regclass(%(name)s)",
            {"name": f"{quote_identifier(schema)}.{quote_identifier(table)}"},
        ).scalar()
        is None
    ]
    if missing:
        raise VerifyError(
            f"schema {schema} lacks {', '.join(missing)}: not an obs-sync schema at the current "
            "migration; run `obs-sync db upgrade` (or check database.schema)"
        )


def _require_known(
    connection: Connection, schema: str, vdn_ids: Sequence[int], configured: Collection[int]
) -> None:
    asked = sorted(set(vdn_ids) - set(configured))
    if not asked:
        return
    s = quote_identifier(schema)
    stored = {
        int(row[0])
        for row in connection.exec_driver_sql(
            f"SELECT vdn_id FROM {s}.vdn WHERE vdn_id = ANY(%(vdns)s::int4[]) "
            f"UNION SELECT vdn_id FROM {s}.result_code WHERE vdn_id = ANY(%(vdns)s::int4[]) "
            f"UNION SELECT vdn_id FROM {s}.sync_run_vdn WHERE vdn_id = ANY(%(vdns)s::int4[])",
            {"vdns": asked},
        )
    }
    unknown = [vdn for vdn in asked if vdn not in stored]
    if unknown:
        which = "VDN" if len(unknown) == 1 else "VDNs"
        raise UnknownVdnError(
            f"--vdn {id_ranges(unknown)}: {which} neither configured nor stored in "
            f"schema {schema}, so there is nothing to verify: check the id (`obs-sync status` "
            "lists the VDNs obs-sync knows)"
        )


def _run_checks(
    connection: Connection,
    schema: str,
    keep_days: float,
    vdn_ids: Sequence[int] | None,
    heartbeat_seconds: float,
    sources: Sequence[str] | None = None,
) -> Iterable[Finding]:
    params: dict[str, Any] = {
        "vdns": list(vdn_ids) if vdn_ids is not None else None,
        "sources": list(sources) if sources is not None else None,
        "keep_days": keep_days,
        "run_cls": lock_class(schema, "run"),
        "heartbeat": heartbeat_seconds,
    }
    for name, sql in CHECKS.items():
        statement = sql.format(s=quote_identifier(schema), **_FILTERS)
        for source, vdn_id, code, detail in connection.exec_driver_sql(statement, params):
            yield Finding(int(vdn_id), code, name, str(detail), source or DEFAULT_SOURCE)
    for source, vdn_id, what, name, detail in list_findings(connection, schema, params):
        yield Finding(vdn_id, what, name, detail, source)  # display and business results


def present_codes(
    engine: Engine, schema: str, vdn_id: int, source: str = DEFAULT_SOURCE
) -> dict[str, str]:
    """One VDN's present codes (obs_code -> description), read in one read-only snapshot:
    what ``verify --upstream`` compares with a fresh fetch."""
    with engine.connect() as connection:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        stored: dict[str, str] = dict(
            connection.exec_driver_sql(
                f"SELECT obs_code, obs_code_desc FROM {quote_identifier(schema)}.result_code "
                "WHERE source = %(source)s AND vdn_id = %(vdn)s AND deleted_at IS NULL",
                {"vdn": vdn_id, "source": source},
            ).all()
        )
        connection.rollback()
    return stored
