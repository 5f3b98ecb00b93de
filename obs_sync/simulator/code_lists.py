"""The simulator's other code lists: display results (with their OBS codes) and business
results, per VDN and locale, with the faults the spec's inferences call for.

``GET {prefix}/queryOBSResults``, ``{prefix}/{defId}/queryObsResultDetail`` and
``{prefix}/queryBusinessResults`` (prefix ``/rest/isales/v1/openapi/campaigns/{vdnId}``)
are answered here after the server checked the signature and the Content-Type
(:mod:`obs_sync.simulator.server`). Generated data is deterministic per VDN: 20 display
results grouping 6 of the VDN's OBS codes each, 10 business results with 3 sub-statuses,
labels in zh_CN and en_US. Tests replace a VDN's lists with :meth:`CodeLists.set_display`
and :meth:`CodeLists.set_business`, and inject faults with :meth:`CodeLists.add_fault`.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast
from urllib.parse import parse_qsl, unquote

from obs_sync.isales.vendor import MAX_PAGE_SIZE, SUCCESS
from obs_sync.simulator.data import Description, SimulatorData, pick
from obs_sync.simulator.endpoint import ApiRequest, Reply
from obs_sync.simulator.protocol import ParamError, failure_body, int_param

# The endpoints' path (server.ENDPOINTS): the group ``vdn`` is checked by the server.
ROUTE = re.compile(
    r"^/rest/isales/v1/openapi/campaigns/(?P<vdn>[^/]*)/"
    r"(?:(?P<display>queryOBSResults)|(?P<business>queryBusinessResults)"
    r"|(?P<def_id>[^/]*)/queryObsResultDetail)$"
)

_LABELS = (
    ("客户未接听", "No answer"),
    ("号码错误", "Wrong number"),
    ("客户忙", "Busy"),
    ("关机", "Phone off"),
    ("接通成功", "Connected"),
    ("语音信箱", "Voicemail"),
)
_BUSINESS = (
    ("呼叫失败", "Call failed"),
    ("意向客户", "Interested"),
    ("已成交", "Closed"),
    ("拒绝", "Declined"),
    ("回访", "Call back"),
)
_SUB = (
    ("客户直接挂断", "Hung up"),
    ("客户关机", "Phone switched off"),
    ("稍后再拨", "Try later"),
    ("需要资料", "Wants documents"),
)

FaultKind = Literal["detail_status", "detail_gone", "detail_empty", "numbers_as_strings"]


@dataclass(frozen=True)
class DisplayResult:
    """One display result and the OBS codes grouped under it."""

    def_id: str
    result_code: str
    label: Description
    fail_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BusinessResult:
    """A business result (``code`` None: sent without one) and its sub-statuses."""

    code: str | None
    name: Description
    children: tuple[tuple[str | None, Description], ...] = ()


@dataclass
class CodeListFault:
    """``detail_status``: the detail of ``def_id`` (any when None) answers HTTP ``status``;
    ``detail_gone``: it answers the vendor failure envelope (a display result deleted
    between the list and its detail); ``detail_empty``: an empty ``obResult``;
    ``numbers_as_strings``: totalCount, vdnId and defLevel sent as strings / numbers as
    real servers do. ``times`` None: forever."""

    kind: FaultKind
    vdn_id: int | None = None
    def_id: str | None = None
    status: int = 500
    times: int | None = 1

    def matches(self, vdn_id: int, def_id: str | None) -> bool:
        return (self.vdn_id is None or self.vdn_id == vdn_id) and (
            self.def_id is None or def_id is None or self.def_id == def_id
        )


@dataclass
class _Vdn:
    display: tuple[DisplayResult, ...]
    business: tuple[BusinessResult, ...]


@dataclass
class CodeLists:
    """Every VDN's display and business results. Thread-safe."""

    data: SimulatorData
    display_per_vdn: int = 20
    codes_per_display: int = 6
    business_per_vdn: int = 10
    subs_per_business: int = 3
    _explicit: dict[int, _Vdn] = field(default_factory=dict)
    _faults: list[CodeListFault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- data --------------------------------------------------------------------------

    def _generate(self, vdn_id: int) -> _Vdn:
        if vdn_id not in self.data.vdn_ids():
            return _Vdn((), ())
        rng = random.Random(f"obs-sync-sim-lists/{vdn_id}")
        codes = list(self.data.codes(vdn_id))
        rng.shuffle(codes)
        display = []
        for index in range(self.display_per_vdn):
            zh, en = _LABELS[index % len(_LABELS)]
            chunk = codes[index * self.codes_per_display : (index + 1) * self.codes_per_display]
            display.append(
                DisplayResult(
                    def_id=str(1_400_000_000 + vdn_id * 1000 + index),
                    result_code=f"{index + 1:03d}",
                    label={"zh_CN": f"{zh}{index + 1}", "en_US": f"{en} {index + 1}"},
                    fail_codes=tuple(chunk),
                )
            )
        business = []
        for index in range(self.business_per_vdn):
            zh, en = _BUSINESS[index % len(_BUSINESS)]
            code = f"{100000 + index * 100}"
            children = tuple(
                (
                    f"{int(code) + sub + 1}",
                    {
                        "zh_CN": f"{_SUB[sub % len(_SUB)][0]}{index}",
                        "en_US": f"{_SUB[sub % len(_SUB)][1]} {index}",
                    },
                )
                for sub in range(self.subs_per_business)
            )
            business.append(
                BusinessResult(code, {"zh_CN": f"{zh}{index}", "en_US": f"{en} {index}"}, children)
            )
        return _Vdn(tuple(display), tuple(business))

    def _vdn(self, vdn_id: int) -> _Vdn:
        with self._lock:
            found = self._explicit.get(vdn_id)
        return found if found is not None else self._generate(vdn_id)

    def display(self, vdn_id: int) -> tuple[DisplayResult, ...]:
        return self._vdn(vdn_id).display

    def business(self, vdn_id: int) -> tuple[BusinessResult, ...]:
        return self._vdn(vdn_id).business

    def set_display(self, vdn_id: int, results: Sequence[DisplayResult]) -> None:
        """Replace a VDN's display results (server order as given)."""
        current = self._vdn(vdn_id)
        with self._lock:
            self._explicit[vdn_id] = replace(current, display=tuple(results))

    def set_business(self, vdn_id: int, results: Sequence[BusinessResult]) -> None:
        """Replace a VDN's business results (server order as given)."""
        current = self._vdn(vdn_id)
        with self._lock:
            self._explicit[vdn_id] = replace(current, business=tuple(results))

    # -- faults ------------------------------------------------------------------------

    def add_fault(self, fault: CodeListFault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, kinds: frozenset[str], vdn_id: int, def_id: str | None) -> CodeListFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(vdn_id, def_id):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _strings(self, vdn_id: int) -> bool:
        with self._lock:
            return any(
                f.kind == "numbers_as_strings" and f.matches(vdn_id, None) for f in self._faults
            )

    # -- answers -----------------------------------------------------------------------

    def answer(
        self, route: re.Match[str], vdn_id: int, query: str, locale: str
    ) -> tuple[int, bytes]:
        """(HTTP status, body) for a request that matched :data:`ROUTE`."""
        try:
            if route.group("def_id") is not None:
                def_id = unquote(route.group("def_id"))
                int_param("defId", def_id, 0, 2**63 - 1)
                _no_params(query, ())
                return self._detail(vdn_id, def_id, locale)
            page_size, page_num = _paging(query)
        except ParamError as error:
            return 200, failure_body(error.code, error.detail)
        if route.group("display"):
            return self._display_page(vdn_id, page_size, page_num, locale)
        return self._business_page(vdn_id, page_size, page_num, locale)

    def _envelope(self, desc: str, **fields: Any) -> bytes:
        body = {
            "resultCode": SUCCESS,
            "resultDesc": desc,
            "returnCode": SUCCESS,
            "returnDesc": desc,
            **fields,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def _display_page(
        self, vdn_id: int, page_size: int, page_num: int, locale: str
    ) -> tuple[int, bytes]:
        results = self.display(vdn_id)
        start = (page_num - 1) * page_size
        data = [
            {"defId": r.def_id, "resultCode": r.result_code, "displayResult": pick(r.label, locale)}
            for r in results[start : start + page_size]
        ]
        total: int | str = len(results)
        if self._strings(vdn_id):
            total = str(total)
        return 200, self._envelope("success", totalCount=total, data=data)

    def _detail(self, vdn_id: int, def_id: str, locale: str) -> tuple[int, bytes]:
        fault = self._take(
            frozenset({"detail_status", "detail_gone", "detail_empty"}), vdn_id, def_id
        )
        if fault is not None and fault.kind == "detail_status":
            return fault.status, json.dumps({"error": "injected", "injected": True}).encode()
        found = next((r for r in self.display(vdn_id) if r.def_id == def_id), None)
        if (fault is not None and fault.kind == "detail_gone") or (found is None and fault is None):
            return 200, failure_body("0200001", f"defId {def_id} does not exist")
        if found is None or (fault is not None and fault.kind == "detail_empty"):
            return 200, self._envelope("queryObsResultDetail success", obResult={})
        strings = self._strings(vdn_id)
        vdn: int | str = str(vdn_id) if strings else vdn_id
        ob_result = {
            "defId": found.def_id,
            "displayResult": pick(found.label, locale),
            "vdnId": vdn,
            "resultCode": found.result_code,
            "resultMapList": [
                {
                    "mapId": str(1_000_000_000 + index),
                    "defId": found.def_id,
                    "failCode": code,
                    "vdnId": str(vdn_id),  # as in the vendor's own example
                }
                for index, code in enumerate(found.fail_codes)
            ],
        }
        return 200, self._envelope("queryObsResultDetail success", obResult=ob_result)

    def _business_page(
        self, vdn_id: int, page_size: int, page_num: int, locale: str
    ) -> tuple[int, bytes]:
        results = self.business(vdn_id)
        strings = self._strings(vdn_id)
        start = (page_num - 1) * page_size
        data = []
        for result in results[start : start + page_size]:
            item: dict[str, Any] = {"name": pick(result.name, locale)}
            if result.code is not None:
                item["code"] = result.code
            item["defLevel"] = 1 if strings else "1"
            item["children"] = [
                {
                    "name": pick(name, locale),
                    **({"code": code} if code is not None else {}),
                    "defLevel": 2 if strings else "2",
                }
                for code, name in result.children
            ]
            data.append(item)
        total: int | str = str(len(results)) if strings else len(results)
        return 200, self._envelope("success", totalCount=total, data=data)


class _Server(Protocol):
    code_lists: CodeLists
    latency_seconds: float

    def sleep(self, seconds: float) -> None: ...


def code_lists(request: ApiRequest) -> Reply:
    """The endpoint (server.ENDPOINTS) of the three code-list APIs."""
    sim = cast(_Server, request.sim)
    if sim.latency_seconds > 0:
        sim.sleep(sim.latency_seconds)
    status, body = sim.code_lists.answer(
        request.match, request.vdn_id, request.query, request.locale
    )
    return Reply(status, body)


def _no_params(query: str, allowed: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            raise ParamError("0200001", f"{name} is given more than once")
        params[name] = value
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ParamError("02000011", f"unknown parameter(s): {', '.join(unknown)}")
    return params


def _paging(query: str) -> tuple[int, int]:
    params = _no_params(query, ("pageSize", "pageNum"))
    page_size = int_param("pageSize", params.get("pageSize"), 1, MAX_PAGE_SIZE)
    page_num = int_param("pageNum", params.get("pageNum"), 1, 2**31 - 1)
    return page_size, page_num


def display_results(
    items: Mapping[str, tuple[str, Description, Sequence[str]]],
) -> list[DisplayResult]:
    """Test helper: ``{defId: (resultCode, label, failCodes)}`` as display results."""
    return [
        DisplayResult(def_id, code, label, tuple(codes))
        for def_id, (code, label, codes) in items.items()
    ]
