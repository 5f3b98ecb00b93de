"""C2 ("auth-v2") AK/SK request signing, as the vendor specifies it (its published test
vectors are pinned in tests/test_signing_vectors.py).

The primitives are pure functions so that both the client (:class:`C2Auth`) and the
bundled simulator (which verifies what actually arrived on the wire) use the same,
vector-tested code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Literal
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from requests.auth import AuthBase

from obs_sync.headers import unsent_headers

TimestampPrecision = Literal["seconds", "milliseconds"]

DEFAULT_SIGNED_HEADERS: tuple[str, ...] = ("content-type", "host")
AUTH_PREFIX = "auth-v2"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize(value: str) -> str:
    """Percent-encode the UTF-8 bytes of ``value``; only ``A-Z a-z 0-9 - . _ ~`` stay."""
    return quote(value, safe="-._~")


def hmac_hex(key: str, message: str) -> str:
    """HMAC-SHA256 of UTF-8 ``message`` under UTF-8 ``key``, as lowercase hex text."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def format_timestamp(moment: datetime, precision: TimestampPrecision = "seconds") -> str:
    utc = moment.astimezone(timezone.utc)
    if precision == "milliseconds":
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """From DECODED (name, value) pairs: ``normalize(k)=normalize(v)``, sorted, ``&``-joined."""
    return "&".join(sorted(f"{normalize(k)}={normalize(v)}" for k, v in params))


def signed_header_names(names: Iterable[str]) -> str:
    return ";".join(sorted({n.strip().lower() for n in names}))


def canonical_headers(headers: Mapping[str, str]) -> str:
    """``headers`` maps lowercased names to values, exactly the signed set."""
    lines = (f"{normalize(k.lower())}:{normalize(v.strip())}" for k, v in headers.items())
    return "\n".join(sorted(lines))


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: str = "",
) -> str:
    lines = [method.upper(), path]
    query_line = canonical_query(query)
    if query_line:
        lines.append(query_line)
    lines.append(signed_header_names(headers))
    lines.append(canonical_headers(headers) + "\n")
    text = "\n".join(lines)
    if body:
        text += normalize(body)
    return text


def auth_string_prefix(access_key: str, timestamp: str, signed_headers: str) -> str:
    return f"{AUTH_PREFIX}/{access_key}/{timestamp}/{signed_headers}"


def signing_key(secret_key: str, prefix: str) -> str:
    return hmac_hex(secret_key, prefix)


def authorization(
    access_key: str,
    secret_key: str,
    timestamp: str,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: str = "",
) -> str:
    """The full ``Authorization`` header value for one request."""
    names = signed_header_names(headers)
    prefix = auth_string_prefix(access_key, timestamp, names)
    key = signing_key(secret_key, prefix)
    signature = hmac_hex(key, canonical_request(method, path, query, headers, body))
    return f"{prefix}/{signature}"


def host_header(url: str) -> str:
    """The Host header an HTTP client sends for ``url``: the port only when not the default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host


class C2Auth(AuthBase):
    """``requests`` auth that signs each prepared request with the C2 scheme.

    The Host header is set explicitly (when the caller has not) to the exact value
    that is signed, so the signed value is the one on the wire.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        signed_headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
        timestamp_precision: TimestampPrecision = "seconds",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.access_key = access_key
        self._secret_key = secret_key
        self.signed_headers = tuple(sorted({h.strip().lower() for h in signed_headers}))
        self.timestamp_precision: TimestampPrecision = timestamp_precision
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:  # never the secret
        return f"C2Auth(access_key={self.access_key!r}, signed_headers={self.signed_headers!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        if "Host" not in request.headers:
            request.headers["Host"] = host_header(url)
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        if "content-length" in self.signed_headers and "Content-Length" not in request.headers:
            request.headers["Content-Length"] = str(len(body.encode()))
        missing = unsent_headers(self.signed_headers, request.headers)
        if missing:
            raise ValueError(
                f"isales.signing.signed_headers: header {missing[0]!r} is signed but not sent"
            )
        signed = {name: request.headers[name] for name in self.signed_headers}
        parts = urlsplit(url)
        request.headers["Authorization"] = authorization(
            self.access_key,
            self._secret_key,
            format_timestamp(self._clock(), self.timestamp_precision),
            request.method or "GET",
            parts.path or "/",
            parse_qsl(parts.query, keep_blank_values=True),
            signed,
            body,
        )
        return request
