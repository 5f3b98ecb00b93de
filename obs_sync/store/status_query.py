"""``obs-sync status``: recent runs and each VDN's freshness, read from the run records
(printed by :mod:`obs_sync.commands.status`; the daemon reads it to seed health and metrics).
The same per-VDN query, keyed by list too, reads each other code list's freshness and
streak from ``sync_run_code_list`` (its index (source, vdn_id, code_list, finished_at)).

Two read-only queries: the last runs with their per-status VDN counts, and per configured
VDN its last success, its last result that was not ``skipped``, the current failure streak
(failed / incomplete / guarded results since that success; ``skipped`` does not count) with
its first failure, and the latest error *of that streak*: empty when the VDN is healthy (an
error from an earlier, ended streak is in ``sync_run_vdn`` but not shown).

Cost: every per-VDN value is a lookup on the index (vdn_id, finished_at), reading
backwards from the newest row or forwards from the last success, so a healthy VDN costs a
few index probes however long its history. A failing VDN costs in proportion to its
current streak (the streak is counted; "last success" is found by reading back through
it), never to the rest of its history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from obs_sync.code_lists import ListKey
from obs_sync.db.migrate import known_revisions
from obs_sync.errors import ObsSyncError, one_line
from obs_sync.results import DEFAULT_SOURCE, FAILING_SQL, VdnKey
from obs_sync.store.locks import lock_class
from obs_sync.store.sql import run_alive

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class RunRow:
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    trigger: str | None
    vdns: int
    succeeded: int
    failed: int  # failed + incomplete + guarded
    skipped: int
    inserted: int
    updated: int
    deleted: int
    restored: int


@dataclass(frozen=True)
class VdnRow:
    vdn_id: int
    last_success: datetime | None
    last_status: str | None
    last_attempt: datetime | None
    streak: int
    failing_since: datetime | None
    last_error: str | None
    # The server's totalCount at the last result when that succeeded (0: an empty VDN).
    last_total_count: int | None = None
    source: str = DEFAULT_SOURCE  # the configured source the VDN belongs to


@dataclass(frozen=True)
class ListStreakRow(VdnRow):
    """One other code list of one VDN: the same values, from ``sync_run_code_list``."""

    code_list: str = ""


@dataclass(frozen=True)
class Status:
    runs: list[RunRow]
    vdns: list[VdnRow]
    now: datetime
    # Said before the tables (and as "warnings" in JSON): e.g. a schema from a newer obs-sync.
    warnings: list[str] = field(default_factory=list)
    # The code lists asked for (read_status(code_lists=...)); none before migration 0007.
    code_lists: list[ListStreakRow] = field(default_factory=list)


class StatusError(ObsSyncError):
    """Nothing to show yet, or the database cannot be read; the message says why."""


_ALIVE = run_alive("r", "CAST(:run_cls AS int8)", ":heartbeat")


def _runs_sql(schema: str) -> str:
    # A run recorded running whose process is gone (no writer holds its liveness lock) is
    # shown abandoned at once, ended at its last heartbeat: no later run needs to mark it.
    # heartbeat_at read through to_jsonb: a schema before migration 0005 has none.
    return f"""
        SELECT r.id, r.started_at,
               CASE WHEN d.dead THEN greatest(r.started_at, coalesce(
                   (to_jsonb(r) ->> 'heartbeat_at')::timestamptz, r.started_at))
                    ELSE r.finished_at END,
               CASE WHEN d.dead THEN 'abandoned' ELSE r.status END,
               r.trigger, c.*
        FROM (SELECT s.*, s.tableoid FROM {schema}.sync_run AS s
              ORDER BY s.id DESC LIMIT :limit) AS r
        CROSS JOIN LATERAL (
            SELECT r.status = 'running' AND NOT {_ALIVE} AS dead) AS d
        CROSS JOIN LATERAL (
            SELECT count(v.vdn_id),
                   count(*) FILTER (WHERE v.status = 'succeeded'),
                   count(*) FILTER (WHERE v.status IN {FAILING_SQL}),
                   count(*) FILTER (WHERE v.status = 'skipped'),
                   coalesce(sum(v.inserted), 0), coalesce(sum(v.updated), 0),
                   coalesce(sum(v.deleted), 0), coalesce(sum(v.restored), 0)
            FROM {schema}.sync_run_vdn AS v WHERE v.sync_run_id = r.id) AS c
        ORDER BY r.id DESC
    """


# Every lateral reads the index (source, vdn_id[, code_list], finished_at) from one end and
# stops early: "ORDER BY finished_at DESC LIMIT 1" is a backward index scan (finished_at is
# NOT NULL, so no NULLS LAST, which would sort the VDN's whole history). A healthy VDN's last
# result is its last success, so the other laterals run only when that result failed (their
# WHERE starts with a condition on the outer row, which PostgreSQL checks once, before any
# scan): the last success, then the streak since it. The last result's own error is the
# latest one, so the streak is searched for an error only when that result has none.
def _streaks_sql(schema: str, table: str, keys: dict[str, tuple[str, str]]) -> str:
    """Per key (``keys``: column -> its SQL type and the parameter holding its array), from
    ``table``: the columns of :class:`VdnRow` (``vdn_id`` first, ``source`` last), then the
    key's other columns."""
    failing = FAILING_SQL
    arrays = ", ".join(f"CAST(:{param} AS {kind}[])" for kind, param in keys.values())
    columns = ", ".join(keys)
    same = " AND ".join(f"v.{column} = c.{column}" for column in keys)
    extra = "".join(f", c.{column}" for column in keys if column not in ("source", "vdn_id"))
    order = ", ".join(f"c.{column}" for column in keys)
    return f"""
        SELECT c.vdn_id,
               CASE WHEN last.status = 'succeeded' THEN last.finished_at ELSE ok.finished_at END,
               last.status, last.finished_at, coalesce(f.streak, 0), f.since,
               CASE WHEN last.status IN {failing} THEN coalesce(last.error, e.error) END,
               CASE WHEN last.status = 'succeeded' THEN last.total_count END, c.source{extra}
        FROM unnest({arrays}) AS c({columns})
        LEFT JOIN LATERAL (
            SELECT v.status, v.finished_at, v.error, v.total_count
            FROM {schema}.{table} AS v
            WHERE {same} AND v.status <> 'skipped'
            ORDER BY v.finished_at DESC LIMIT 1
        ) AS last ON true
        LEFT JOIN LATERAL (
            SELECT v.finished_at FROM {schema}.{table} AS v
            WHERE last.status IN {failing}
              AND {same} AND v.status = 'succeeded'
            ORDER BY v.finished_at DESC LIMIT 1
        ) AS ok ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS streak, min(v.finished_at) AS since
            FROM {schema}.{table} AS v
            WHERE last.status IN {failing}
              AND {same}
              AND v.finished_at > coalesce(ok.finished_at, '-infinity')
              AND v.status IN {failing}
        ) AS f ON true
        LEFT JOIN LATERAL (
            SELECT v.error FROM {schema}.{table} AS v
            WHERE last.status IN {failing} AND last.error IS NULL
              AND {same}
              AND v.finished_at > coalesce(ok.finished_at, '-infinity')
              AND v.status IN {failing} AND v.error IS NOT NULL
            ORDER BY v.finished_at DESC LIMIT 1
        ) AS e ON true
        ORDER BY {order}
    """


