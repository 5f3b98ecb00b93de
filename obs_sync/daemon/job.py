"""The daemon's job: one sync run per fire time, with one engine for the daemon's life."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from obs_sync.code_lists import OBS_RESULT_CODES
from obs_sync.db.embedded import EmbeddedError, require_installed, restart_if_stopped
from obs_sync.db.engine import make_engine
from obs_sync.db.migrate import MigrationError, needs_upgrade
from obs_sync.db.revision import revision_sa
from obs_sync.db.url import describe_database
from obs_sync.engine.run import run_sync
from obs_sync.engine.sizing import connections_per_run
from obs_sync.errors import UsageError
from obs_sync.logcontext import PendingRun
from obs_sync.store.status_query import StatusError, read_last_run_success, read_status
from obs_sync.store.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.code_lists import ListKey
    from obs_sync.config import Config
    from obs_sync.store.status_query import VdnRow

log = logging.getLogger(__name__)


def list_keys(config: Config) -> list[ListKey]:
    """Every configured (source, vdn_id, code_list) besides the OBS result codes."""
    return [
        (source.name, vdn, name)
        for source in config.sources
        for vdn in source.vdn_list
        for name in source.code_lists
        if name != OBS_RESULT_CODES
    ]


class StartError(UsageError):
    """The daemon cannot start as configured (it would fail at every run or not serve at
    all); the message names the setting to change. ``obs-sync run`` exits 2."""


class RunResultLike(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def vdns(self) -> Sequence[Any]: ...
    @property
    def run_id(self) -> int | None: ...


class Job(Protocol):
    """What the daemon runs: :meth:`prepare` once at start, :meth:`recorded` until it
    answers, one call per fire time, :meth:`close` at a clean shutdown. :class:`SyncJob`
    calls :func:`obs_sync.engine.run.run_sync`."""

    def prepare(self) -> None:
        """Reach what the runs need; :class:`StartError` if they never could."""
        ...

    def recorded(self) -> Sequence[VdnRow]:
        """The run records' VDN rows (failure streaks, last successes) to seed health from,
        and a :class:`~obs_sync.store.status_query.ListStreakRow` per other code list."""
        ...

    def close(self) -> None:
        """Release what :meth:`prepare` or the runs acquired."""
        ...

    def __call__(
        self,
        *,
        stop: threading.Event,
        deadline: float,
        on_vdn: Callable[[Any], None],
        on_request: Callable[[Any], None] | None,
        log_run: PendingRun,
    ) -> RunResultLike: ...


class SyncJob:
    """:func:`~obs_sync.engine.run.run_sync` with one engine (a pool) for the daemon's life.

    Pending migrations are applied by the first run that reaches the database (the one at
    start, with ``run_at_start``); later runs skip that step, so a database that is down at
    start delays migrations rather than preventing them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.migrated = False
        # A missing embedded extra never heals by itself: refuse to start, not fail every run.
        try:
            if config.database.embedded:
                require_installed()
        except EmbeddedError as error:
            raise StartError(str(error)) from error

    def prepare(self) -> None:
        """Create the engine (starting the embedded PostgreSQL if configured) and connect once."""
        if self.engine is None:
            self.engine = self._make_engine()
        schema = self.config.database.schema_
        with self.engine.connect() as connection:  # connects: the database is reachable
            revision = revision_sa(connection, schema)
        try:
            needs_upgrade(revision, schema, migrate=True)
        except MigrationError as error:  # migrated by a newer obs-sync: every run would fail
            raise StartError(str(error)) from error

    def recorded(self) -> Sequence[VdnRow]:
        """Each configured VDN's recorded freshness and failure streak, then each of its
        other configured code lists' (empty before the first run ever), so health and
        metrics survive a restart."""
        if self.engine is None:  # prepare() failed: the database was down at start
            self.engine = self._make_engine()
        try:
            status = read_status(
                self.engine,
                self.config.database.schema_,
                self.config.vdn_keys,
                limit=1,
                heartbeat_seconds=self.config.sync.heartbeat_seconds,
                code_lists=list_keys(self.config),
            )
        except StatusError:
            return []
        return [*status.vdns, *status.code_lists]

    def last_run_success(self) -> datetime | None:
        """When the last run in which every VDN succeeded finished (None: never)."""
        if self.engine is None:
            return None
        return read_last_run_success(self.engine, self.config.database.schema_)

    def abandon_dead_runs(self) -> list[int]:
        """Mark the runs whose process is gone (any host) abandoned; their ids."""
        if self.engine is None:
            return []
        store = Store(self.engine, self.config.database.schema_)
        return store.abandon_dead_runs(
            hostname=socket.gethostname(),
            pid=os.getpid(),
            heartbeat_seconds=self.config.sync.heartbeat_seconds,
        )

    def __call__(
        self,
        *,
        stop: threading.Event,
        deadline: float,
        on_vdn: Callable[[Any], None],
        on_request: Callable[[Any], None] | None,
        log_run: PendingRun,
    ) -> RunResultLike:
        if self.engine is None:
            self.engine = self._make_engine()
        elif self.config.database.embedded and restart_if_stopped():
            log.warning("the embedded PostgreSQL had stopped; started it again")
        result = run_sync(
            self.config,
            engine=self.engine,
            migrate=not self.migrated,
            trigger="schedule",
            on_vdn=on_vdn,
            on_request=on_request,
            stop=stop,
            deadline=deadline,
            log_run=log_run,
        )
        self.migrated = True
        return result

    def _make_engine(self) -> Engine:
        engine = make_engine(self.config, connections=connections_per_run(self.config))
        url = engine.url.render_as_string(hide_password=False)
        database = self.config.database
        log.info(
            "database: %s", describe_database(url, database.schema_, embedded=database.embedded)
        )
        return engine

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
