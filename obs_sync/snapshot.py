"""What one fetch of one VDN produced (its snapshot, or why there is none): plain data shared
by the client, the diff, the run and the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class FetchStats:
    pages: int = 0  # pages successfully read (restarts included)
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    restarts: int = 0  # paging restarted because totalCount changed
    total_count: int | None = None  # the last totalCount the server reported
    seconds: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """The codes of one VDN as fetched.

    ``complete`` is True only when every page was read and the server's totalCount
    stayed consistent with what was fetched; only a complete snapshot may delete rows.
    ``codes`` maps obs_code to obs_code_desc, de-duplicated, in first-seen order.
    """

    vdn_id: int
    codes: Mapping[str, str]
    complete: bool
    stats: FetchStats = field(default_factory=FetchStats)
    incomplete_reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", MappingProxyType(dict(self.codes)))


@dataclass(frozen=True)
class FetchFailure:
    """Why a VDN could not be fetched: one line of error text (secrets masked), its kind
    (:data:`obs_sync.results.ErrorKind`), and what the failed fetch cost."""

    error: str
    kind: str = "internal"
    stats: FetchStats = field(default_factory=FetchStats)
    status: int | None = None  # the HTTP status, when it failed on one (fail fast reads it)