_VDN_KEYS = {"source": ("text", "sources"), "vdn_id": ("integer", "vdns")}
_LIST_KEYS = {**_VDN_KEYS, "code_list": ("text", "code_lists")}


def _vdns_sql(schema: str) -> str:
    return _streaks_sql(schema, "sync_run_vdn", _VDN_KEYS)


def _lists_sql(schema: str) -> str:
    return _streaks_sql(schema, "sync_run_code_list", _LIST_KEYS)


_TABLES_SQL = """
    SELECT to_regclass(:run) IS NOT NULL AND to_regclass(:vdn) IS NOT NULL,
           coalesce(has_table_privilege(to_regclass(:version), 'SELECT'), false),
           to_regclass(:lists) IS NOT NULL
"""


def _schema_warnings(schema: str, revision: str | None) -> list[str]:
    known = known_revisions()
    if revision is None or revision in known:
        return []
    return [
        f"schema {schema} is at migration {revision}, which this obs-sync version does not "
        f"know (its newest is {known[-1]}): a newer obs-sync migrated it, so anything it added "
        "is not shown; upgrade obs-sync"
    ]


def read_status(
    engine: Engine,
    schema: str,
    vdn_ids: Sequence[VdnKey | int],
    *,
    limit: int = 10,
    heartbeat_seconds: float = 5,
    code_lists: Sequence[ListKey] = (),
) -> Status:
    """Recent runs (one whose process is gone shown ``abandoned``, ended at its last
    heartbeat; ``heartbeat_seconds``: sync.heartbeat_seconds) and each VDN's freshness.

    ``vdn_ids``: (source, vdn_id) keys, or plain ids (of the source default);
    ``code_lists``: (source, vdn_id, code_list) keys whose freshness to read too."""
    keys = [key if isinstance(key, tuple) else (DEFAULT_SOURCE, key) for key in vdn_ids]
    with engine.connect() as connection:
        quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
        tables, versioned, has_lists = connection.execute(
            text(_TABLES_SQL),
            {
                "run": f"{quoted}.sync_run",
                "vdn": f"{quoted}.sync_run_vdn",
                "version": f"{quoted}.alembic_version",
                "lists": f"{quoted}.sync_run_code_list",
            },
        ).one()
        if not tables:
            raise StatusError(
                f"schema {schema} has no obs-sync tables: run `obs-sync sync` "
                "(or `obs-sync db upgrade`) first"
            )
        revision = (
            connection.execute(text(f"SELECT version_num FROM {quoted}.alembic_version")).scalar()
            if versioned
            else None
        )
        warnings = _schema_warnings(schema, revision)
        # Each lateral is a few index probes, but the planner's estimates for 10,000 VDNs
        # pass JIT's threshold, and compiling would cost more than the query itself.
        connection.execute(text("SET LOCAL jit = off"))
        try:
            runs = [
                RunRow(*row)
                for row in connection.execute(
                    text(_runs_sql(quoted)),
                    {
                        "limit": limit,
                        "run_cls": lock_class(schema, "run"),
                        "heartbeat": heartbeat_seconds,
                    },
                )
            ]
            vdns = [
                VdnRow(*row)
                for row in connection.execute(
                    text(_vdns_sql(quoted)),
                    {"sources": [k[0] for k in keys], "vdns": [k[1] for k in keys]},
                )
            ]
            lists: list[ListStreakRow] = []
            if code_lists and has_lists:  # sync_run_code_list: since migration 0007
                lists = [
                    ListStreakRow(*row)
                    for row in connection.execute(
                        text(_lists_sql(quoted)),
                        {
                            "sources": [k[0] for k in code_lists],
                            "vdns": [k[1] for k in code_lists],
                            "code_lists": [k[2] for k in code_lists],
                        },
                    )
                ]
        except ProgrammingError as error:
            if warnings:  # a newer obs-sync changed what these queries read
                raise StatusError(
                    f"schema {schema} was migrated by a newer obs-sync (migration {revision}) "
                    f"and this version cannot read it ({one_line(error)}): upgrade obs-sync"
                ) from error
            raise
        connection.rollback()
    return Status(runs, vdns, datetime.now(timezone.utc), warnings, lists)


def read_last_run_success(engine: Engine, schema: str) -> datetime | None:
    """When the last run in which every VDN succeeded finished (None: never)."""
    with engine.connect() as connection:
        quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
        value: datetime | None = connection.execute(
            text(f"SELECT max(finished_at) FROM {quoted}.sync_run WHERE status = 'succeeded'")
        ).scalar()
    return value
