"""One ``queryOBSResultCode`` response body: decoded, validated, turned into a :class:`Page`.

Pure functions over bytes and decoded JSON. Lenient where the vendor page is loose and
data cannot suffer (totalCount as a digit string, only one of resultCode/returnCode,
unknown fields, a null or absent empty list, a body in a declared non-UTF-8 charset);
strict where it can (codes must be non-blank strings, a code may not change its
description within one snapshot).
"""

from __future__ import annotations

import email.utils
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from obs_sync.isales.errors import DataError, VendorError
from obs_sync.isales.vendor import FAILURE_CODES, SUCCESS

# Fields of an error response's JSON body quoted in the error message, in this order.
_ERROR_FIELDS = (
    "resultCode",
    "resultDesc",
    "returnCode",
    "returnDesc",
    "error",
    "reason",
    "message",
)


@dataclass(frozen=True)
class Page:
    """One validated page of ``queryOBSResultCode``."""

    vdn_id: int
    page_num: int
    page_size: int
    total_count: int
    codes: tuple[tuple[str, str], ...]  # (obsCode, obsCodeDesc) in the server's order
    result_desc: str = ""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def snippet(content: bytes, limit: int = 120) -> str:
    text = content[: limit * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _vendor_code(value: Any) -> str | None:
    """A resultCode/returnCode as text (None when absent or null); compared exactly."""
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _failure(body: dict[str, Any]) -> tuple[str, str] | None:
    """(code, desc) when the body carries a failure resultCode/returnCode, else None.

    resultCode takes precedence over returnCode; a field that is absent (or null) is not
    a failure by itself, so a server sending only one of the two is understood.
    """
    for field, desc_field in (("resultCode", "resultDesc"), ("returnCode", "returnDesc")):
        code = _vendor_code(body.get(field))
        if code is not None and code != SUCCESS:
            desc = body.get(desc_field) or body.get("resultDesc") or body.get("returnDesc") or ""
            return code, str(desc)
    return None


def _total_count(value: Any) -> int | None:
    """totalCount as an int: a JSON integer, an integral number, or a decimal-digit string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,18}\s*", value):
        return int(value)
    return None


def _charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header, if any."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


class NestingTooDeep(ValueError):
    """The JSON nests deeper than the parser can follow (a hostile or broken body)."""


def _loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError as error:  # json's C parser recurses once per level of nesting
        raise NestingTooDeep("the JSON nests too deeply to be read") from error


def decode_json(content: bytes, content_type: str | None) -> Any:
    """Parse a JSON body: UTF-8 (BOM or not) or UTF-16/32 as RFC 8259 allows; a body that
    is not valid UTF-8 is decoded with the charset its Content-Type declares (GBK...).

    Raises ValueError when it is not JSON in either reading (NestingTooDeep, a
    ValueError, when it nests too deeply to be read).
    """
    try:
        return _loads(content)
    except UnicodeDecodeError:
        charset = _charset(content_type)
        if charset is None:
            raise
        try:
            text = content.decode(charset)
        except (LookupError, UnicodeDecodeError) as error:
            raise ValueError(f"body is neither UTF-8 nor the declared {charset}") from error
        return _loads(text)


def parse_page(vdn_id: int, page_num: int, page_size: int, body: Any) -> Page:
    """Validate one decoded body; raise VendorError / DataError naming the VDN and the code."""
    where = f"page {page_num}"
    if not isinstance(body, dict):
        raise DataError(
            f"{where}: response body is a JSON {type(body).__name__}, not an object",
            vdn_id=vdn_id,
        )
    failure = _failure(body)
    if failure is not None:
        raise VendorError(failure[0], failure[1], vdn_id=vdn_id)
    if body.get("resultCode") is None and body.get("returnCode") is None:
        raise DataError(f"{where}: response has neither resultCode nor returnCode", vdn_id=vdn_id)
    raw_total = body.get("totalCount")
    total = _total_count(raw_total)
    if total is None:
        raise DataError(
            f"{where}: totalCount is {raw_total!r}, expected a non-negative integer",
            vdn_id=vdn_id,
        )
    raw = body.get("obsCodes")
    # A server may omit an empty list (e.g. a VDN with no codes); completeness is still
    # judged against totalCount, so treating it as empty never hides missing codes.
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise DataError(
            f"{where}: obsCodes is a {type(raw).__name__}, expected a list", vdn_id=vdn_id
        )
    result_desc = body.get("resultDesc")
    return Page(
        vdn_id=vdn_id,
        page_num=page_num,
        page_size=page_size,
        total_count=total,
        codes=tuple(_codes(where, vdn_id, raw)),
        result_desc=result_desc if isinstance(result_desc, str) else "",
    )


def _codes(where: str, vdn_id: int, raw: list[Any]) -> list[tuple[str, str]]:
    """The (obsCode, obsCodeDesc) pairs of ``raw``; DataError naming the first bad item."""
    # One comprehension for the usual page (exact dicts and strings, as JSON gives them):
    # half the time of the loop below, which runs only when an item falls out of it, to
    # accept what it accepts or name what is wrong.
    fast = [
        (code, desc)
        for item in raw
        if type(item) is dict
        and type(code := item.get("obsCode")) is str
        and type(desc := item.get("obsCodeDesc")) is str
        and code.strip()
    ]
    if len(fast) == len(raw):
        return fast
    codes: list[tuple[str, str]] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise DataError(f"{where}: obsCodes[{index}] is not an object", vdn_id=vdn_id)
        code = item.get("obsCode")
        if not isinstance(code, str) or not code.strip():
            what = "missing" if code is None else f"{code!r} (blank or not a string)"
            raise DataError(f"{where}: obsCodes[{index}].obsCode is {what}", vdn_id=vdn_id)
        desc = item.get("obsCodeDesc")
        if not isinstance(desc, str):
            raise DataError(
                f"{where}: obsCode {code!r} has obsCodeDesc {desc!r}, expected a string",
                vdn_id=vdn_id,
            )
        codes.append((code, desc))
    return codes


def error_detail(content: bytes, content_type: str | None) -> str:
    """One short line from an error response: its JSON message fields, else a snippet."""
    try:
        body = decode_json(content, content_type)
    except ValueError:
        return snippet(content)
    if isinstance(body, dict):
        parts = [f"{k}={body[k]}" for k in _ERROR_FIELDS if body.get(k) not in (None, "")]
        if parts:
            return snippet(", ".join(parts).encode())
    return snippet(content)


def known_failure(content: bytes, content_type: str | None) -> tuple[str, str] | None:
    """(code, desc) when an error response's JSON body carries one of the vendor's
    (parameter) failure codes; None otherwise (not JSON, no code, an unknown code)."""
    try:
        body = decode_json(content, content_type)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    failure = _failure(body)
    if failure is None or failure[0] not in FAILURE_CODES:
        return None
    return failure


def merge(vdn_id: int, codes: dict[str, str], page: Page) -> None:
    """Add a page's codes; an exact repeat is harmless, a conflicting one is a data error."""
    for code, desc in page.codes:
        seen = codes.setdefault(code, desc)
        if seen != desc:
            raise DataError(
                f"obsCode {code!r} appears twice with different descriptions "
                f"({seen!r} and {desc!r}, page {page.page_num})",
                vdn_id=vdn_id,
            )
