"""``obs-sync verify`` for the other code lists: the history rules of docs/semantics.md on
``display_result``, ``display_result_obs_code`` and ``business_result`` (migration 0007).

Read-only SQL in verify's snapshot (:mod:`obs_sync.store.integrity`); each finding names
the table and the row's key. Nothing to check before migration 0007.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from obs_sync.db.url import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# table -> (key columns after source, vdn_id; value columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "display_result": (("def_id",), ("result_code", "display_result")),
    "display_result_obs_code": (("def_id", "obs_code"), ()),
    "business_result": (("parent_code", "code"), ("name", "level")),
}


def _checks(table: str, keys: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    key = ["source", "vdn_id", *keys]
    # The source, then the key as text ("def_id=... obs_code=...").
    shown = "{a}.source, " + " || ' ' || ".join(f"'{k}=' || {{a}}.{k}" for k in keys)
    on = " AND ".join(f"{{b}}.{c} = {{a}}.{c}" for c in key)
    differs = " OR ".join(f"o.{v} IS DISTINCT FROM r.{v}" for v in values) or "false"
    return {
        # A present row has exactly one open version; a deleted one has none.
        f"{table}:open-version": f"""
            SELECT r.vdn_id, {shown.format(a="r")},
                   count(h.id) || ' open versions, expected ' ||
                   CASE WHEN r.deleted_at IS NULL THEN 1 ELSE 0 END
            FROM {{s}}.{table} AS r
            LEFT JOIN {{s}}.{table}_history AS h
                   ON {on.format(a="r", b="h")} AND h.valid_to IS NULL
            GROUP BY {", ".join(f"r.{c}" for c in key)}, r.deleted_at
            HAVING count(h.id) <> CASE WHEN r.deleted_at IS NULL THEN 1 ELSE 0 END""",
        # Versions of one key never overlap.
        f"{table}:overlap": f"""
            SELECT a.vdn_id, {shown.format(a="a")},
                   'versions ' || a.id || ' and ' || b.id || ' overlap'
            FROM {{s}}.{table}_history AS a
            JOIN {{s}}.{table}_history AS b ON {on.format(a="a", b="b")} AND b.id > a.id
             AND b.valid_from < coalesce(a.valid_to, 'infinity')
             AND a.valid_from < coalesce(b.valid_to, 'infinity')""",
        # The current row agrees with its open version (values, and since when).
        f"{table}:current-mismatch": f"""
            SELECT r.vdn_id, {shown.format(a="r")},
                   'the row differs from its open version ' || o.id
            FROM {{s}}.{table} AS r
            JOIN {{s}}.{table}_history AS o ON {on.format(a="r", b="o")} AND o.valid_to IS NULL
            WHERE r.deleted_at IS NULL
              AND (CASE WHEN o.valid_from = '-infinity' THEN r.first_seen_at
                        ELSE o.valid_from END <> r.updated_at OR {differs})""",
    }


CHECKS: dict[str, str] = {
    name: sql
    for table, (keys, values) in TABLES.items()
    for name, sql in _checks(table, keys, values).items()
}


def list_findings(
    connection: Connection, schema: str, params: Mapping[str, Any]
) -> Iterator[tuple[str, int, str, str, str]]:
    """(source, vdn_id, what, check, detail) of every finding; filtered by
    ``params["vdns"]`` and ``params["sources"]`` (None: all)."""
    s = quote_identifier(schema)
    exists = connection.exec_driver_sql(
        "SELECT to_regclass(%(name)s)", {"name": f"{s}.display_result"}
    ).scalar()
    if exists is None:
        return
    vdns, sources = params.get("vdns"), params.get("sources")
    for name, sql in CHECKS.items():
        for vdn_id, source, what, detail in connection.exec_driver_sql(sql.format(s=s)):
            if (vdns is None or int(vdn_id) in vdns) and (sources is None or source in sources):
                yield str(source), int(vdn_id), str(what), name, str(detail)
