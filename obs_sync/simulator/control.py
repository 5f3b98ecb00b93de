"""The ``/_sim/`` control API: JSON over the simulator's own port, for other processes.

Unauthenticated on purpose (a loopback test tool); routes are listed in docs/simulator.md.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from obs_sync.simulator.data import SimulatorData, SimulatorDataError, check_vdn
from obs_sync.simulator.faults import Fault, FaultError, FaultSet
from obs_sync.simulator.keys import AccessKey, KeyRing, parse_vdn_grant
from obs_sync.simulator.stats import SimulatorStats


class Simulator(Protocol):
    """What the control API reads and sets of the running simulator (the server's own)."""

    data: SimulatorData
    faults: FaultSet
    stats: SimulatorStats
    keys: KeyRing
    latency_seconds: float
    max_clock_skew_seconds: float | None
    required_signed_headers: frozenset[str]

    @property
    def url(self) -> str: ...


Response = tuple[int, Any]


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(body: bytes) -> Any:
    if not body:
        raise ControlError(400, "a JSON body is required")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ControlError(400, f"body is not valid JSON: {error}") from error


def _number(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError as error:
        raise ControlError(400, f"query parameter {name} must be an integer") from error


def handle(sim: Simulator, method: str, path: str, raw_query: str, body: bytes) -> Response:
    try:
        return _route(sim, method, path, dict(parse_qsl(raw_query)), body)
    except ControlError as error:
        return error.status, {"error": str(error)}
    except (FaultError, SimulatorDataError) as error:
        return 400, {"error": str(error)}


def _route(sim: Simulator, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
    parts = [p for p in path.split("/") if p][1:]
    resource = parts[0] if parts else "health"
    rest = parts[1:]
    if resource == "health" and not rest and method == "GET":
        return 200, {
            "status": "ok",
            "url": sim.url,
            "vdns": len(sim.data.vdn_ids()),
            "keys": len(sim.keys),
            "locales": sim.data.locales(),
        }
    if resource == "stats" and not rest:
        if method == "GET":
            return 200, sim.stats.as_dict(recent=_number(query, "recent", 50))
        if method == "DELETE":
            sim.stats.reset()
            return 200, {"reset": True}
    if resource == "faults":
        return _faults(sim, method, rest, body)
    if resource == "data":
        return _data(sim, method, rest, query, body)
    if resource == "keys":
        return _keys(sim, method, rest, body)
    if resource == "settings" and not rest:
        if method == "PATCH":
            _settings(sim, _json(body))
        if method in ("GET", "PATCH"):
            return 200, {
                "latency_seconds": sim.latency_seconds,
                "max_clock_skew_seconds": sim.max_clock_skew_seconds,
                "required_signed_headers": sorted(sim.required_signed_headers),
            }
    raise ControlError(404, f"no control route {method} {path} (see docs/simulator.md)")


def _faults(sim: Simulator, method: str, rest: list[str], body: bytes) -> Response:
    if not rest:
        if method == "GET":
            return 200, {"faults": sim.faults.snapshot()}
        if method == "POST":
            raw = _json(body)
            items = raw if isinstance(raw, list) else [raw]
            if not all(isinstance(item, dict) for item in items):
                raise ControlError(400, "send a fault object or a list of fault objects")
            faults = [Fault.from_dict(item) for item in items]  # all valid, or none added
            return 201, {"ids": [sim.faults.add(f) for f in faults]}
        if method == "DELETE":
            sim.faults.clear()
            return 200, {"cleared": True}
    elif len(rest) == 1 and method == "DELETE" and rest[0].isdigit():
        if sim.faults.remove(int(rest[0])):
            return 200, {"removed": int(rest[0])}
        raise ControlError(404, f"no active fault {rest[0]}")
    raise ControlError(405, f"unsupported: {method} /_sim/faults/{'/'.join(rest)}")


def _data(
    sim: Simulator, method: str, rest: list[str], query: dict[str, str], body: bytes
) -> Response:
    if not rest and method == "GET":
        return 200, {
            "version": sim.data.version(),
            "vdns": {str(k): v for k, v in sim.data.summary().items()},
        }
    if len(rest) != 1:
        raise ControlError(404, "use /_sim/data or /_sim/data/{vdn}")
    vdn = check_vdn(rest[0])
    if method == "GET":
        locale = query.get("locale", "zh_CN")
        return 200, {
            "vdn_id": vdn,
            "version": sim.data.version(vdn),
            "codes": sim.data.codes(vdn, locale),
        }
    if method == "PUT":
        codes = _json(body)
        if not isinstance(codes, dict):
            raise ControlError(400, 'PUT a mapping {"<obsCode>": "<desc>", ...}')
        sim.data.set_codes(vdn, codes)
    elif method == "PATCH":
        change = _json(body)
        if not isinstance(change, dict) or set(change) - {"set", "remove"}:
            raise ControlError(400, 'PATCH {"set": {"<obsCode>": "<desc>"}, "remove": [codes]}')
        remove = change.get("remove", [])
        if not isinstance(remove, list) or not all(isinstance(c, str) for c in remove):
            raise ControlError(400, '"remove" must be a list of obsCode strings')
        sim.data.update(vdn, change.get("set") or {}, remove)
    elif method == "DELETE":
        sim.data.set_codes(vdn, {})
    else:
        raise ControlError(405, f"unsupported: {method} /_sim/data/{vdn}")
    return 200, {"vdn_id": vdn, "version": sim.data.version(vdn), "count": sim.data.total(vdn)}


def _keys(sim: Simulator, method: str, rest: list[str], body: bytes) -> Response:
    if not rest and method == "GET":
        return 200, {"keys": [key.describe() for key in sim.keys]}
    if len(rest) != 1:
        raise ControlError(404, "use /_sim/keys or /_sim/keys/{access key}")
    access_key = unquote(rest[0])
    if method == "PUT":
        raw = _json(body)
        if (
            not isinstance(raw, dict)
            or "secret_key" not in raw
            or set(raw)
            - {
                "secret_key",
                "vdn_ids",
            }
        ):
            raise ControlError(400, 'PUT {"secret_key": "...", "vdn_ids": [1, "3-5"] or null}')
        key = AccessKey(access_key, raw["secret_key"], parse_vdn_grant(raw.get("vdn_ids")))
        sim.keys.add(key)
        return 200, key.describe()
    if method == "DELETE":
        if sim.keys.remove(access_key):
            return 200, {"removed": access_key}
        raise ControlError(404, f"no access key {access_key!r}")
    raise ControlError(405, f"unsupported: {method} /_sim/keys/{rest[0]}")


def _settings(sim: Simulator, raw: Any) -> None:
    if not isinstance(raw, dict) or set(raw) - {"latency_seconds", "max_clock_skew_seconds"}:
        raise ControlError(400, "PATCH {latency_seconds: N, max_clock_skew_seconds: N|null}")
    if "latency_seconds" in raw:
        value = raw["latency_seconds"]
        if not isinstance(value, (int, float)) or value < 0:
            raise ControlError(400, "latency_seconds must be a number >= 0")
        sim.latency_seconds = float(value)
    if "max_clock_skew_seconds" in raw:
        skew = raw["max_clock_skew_seconds"]
        if skew is not None and (not isinstance(skew, (int, float)) or skew < 0):
            raise ControlError(400, "max_clock_skew_seconds must be a number >= 0 or null")
        sim.max_clock_skew_seconds = None if skew is None else float(skew)
