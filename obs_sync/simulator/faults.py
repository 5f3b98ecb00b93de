"""Faults injected on demand into the simulator's answers.

Each request to the iSales URL that passed authentication and parameter validation takes
at most ONE fault: the earliest-added active fault that matches it (kind applicable,
``vdn_id``/``page_num``/``access_key``/``locale`` filters). Taking it uses one of its
``times`` (None = forever).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from obs_sync.simulator.data import normalize_locale

FaultKind = Literal[
    "http_status",  # HTTP `status` (500/503/429...), Retry-After when `retry_after` is set;
    # with `vendor_body`, the body is the vendor failure body for `code`/`desc`
    "slow",  # sleep `delay_seconds`, then answer normally
    "non_json",  # HTTP 200 with an HTML body
    "result_code",  # HTTP 200, vendor failure `code` with `desc`
    "total_drift",  # totalCount reported off by `delta` (only on pageNum >= 2 unless page_num)
    "empty_page",  # obsCodes [] although the page should have codes
    "drop_connection",  # close the socket without any response
    "duplicate_code",  # repeat the page's first code with another description (or `desc`)
    "bad_code",  # first code of the page broken per `variant`
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
BadCodeVariant = Literal["blank", "missing", "null", "number"]
_VARIANTS: tuple[str, ...] = get_args(BadCodeVariant)
# Kinds that alter codes on the page: pointless (so not taken) on a page without codes.
PAGE_KINDS = frozenset({"empty_page", "duplicate_code", "bad_code"})


class FaultError(ValueError):
    """A fault definition is invalid; the message names the field."""


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    times: int | None = 1
    vdn_id: int | None = None
    page_num: int | None = None
    access_key: str | None = None  # only requests signed with this access key
    locale: str | None = None  # only requests served in this locale (zh_CN, en_US, ...)
    status: int = 503
    retry_after: float | None = None
    delay_seconds: float = 2.0
    code: str = "0200001"
    desc: str | None = None
    delta: int = 1
    variant: BadCodeVariant = "blank"
    vendor_body: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise FaultError(f"kind {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if self.times is not None and (not isinstance(self.times, int) or self.times < 1):
            raise FaultError(f"times {self.times!r} must be a positive integer or null (forever)")
        for name in ("vdn_id", "page_num"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise FaultError(f"{name} {value!r} must be a positive integer or null")
        for name in ("access_key", "locale"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise FaultError(f"{name} {value!r} must be a non-empty string or null")
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise FaultError(f"status {self.status!r} must be an HTTP status 100..599")
        if self.retry_after is not None and self.retry_after < 0:
            raise FaultError(f"retry_after {self.retry_after!r} must be >= 0")
        if self.delay_seconds < 0:
            raise FaultError(f"delay_seconds {self.delay_seconds!r} must be >= 0")
        if not isinstance(self.code, str) or not self.code:
            raise FaultError(f'code {self.code!r} must be a non-empty string like "0200001"')
        if not isinstance(self.vendor_body, bool):
            raise FaultError(f"vendor_body {self.vendor_body!r} must be true or false")
        if self.variant not in _VARIANTS:
            raise FaultError(f"variant {self.variant!r} is not one of {', '.join(_VARIANTS)}")
        if self.kind == "total_drift" and self.delta == 0:
            raise FaultError("delta must not be 0 for total_drift")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise FaultError(f"unknown fault field(s) {', '.join(unknown)}; known: {sorted(known)}")
        if "kind" not in raw:
            raise FaultError(f"kind is required (one of {', '.join(FAULT_KINDS)})")
        try:
            return cls(**raw)
        except TypeError as error:
            raise FaultError(str(error)) from error

    def matches(
        self,
        vdn_id: int,
        page_num: int,
        access_key: str | None = None,
        locale: str | None = None,
    ) -> bool:
        if self.vdn_id is not None and self.vdn_id != vdn_id:
            return False
        if self.access_key is not None and self.access_key != access_key:
            return False
        if self.locale is not None and normalize_locale(self.locale) != locale:
            return False
        if self.page_num is not None:
            return self.page_num == page_num
        # Drift is a change BETWEEN pages: by default page 1 reports the true count.
        return not (self.kind == "total_drift" and page_num < 2)


@dataclass
class _Active:
    id: int
    fault: Fault
    remaining: int | None
    hits: int = 0


class FaultSet:
    """The active faults. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[_Active] = []
        self._next_id = 1

    def add(self, fault: Fault) -> int:
        """Activate ``fault``; returns its id (for :meth:`remove`)."""
        with self._lock:
            fault_id = self._next_id
            self._next_id += 1
            self._active.append(_Active(fault_id, fault, fault.times))
            return fault_id

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._active)
            self._active = [a for a in self._active if a.id != fault_id]
            return len(self._active) != before

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._active)

    def take(
        self,
        vdn_id: int,
        page_num: int,
        applicable: Callable[[Fault], bool] | None = None,
        *,
        access_key: str | None = None,
        locale: str | None = None,
    ) -> Fault | None:
        """The fault for this request, if any, using up one of its ``times``."""
        if not self._active:  # fast path, no lock: a list's truthiness is atomic
            return None
        with self._lock:
            for active in self._active:
                fault = active.fault
                if not fault.matches(vdn_id, page_num, access_key, locale):
                    continue
                if applicable is not None and not applicable(fault):
                    continue
                active.hits += 1
                if active.remaining is not None:
                    active.remaining -= 1
                    if active.remaining <= 0:
                        self._active.remove(active)
                return fault
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"id": a.id, "remaining": a.remaining, "hits": a.hits, **asdict(a.fault)}
                for a in self._active
            ]
