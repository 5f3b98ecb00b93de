"""The BI contract's tables as SQLAlchemy metadata, for tools and tests.

As created by migrations/versions/ (0001_initial.py, 0002_bi_interface.py,
0003_hostile_world.py); schema-less here (apply the configured schema with
``schema_translate_map`` or qualified names). The migrations are the source of truth; the
sync itself (:mod:`obs_sync.store.store`) writes plain SQL on psycopg and does not import
this module, so a one-shot ``obs-sync sync`` does not pay for SQLAlchemy.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
)

__all__ = [
    "BI_TABLES",
    "TABLE_NAMES",
    "locale_switch",
    "metadata",
    "result_code",
    "result_code_history",
    "source",
    "sync_run",
    "sync_run_vdn",
    "vdn",
    "vdn_state",
]


metadata = MetaData()
TZ = DateTime(timezone=True)

sync_run = Table(
    "sync_run",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("started_at", TZ, nullable=False),
    Column("finished_at", TZ),
    Column("status", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("hostname", Text),
    Column("pid", Integer),
    Column("obs_sync_version", Text),
    Column("dry_run", Boolean, nullable=False),
    *(Column(name, Integer, nullable=False) for name in ("vdns", "succeeded", "failed")),
    *(Column(name, Integer, nullable=False) for name in ("incomplete", "guarded", "skipped")),
    *(
        Column(name, BigInteger, nullable=False)
        for name in ("inserted", "updated", "deleted", "restored", "unchanged")
    ),
    Column("error", Text),
    Column("heartbeat_at", TZ),  # the run's process last known alive (0005)
    Column("sources", ARRAY(Text)),  # the sources the run covered (0006)
)

sync_run_vdn = Table(
    "sync_run_vdn",
    metadata,
    Column("sync_run_id", BigInteger, ForeignKey("sync_run.id"), primary_key=True),
    Column("vdn_id", Integer, primary_key=True),
    Column("source", Text, primary_key=True),  # (0006) the key: sync_run_id, source, vdn_id
    Column("status", Text, nullable=False),
    Column("started_at", TZ, nullable=False),
    Column("finished_at", TZ, nullable=False),
    Column("pages", Integer, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("total_count", Integer),
    *(
        Column(name, Integer, nullable=False)
        for name in ("inserted", "updated", "deleted", "restored", "unchanged", "withheld")
    ),
    Column("error", Text),
    # why the VDN was not applied (0003; auth_rejected and unreachable: 0005)
    Column("skip_reason", Text),
    Column("relabelled", Integer, nullable=False),  # translations after a switch (0006)
)

# Per VDN: when the fetch began of the snapshot that wrote its current state (0003).
vdn_state = Table(
    "vdn_state",
    metadata,
    Column("vdn_id", Integer, primary_key=True),
    Column("snapshot_started_at", TZ, nullable=False),
    Column("source", Text, primary_key=True),  # (0006)
    Column("baseline_done_at", TZ),  # its first complete snapshot applied (0009)
)

result_code = Table(
    "result_code",
    metadata,
    Column("vdn_id", Integer, primary_key=True),
    Column("obs_code", Text, primary_key=True),
    Column("obs_code_desc", Text, nullable=False),
    Column("first_seen_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("deleted_at", TZ),
    Column("source", Text, primary_key=True),  # (0006) the key: source, vdn_id, obs_code
)

result_code_history = Table(
    "result_code_history",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("vdn_id", Integer, nullable=False),
    Column("obs_code", Text, nullable=False),
    Column("obs_code_desc", Text, nullable=False),
    Column("valid_from", TZ, nullable=False),
    Column("valid_to", TZ),
    Column("sync_run_id", BigInteger, ForeignKey("sync_run.id"), nullable=False),
    Column("closed_by_sync_run_id", BigInteger, ForeignKey("sync_run.id")),
    Column("source", Text, nullable=False),  # (0006)
    Column("relabelled", Boolean, nullable=False),  # opened by a switch of locale (0006)
    Column("initial", Boolean, nullable=False),  # opened by the initial load (0009)
)

# The VDN registry (migration 0002); its last_* columns are kept by a trigger.
vdn = Table(
    "vdn",
    metadata,
    Column("vdn_id", Integer, primary_key=True),
    Column("configured", Boolean, nullable=False),
    Column("first_seen_at", TZ, nullable=False),
    Column("last_attempted_at", TZ),
    Column("last_status", Text),
    Column("last_error", Text),
    Column("last_sync_run_id", BigInteger),
    Column("last_succeeded_at", TZ),
    Column("source", Text, primary_key=True),  # (0006) the key: source, vdn_id
    Column("locale", Text),  # the language of its stored descriptions (0006)
)

# The sources that have run, with the locale their data is in (0006).
source = Table(
    "source",
    metadata,
    Column("source", Text, primary_key=True),
    Column("locale", Text),
    Column("first_seen_at", TZ, nullable=False),
    Column("locale_since", TZ),
)

# One row per switch of a source's locale (0006).
locale_switch = Table(
    "locale_switch",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("source", Text, ForeignKey("source.source"), nullable=False),
    Column("from_locale", Text),
    Column("to_locale", Text, nullable=False),
    Column("switched_at", TZ, nullable=False),
    Column("sync_run_id", BigInteger, ForeignKey("sync_run.id")),
)

BI_TABLES = (
    result_code,
    result_code_history,
    sync_run,
    sync_run_vdn,
    vdn,
    vdn_state,
    source,
    locale_switch,
)
TABLE_NAMES = tuple(sorted(table.name for table in BI_TABLES))
