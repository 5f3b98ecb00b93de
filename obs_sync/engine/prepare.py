"""The database side of a run, made ready in a thread of its own while the first fetches run:
connect, check (or apply) migrations, register the VDNs, open the run record, check each
source's locale (obs_sync/store/sources.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from obs_sync import __version__, logcontext
from obs_sync.engine.heartbeat import Heartbeat
from obs_sync.engine.sizing import connections_per_run
from obs_sync.locales import Refusal, RunSource, SourceState
from obs_sync.results import VdnKey

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config
    from obs_sync.db.pool import Pool
    from obs_sync.store.runs import RunHandle
    from obs_sync.store.store import Store

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


class Aborted(Exception):
    """Database preparation failed: workers stop; run_sync re-raises the cause."""


class Prepared:
    """The database side of a run, made ready in the background (see the module doc)."""

    def __init__(
        self,
        config: Config,
        engine: Engine | None,
        *,
        dry_run: bool,
        migrate: bool,
        trigger: str,
        log_run: logcontext.PendingRun,
        keys: Sequence[VdnKey] = (),
        full: bool = True,
        sources: Sequence[RunSource] = (),
        switch_locale: Collection[str] = (),
    ) -> None:
        self.config = config
        # The VDN registry's configured flags (obs_sync/store/registry.py): a full run sets them
        # all, a --vdn or --source run only its own.
        self.register = (list(keys), full)
        self.sources = list(sources)
        self.switch_locale = frozenset(switch_locale)
        # Known once ready: sources refused for their locale, VDNs to relabel.
        self.source_state = SourceState()
        # The run's log lines wait for its id, known once start_run has inserted the row.
        self.log_run = log_run
        if dry_run:
            log_run.resolve("dry-run")
        self.engine = engine
        self.own_engine = engine is None
        self.dry_run = dry_run
        self.migrate = migrate
        self.trigger = trigger
        self.pool: Pool | None = None
        self.store: Store | None = None
        self.handle: RunHandle | None = None
        self.heartbeat: Heartbeat | None = None
        self.has_tables = True
        self.notes: list[str] = []
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._prepare, name="obs-sync-db", daemon=True)

    def _prepare(self) -> None:
        with logcontext.bind(run=self.log_run):  # a thread of its own: bind again
            self._prepare_bound()

    def _prepare_bound(self) -> None:
        try:
            # Imported in this thread on purpose: psycopg's import overlaps the first fetches.
            from obs_sync.config.database_url import connect_params
            from obs_sync.db import url as db_url
            from obs_sync.db.pool import EnginePool, OwnPool
            from obs_sync.store.registry import register_vdns
            from obs_sync.store.sources import inspect_sources, prepare_sources
            from obs_sync.store.store import Store

            if self.engine is not None:
                self.pool = EnginePool(self.engine)
            else:  # one-shot: plain psycopg, no SQLAlchemy unless a migration is due
                url = db_url.database_url(self.config)
                database = self.config.database
                log.info(
                    "database: %s",
                    db_url.describe_database(url, database.schema_, embedded=database.embedded),
                )
                params = connect_params(url)
                params.update(db_url.session_args(self.config, params.get("options")))
                self.pool = OwnPool(params, connections_per_run(self.config))
            schema = self.config.database.schema_
            store = Store(self.pool, schema)
            if self.dry_run:
                self.has_tables = store.tables_exist()
                if not self.has_tables:
                    self.notes.append(
                        f"schema {schema} has no obs-sync tables yet: compared against an "
                        "empty store"
                    )
                elif store.sources_exist():
                    # What the run would refuse for its locale, read only.
                    with self.pool.connection() as connection:
                        self.source_state = inspect_sources(
                            connection, schema, self.sources, self.switch_locale
                        )
            else:
                # Tables this run created are empty: the store skips its no-change pre-reads.
                store.created = self._migrate(schema)
                with self.pool.connection() as connection:
                    register_vdns(connection, schema, self.register[0], full=self.register[1])
                self.store = store  # before anything else can fail: the run gets closed
                interval = self.config.sync.heartbeat_seconds
                self.handle = store.start_run(
                    trigger=self.trigger,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    version=__version__,
                    heartbeat_seconds=interval,
                    sources=[source.name for source in self.sources],
                )
                self.heartbeat = Heartbeat(store, self.handle, interval).start()
                self.log_run.resolve(self.handle.run_id)
                with self.pool.connection() as connection:
                    self.source_state = prepare_sources(
                        connection, schema, self.handle.run_id, self.sources, self.switch_locale
                    )
                for name, old, new in self.source_state.switched:
                    log.warning(
                        "source %s: locale switched from %s to %s (recorded once; its "
                        "translated descriptions are relabelled, not changes)",
                        name,
                        old or "(unknown)",
                        new,
                    )
                for refusal in self.source_state.refused.values():
                    log.error("source %s: %s", refusal.source, refusal.error)
            self.store = store
        except BaseException as error:
            self.error = error
        finally:
            self.ready.set()

    def _migrate(self, schema: str) -> bool:
        """Check the schema version with one query; only a schema behind pays for Alembic.

        Returns True when this call created obs-sync's tables (the schema was at base).
        """
        # In this thread for the same reason; Alembic itself loads only for an upgrade.
        from obs_sync.db import migrate
        from obs_sync.db.engine import single_use_engine
        from obs_sync.db.revision import read_revision

        assert self.pool is not None
        with self.pool.connection() as connection:
            current = read_revision(connection, schema)
        if not migrate.needs_upgrade(current, schema, migrate=self.migrate):
            return False
        engine = self.engine if self.engine is not None else single_use_engine(self.config)
        try:
            before, after = migrate.upgrade(engine, schema)
        finally:
            if engine is not self.engine:
                engine.dispose()
        if before != after:
            log.info("migrated schema %s from %s to %s", schema, before or "base", after)
        return before is None and after is not None

    def wait(self) -> Store:
        self.ready.wait()
        if self.store is None or self.error is not None:
            raise Aborted
        return self.store

    def refused(self) -> Mapping[str, Refusal]:
        """Sources refused for their locale (empty until the database side is ready)."""
        return self.source_state.refused if self.ready.is_set() else {}

    def store_if_ready(self) -> Store | None:
        """The store, if the database side is ready now (never waits for it)."""
        return self.store if self.ready.is_set() and self.error is None else None

    def stop_heartbeat(self) -> None:
        """Before the run's record is closed (the heartbeat shares its connection)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()

    @property
    def run_id(self) -> int | None:
        return self.handle.run_id if self.handle is not None else None
