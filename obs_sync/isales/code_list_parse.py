"""The other code lists' response bodies, item by item: tolerant where the spec says
"inferred" (numbers as strings, unknown fields, absent empty lists), each surprise named
once in :class:`Notes`; a body that cannot be read is a :class:`DataError` naming where.

Pure functions over decoded JSON; the requests are made by :mod:`obs_sync.isales.code_lists`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from obs_sync.code_lists import BusinessEntry, DisplayEntry
from obs_sync.isales.errors import DataError, VendorError
from obs_sync.isales.page import Page, _failure, _total_count

ENVELOPE = frozenset({"resultCode", "resultDesc", "returnCode", "returnDesc"})
LIST_FIELDS = ENVELOPE | {"totalCount", "data"}
DISPLAY_FIELDS = frozenset({"defId", "resultCode", "displayResult"})
DETAIL_FIELDS = ENVELOPE | {"obResult"}
OB_RESULT_FIELDS = frozenset({"defId", "displayResult", "vdnId", "resultCode", "resultMapList"})
MAP_FIELDS = frozenset({"mapId", "defId", "failCode", "vdnId"})
BUSINESS_FIELDS = frozenset({"name", "code", "defLevel", "children"})
CHILD_FIELDS = frozenset({"name", "code", "defLevel"})
_DEF_ID = re.compile(r"[0-9]{1,19}")
_UNEXPECTED_LIMIT = 20  # kinds kept per list
_KIND = re.compile(r"\[[0-9]+\]|\b[0-9]+\b")  # where a surprise was: not its kind


class Notes:
    """What was unexpected, one line per kind (deduplicated, bounded)."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}

    def add(self, line: str) -> None:
        """One line per kind of surprise: positions and values vary, the first is kept."""
        kind = _KIND.sub("#", line.split(" (e.g.")[0])
        if kind not in self.kinds and len(self.kinds) < _UNEXPECTED_LIMIT:
            self.kinds[kind] = line

    def extra(self, where: str, item: dict[str, Any], known: frozenset[str]) -> None:
        for name in sorted(str(k) for k in item if k not in known):
            self.add(f"{where}: unknown field {name!r} (ignored)")

    def result(self) -> tuple[str, ...]:
        return tuple(self.kinds.values())


