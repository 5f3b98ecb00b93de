"""Server-side C2 ("auth-v2") verification from the request exactly as it arrived.

The signature is recomputed with :func:`obs_sync.signing.authorization` over the raw path,
the raw query string decoded into pairs, and the received values of the headers that the
Authorization header itself names. Reasons never contain the secret or the expected
signature.
"""

from __future__ import annotations

import calendar
import hmac
import re
from collections.abc import Callable, Collection, Mapping
from urllib.parse import parse_qsl

from obs_sync.signing import AUTH_PREFIX, authorization

_TIMESTAMP = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?Z$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds of ``yyyy-MM-ddTHH:mm:ssZ`` or ``yyyy-MM-ddTHH:mm:ss.SSSZ``."""
    match = _TIMESTAMP.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    millis = match.group(7)
    return seconds + (int(millis) / 1000 if millis else 0.0)


def verify(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    header: Callable[[str], str | None],
    credentials: Mapping[str, str],
    required_headers: Collection[str],
    max_skew_seconds: float | None,
    now: float,
    body: str = "",
) -> str | None:
    """None when the request is correctly signed, else the reason for a 401."""
    value = header("authorization")
    if value is None or not value.strip():
        return "missing Authorization header"
    parts = value.strip().split("/")
    if len(parts) != 5 or parts[0] != AUTH_PREFIX:
        return "malformed Authorization (expected auth-v2/{AK}/{timestamp}/{SignedHeaders}/{sig})"
    _, access_key, timestamp, names_text, signature = parts
    secret_key = credentials.get(access_key)
    if secret_key is None:
        return "unknown access key"
    moment = parse_timestamp(timestamp)
    if moment is None:
        return "malformed timestamp (expected yyyy-MM-ddTHH:mm:ssZ or with .SSS milliseconds)"
    if max_skew_seconds is not None and abs(now - moment) > max_skew_seconds:
        return f"timestamp outside the allowed clock skew of {max_skew_seconds:g} seconds"
    names = names_text.split(";")
    if not names_text or names != sorted(set(names)) or names_text != names_text.lower():
        return "malformed SignedHeaders (lowercase names, sorted, ';'-joined)"
    missing = sorted(set(required_headers) - set(names))
    if missing:
        return f"SignedHeaders must include {', '.join(missing)}"
    if not _SIGNATURE.match(signature):
        return "malformed signature (expected 64 lowercase hex digits)"
    signed: dict[str, str] = {}
    for name in names:
        received = header(name)
        if received is None:
            return f"signed header {name!r} was not sent"
        signed[name] = received
    expected = authorization(
        access_key,
        secret_key,
        timestamp,
        method,
        raw_path,
        parse_qsl(raw_query, keep_blank_values=True),
        signed,
        body,
    )
    if not hmac.compare_digest(expected.encode(), value.strip().encode()):
        return "signature mismatch"
    return None
