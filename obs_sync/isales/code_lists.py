"""Fetching the other code lists of one VDN: display results (with their OBS codes) and
business results (spec: ``isales-code-lists.md``).

Every request goes through :meth:`ISalesClient.fetch_json` (signing, the rate limit, the
retry policy, the size and time bounds of today's fetch); the list pages are walked by
today's :class:`~obs_sync.isales.paging.Pager` (drift and one restart, ``totalCount``, the
probe past a full last page, ``isales.max_pages``). Parsing is tolerant where the spec
says "inferred" and data cannot suffer: numbers as strings (``vdnId``, ``defLevel``,
``totalCount``, a numeric ``defId``), unknown extra fields, an absent empty list. Each such
surprise is named in the snapshot's ``unexpected`` (logged, kept in the run record);
nothing is dropped. Whether the fetched rows can be stored is decided by the pure core
(:mod:`obs_sync.code_lists`).

Display results: the paged ``queryOBSResults`` walk, then one ``queryObsResultDetail``
call per display result, in turn (the run's concurrency is across VDNs). The list is
complete only when the walk is complete and every detail call succeeded; a display result
whose detail failed, or that vanished between the list and its detail (a failure envelope
or an empty ``obResult``), keeps its stored grouping, and the list deletes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from obs_sync import logcontext
from obs_sync.code_lists import (
    BusinessEntry,
    BusinessResultsSnapshot,
    DisplayEntry,
    DisplayResultsSnapshot,
)
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_list_parse import (
    DETAIL_FIELDS,
    LIST_FIELDS,
    MAP_FIELDS,
    OB_RESULT_FIELDS,
    Conflicts,
    Notes,
    business_item,
    check_vdn,
    display_item,
    encode,
    envelope,
    list_page,
    text,
)
from obs_sync.isales.errors import (
    AuthenticationError,
    Cancelled,
    DataError,
    ISalesError,
)
from obs_sync.isales.events import Counters
from obs_sync.isales.page import Page
from obs_sync.isales.paging import Paged, Pager
from obs_sync.isales.vendor import (
    BUSINESS_RESULTS_PATH,
    DISPLAY_RESULT_DETAIL_PATH,
    DISPLAY_RESULTS_PATH,
)
from obs_sync.snapshot import FetchStats

log = logging.getLogger(__package__)


def _stats(pager: Pager, counters: Counters, started: float, total: int | None) -> FetchStats:
    return FetchStats(
        pages=pager.pages,
        requests=counters.requests,
        retries=counters.retries,
        restarts=pager.restarts,
        total_count=total,
        seconds=time.perf_counter() - started,
    )


def _list_pages(
    client: ISalesClient,
    vdn_id: int,
    api: str,
    path: str,
    items: Callable[[str, list[Any]], list[tuple[str, str]]],
    notes: Notes,
    counters: Counters,
    started: float,
    conflicts: Conflicts,
) -> tuple[Paged, Pager]:
    """Every page of one list API through the shared pager (drift, restart, totalCount,
    page limits); ``items`` turns a page's ``data`` into its (key, encoded entry) pairs. An
    ISalesError carries the fetch's figures."""
    url = client.wire.base_url + path.format(vdn_id=vdn_id)

    def page(page_num: int, page_size: int) -> Page:
        what = f"{api} page {page_num}"

        def parse(body: Any) -> Page:
            total, data = list_page(vdn_id, what, body, notes, LIST_FIELDS)
            return Page(vdn_id, page_num, page_size, total, tuple(items(what, data)))

        query = f"{url}?pageSize={page_size}&pageNum={page_num}"
        return client.fetch_json(vdn_id, query, what, parse, counters)

    config = client.config
    pager = Pager(
        page,
        vdn_id,
        page_size=config.page_size,
        max_pages=config.max_pages,
        merge=conflicts.merge,
    )
    with logcontext.bind(vdn=vdn_id):
        try:
            return pager.run(), pager
        except ISalesError as error:
            error.stats = _stats(pager, counters, started, None)
            raise


# ------------------------------------------------------------------------------ display


def fetch_display_results(
    client: ISalesClient, vdn_id: int, *, source: str = "default"
) -> DisplayResultsSnapshot:
    """The paged list, then each display result's OBS codes; ISalesError when the list
    itself cannot be read (a detail call that fails or finds its display result gone only
    makes the list incomplete; a rejected signature, a cancel or a malformed detail end
    the fetch)."""
    started = time.perf_counter()
    counters = Counters()
    notes = Notes()
    conflicts = Conflicts()
    entries: dict[str, DisplayEntry] = {}

    def items(what: str, data: list[Any]) -> list[tuple[str, str]]:
        found = []
        for index, item in enumerate(data):
            entry = display_item(vdn_id, f"{what}: data[{index}]", item, notes)
            encoded = encode([entry.def_id, entry.result_code, entry.display_result])
            entries.setdefault(encoded, entry)
            found.append((entry.def_id, encoded))
        return found

    paged, pager = _list_pages(
        client,
        vdn_id,
        "queryOBSResults",
        DISPLAY_RESULTS_PATH,
        items,
        notes,
        counters,
        started,
        conflicts,
    )
    with logcontext.bind(vdn=vdn_id):
        listed = [entries[v] for v in paged.codes.values()]
        listed += [entries[v] for v in conflicts.extra]
        obs_codes: dict[str, tuple[str, ...]] = {}
        missing: list[str] = []
        for def_id in dict.fromkeys(e.def_id for e in listed):
            try:
                codes = _fetch_detail(client, vdn_id, def_id, counters, notes)
            except (AuthenticationError, Cancelled, DataError) as error:
                # A rejected key, a cancel, or a detail that is there but malformed (a
                # failCode as a number...): the list fails, as for a malformed page.
                error.stats = _stats(pager, counters, started, paged.total)
                raise
            except ISalesError as error:
                log.warning(
                    "VDN %s: display result defId %s: %s", vdn_id, def_id, without_vdn(error)
                )
                missing.append(f"defId {def_id}: {without_vdn(error)}")
                continue
            if codes is None:
                missing.append(f"defId {def_id}: gone between the list and its detail")
                continue
            obs_codes[def_id] = codes
    reasons = [paged.incomplete_reason] if paged.incomplete_reason else []
    if missing:
        more = f"; and {len(missing) - 3} more" if len(missing) > 3 else ""
        shown = "; ".join(missing[:3]) + more
        reasons.append(
            f"the OBS codes of {len(missing)} of {len(obs_codes) + len(missing)} display "
            f"results could not be read ({shown})"
        )
    unexpected = notes.result()
    for line in unexpected:
        log.warning("VDN %s: display results: unexpected: %s", vdn_id, line)
    return DisplayResultsSnapshot(
        vdn_id=vdn_id,
        entries=tuple(listed),
        obs_codes=obs_codes,
        complete=not reasons,
        incomplete_reason="; ".join(reasons) or None,
        stats=_stats(pager, counters, started, paged.total),
        unexpected=unexpected,
        source=source,
    )