def envelope(vdn_id: int, what: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise DataError(
            f"{what}: response body is a JSON {type(body).__name__}, not an object", vdn_id=vdn_id
        )
    failure = _failure(body)
    if failure is not None:
        raise VendorError(failure[0], failure[1], vdn_id=vdn_id)
    if body.get("resultCode") is None and body.get("returnCode") is None:
        raise DataError(f"{what}: response has neither resultCode nor returnCode", vdn_id=vdn_id)
    return body


def text(
    vdn_id: int, where: str, name: str, value: Any, notes: Notes, *, number_ok: bool = False
) -> str | None:
    """A string field; an integer is taken as its digits when ``number_ok`` (noted);
    None when absent or null; anything else is a data error."""
    if value is None or isinstance(value, str):
        return value
    if number_ok and isinstance(value, int) and not isinstance(value, bool):
        notes.add(f"{where}: {name} sent as a number (e.g. {value}), taken as text")
        return str(value)
    raise DataError(
        f"{where}: {name} is {value!r} ({type(value).__name__}), expected text", vdn_id=vdn_id
    )


def check_vdn(
    vdn_id: int, where: str, value: Any, notes: Notes, *, string_ok: bool = False
) -> None:
    """A vdnId field must be the VDN asked for (as an int, or digits: noted unless the
    vendor's own example sends it so, ``string_ok``)."""
    if value is None:
        return
    if isinstance(value, str) and value.strip().isdigit():
        if not string_ok:
            notes.add(f"{where}: vdnId sent as a string (e.g. {value!r})")
        value = int(value)
    if value != vdn_id or isinstance(value, bool):
        raise DataError(f"{where}: vdnId is {value!r}, not the VDN asked for", vdn_id=vdn_id)


def list_page(
    vdn_id: int, what: str, body: Any, notes: Notes, known: frozenset[str]
) -> tuple[int, list[Any]]:
    """(totalCount, data) of one list page; unknown fields and a string count noted."""
    body = envelope(vdn_id, what, body)
    notes.extra(what, body, known)
    if isinstance(body.get("totalCount"), str):
        notes.add(f"{what}: totalCount sent as a string (e.g. {body['totalCount']!r})")
    total = _total_count(body.get("totalCount"))
    if total is None:
        raise DataError(
            f"{what}: totalCount is {body.get('totalCount')!r}, expected a non-negative integer",
            vdn_id=vdn_id,
        )
    data = body.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise DataError(f"{what}: data is a {type(data).__name__}, expected a list", vdn_id=vdn_id)
    return total, data


def encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Conflicts:
    """A key listed twice with different fields: kept (both), so the core can name it."""

    def __init__(self) -> None:
        self.extra: list[str] = []

    def merge(self, vdn_id: int, items: dict[str, str], page: Page) -> None:
        for key, value in page.codes:
            seen = items.setdefault(key, value)
            if seen != value:
                self.extra.append(value)


def display_item(vdn_id: int, where: str, item: Any, notes: Notes) -> DisplayEntry:
    if not isinstance(item, dict):
        raise DataError(f"{where} is not an object", vdn_id=vdn_id)
    notes.extra("display results", item, DISPLAY_FIELDS)
    def_id = text(vdn_id, where, "defId", item.get("defId"), notes, number_ok=True)
    if def_id is None or not _DEF_ID.fullmatch(def_id.strip()):
        raise DataError(
            f"{where}: defId is {item.get('defId')!r}, expected numeric text (its detail "
            "cannot be asked for)",
            vdn_id=vdn_id,
        )
    if def_id != def_id.strip():
        notes.add(f"{where}: defId {def_id!r} has surrounding spaces (kept as sent)")
    code = text(vdn_id, where, "resultCode", item.get("resultCode"), notes)
    label = text(vdn_id, where, "displayResult", item.get("displayResult"), notes)
    return DisplayEntry(def_id, code or "", label or "")


def check_level(vdn_id: int, where: str, value: Any, expected: int, notes: Notes) -> None:
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool):
        notes.add(f"{where}: defLevel sent as a number (e.g. {value})")
        value = str(value)
    if value != str(expected):
        notes.add(f"{where}: defLevel {value!r}, expected '{expected}' (level {expected} kept)")


def code_field(vdn_id: int, where: str, value: Any, notes: Notes) -> str | None:
    code = text(vdn_id, where, "code", value, notes)
    if code is not None and not code.strip():
        return None
    return code


def business_item(vdn_id: int, where: str, item: Any, notes: Notes) -> list[BusinessEntry]:
    if not isinstance(item, dict):
        raise DataError(f"{where} is not an object", vdn_id=vdn_id)
    notes.extra("business results", item, BUSINESS_FIELDS)
    code = code_field(vdn_id, where, item.get("code"), notes)
    name = text(vdn_id, where, "name", item.get("name"), notes) or ""
    check_level(vdn_id, where, item.get("defLevel"), 1, notes)
    entries = [BusinessEntry(code=code, name=name, level=1, position=where)]
    children = item.get("children")
    if children is None:
        children = []
    if not isinstance(children, list):
        raise DataError(f"{where}: children is not a list", vdn_id=vdn_id)
    for index, child in enumerate(children):
        at = f"{where}.children[{index}]"
        if not isinstance(child, dict):
            raise DataError(f"{at} is not an object", vdn_id=vdn_id)
        notes.extra("business results children", child, CHILD_FIELDS)
        check_level(vdn_id, at, child.get("defLevel"), 2, notes)
        entries.append(
            BusinessEntry(
                code=code_field(vdn_id, at, child.get("code"), notes),
                name=text(vdn_id, at, "name", child.get("name"), notes) or "",
                level=2,
                parent_code=code,
                position=at,
            )
        )
    return entries
