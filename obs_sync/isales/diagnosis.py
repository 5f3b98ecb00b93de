"""Why a request failed, in the user's words: a transport exception turned into a
:class:`Diagnosis`: a category, one short line naming the cause (``connection refused``,
``DNS lookup failed for host 'x'``), the fix to try, and whether retrying may help.

Classified by exception type, errno and the ``ssl`` module's ``reason``/``verify_code``
attributes, walking the whole chain (``__cause__``, ``__context__``, urllib3's ``reason``,
exceptions among ``args``): never by message text, which Python, OpenSSL and urllib3 word
differently from one release to the next. Never a secret or a URL's path/query.
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3 import exceptions as u3
from urllib3.util.ssl_match_hostname import CertificateError as NameMismatch

from obs_sync.isales.wire import DeadlineExceeded, UndecodableBody

# The categories, as TransportError.category carries them.
DNS = "dns"
REFUSED = "refused"
UNREACHABLE = "unreachable"
CONNECT_TIMEOUT = "connect_timeout"
TIMEOUT = "timeout"
CLOSED = "closed"  # the server closed the connection without any response
RESET = "reset"
CUT = "cut"  # the response stopped before its end
TLS_CLOSED = "tls_closed"
TLS_CERTIFICATE = "tls_certificate"
TLS_HOSTNAME = "tls_hostname"
TLS_NOT_HTTPS = "tls_not_https"
TLS = "tls"
DECODING = "decoding"
NETWORK = "network"
REQUEST = "request"  # the request itself cannot be sent (not retried)

_DROPPED = "the server (or a proxy or firewall in between) dropped it; check the server's logs"
FIXES = {
    DNS: "check the host name in isales.base_url and this host's DNS resolver",
    REFUSED: "check that the iSales server is running and isales.base_url's host and port",
    UNREACHABLE: "check the network route to isales.base_url's host (firewall, VPN, routes)",
    CONNECT_TIMEOUT: (
        "check that isales.base_url's host and port are reachable (a firewall may drop "
        "packets) or raise isales.timeout_seconds"
    ),
    TIMEOUT: "raise isales.timeout_seconds or check the server's load",
    CLOSED: _DROPPED,
    RESET: _DROPPED,
    CUT: _DROPPED,
    TLS_CLOSED: "check that isales.base_url's port serves HTTPS and the server's TLS settings",
    TLS_CERTIFICATE: (
        "set isales.verify_tls to the path of the CA bundle that signed the server's certificate"
    ),
    TLS_HOSTNAME: "put a host name the certificate names in isales.base_url",
    TLS_NOT_HTTPS: "the port does not speak TLS: check isales.base_url (http:// or the HTTPS port)",
    TLS: "check the server's TLS settings",
    DECODING: "the server's compressed body is corrupt; check the server (or a proxy)",
    NETWORK: "check the network between this host and isales.base_url's host",
    REQUEST: "check isales.base_url, isales.access_key and isales.locale",
}
# The categories of a TransportError for an answer, not a transport failure
# (obs_sync.isales.client: a status retried until the retries ran out, a body not JSON).
HTTP_STATUS = "http_status"
NON_JSON = "non_json"

# `obs-sync check`'s fix per category: longer than FIXES (said once, after a failed
# check, not on every failed attempt), naming where to look first. {scheme}: isales.base_url's.
_CONNECT = (
    "cannot connect: check the host and port in isales.base_url ({scheme}), that the server "
    "is running, and that a firewall allows this host to reach it"
)
_TLS_SETUP = (
    "TLS failed: set isales.verify_tls to the path of the CA bundle that signed the server's "
    "certificate (false only for a lab server); check http vs https in isales.base_url"
)
SETUP_FIXES = {
    TLS_HOSTNAME: (
        "the certificate does not name the host in isales.base_url: use a host name the "
        "certificate covers (not an IP address unless the certificate lists it)"
    ),
    TLS_CLOSED: _TLS_SETUP,
    TLS_CERTIFICATE: _TLS_SETUP,
    # Not a certificate matter: the port answered without TLS (issue 17).
    TLS_NOT_HTTPS: (
        "the port does not speak TLS (it most likely serves plain HTTP): write http:// in "
        "isales.base_url, or use the server's HTTPS port"
    ),
    TLS: _TLS_SETUP,
    TIMEOUT: (
        "no answer in time: check isales.base_url and the firewall, or raise "
        "isales.timeout_seconds for a slow server"
    ),
    DNS: (
        "the host name in isales.base_url does not resolve: check its spelling and this "
        "host's DNS (/etc/resolv.conf), or use the server's IP address"
    ),
    UNREACHABLE: (
        "no network route to the host in isales.base_url: check the address, this "
        "host's routes and any VPN or firewall between them"
    ),
    REFUSED: _CONNECT,
    RESET: _CONNECT,
    CLOSED: _CONNECT,
    CUT: _CONNECT,
    NETWORK: _CONNECT,
    HTTP_STATUS: "the server is failing or overloaded: try again later, or ask its operators",
}
SETUP_FIXES[CONNECT_TIMEOUT] = SETUP_FIXES[TIMEOUT]
SETUP_FIXES[NON_JSON] = SETUP_FIXES[HTTP_STATUS]


def setup_fix(category: str, scheme: str) -> str | None:
    """`obs-sync check`'s fix for a failure of this category (None: none of its own)."""
    fix = SETUP_FIXES.get(category)
    return fix.format(scheme=scheme) if fix is not None else None


