"""Why a request failed, in the user's words: transport exceptions turned into one short
line that names the cause (``connection refused``, ``DNS lookup failed for host 'x'``) and,
for what retrying cannot fix, the setting to change. Never a secret or a URL's path/query.
"""

from __future__ import annotations

import email.utils
import http.client
import re
import socket
import ssl
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3 import exceptions as u3


def clock_hint(date: str | None, now: datetime | None = None) -> str:
    """On a 401: how far the server's Date header is from this host's clock, when that is
    more than a minute (signatures carry a timestamp the server checks); else ""."""
    if not date:
        return ""
    try:
        server = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return ""
    if server.tzinfo is None:
        server = server.replace(tzinfo=timezone.utc)
    skew = ((now or datetime.now(timezone.utc)) - server).total_seconds()
    if abs(skew) <= 60:
        return ""
    direction = "ahead of" if skew > 0 else "behind"
    return f"; this host's clock is {abs(skew):.0f}s {direction} the server's (Date header)"


def tls_config_problem(error: Exception, url: str) -> str | None:
    """A TLS failure that retrying cannot fix (certificate, protocol), as a hint; else None."""
    text = str(error)
    lowered = text.lower()
    if "mismatch" in lowered and "not valid for" in lowered:
        host = urlsplit(url).hostname
        return (
            f"TLS verification failed for {url}: the server's certificate is not issued for "
            f"{host!r}; put a host name the certificate names in isales.base_url"
        )
    if "certificate" in lowered or "hostname" in lowered:
        detail = re.search(r"certificate verify failed: ([^'\"(\]]+)", text)
        reason = detail.group(1).strip() if detail else "certificate not trusted"
        return (
            f"TLS verification failed for {url}: {reason}; set isales.verify_tls to the "
            "path of the CA bundle that signed the server's certificate"
        )
    if "wrong version number" in lowered or "record layer failure" in lowered:
        return f"TLS handshake failed for {url}: is it really HTTPS? check isales.base_url"
    return None


# How long a transport reason may be: one line that fits a log line or a status cell.
_REASON_MAX = 160
# What a fallback reason must not carry: a URL's user:password, path and query (only
# scheme://host:port is kept), urllib3's "with url: /path?query" and object addresses.
_URL_IN_TEXT = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/@'\"]*@)?([^\s/?#'\"]*)[^\s'\")]*"
)
_URL_NOISE = re.compile(
    r"<[^<>]* at 0x[0-9a-fA-F]+>|\bwith url: \S+ ?|\b\w+\(host='[^']*', port=\d+\): "
)


def _causes(error: BaseException) -> list[BaseException]:
    """The error and everything it wraps (``__cause__``, ``__context__``, urllib3's
    ``reason``, exceptions among ``args``), outermost first; bounded, cycles skipped."""
    found: list[BaseException] = []
    pending = [error]
    while pending and len(found) < 16:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending += [e for e in (*inner, *current.args) if isinstance(e, BaseException)]
    return found


def clean(text: str) -> str:
    """One line of exception text with no URL path/query/userinfo, at most _REASON_MAX."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = _URL_IN_TEXT.sub(r"\1\2", _URL_NOISE.sub("", lines[0] if lines else ""))
    text = " ".join(text.split())
    if len(text) > _REASON_MAX:
        text = text[: _REASON_MAX - 3].rstrip() + "..."
    return text


def _first(chain: list[BaseException], kinds: type | tuple[type, ...]) -> Any:
    return next((e for e in chain if isinstance(e, kinds)), None)


def connection_reason(error: BaseException, url: str, timeout: float) -> str:
    """Why a connection failed, in a few words (``connection refused``, ``DNS lookup
    failed for host 'x': ...``); the errno text where there is one, never a secret."""
    chain = _causes(error)
    proxy = _first(chain, (requests.exceptions.ProxyError, u3.ProxyError)) is not None
    if (lookup := _first(chain, (socket.gaierror, u3.NameResolutionError))) is not None:
        named = re.search(r"Failed to resolve '([^']*)'", str(lookup))
        host = named.group(1) if named else urlsplit(url).hostname
        cause = _first(chain, socket.gaierror)
        why = cause.strerror if cause is not None and cause.strerror else "no such host"
        reason = f"DNS lookup failed for host {host!r}: {why}"
    elif _first(chain, ConnectionRefusedError) is not None:
        reason = "connection refused"
    # (subclasses before their bases: RemoteDisconnected is a ConnectionResetError,
    # InvalidChunkLength an IncompleteRead)
    elif _first(chain, http.client.RemoteDisconnected) is not None:
        reason = "the server closed the connection without a response"
    elif _first(chain, ConnectionResetError) is not None:
        reason = "connection reset by peer"
    elif _first(chain, u3.InvalidChunkLength) is not None:
        reason = "the server sent a broken chunked body (invalid chunk length)"
    elif (cut := _first(chain, (u3.IncompleteRead, http.client.IncompleteRead))) is not None:
        partial = cut.partial
        got = len(partial) if isinstance(partial, bytes) else partial
        more = f", {cut.expected} more expected" if cut.expected is not None else ""
        reason = f"the server closed the connection mid-response ({got} bytes read{more})"
    elif _first(chain, (u3.ReadTimeoutError, TimeoutError)) is not None:
        reason = f"read timeout: no data within {timeout:g}s while reading the response body"
    elif isinstance(error, requests.exceptions.ContentDecodingError):
        coding = re.search(r"content-encoding: ([\w-]+)", str(error))
        detail = clean(str(chain[-1])) if len(chain) > 1 else ""
        name = coding.group(1) if coding else "compressed"
        reason = f"the {name} response body cannot be decoded" + (f": {detail}" if detail else "")
    elif os_error := next((e for e in chain if isinstance(e, OSError) and e.strerror), None):
        text = str(os_error.strerror)
        reason = text[:1].lower() + text[1:]  # e.g. "network is unreachable"
    else:
        reason = str(chain[-1]).strip() or type(chain[-1]).__name__
    return clean(("proxy: " if proxy else "") + reason)


def tls_reason(error: BaseException, url: str, timeout: float) -> str:
    """Why a TLS handshake failed that may pass on a later attempt, in a few words."""
    chain = _causes(error)
    tls = _first(chain, ssl.SSLError)
    if tls is None:
        return connection_reason(error, url, timeout)
    if isinstance(tls, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(tls):
        return "the server closed the connection during the TLS handshake"
    # "[SSL: CODE] words (_ssl.c:1006)" -> "words"
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(tls))
    return clean(text or type(tls).__name__)
