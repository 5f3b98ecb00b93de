"""Per-run and per-VDN logging context, carried in contextvars so every log line can name them.

Worker threads do not inherit contextvars: code that fans out must set ``vdn_id`` (and
copy ``run_id``) inside the worker, e.g. with :func:`bind`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

run_id: contextvars.ContextVar[int | str | None] = contextvars.ContextVar("run_id", default=None)
vdn_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("vdn_id", default=None)


@contextlib.contextmanager
def bind(*, run: int | str | None = None, vdn: int | None = None) -> Iterator[None]:
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
    """Adds ``run_id`` and ``vdn_id`` attributes to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = run_id.get()
        record.vdn_id = vdn_id.get()
        return True
