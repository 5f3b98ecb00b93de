"""The vendor API as the simulator speaks it: the request's parameters, the response bodies,
and the page faults that bend a body (docs/simulator.md).

Pure functions over text and bytes; the HTTP handler is :mod:`obs_sync.simulator.server`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

from obs_sync.isales.vendor import MAX_PAGE_SIZE, SUCCESS
from obs_sync.simulator.data import PageSource, code_fragment
from obs_sync.simulator.faults import Fault

API_PATH = re.compile(r"^/rest/isales/v1/openapi/campaigns/(?P<vdn>[^/]*)/queryOBSResultCode$")
JSON_TYPE = "application/json;charset=UTF-8"
SUCCESS_DESC = "query queryOBSResultCode Success!"
INT32_MAX = 2**31 - 1

NON_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)


class ParamError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def int_param(name: str, text: str | None, low: int, high: int) -> int:
    if text is None or text == "":
        raise ParamError("02000001", f"{name} is empty")
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ParamError("02000006", f"{name} {text!r} is not an integer")
    if len(text) > 12:  # far beyond any range; also keeps int() cheap
        raise ParamError("02000007", f"{name} {text} is out of range {low}..{high}")
    value = int(text)
    if not low <= value <= high:
        raise ParamError("02000007", f"{name} {value} is out of range {low}..{high}")
    return value


def parse_vdn(vdn_segment: str) -> int:
    """The path's vdnId or :class:`ParamError` with the vendor's code."""
    return int_param("vdnId", unquote(vdn_segment), 1, 9999)


def parse_page_params(raw_query: str) -> tuple[int, int]:
    """(pageSize, pageNum) or :class:`ParamError` with the vendor's code."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        if name in params:
            raise ParamError("0200001", f"{name} is given more than once")
        params[name] = value
    unknown = sorted(set(params) - {"pageSize", "pageNum"})
    if unknown:
        raise ParamError("02000011", f"unknown parameter(s): {', '.join(unknown)}")
    page_size = int_param("pageSize", params.get("pageSize"), 1, MAX_PAGE_SIZE)
    page_num = int_param("pageNum", params.get("pageNum"), 1, INT32_MAX)
    return page_size, page_num


def failure_body(code: str, desc: str) -> bytes:
    return json.dumps(
        {"returnCode": code, "resultCode": code, "resultDesc": desc, "returnDesc": desc},
        ensure_ascii=False,
    ).encode()


def success_body(fragments: Iterable[str], total: int) -> bytes:
    # Vendor example's key order; fragments are pre-encoded, so this is O(page).
    return (
        '{"obsCodes":['
        + ",".join(fragments)
        + f'],"returnCode":"{SUCCESS}","resultCode":"{SUCCESS}","resultDesc":"{SUCCESS_DESC}",'
        + f'"totalCount":{total},"returnDesc":"{SUCCESS_DESC}"}}'
    ).encode()


def is_json_content_type(value: str | None) -> bool:
    """``application/json`` with charset UTF-8 or none; case and spaces are lenient."""
    if value is None:
        return False
    media, _, rest = value.partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in rest.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def modify_page(
    fault: Fault, source: PageSource, start: int, page_size: int, total: int, items: list[str]
) -> tuple[int, list[str]]:
    if fault.kind == "total_drift":
        return total + fault.delta, items
    if fault.kind == "empty_page":
        return total, []
    code, desc = source.items[start]  # page kinds are only taken for non-empty pages
    if fault.kind == "duplicate_code":
        other = fault.desc if fault.desc is not None else f"{desc} (duplicate)"
        return total, [*items, code_fragment(code, other)]
    if fault.kind == "bad_code":
        if fault.variant == "missing":
            broken = code_fragment(None, desc, omit_code=True)
        elif fault.variant == "null":
            broken = code_fragment(None, desc)
        elif fault.variant == "number":
            broken = code_fragment(int(code) if code.isdigit() else 0, desc)
        else:
            broken = code_fragment("  ", desc)
        return total, [broken, *items[1:]]
    return total, items