# What retrying cannot fix: the configuration (or the server's certificate) must change.
FINAL = frozenset({TLS_CERTIFICATE, TLS_HOSTNAME, TLS_NOT_HTTPS, REQUEST})
# OpenSSL reasons (ssl.SSLError.reason) for a TLS client talking to a port that is not TLS.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"}
)
# X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_NAME_MISMATCH = frozenset({62, 64})
_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})
_UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


@dataclass(frozen=True)
class Diagnosis:
    """One failed attempt: its category, the cause in a few words, and what to try."""

    category: str
    reason: str
    fix: str

    @property
    def retryable(self) -> bool:
        return self.category not in FINAL

    @property
    def timeout(self) -> bool:
        return self.category in (TIMEOUT, CONNECT_TIMEOUT)


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


def _errno(chain: list[BaseException], numbers: frozenset[int]) -> OSError | None:
    return next((e for e in chain if isinstance(e, OSError) and e.errno in numbers), None)


def _strerror(error: OSError | None, default: str) -> str:
    text = str(error.strerror) if error is not None and error.strerror else default
    return text[:1].lower() + text[1:]  # e.g. "network is unreachable"


def _tls(chain: list[BaseException], url: str) -> tuple[str, str] | None:
    """(category, reason) for a TLS failure in the chain, else None."""
    tls = _first(chain, ssl.SSLError)
    # (urllib3 checks the name itself where the ssl module cannot)
    if _first(chain, NameMismatch) is not None or (
        isinstance(tls, ssl.SSLCertVerificationError) and tls.verify_code in _NAME_MISMATCH
    ):
        host = urlsplit(url).hostname
        return TLS_HOSTNAME, f"the server's TLS certificate is not issued for {host!r}"
    if isinstance(tls, ssl.SSLCertVerificationError):
        detail = clean(str(tls.verify_message or "")) or "certificate not trusted"
        return TLS_CERTIFICATE, f"TLS certificate verification failed: {detail}"
    if isinstance(tls, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
        tls is not None and tls.reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return TLS_CLOSED, "the server closed the connection during the TLS handshake"
    if tls is not None and tls.reason in _NOT_TLS_REASONS:
        return TLS_NOT_HTTPS, "TLS handshake failed: the server did not answer in TLS"
    if tls is not None:
        words = tls.reason or type(tls).__name__
        return TLS, f"TLS error: {words.replace('_', ' ').lower()}"
    return None


def diagnose(error: BaseException, url: str, timeout: float) -> Diagnosis:
    """What went wrong with one attempt (see the module docstring), by type and errno."""
    chain = _causes(error)
    category, reason = _classify(chain, url, timeout)
    fix = FIXES[category]
    if _first(chain, (requests.exceptions.ProxyError, u3.ProxyError)) is not None:
        reason = f"proxy: {reason}"
        fix = f"{fix}; check the proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)"
    return Diagnosis(category, clean(reason), fix)


def _classify(chain: list[BaseException], url: str, timeout: float) -> tuple[str, str]:
    # Order matters: a subclass before its base (RemoteDisconnected is a
    # ConnectionResetError, InvalidChunkLength an IncompleteRead, a connect timeout a
    # timeout), the TLS layer before the socket below it.
    if _first(chain, (socket.gaierror, u3.NameResolutionError)) is not None:
        cause = _first(chain, socket.gaierror)
        host = urlsplit(url).hostname
        return DNS, f"DNS lookup failed for host {host!r}: {_strerror(cause, 'no such host')}"
    if _first(chain, ConnectionRefusedError) or _errno(chain, frozenset({errno.ECONNREFUSED})):
        return REFUSED, "connection refused"
    if any(  # (urllib3's NewConnectionError is, for history's sake, a ConnectTimeoutError)
        isinstance(e, (u3.ConnectTimeoutError, requests.exceptions.ConnectTimeout))
        and not isinstance(e, u3.NewConnectionError)
        for e in chain
    ):
        return CONNECT_TIMEOUT, f"connect timeout: no connection within {timeout:g}s"
    if (tls := _tls(chain, url)) is not None:
        return tls
    if _first(chain, http.client.RemoteDisconnected) is not None:
        return CLOSED, "the server closed the connection without a response"
    if _first(chain, ConnectionResetError) or _errno(chain, _RESET_ERRNOS):
        return RESET, "connection reset by peer"
    if _first(chain, u3.InvalidChunkLength) is not None:
        return CUT, "the server sent a broken chunked body (invalid chunk length)"
    if (cut := _first(chain, (u3.IncompleteRead, http.client.IncompleteRead))) is not None:
        partial = cut.partial
        got = len(partial) if isinstance(partial, bytes) else partial
        more = f", {cut.expected} more expected" if cut.expected is not None else ""
        return CUT, f"the server closed the connection mid-response ({got} bytes read{more})"
    if _first(chain, (DeadlineExceeded, u3.TimeoutError, TimeoutError)) is not None:
        return TIMEOUT, (
            f"no complete response within {timeout:g}s (isales.timeout_seconds bounds "
            "the whole request)"
        )
    bad = _first(chain, (UndecodableBody, requests.exceptions.ContentDecodingError))
    if bad is not None:
        coding = bad.coding if isinstance(bad, UndecodableBody) else "compressed"
        return DECODING, f"the {coding} response body cannot be decoded"
    if (unreachable := _errno(chain, _UNREACHABLE_ERRNOS)) is not None:
        return UNREACHABLE, _strerror(unreachable, "network is unreachable")
    if _first(chain, u3.ProtocolError) is not None:  # e.g. "Response ended prematurely"
        return CUT, clean(str(chain[-1])) or "the response ended early"
    if os_error := next((e for e in chain if isinstance(e, OSError) and e.strerror), None):
        return NETWORK, _strerror(os_error, "network error")
    if isinstance(chain[0], requests.exceptions.RequestException) and not isinstance(
        chain[0], (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    ):
        # (an invalid header's message quotes its value: the signature, never shown)
        what = (
            "a request header is invalid"
            if isinstance(chain[0], requests.exceptions.InvalidHeader)
            else clean(str(chain[0])) or type(chain[0]).__name__
        )
        return REQUEST, f"request failed: {what}"
    return NETWORK, str(chain[-1]).strip() or type(chain[-1]).__name__
