"""The ``queryOBSResultCode`` endpoint: one page of a VDN's result codes, in the locale
asked for, with the faults that hit it."""

from __future__ import annotations

from obs_sync.isales.vendor import SUCCESS
from obs_sync.simulator.endpoint import ApiRequest, Reply, fault_reply, vendor_failure
from obs_sync.simulator.faults import PAGE_KINDS
from obs_sync.simulator.protocol import (
    ParamError,
    modify_page,
    parse_page_params,
    success_body,
)


def result_codes(request: ApiRequest) -> Reply:
    sim, out, vdn_id, locale = request.sim, request.out, request.vdn_id, request.locale
    try:
        page_size, page_num = parse_page_params(request.query)
    except ParamError as error:
        return vendor_failure(out, error.code, error.detail)
    out.page_size, out.page_num = page_size, page_num
    source = sim.data.page_source(vdn_id, locale)
    start = (page_num - 1) * page_size
    fragments = source.fragments[start : start + page_size]
    fault = sim.faults.take(
        vdn_id,
        page_num,
        lambda f: bool(fragments) or f.kind not in PAGE_KINDS,
        access_key=request.access_key,
        locale=locale,
    )
    if sim.latency_seconds > 0:
        sim.sleep(sim.latency_seconds)
    if fault is not None:
        reply = fault_reply(sim, fault, out)
        if reply is not None:
            return reply
    total = source.total
    items = list(fragments)
    if fault is not None:
        total, items = modify_page(fault, source, start, page_size, total, items)
    out.result_code = SUCCESS
    out.codes = len(items)
    return Reply(200, success_body(items, total))
