"""What an iSales endpoint of the simulator gets and gives back, and the faults that
replace its answer.

Every endpoint shares the server's checks (docs/simulator.md: method, C2 signature,
Content-Type, vdnId, the key's grant); it then gets an :class:`ApiRequest` and returns a
:class:`Reply`, which the HTTP handler (:mod:`obs_sync.simulator.server`) sends. An
endpoint is a function in its own module plus one line in ``server.ENDPOINTS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from obs_sync.isales.vendor import FAILURE_CODES
from obs_sync.simulator.data import SimulatorData
from obs_sync.simulator.faults import Fault, FaultSet
from obs_sync.simulator.protocol import JSON_TYPE, NON_JSON_BODY, failure_body


class Server(Protocol):
    """What an endpoint reads of the running simulator."""

    data: SimulatorData
    faults: FaultSet
    latency_seconds: float

    def sleep(self, seconds: float) -> None:
        """Wait (cut short when the simulator stops)."""


@dataclass
class Outcome:
    """What the stats record of one request; the checks and the endpoint fill it in."""

    status: int = 200
    vdn_id: int | None = None
    page_num: int | None = None
    page_size: int | None = None
    result_code: str | None = None
    fault: str | None = None
    codes: int = 0
    access_key: str | None = None


@dataclass(frozen=True)
class ApiRequest:
    """A request that passed the shared checks: GET, a verified C2 signature, the
    Content-Type, a valid vdnId that the signing key is granted."""

    sim: Server
    out: Outcome
    match: re.Match[str]  # the endpoint's path pattern on the raw path
    query: str  # the raw query string
    vdn_id: int
    access_key: str
    locale: str  # the locale descriptions are served in (SimulatorData.served_locale)


@dataclass(frozen=True)
class Reply:
    """The answer to send; ``drop``: close the connection without any answer."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    drop: bool = False


Endpoint = Callable[[ApiRequest], Reply]


def vendor_failure(out: Outcome, code: str, desc: str) -> Reply:
    """HTTP 200 with the vendor's failure body (a parameter error...)."""
    out.result_code = code
    return Reply(200, failure_body(code, desc))


def fault_reply(sim: Server, fault: Fault, out: Outcome) -> Reply | None:
    """Apply ``fault``: the reply that replaces the endpoint's answer, or None when the
    endpoint answers after all (``slow`` has waited; page faults bend its body)."""
    out.fault = fault.kind
    if fault.kind == "slow":
        sim.sleep(fault.delay_seconds)
        return None
    if fault.kind == "drop_connection":
        return Reply(0, drop=True)
    if fault.kind == "http_status":
        headers: list[tuple[str, str]] = []
        if fault.retry_after is not None:
            value = fault.retry_after
            headers.append(("Retry-After", str(int(value)) if value == int(value) else str(value)))
        if fault.vendor_body:  # a vendor failure code under an HTTP error status
            desc = fault.desc if fault.desc is not None else FAILURE_CODES.get(fault.code)
            out.result_code = fault.code
            payload = failure_body(fault.code, desc or "")
        else:
            try:
                reason = HTTPStatus(fault.status).phrase
            except ValueError:
                reason = "Error"
            payload = json.dumps({"error": reason, "injected": True}).encode()
        return Reply(fault.status, payload, headers=tuple(headers))
    if fault.kind == "non_json":
        return Reply(200, NON_JSON_BODY, content_type="text/html;charset=UTF-8")
    if fault.kind == "result_code":
        desc = fault.desc if fault.desc is not None else FAILURE_CODES.get(fault.code, "")
        return vendor_failure(out, fault.code, desc)
    return None
