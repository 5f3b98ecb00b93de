"""The demo's SQL (``obs-sync demo``): its schema reset, what a run changed read back from
the history, and two docs/bi.md queries over a call-records table made for the demo: the
"description at call time" in two languages (two sources on one server), and every code of
a call labelled (``call_labels_at``, migration 0008)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# docs/bi.md, "description at call time in two languages": the demo's sources "default"
# (en_US) and "zh" (zh_CN) are one server asked in two locales. With the replacements that
# page gives for the demo's database (a test checks they stay the same), over the demo's
# call-records table: the columns of that page's table carrying all three codes
# (call_record_codes, a superset of call_record's), with both tables' indexes.
CALLS_TABLE = "demo_call_record"
CALL_TIME_QUERY = """\
SELECT c.call_id, c.vdn_id, c.obs_code, c.called_at,
       zh.obs_code_desc AS desc_zh, en.obs_code_desc AS desc_en
FROM {schema}.{calls} AS c
LEFT JOIN {schema}.result_code_history AS zh
       ON zh.source = 'zh' AND zh.vdn_id = c.vdn_id AND zh.obs_code = c.obs_code
      AND zh.valid_from <= c.called_at AND c.called_at < coalesce(zh.valid_to, 'infinity')
LEFT JOIN {schema}.result_code_history AS en
       ON en.source = 'default' AND en.vdn_id = c.vdn_id AND en.obs_code = c.obs_code
      AND en.valid_from <= c.called_at AND c.called_at < coalesce(en.valid_to, 'infinity')
ORDER BY c.call_id;
"""


def explore_query(schema: str) -> str:
    """What the demo suggests running in psql afterwards."""
    return f"SELECT * FROM {schema}.result_code"


def labels_query(schema: str) -> str:
    """docs/bi.md "every description at call time through the function" on one line (for
    psql -c), with the call's codes beside its labels: the demo prints its rows (step 8)
    and suggests running it."""
    return (
        "SELECT c.call_id, c.vdn_id, c.obs_code, c.result_code, c.busi_result, c.sub_status, "
        "l.obs_code_desc, l.display_result, l.business_result_name, l.sub_status_name "
        f"FROM {schema}.{CALLS_TABLE} AS c CROSS JOIN LATERAL {schema}.call_labels_at("
        "c.source, c.vdn_id, c.obs_code, c.result_code, c.busi_result, c.sub_status, "
        "c.called_at) AS l ORDER BY c.call_id"
    )


def reset_schema(engine: Engine, schema: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


def versions_opened(connection: Connection, schema: str, run_id: int | None) -> list[Any]:
    """(source, vdn_id, obs_code, new_desc, old_desc) of each version ``run_id`` opened;
    old_desc is None for a new code."""
    return list(
        connection.execute(
            text(
                f"""
                SELECT h.source, h.vdn_id, h.obs_code, h.obs_code_desc AS new_desc,
                       prev.obs_code_desc AS old_desc
                FROM {schema}.result_code_history AS h
                LEFT JOIN {schema}.result_code_history AS prev
                  ON prev.source = h.source AND prev.vdn_id = h.vdn_id
                 AND prev.obs_code = h.obs_code AND prev.valid_to = h.valid_from
                WHERE h.sync_run_id = :run
                ORDER BY h.source, h.vdn_id, h.obs_code
                """
            ),
            {"run": run_id},
        ).all()
    )


def deleted_since(connection: Connection, schema: str, since: datetime) -> list[Any]:
    """(source, vdn_id, obs_code, obs_code_desc) of each code deleted at or after
    ``since``."""
    return list(
        connection.execute(
            text(
                f"""
                SELECT source, vdn_id, obs_code, obs_code_desc FROM {schema}.result_code
                WHERE deleted_at IS NOT NULL AND deleted_at >= :since
                ORDER BY source, vdn_id, obs_code
                """
            ),
            {"since": since},
        ).all()
    )


def store_calls(connection: Connection, schema: str, calls: Sequence[dict[str, Any]]) -> None:
    """Store ``calls`` (id, source, vdn, code, result_code, busi_result, sub_status, at) in
    the demo's call-records table."""
    table = f"{schema}.{CALLS_TABLE}"
    connection.execute(
        text(
            f"CREATE TABLE {table} (call_id bigint PRIMARY KEY, "
            "source text NOT NULL DEFAULT 'default', vdn_id integer NOT NULL, "
            "obs_code text NOT NULL, result_code text, busi_result text, sub_status text, "
            "called_at timestamptz NOT NULL)"
        )
    )
    connection.execute(
        text(
            f"CREATE INDEX {CALLS_TABLE}_code_idx ON {table} (vdn_id, obs_code, called_at) "
            "INCLUDE (call_id)"
        )
    )
    connection.execute(
        text(
            f"CREATE INDEX {CALLS_TABLE}_codes_idx ON {table} "
            "(source, vdn_id, obs_code, called_at) "
            "INCLUDE (call_id, result_code, busi_result, sub_status)"
        )
    )
    connection.execute(
        text(
            f"INSERT INTO {table} (call_id, source, vdn_id, obs_code, result_code, "
            "busi_result, sub_status, called_at) "
            "VALUES (:id, :source, :vdn, :code, :result_code, :busi_result, :sub_status, :at)"
        ),
        list(calls),
    )


def call_time_rows(connection: Connection, schema: str) -> tuple[str, list[tuple[Any, ...]]]:
    """:data:`CALL_TIME_QUERY` over the stored calls: the query as run, and its rows
    (call_id, vdn_id, obs_code, called_at, desc_zh, desc_en)."""
    query = CALL_TIME_QUERY.format(calls=CALLS_TABLE, schema=schema)
    return query, [tuple(row) for row in connection.execute(text(query)).all()]


def label_rows(connection: Connection, schema: str) -> list[tuple[Any, ...]]:
    """:func:`labels_query`'s rows: each stored call's codes and its four labels."""
    return [tuple(row) for row in connection.execute(text(labels_query(schema))).all()]


def history_rows(connection: Connection, schema: str) -> int:
    return int(
        connection.execute(text(f"SELECT count(*) FROM {schema}.result_code_history")).scalar_one()
    )
