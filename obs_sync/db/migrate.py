"""Database migrations: Alembic, run in code, serialized across processes.

The fast path (every ``sync``) never imports Alembic: it reads the one row of
``<schema>.alembic_version`` and compares it with the head revision, which is the highest
``NNNN_*.py`` file name in the migrations directory (revisions are numbered and linear; a
test checks this agrees with Alembic's own view). Only a database that is behind (or new)
pays for Alembic. Every migration run holds a transaction-scoped advisory lock, so two
processes starting at once migrate one after the other; the second then finds nothing to do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from obs_sync.db.revision import revision_sa
from obs_sync.errors import ObsSyncError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# pg_advisory_xact_lock(MIGRATE_LOCK_CLASS, MIGRATE_LOCK_ID): one key for every obs-sync
# process on the database (the store's per-VDN locks use other classes).
MIGRATE_LOCK_CLASS = 0x0B5_5C0  # "obs-sync"
MIGRATE_LOCK_ID = 0

_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")


class MigrationError(ObsSyncError):
    """The schema is not usable by this obs-sync version; the message says what to do."""


@cache
def migrations_dir() -> Path:
    """The Alembic script directory: shipped inside the package, or the checkout's migrations/."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationError(
        f"obs-sync's migrations directory is missing (looked in {package / '_migrations'} and "
        f"{package.parent / 'migrations'}): reinstall obs-sync"
    )


@cache
def known_revisions() -> tuple[str, ...]:
    """Every revision id this code knows, oldest first."""
    found = sorted(
        match.group(1)
        for path in (migrations_dir() / "versions").iterdir()
        if (match := _REVISION_FILE.match(path.name))
    )
    if not found:
        raise MigrationError(
            f"no migrations in {migrations_dir() / 'versions'}: reinstall obs-sync"
        )
    return tuple(found)


def head_revision() -> str:
    return known_revisions()[-1]


def _quote(connection: Connection, schema: str) -> str:
    return connection.dialect.identifier_preparer.quote_identifier(schema)


def lock_and_create_schema(connection: Connection, schema: str) -> None:
    """Serialize migrations (lock held until the transaction ends) and create the schema."""
    from sqlalchemy import text  # off the re-sync path, which only reads the revision

    connection.execute(
        text("SELECT pg_advisory_xact_lock(:a, :b)"),
        {"a": MIGRATE_LOCK_CLASS, "b": MIGRATE_LOCK_ID},
    )
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_quote(connection, schema)}"))


def _alembic(connection: Connection, schema: str, action: str, revision: str) -> None:
    # Alembic (with Mako) is heavy: loaded only when a migration really runs.
    from alembic import command
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def upgrade(engine: Engine, schema: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to ``revision``; returns (revision before, revision after)."""
    with engine.begin() as connection:
        lock_and_create_schema(connection, schema)
        before = revision_sa(connection, schema)
        if before is not None:
            _require_known(before, schema, "upgrade obs-sync on this host")
        _alembic(connection, schema, "upgrade", revision)
        after = revision_sa(connection, schema)
    return before, after


def downgrade(engine: Engine, schema: str, revision: str = "-1") -> tuple[str | None, str | None]:
    """Revert migrations down to ``revision`` ("-1" one step, "base" drops every table)."""
    with engine.begin() as connection:
        lock_and_create_schema(connection, schema)
        before = revision_sa(connection, schema)
        if before is None:
            return None, None  # nothing to downgrade: already at base
        _require_known(before, schema)
        _alembic(connection, schema, "downgrade", revision)
        after = revision_sa(connection, schema)
    return before, after


@dataclass(frozen=True)
class DowngradePlan:
    """What ``obs-sync db downgrade`` is about to do, shown before it asks to go on."""

    schema: str
    current: str | None  # None: no obs-sync tables, nothing to do
    target: str | None  # None: base, every obs-sync table dropped
    reverted: tuple[str, ...]  # the migrations undone, newest first; empty if unresolved
    rows: dict[str, int]  # each obs-sync table in the schema: its row count
    resolved: bool = True  # False: `revision` names no revision at or below the current one

    def describe(self) -> str:
        if self.current is None:
            return f"schema {self.schema} has no obs-sync tables"
        tables = ", ".join(f"{name} ({count:,} rows)" for name, count in self.rows.items())
        if self.target is None and self.reverted:
            what = f"drops every obs-sync table and its data: {tables}"
        else:
            what = (
                f"reverts migration(s) {', '.join(self.reverted)} to {self.target}; whatever "
                f"they added is lost (tables now: {tables})"
            )
        return f"schema {self.schema}: downgrade from {self.current} {what}"


def downgrade_target(current: str, revision: str) -> tuple[bool, str | None, tuple[str, ...]]:
    """Resolve ``revision`` from ``current`` on the linear revision list.

    Returns (resolved, target, reverted newest first); target None means base. Anything
    not understood here is left for Alembic to accept or reject (resolved False).
    """
    known = known_revisions()
    if current not in known:
        return False, None, ()
    position = known.index(current)
    if revision == "base":
        index = -1
    elif re.fullmatch(r"-\d+", revision):
        index = position - int(revision[1:])
        if index < -1:
            return False, None, ()
    elif revision in known and known.index(revision) <= position:
        index = known.index(revision)
    else:
        return False, None, ()
    target = known[index] if index >= 0 else None
    return True, target, tuple(reversed(known[index + 1 : position + 1]))


def plan_downgrade(
    engine: Engine, schema: str, revision: str, tables: Sequence[str]
) -> DowngradePlan:
    """Read-only: the schema's revision and what a downgrade to ``revision`` would undo
    (``tables``: obs-sync's, whose rows it counts)."""
    from sqlalchemy import text  # off the re-sync path, which only reads the revision

    ours = sorted(tables)
    with engine.connect() as connection:
        current = revision_sa(connection, schema)
        quoted = _quote(connection, schema)
        present = connection.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = :schema AND table_name = ANY(:names) ORDER BY table_name"
            ),
            {"schema": schema, "names": ours},
        ).scalars()
        rows = {
            name: connection.execute(
                text(f"SELECT count(*) FROM {quoted}.{_quote(connection, name)}")
            ).scalar_one()
            for name in list(present)
        }
        connection.rollback()
    if current is None:
        return DowngradePlan(schema, None, None, (), rows)
    _require_known(current, schema)
    resolved, target, reverted = downgrade_target(current, revision)
    return DowngradePlan(schema, current, target, reverted, rows, resolved)


def _require_known(
    current: str, schema: str, fix: str = "downgrade it with the obs-sync version that migrated it"
) -> None:
    if current not in known_revisions():
        raise MigrationError(
            f"schema {schema} is at migration {current}, which this obs-sync version does not "
            f"know (its newest is {head_revision()}): {fix}"
        )


def needs_upgrade(current: str | None, schema: str, *, migrate: bool) -> bool:
    """Whether a schema at ``current`` must be upgraded before a sync writes to it.

    Raises :class:`MigrationError` when it cannot be used: a revision this code does not
    know, or behind with ``migrate=False`` (the message names the command to run).
    """
    head = head_revision()
    if current == head:
        return False
    if current is not None and current not in known_revisions():
        raise MigrationError(
            f"schema {schema} is at migration {current}, which this obs-sync version does not "
            f"know (its newest is {head}): upgrade obs-sync, or point it at another schema"
        )
    if not migrate:
        state = "has no obs-sync tables" if current is None else f"is at migration {current}"
        raise MigrationError(
            f"schema {schema} {state}, this obs-sync needs {head}: run `obs-sync db upgrade` "
            "(or sync without --no-migrate)"
        )
    return True
