"""Counters of what the simulator served, for tests and benchmarks. Thread-safe."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

DROPPED = 0  # by_status key for connections closed without a response


@dataclass(frozen=True)
class RequestRecord:
    """One request to the iSales URL (control API requests are not recorded)."""

    at: float  # time.monotonic()
    vdn_id: int | None
    page_num: int | None
    page_size: int | None
    status: int  # HTTP status, or 0 when the connection was dropped
    result_code: str | None
    locale: str | None  # the `locale` header as received
    host: str | None  # the Host header as received
    fault: str | None
    access_key: str | None = None  # the signing key, once its signature was verified


class SimulatorStats:
    """Requests total, per VDN, by status, auth failures, faults, concurrency.

    ``recent`` keeps the last ``history`` requests as :class:`RequestRecord`.
    """

    def __init__(self, history: int = 2000) -> None:
        self._lock = threading.Lock()
        self._history = history
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.connections = 0  # TCP connections accepted (keep-alive: few)
            self.by_vdn: Counter[int] = Counter()
            self.by_status: Counter[int] = Counter()
            self.by_result_code: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.auth_failures = 0
            self.forbidden = 0  # 403: a verified key asked for a VDN it is not granted
            self.by_access_key: Counter[str] = Counter()
            self.param_errors = 0
            self.codes_served = 0
            self.in_flight = 0
            self.max_in_flight = 0
            self.started_at = time.monotonic()
            self.recent: deque[RequestRecord] = deque(maxlen=self._history)

    def connection_opened(self) -> None:
        with self._lock:
            self.connections += 1

    def begin(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self, record: RequestRecord, codes: int = 0) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests += 1
            if record.vdn_id is not None:
                self.by_vdn[record.vdn_id] += 1
            self.by_status[record.status] += 1
            if record.result_code is not None:
                self.by_result_code[record.result_code] += 1
                if record.result_code.startswith("0200") and record.result_code != "0200000":
                    self.param_errors += record.fault is None
            if record.status == 401:
                self.auth_failures += 1
            if record.status == 403:
                self.forbidden += 1
            if record.access_key is not None:
                self.by_access_key[record.access_key] += 1
            if record.fault is not None:
                self.faults[record.fault] += 1
            self.codes_served += codes
            self.recent.append(record)

    def as_dict(self, recent: int = 50) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "connections": self.connections,
                "by_vdn": {str(k): v for k, v in sorted(self.by_vdn.items())},
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_result_code": dict(self.by_result_code),
                "faults": dict(self.faults),
                "auth_failures": self.auth_failures,
                "forbidden": self.forbidden,
                "by_access_key": dict(self.by_access_key),
                "param_errors": self.param_errors,
                "codes_served": self.codes_served,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "seconds": round(time.monotonic() - self.started_at, 3),
                "recent": [asdict(r) for r in list(self.recent)[-recent:]] if recent else [],
            }
