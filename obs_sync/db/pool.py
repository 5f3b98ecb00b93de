"""Where psycopg connections come from: a small pool of its own (a one-shot ``sync``, no
SQLAlchemy) or a SQLAlchemy engine's pool (the daemon, tests). Both lend a connection in
autocommit mode as a :class:`Lease`.

A connection goes back to either pool with no session state: a lease that took a session
lock says so (:meth:`Lease.hold_session_state`) and its connection is reset on return
(``pg_advisory_unlock_all()``); an engine's pool also resets any connection that comes back
still in autocommit (one lost without its lease being released, e.g. garbage-collected
after an interrupt), so no later ``engine.begin()`` runs outside a transaction and no run
lock outlives its run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

RESET_SESSION = "SELECT pg_advisory_unlock_all()"
_SESSION_STATE = "obs_sync_session_state"  # key in a SQLAlchemy connection record's info


def reset_session(connection: psycopg.Connection[Any]) -> None:
    """Roll back and release every session-level lock; leaves autocommit as it found it."""
    if connection.info.transaction_status != TransactionStatus.IDLE:
        connection.rollback()
    connection.execute(RESET_SESSION)
    if not connection.autocommit:
        connection.rollback()  # the statement opened a transaction


class Lease:
    """One psycopg connection lent by a :class:`Pool`, in autocommit mode.

    Statements commit one by one; a transaction is explicit (``connection.transaction()``).
    """

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        give_back: Callable[[psycopg.Connection[Any], bool], None],
        on_session_state: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self._give_back = give_back
        self._on_session_state = on_session_state
        self.released = False
        self.session_state = False  # took a session-level lock: reset on return

    def hold_session_state(self) -> None:
        """This lease takes session-level state (a run lock): reset it when given back."""
        self.session_state = True
        if self._on_session_state is not None:
            self._on_session_state()

    def release(self) -> None:
        """Give the connection back (rolled back if needed; dropped when broken)."""
        if self.released:
            return
        self.released = True
        connection = self.connection
        usable = not (connection.closed or connection.broken)
        if usable and connection.info.transaction_status != TransactionStatus.IDLE:
            try:
                connection.rollback()
            except psycopg.Error:
                usable = False
        # An engine's pool resets on return itself (its reset event, which also catches a
        # lease that is never released); this pool's leases reset here.
        if usable and self.session_state and self._on_session_state is None:
            try:
                reset_session(connection)
            except psycopg.Error:
                usable = False
        self._give_back(connection, usable)

    def discard(self) -> None:
        """Close the connection instead of reusing it (frees its session advisory locks)."""
        if not self.released:
            self.released = True
            self._give_back(self.connection, False)


class Pool:
    """Where the store's connections come from: :class:`OwnPool` or :class:`EnginePool`."""

    def acquire(self) -> Lease:
        raise NotImplementedError

    def close(self) -> None:
        """Close the idle connections (leases still out close when released)."""

    @contextmanager
    def fresh(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of its own, outside the pool's bound (a run being aborted while
        every pooled connection is in use); closed after."""
        connection = self._connect()
        try:
            yield connection
        finally:
            connection.close()

    def _connect(self) -> psycopg.Connection[Any]:
        raise NotImplementedError

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        lease = self.acquire()
        try:
            yield lease.connection
        finally:
            lease.release()


class OwnPool(Pool):
    """A small pool of psycopg connections, made on demand (the one-shot ``sync``)."""

    def __init__(self, params: Mapping[str, Any], size: int) -> None:
        self._params = dict(params)
        self._size = size
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        # At most ``size`` connections lent at once: a caller beyond waits for one.
        self._slots = threading.BoundedSemaphore(size)

    def __repr__(self) -> str:  # the parameters hold the password: never shown
        return f"<OwnPool size={self._size} idle={len(self._idle)}>"

    def acquire(self) -> Lease:
        self._slots.acquire()
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                connection = self._connect()
        except BaseException:
            self._slots.release()
            raise
        return Lease(connection, self._give_back)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(**self._params, autocommit=True)

    def _give_back(self, connection: psycopg.Connection[Any], usable: bool) -> None:
        try:
            if usable:
                with self._lock:
                    if not self._closed and len(self._idle) < self._size:
                        self._idle.append(connection)
                        return
            connection.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for connection in idle:
            connection.close()


class EnginePool(Pool):
    """The psycopg connections of a SQLAlchemy engine's pool (the daemon keeps one engine).

    A lent connection is switched to autocommit and back; a broken one is invalidated, so
    the engine replaces it. The engine's owner disposes of it.
    """

    def __init__(self, engine: Engine) -> None:
        from sqlalchemy import event  # here: a one-shot sync's own pool never loads SQLAlchemy

        self.engine = engine
        if not event.contains(engine.pool, "reset", _reset_on_return):
            event.listen(engine.pool, "reset", _reset_on_return)

    def _connect(self) -> psycopg.Connection[Any]:
        proxy = self.engine.raw_connection()
        proxy.detach()  # the pool forgets it: closed by the caller, not returned
        connection = proxy.driver_connection
        assert isinstance(connection, psycopg.Connection)
        connection.autocommit = True
        return connection

    def acquire(self) -> Lease:
        proxy = self.engine.raw_connection()
        connection = proxy.driver_connection
        assert isinstance(connection, psycopg.Connection)
        try:
            connection.autocommit = True
        except BaseException:
            proxy.invalidate()
            raise

        def give_back(connection: psycopg.Connection[Any], usable: bool) -> None:
            if usable:
                try:
                    connection.autocommit = False  # as SQLAlchemy left it
                except psycopg.Error:
                    usable = False
            if usable:
                proxy.close()
            elif connection.broken:
                # Its session was lost (a restart, a terminated backend): the others in the
                # pool likely went with it. As SQLAlchemy does on a disconnect, every
                # connection made before now is replaced at its next checkout.
                self.engine.pool._invalidate(proxy)
            else:
                proxy.invalidate()

        def mark() -> None:
            # On the pool's record too: if this lease is lost (never released), the pool's
            # reset still finds it when the connection is garbage-collected back.
            proxy.info[_SESSION_STATE] = True

        return Lease(connection, give_back, mark)


def _reset_on_return(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
    """SQLAlchemy's pool ``reset`` event: no session state survives a return.

    Cheap for the usual return (nothing to do); a connection that held a session lock, or
    comes back still in autocommit (lost by a lease never released), is reset. An error
    here makes SQLAlchemy discard the connection, which also frees its locks.
    """
    if not isinstance(dbapi_connection, psycopg.Connection):
        return
    marked = connection_record.info.pop(_SESSION_STATE, False)
    leaked = dbapi_connection.autocommit
    if not (marked or leaked):
        return
    if leaked:
        log.debug("a pooled connection came back in autocommit (a lease never released): reset")
    reset_session(dbapi_connection)
    if leaked:
        dbapi_connection.autocommit = False  # as SQLAlchemy expects it
