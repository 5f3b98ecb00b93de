"""Per-run and per-VDN logging context, carried in contextvars so every log line can name them.

Worker threads do not inherit contextvars: code that fans out must set ``vdn_id`` (and
copy ``run_id``) inside the worker, e.g. with :func:`bind`.

A one-shot sync starts fetching before its run record (and so its id) exists. It binds a
:class:`PendingRun` instead: lines logged under it are held back until the id is known,
then written with it, so every line of a run names the run.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator

_RELEASED = "_obs_sync_released"


class PendingRun:
    """A run whose id is not known yet; :meth:`resolve` gives it and releases held lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resolved = False
        self.id: int | str | None = None
        self._held: list[tuple[logging.Handler, logging.LogRecord]] = []

    def hold(self, handler: logging.Handler, record: logging.LogRecord) -> bool:
        """Keep ``record`` for ``handler`` until resolved; False once it is."""
        with self._lock:
            if self._resolved:
                return False
            self._held.append((handler, record))
            return True

    def resolve(self, run: int | str | None) -> None:
        """Set the id (None: the run never got one) and write the held lines, in order.

        Idempotent; call it in a ``finally`` so no line is ever lost.
        """
        with self._lock:
            if self._resolved:
                return
            self.id, self._resolved = run, True
            held, self._held = self._held, []
        for handler, record in held:
            record.run_id = run
            setattr(record, _RELEASED, True)
            handler.handle(record)


run_id: contextvars.ContextVar[int | str | PendingRun | None] = contextvars.ContextVar(
    "run_id", default=None
)
vdn_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("vdn_id", default=None)


@contextlib.contextmanager
def bind(*, run: int | str | PendingRun | None = None, vdn: int | None = None) -> Iterator[None]:
    """Set the run and/or VDN for log lines emitted inside the block."""
    tokens: list[tuple[contextvars.ContextVar[object], contextvars.Token[object]]] = []
    if run is not None:
        tokens.append((run_id, run_id.set(run)))  # type: ignore[arg-type]
    if vdn is not None:
        tokens.append((vdn_id, vdn_id.set(vdn)))  # type: ignore[arg-type]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``run_id`` and ``vdn_id`` attributes to every record.

    Given the handler it is attached to, it holds back records of a :class:`PendingRun`
    (the handler writes them when the run is resolved); without one it never holds.
    """

    def __init__(self, handler: logging.Handler | None = None) -> None:
        super().__init__()
        self.handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _RELEASED, False):
            return True  # a held record, now carrying its run id
        run = run_id.get()
        record.vdn_id = vdn_id.get()
        if isinstance(run, PendingRun):
            if self.handler is not None and run.hold(self.handler, record):
                return False
            run = run.id
        record.run_id = run
        return True
