"""The progress bar of a one-shot sync on a terminal, and the log records around it.

The bar owns the terminal's last line, redrawn in place (``\\r``). A log record written
while it is shown would continue that line (``syncing [...] 0%2026-12-07T11:30:43Z INFO
...``). So while the bar is shown, obs-sync's log handler writes through the bar: each
record first clears the bar's line, then the bar is drawn again below the record. Records
keep their configured format (text or JSON); only the terminal's last line changes hands.

The line's wording (:func:`bar_line`) is plain; :class:`ProgressBar` only writes it.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import TextIO, cast

from obs_sync.text import plural

CLEAR_LINE = "\r\x1b[K"  # to the line's start, erase to its end
WIDTH = 30


def bar_line(done: int, total: int, label: str = "syncing", width: int = WIDTH) -> str:
    """``syncing [##########--------------------]  33%  1 of 3 VDNs``."""
    share = done / total if total else 1.0
    filled = min(width, int(share * width))
    return (
        f"{label} [{'#' * filled}{'-' * (width - filled)}] {int(share * 100):3d}%  "
        f"{done} of {plural(total, 'VDN')}"
    )


class ProgressBar:
    """A bar on ``stream`` (a terminal) for ``total`` VDNs; :meth:`advance` is thread-safe.

    In its ``with`` block, the handler of obs-sync's logging (named ``obs-sync``, see
    :func:`obs_sync.observability.setup_logging`) writes through :class:`_AroundBar`.
    """

    def __init__(self, total: int, stream: TextIO, label: str = "syncing") -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.done = 0
        self.shown = False
        self.lock = threading.RLock()
        self._handlers: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []

    def __enter__(self) -> ProgressBar:
        for handler in logging.getLogger().handlers:
            if handler.get_name() == "obs-sync" and isinstance(handler, logging.StreamHandler):
                old = handler.setStream(cast("TextIO", _AroundBar(self, handler.stream)))
                if old is not None:
                    self._handlers.append((handler, old))
        self.draw()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self.lock:
            for handler, old in self._handlers:
                handler.setStream(old)
            self._handlers.clear()
            if self.shown:
                self.stream.write("\n")  # the bar stays, the summary starts below it
                self.stream.flush()
                self.shown = False

    def advance(self, count: int = 1) -> None:
        with self.lock:
            self.done += count
            self.draw()

    def draw(self) -> None:
        with self.lock:
            self.stream.write(CLEAR_LINE + bar_line(self.done, self.total, self.label))
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                self.stream.write(CLEAR_LINE)
                self.shown = False


class _AroundBar:
    """A log handler's stream while the bar is shown: a record clears the bar's line and
    the bar is redrawn once the record's line is complete (the handler's flush)."""

    def __init__(self, bar: ProgressBar, stream: TextIO) -> None:
        self.bar = bar
        self.stream = stream
        self._open_line = False

    def write(self, text: str) -> int:
        with self.bar.lock:
            self.bar.clear()
            written = self.stream.write(text)
            self._open_line = not text.endswith("\n")
            return written

    def flush(self) -> None:
        with self.bar.lock:
            self.stream.flush()
            if not self._open_line and not self.bar.shown:
                self.bar.draw()

    def isatty(self) -> bool:
        return self.stream.isatty()
