"""Where psycopg connections come from: a small pool of its own (a one-shot ``sync``, no
SQLAlchemy) or a SQLAlchemy engine's pool (the daemon, tests). Both lend a connection in
autocommit mode as a :class:`Lease`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class Lease:
    """One psycopg connection lent by a :class:`Pool`, in autocommit mode.

    Statements commit one by one; a transaction is explicit (``connection.transaction()``).
    """

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        give_back: Callable[[psycopg.Connection[Any], bool], None],
    ) -> None:
        self.connection = connection
        self._give_back = give_back
        self.released = False

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
                connection = psycopg.connect(**self._params, autocommit=True)
        except BaseException:
            self._slots.release()
            raise
        return Lease(connection, self._give_back)

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
        self.engine = engine

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
            else:
                proxy.invalidate()

        return Lease(connection, give_back)
