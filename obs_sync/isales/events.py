"""What the client reports per HTTP attempt (for metrics): plain data, no HTTP imports."""

from __future__ import annotations

from dataclasses import dataclass

from obs_sync.results import DEFAULT_SOURCE

# Outcomes reported to ``on_request`` (one event per HTTP attempt).
OUTCOMES = frozenset(
    {"ok", "http_error", "timeout", "connection_error", "non_json", "auth_error", "vendor_error"}
)


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt, for metrics: ``outcome`` is one of :data:`OUTCOMES`."""

    vdn_id: int
    outcome: str
    status: int | None
    seconds: float
    source: str = DEFAULT_SOURCE  # the configured source whose client made the attempt


class Counters:
    """Mutable per-fetch request counters (one fetch runs in one thread)."""

    __slots__ = ("requests", "retries")

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