def without_vdn(error: ISalesError) -> str:
    text = str(error)
    prefix = f"VDN {error.vdn_id}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _fetch_detail(
    client: ISalesClient, vdn_id: int, def_id: str, counters: Counters, notes: Notes
) -> tuple[str, ...] | None:
    """The failCodes grouped under ``def_id`` (server order), or None when the server says
    it has no such display result now (an empty or absent ``obResult``)."""
    what = f"queryObsResultDetail of defId {def_id}"
    path = DISPLAY_RESULT_DETAIL_PATH.format(vdn_id=vdn_id, def_id=def_id.strip())

    def parse(body: Any) -> tuple[str, ...] | None:
        body = envelope(vdn_id, what, body)
        notes.extra("queryObsResultDetail", body, DETAIL_FIELDS)
        result = body.get("obResult")
        if result is None or result == {}:
            return None
        if not isinstance(result, dict):
            raise DataError(f"{what}: obResult is not an object", vdn_id=vdn_id)
        notes.extra("queryObsResultDetail obResult", result, OB_RESULT_FIELDS)
        check_vdn(vdn_id, what, result.get("vdnId"), notes)
        got = text(vdn_id, what, "defId", result.get("defId"), notes, number_ok=True)
        if got is not None and got.strip() != def_id.strip():
            raise DataError(f"{what}: the answer is for defId {got!r}", vdn_id=vdn_id)
        raw = result.get("resultMapList")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise DataError(f"{what}: resultMapList is not a list", vdn_id=vdn_id)
        codes: list[str] = []
        for index, item in enumerate(raw):
            where = f"{what}: resultMapList[{index}]"
            if not isinstance(item, dict):
                raise DataError(f"{where} is not an object", vdn_id=vdn_id)
            notes.extra("queryObsResultDetail resultMapList", item, MAP_FIELDS)
            check_vdn(vdn_id, where, item.get("vdnId"), notes, string_ok=True)
            mapped = text(vdn_id, where, "defId", item.get("defId"), notes, number_ok=True)
            if mapped is not None and mapped.strip() != def_id.strip():
                raise DataError(f"{where}: belongs to defId {mapped!r}", vdn_id=vdn_id)
            # A failCode as a number has lost its leading zeros: not guessed back.
            code = text(vdn_id, where, "failCode", item.get("failCode"), notes)
            if code is None:
                raise DataError(f"{where}: failCode is missing", vdn_id=vdn_id)
            codes.append(code)
        return tuple(dict.fromkeys(codes))

    detail: tuple[str, ...] | None = client.fetch_json(
        vdn_id, f"{client.wire.base_url}{path}", what, parse, counters
    )
    return detail


# ------------------------------------------------------------------------------ business


def fetch_business_results(
    client: ISalesClient, vdn_id: int, *, source: str = "default"
) -> BusinessResultsSnapshot:
    """The paged list of top-level business results with their sub-statuses."""
    started = time.perf_counter()
    counters = Counters()
    notes = Notes()
    conflicts = Conflicts()
    found: dict[str, list[BusinessEntry]] = {}

    def items(what: str, data: list[Any]) -> list[tuple[str, str]]:
        keyed = []
        for index, item in enumerate(data):
            where = f"{what}: data[{index}]"
            entries = business_item(vdn_id, where, item, notes)
            # Keyed by code; an entry without one by where it was (each is its own).
            key = entries[0].code if entries[0].code is not None else f"\x00{where}"
            encoded = encode([[e.code, e.name, e.level, e.parent_code] for e in entries])
            found.setdefault(encoded, entries)
            keyed.append((key, encoded))
        return keyed

    paged, pager = _list_pages(
        client,
        vdn_id,
        "queryBusinessResults",
        BUSINESS_RESULTS_PATH,
        items,
        notes,
        counters,
        started,
        conflicts,
    )
    listed: list[BusinessEntry] = []
    for encoded in [*paged.codes.values(), *conflicts.extra]:
        listed += found[encoded]
    unexpected = notes.result()
    for line in unexpected:
        log.warning("VDN %s: business results: unexpected: %s", vdn_id, line)
    return BusinessResultsSnapshot(
        vdn_id=vdn_id,
        entries=tuple(listed),
        complete=paged.incomplete_reason is None,
        incomplete_reason=paged.incomplete_reason,
        stats=_stats(pager, counters, started, paged.total),
        unexpected=unexpected,
        source=source,
    )
