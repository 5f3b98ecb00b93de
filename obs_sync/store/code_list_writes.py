"""One code-list table's writes in a list's transaction: set-based statements over
``unnest`` arrays, every row count verified (:mod:`obs_sync.store.code_lists` runs them).

Versions are closed first (at most one open version per key holds at every row), then
deletions, inserts and updates/restores, each opening its new version at the list's one
instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from obs_sync.code_list_diff import RowChanges, Stored
from obs_sync.code_lists import BUSINESS_RESULTS, DISPLAY_RESULTS
from obs_sync.store.changes import StoreError

Rows = dict[tuple[str, ...], Stored[tuple[object, ...]]]


@dataclass(frozen=True)
class Table:
    """A list table: its key columns after (source, vdn_id), its value columns and types."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple[str, str], ...] = ()  # (column, SQL type)


DISPLAY_RESULT = Table(
    "display_result", ("def_id",), (("result_code", "text"), ("display_result", "text"))
)
DISPLAY_RESULT_OBS_CODE = Table("display_result_obs_code", ("def_id", "obs_code"))
BUSINESS_RESULT = Table(
    "business_result", ("parent_code", "code"), (("name", "text"), ("level", "int4"))
)
TABLES: dict[str, tuple[Table, ...]] = {
    DISPLAY_RESULTS: (DISPLAY_RESULT, DISPLAY_RESULT_OBS_CODE),
    BUSINESS_RESULTS: (BUSINESS_RESULT,),
}


class TableWriter:
    """The set-based statements of one table's changes; every row count is verified."""

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        s: str,
        table: Table,
        source: str,
        vdn_id: int,
        run_id: int,
        ts: datetime,
        *,
        initial: bool = False,
        baseline: bool = False,
    ) -> None:
        """``initial``: the list's initial load is under way: new rows' versions are marked
        ``initial``, and with ``baseline`` (first_sync_as_baseline) valid since ever."""
        self.c = connection
        self.s = s
        self.t = table
        self.params: dict[str, Any] = {
            "source": source,
            "vdn": vdn_id,
            "run": run_id,
            "ts": ts,
            "initial": initial,
            "baseline": initial and baseline,
        }

    def _arrays(self, rows: Sequence[tuple[tuple[str, ...], tuple[object, ...]]]) -> str:
        """Bind one array per column; the unnest(...) of them, aliased u(<columns>)."""
        names = [*self.t.keys, *(c for c, _ in self.t.values)]
        types = ["text"] * len(self.t.keys) + [t for _, t in self.t.values]
        for index, name in enumerate(names):
            self.params[f"a_{name}"] = [(k + v)[index] for k, v in rows]
        arrays = ", ".join(f"%(a_{n})s::{t}[]" for n, t in zip(names, types, strict=True))
        return f"unnest({arrays}) AS u({', '.join(names)})"

    def _run(self, sql: str, expected: int) -> None:
        count = self.c.execute(sql, self.params).rowcount
        if count != expected:
            raise StoreError(
                f"stored {self.t.name} rows inconsistent for VDN {self.params['vdn']}: a "
                f"statement changed {count} rows, expected {expected}; nothing applied for "
                "this list"
            )

    def _match(self, alias: str) -> str:
        return " AND ".join(f"{alias}.{k} = u.{k}" for k in self.t.keys)

    def write(self, changes: RowChanges[tuple[str, ...], tuple[object, ...]]) -> None:
        t, s = self.t.name, self.s
        mine = "{a}.source = %(source)s AND {a}.vdn_id = %(vdn)s"
        keys = ", ".join(self.t.keys)
        values = [c for c, _ in self.t.values]
        closed = [(k, ()) for k, _, _ in changes.updates] + [(k, ()) for k in changes.deletes]
        if closed:
            source = self._keys(closed)
            self._run(
                f"UPDATE {s}.{t}_history AS h SET valid_to = %(ts)s, closed_by_sync_run_id = "
                f"%(run)s FROM {source} WHERE {mine.format(a='h')} AND {self._match('h')} "
                "AND h.valid_to IS NULL",
                len(closed),
            )
        if changes.deletes:
            source = self._keys([(k, ()) for k in changes.deletes])
            self._run(
                f"UPDATE {s}.{t} AS r SET deleted_at = %(ts)s FROM {source} "
                f"WHERE {mine.format(a='r')} AND {self._match('r')} AND r.deleted_at IS NULL",
                len(changes.deletes),
            )
        value_list = "".join(f", {v}" for v in values)
        u_values = "".join(f", u.{v}" for v in values)
        history = (
            f"INSERT INTO {s}.{t}_history (source, vdn_id, {keys}{value_list}, valid_from, "
            f"sync_run_id, initial) SELECT %(source)s, %(vdn)s, "
            f"{', '.join(f'u.{k}' for k in self.t.keys)}{u_values}, {{start}}, %(run)s, "
            "{initial} FROM "
        )
        # Only new rows belong to the initial load; changed and restored ones are changes.
        opened = history.format(
            start="CASE WHEN %(baseline)s THEN '-infinity' ELSE %(ts)s::timestamptz END",
            initial="%(initial)s",
        )
        reopened = history.format(start="%(ts)s", initial="false")
        if changes.inserts:
            source = self._arrays(list(changes.inserts))
            self._run(
                f"INSERT INTO {s}.{t} (source, vdn_id, {keys}{value_list}, first_seen_at, "
                f"updated_at) SELECT %(source)s, %(vdn)s, "
                f"{', '.join(f'u.{k}' for k in self.t.keys)}{u_values}, %(ts)s, %(ts)s "
                f"FROM {source}",
                len(changes.inserts),
            )
            self._run(opened + source, len(changes.inserts))
        rewritten = [(k, new) for k, _, new in changes.updates] + list(changes.restores)
        if rewritten:
            source = self._arrays(rewritten)
            sets = "".join(f"{v} = u.{v}, " for v in values)
            self._run(
                f"UPDATE {s}.{t} AS r SET {sets}updated_at = %(ts)s, deleted_at = NULL "
                f"FROM {source} WHERE {mine.format(a='r')} AND {self._match('r')}",
                len(rewritten),
            )
            self._run(reopened + source, len(rewritten))

    def _keys(self, rows: Sequence[tuple[tuple[str, ...], tuple[object, ...]]]) -> str:
        for index, name in enumerate(self.t.keys):
            self.params[f"k_{name}"] = [k[index] for k, _ in rows]
        arrays = ", ".join(f"%(k_{n})s::text[]" for n in self.t.keys)
        return f"unnest({arrays}) AS u({', '.join(self.t.keys)})"
