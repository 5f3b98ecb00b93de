"""The latest result of each code list of each VDN (``sync_run_code_list``), for ``status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from obs_sync.db.url import quote_identifier

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class ListRow:
    source: str
    vdn_id: int
    code_list: str
    status: str  # of the latest attempt (skipped records are not attempts)
    finished_at: datetime
    last_succeeded_at: datetime | None
    error: str | None


def read_code_list_status(engine: Engine, schema: str) -> list[ListRow]:
    """One row per (source, VDN, list) ever attempted; [] before migration 0007."""
    from sqlalchemy import text  # the status command's engine is SQLAlchemy's

    s = quote_identifier(schema)
    with engine.connect() as connection:
        exists = connection.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{s}.sync_run_code_list"}
        ).scalar()
        if not exists:
            return []
        rows = connection.execute(
            text(
                f"SELECT DISTINCT ON (r.source, r.vdn_id, r.code_list) r.source, r.vdn_id, "
                "r.code_list, r.status, r.finished_at, (SELECT max(o.finished_at) FROM "
                f"{s}.sync_run_code_list AS o WHERE o.source = r.source AND o.vdn_id = r.vdn_id "
                "AND o.code_list = r.code_list AND o.status = 'succeeded'), r.error "
                f"FROM {s}.sync_run_code_list AS r WHERE r.status <> 'skipped' "
                "ORDER BY r.source, r.vdn_id, r.code_list, r.finished_at DESC"
            )
        ).all()
    return [ListRow(*row) for row in rows]
