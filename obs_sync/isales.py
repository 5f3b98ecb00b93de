"""Signed CC-iSales client: one VDN's complete, verified snapshot of OBS result codes.

API: ``shared/spec/isales-query-obs-result-code.md``; signing: ``c2-signing.md``.

The client pages ``queryOBSResultCode`` until the codes fetched reach ``totalCount``,
checks the vendor result codes on every page, retries only what is transient (with
bounded exponential backoff and jitter), and says whether the snapshot is complete:
only a complete snapshot may delete stored rows. It is shared by the sync's worker
threads: one process-wide rate limiter, one connection pool.

Lenient where the vendor page is loose and data cannot suffer: totalCount as a digit
string, only one of resultCode/returnCode, unknown fields, a null or absent empty list,
any 2xx, a body in a declared non-UTF-8 charset, a server paging by a smaller size than
asked. Strict where it can: codes must be non-blank strings, a code may not change its
description within one snapshot, and completeness is judged by counts only (a full
last page is followed by one request past the end, which must add nothing).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from obs_sync import __version__, logcontext
from obs_sync.config import VDN_MAX, VDN_MIN, ConfigError, ISalesConfig
from obs_sync.ratelimit import RateLimiter
from obs_sync.signing import C2Auth
from obs_sync.snapshot import FetchStats, Snapshot

log = logging.getLogger(__name__)

SUCCESS = "0200000"
CONTENT_TYPE = "application/json; charset=UTF-8"
PATH_TEMPLATE = "/rest/isales/v1/openapi/campaigns/{vdn_id}/queryOBSResultCode"
MAX_PAGE_SIZE = 50

# The vendor's failure codes (resultCode / returnCode). All of them are parameter errors:
# repeating the same request cannot help, so none is retried.
FAILURE_CODES: dict[str, str] = {
    "0200001": "parameter error",
    "02000001": "parameter value is empty",
    "02000002": "parameter contains illegal characters",
    "02000003": "parameter longer than allowed",
    "02000004": "parameter shorter than allowed",
    "02000005": "parameter length outside the allowed range",
    "02000006": "parameter value has the wrong type",
    "02000007": "parameter value out of range",
    "02000008": "parameter conversion failed, check the request",
    "02000009": "invalid parameter combination",
    "02000010": "hour and minute must be given together",
    "02000011": "more parameters than allowed",
}
UNKNOWN_FAILURE = "unknown failure code (not in the vendor's table)"
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

# Outcomes reported to ``on_request`` (one event per HTTP attempt).
OUTCOMES = frozenset(
    {"ok", "http_error", "timeout", "connection_error", "non_json", "auth_error", "vendor_error"}
)


# --------------------------------------------------------------------------- errors


class ISalesError(Exception):
    """A fetch failed; the message is one clear line naming the VDN and what to check."""

    def __init__(self, message: str, *, vdn_id: int | None = None, retryable: bool = False):
        if vdn_id is not None:
            message = f"VDN {vdn_id}: {message}"
        super().__init__(message)
        self.vdn_id = vdn_id
        self.retryable = retryable  # a later run may succeed (the client already retried)
        # What the failed fetch did (pages read, requests sent), set by fetch_snapshot.
        self.stats: FetchStats | None = None


class AuthenticationError(ISalesError):
    """HTTP 401: the server rejected the signature. Never retried."""


class VendorError(ISalesError):
    """The body carried a failure resultCode/returnCode."""

    def __init__(
        self, code: str, desc: str, *, vdn_id: int | None = None, status: int | None = None
    ):
        self.code = code
        self.meaning = FAILURE_CODES.get(code, UNKNOWN_FAILURE)
        self.desc = desc
        self.status = status  # the HTTP status when not 200
        where = f" (HTTP {status})" if status is not None and status != 200 else ""
        super().__init__(
            f"iSales failure code {code} ({self.meaning}){where}: {desc or '(no resultDesc)'}",
            vdn_id=vdn_id,
            retryable=code not in FAILURE_CODES,
        )


class DataError(ISalesError):
    """The server's data cannot be trusted: malformed body, bad or conflicting codes."""


class HTTPStatusError(ISalesError):
    """An HTTP status that retrying cannot fix (4xx other than 401/429, redirects)."""

    def __init__(self, status: int, message: str, *, vdn_id: int | None = None):
        self.status = status
        super().__init__(message, vdn_id=vdn_id)


class TransportError(ISalesError):
    """Transient failures (connection, timeout, 429, 5xx, non-JSON) outlasted the retries."""

    def __init__(self, message: str, *, vdn_id: int | None = None, attempts: int = 0):
        self.attempts = attempts
        super().__init__(message, vdn_id=vdn_id, retryable=True)


class _Transient(Exception):
    """One attempt failed in a way that another attempt may fix (internal)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt, for metrics: ``outcome`` is one of :data:`OUTCOMES`."""

    vdn_id: int
    outcome: str
    status: int | None
    seconds: float


@dataclass(frozen=True)
class Page:
    """One validated page of ``queryOBSResultCode``."""

    vdn_id: int
    page_num: int
    page_size: int
    total_count: int
    codes: tuple[tuple[str, str], ...]  # (obsCode, obsCodeDesc) in the server's order
    result_desc: str = ""


class _Counters:
    """Mutable per-fetch counters (one fetch runs in one thread)."""

    __slots__ = ("pages", "requests", "restarts", "retries")

    def __init__(self) -> None:
        self.pages = 0
        self.requests = 0
        self.retries = 0
        self.restarts = 0


@dataclass
class _Pass:
    """What one walk through a VDN's pages produced."""

    codes: dict[str, str]
    page_size: int  # asked for; lowered when the server pages by a smaller size
    total: int | None = None
    rows: int = 0
    drift: tuple[int, int] | None = None  # first (old, new) totalCount change seen
    cap_hit: bool = False
    empty_page: int | None = None  # the page that came back empty early
    probing: bool = False  # the next page is a check that nothing lies past the end
    beyond: tuple[int, int] | None = None  # (page, new codes) found past totalCount


# --------------------------------------------------------------------------- helpers


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # rare path: keep it off the import-time budget

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _snippet(content: bytes, limit: int = 120) -> str:
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


def _decode_json(content: bytes, content_type: str | None) -> Any:
    """Parse a JSON body: UTF-8 (BOM or not) or UTF-16/32 as RFC 8259 allows; a body that
    is not valid UTF-8 is decoded with the charset its Content-Type declares (GBK...).

    Raises ValueError when it is not JSON in either reading.
    """
    try:
        return json.loads(content)
    except UnicodeDecodeError:
        charset = _charset(content_type)
        if charset is None:
            raise
        try:
            text = content.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise ValueError(f"body is neither UTF-8 nor the declared {charset}") from None
        return json.loads(text)


def _parse_page(vdn_id: int, page_num: int, page_size: int, body: Any) -> Page:
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
    result_desc = body.get("resultDesc")
    return Page(
        vdn_id=vdn_id,
        page_num=page_num,
        page_size=page_size,
        total_count=total,
        codes=tuple(codes),
        result_desc=result_desc if isinstance(result_desc, str) else "",
    )


def _error_detail(content: bytes, content_type: str | None) -> str:
    """One short line from an error response: its JSON message fields, else a snippet."""
    try:
        body = _decode_json(content, content_type)
    except ValueError:
        return _snippet(content)
    if isinstance(body, dict):
        parts = [f"{k}={body[k]}" for k in _ERROR_FIELDS if body.get(k) not in (None, "")]
        if parts:
            return _snippet(", ".join(parts).encode())
    return _snippet(content)


def _clock_hint(date: str | None, now: datetime | None = None) -> str:
    """On a 401: how far the server's Date header is from this host's clock, when that is
    more than a minute (signatures carry a timestamp the server checks); else ""."""
    if not date:
        return ""
    import email.utils

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


def _known_failure(content: bytes, content_type: str | None) -> tuple[str, str] | None:
    """(code, desc) when an error response's JSON body carries one of the vendor's
    (parameter) failure codes; None otherwise (not JSON, no code, an unknown code)."""
    try:
        body = _decode_json(content, content_type)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    failure = _failure(body)
    if failure is None or failure[0] not in FAILURE_CODES:
        return None
    return failure


def _merge(vdn_id: int, codes: dict[str, str], page: Page) -> None:
    """Add a page's codes; an exact repeat is harmless, a conflicting one is a data error."""
    for code, desc in page.codes:
        seen = codes.setdefault(code, desc)
        if seen != desc:
            raise DataError(
                f"obsCode {code!r} appears twice with different descriptions "
                f"({seen!r} and {desc!r}, page {page.page_num})",
                vdn_id=vdn_id,
            )


def _tls_config_problem(error: Exception, url: str) -> str | None:
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


def _clean(text: str) -> str:
    """One line of exception text with no URL path/query/userinfo, at most _REASON_MAX."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = _URL_IN_TEXT.sub(r"\1\2", _URL_NOISE.sub("", lines[0] if lines else ""))
    text = " ".join(text.split())
    if len(text) > _REASON_MAX:
        text = text[: _REASON_MAX - 3].rstrip() + "..."
    return text


def _first(chain: list[BaseException], kinds: type | tuple[type, ...]) -> Any:
    return next((e for e in chain if isinstance(e, kinds)), None)


def _connection_reason(error: BaseException, url: str, timeout: float) -> str:
    """Why a connection failed, in a few words (``connection refused``, ``DNS lookup
    failed for host 'x': ...``); the errno text where there is one, never a secret."""
    import http.client
    import socket

    from urllib3 import exceptions as u3

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
        detail = _clean(str(chain[-1])) if len(chain) > 1 else ""
        name = coding.group(1) if coding else "compressed"
        reason = f"the {name} response body cannot be decoded" + (f": {detail}" if detail else "")
    elif os_error := next((e for e in chain if isinstance(e, OSError) and e.strerror), None):
        text = str(os_error.strerror)
        reason = text[:1].lower() + text[1:]  # e.g. "network is unreachable"
    else:
        reason = str(chain[-1]).strip() or type(chain[-1]).__name__
    return _clean(("proxy: " if proxy else "") + reason)


def _tls_reason(error: BaseException, url: str, timeout: float) -> str:
    """Why a TLS handshake failed that may pass on a later attempt, in a few words."""
    import ssl

    chain = _causes(error)
    tls = _first(chain, ssl.SSLError)
    if tls is None:
        return _connection_reason(error, url, timeout)
    if isinstance(tls, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(tls):
        return "the server closed the connection during the TLS handshake"
    # "[SSL: CODE] words (_ssl.c:1006)" -> "words"
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(tls))
    return _clean(text or type(tls).__name__)


# --------------------------------------------------------------------------- client


class ISalesClient:
    """Fetches VDN snapshots; safe to share between up to ``max_concurrency`` threads."""

    def __init__(
        self,
        config: ISalesConfig,
        *,
        on_request: Callable[[RequestEvent], None] | None = None,
    ) -> None:
        self.config = config
        self._on_request = on_request
        self._timeout = config.timeout_seconds
        self._page_size = config.page_size
        self._auth = C2Auth(
            config.access_key,
            config.secret_key.get_secret_value(),
            config.signing.signed_headers,
            config.signing.timestamp_precision,
        )
        self._headers = {
            "User-Agent": f"obs-sync/{__version__}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "Content-Type": CONTENT_TYPE,
        }
        if config.locale:
            self._headers["locale"] = config.locale
        sendable = {name.lower() for name in self._headers} | {"host", "content-length"}
        missing = [h for h in config.signing.signed_headers if h not in sendable]
        if missing:
            raise ConfigError(
                f"isales.signing.signed_headers: {', '.join(missing)} is never sent "
                f"(sign a subset of: {', '.join(sorted(sendable))}; "
                "locale only when isales.locale is set)"
            )

        verify: bool | str = config.verify_tls
        if verify is False:
            # One warning per client, not one per request (urllib3 would warn on each).
            import urllib3

            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            log.warning(
                "isales.verify_tls is false: the server's TLS certificate is NOT verified "
                "(set it to the CA bundle path instead)"
            )
        # Environment proxies / CA bundle are resolved once here rather than per request
        # (a Session does that lookup on every call).
        probe = requests.Session()
        env = probe.merge_environment_settings(config.base_url, {}, None, verify, None)
        probe.close()
        env_verify = env["verify"]
        self._verify: bool | str = verify if env_verify is None else env_verify
        self._proxies: dict[str, str] = dict(env["proxies"])
        # Normalise the base URL once the way requests would (IDNA host, quoting), so each
        # request can skip URL preparation.
        base = requests.PreparedRequest()
        base.prepare_url(config.base_url + "/", None)
        self._base_url = (base.url or config.base_url).rstrip("/")

        # Hot path: prepared requests go straight to one shared adapter (a thread-safe
        # urllib3 pool sized for max_concurrency). A Session would add per-request header,
        # cookie and environment merging that this stateless, signed API does not need.
        pool = max(config.max_concurrency, 1) + 1
        self._adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool, max_retries=0)
        self._limiter = RateLimiter(config.max_requests_per_second)
        self._closed = False

        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(config.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"ISalesClient(base_url={self.config.base_url!r})"

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> ISalesClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._adapter.close()

    def _send(self, url: str) -> requests.Response:
        if self._closed:
            raise ISalesError("the iSales client is closed")
        request = requests.PreparedRequest()
        request.method = "GET"
        request.url = url
        request.headers = CaseInsensitiveDict(self._headers)
        request.body = None
        request.hooks = {"response": []}
        self._auth(request)
        response = self._adapter.send(
            request,
            timeout=self._timeout,
            verify=self._verify,
            proxies=self._proxies,
        )
        try:
            _ = response.content  # read it all: the connection goes back to the pool
        finally:
            response.close()
        return response

    # ----------------------------------------------------------------- public API

    def fetch_page(self, vdn_id: int, page_num: int, page_size: int) -> Page:
        """Fetch and validate one page (with retries). Used by ``check`` and the paging loop."""
        if not VDN_MIN <= vdn_id <= VDN_MAX:
            raise ValueError(f"vdn_id {vdn_id} is outside {VDN_MIN}..{VDN_MAX}")
        if page_num < 1:
            raise ValueError(f"page_num {page_num} must be >= 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size {page_size} is outside 1..{MAX_PAGE_SIZE}")
        return self._fetch_page(vdn_id, page_num, page_size, _Counters())

    def fetch_snapshot(self, vdn_id: int) -> Snapshot:
        """Every page of one VDN, verified; ``complete`` says whether deletions are safe."""
        if not VDN_MIN <= vdn_id <= VDN_MAX:
            raise ValueError(f"vdn_id {vdn_id} is outside {VDN_MIN}..{VDN_MAX}")
        started = time.perf_counter()
        counters = _Counters()

        def stats(total_count: int | None) -> FetchStats:
            return FetchStats(
                pages=counters.pages,
                requests=counters.requests,
                retries=counters.retries,
                restarts=counters.restarts,
                total_count=total_count,
                seconds=time.perf_counter() - started,
            )

        with logcontext.bind(vdn=vdn_id):
            try:
                walk = self._walk(vdn_id, counters, stop_on_drift=True, page_size=self._page_size)
                if walk.drift is not None:
                    old, new = walk.drift
                    log.info(
                        "VDN %s: totalCount changed while paging (%s -> %s); restarting once",
                        vdn_id,
                        old,
                        new,
                    )
                    counters.restarts += 1
                    walk = self._walk(
                        vdn_id, counters, stop_on_drift=False, page_size=walk.page_size
                    )
            except ISalesError as error:
                error.stats = stats(None)  # so a failed VDN still reports what it cost
                raise
            reason = self._incomplete_reason(walk)
            if reason is not None:
                log.warning("VDN %s: incomplete snapshot: %s", vdn_id, reason)
        return Snapshot(
            vdn_id=vdn_id,
            codes=walk.codes,
            complete=reason is None,
            stats=stats(walk.total),
            incomplete_reason=reason,
        )

    # ----------------------------------------------------------------- paging

    def _walk(
        self, vdn_id: int, counters: _Counters, *, stop_on_drift: bool, page_size: int
    ) -> _Pass:
        walk = _Pass(codes={}, page_size=page_size)
        max_pages = self.config.max_pages
        page_num = 0
        while True:
            if page_num >= max_pages:
                walk.cap_hit = not walk.probing
                return walk
            page_num += 1
            if walk.probing:
                try:
                    page = self._fetch_page(vdn_id, page_num, walk.page_size, counters)
                except (VendorError, DataError, HTTPStatusError) as error:
                    # A server may refuse a pageNum past the end instead of sending an
                    # empty list: that says nothing lies there either.
                    log.debug("VDN %s: page %s past the end: %s", vdn_id, page_num, error)
                    return walk
            else:
                page = self._fetch_page(vdn_id, page_num, walk.page_size, counters)
            counters.pages += 1
            if walk.probing and not page.codes:
                return walk  # nothing past the end (whatever totalCount it reports there)
            if walk.total is None:
                walk.total = page.total_count
            elif page.total_count != walk.total:
                if walk.drift is None:
                    walk.drift = (walk.total, page.total_count)
                walk.total = page.total_count
                if stop_on_drift:
                    return walk
            if walk.probing:
                new = sum(1 for code, _ in page.codes if code not in walk.codes)
                _merge(vdn_id, walk.codes, page)
                if new:  # (a server repeating its last page past the end adds nothing)
                    walk.beyond = (page_num, new)
                return walk
            if not page.codes:
                if walk.rows < walk.total:
                    walk.empty_page = page_num
                return walk
            _merge(vdn_id, walk.codes, page)
            walk.rows += len(page.codes)
            if walk.rows >= walk.total:
                # A full last page that completes the count: ask for the next one too, or
                # a totalCount understated by whole pages (e.g. one page's count) would
                # pass as complete. Only this case costs the extra request.
                if len(page.codes) >= walk.page_size and len(walk.codes) == walk.total:
                    walk.probing = True
                    continue
                return walk
            if page_num == 1 and len(page.codes) < walk.page_size:
                # A short first page with more codes to come: the server pages by a
                # smaller size than asked (a cap of its own). Asking for that size from
                # now on is right whether it offsets pages by its size or by ours; the
                # counts still decide whether the snapshot is complete.
                log.info(
                    "VDN %s: the server sent %d codes for pageSize %d with %d in all; paging by %d",
                    vdn_id,
                    len(page.codes),
                    walk.page_size,
                    walk.total,
                    len(page.codes),
                )
                walk.page_size = len(page.codes)

    @staticmethod
    def _incomplete_reason(walk: _Pass) -> str | None:
        fetched, total = len(walk.codes), walk.total
        if walk.drift is not None:
            old, new = walk.drift
            return f"totalCount changed while paging ({old} -> {new}), again after a restart"
        if walk.cap_hit:
            return (
                f"stopped at isales.max_pages with {fetched} of {total} codes fetched "
                "(raise isales.max_pages)"
            )
        if walk.empty_page is not None:
            return f"page {walk.empty_page} was empty after {fetched} of {total} codes"
        if walk.beyond is not None:
            page_num, new = walk.beyond
            return f"page {page_num}, past totalCount {total}, had {new} more codes"
        if fetched != total:
            return f"fetched {fetched} distinct codes but totalCount is {total}"
        return None

    # ----------------------------------------------------------------- one page

    def _url(self, vdn_id: int, page_num: int, page_size: int) -> str:
        path = PATH_TEMPLATE.format(vdn_id=vdn_id)
        return f"{self._base_url}{path}?pageSize={page_size}&pageNum={page_num}"

    def _fetch_page(self, vdn_id: int, page_num: int, page_size: int, counters: _Counters) -> Page:
        url = self._url(vdn_id, page_num, page_size)
        before = counters.requests
        try:
            page: Page = self._retrying(self._attempt, vdn_id, page_num, page_size, url, counters)
            return page
        except _Transient as last:
            attempts = counters.requests - before
            # The cause first: a reader (or a status table cutting the line short) sees
            # why before the long URL.
            raise TransportError(
                f"{last}; failed after {attempts} attempt{'s' * (attempts != 1)} (GET {url})",
                vdn_id=vdn_id,
                attempts=attempts,
            ) from None
        finally:
            counters.retries += max(0, counters.requests - before - 1)

    def _emit(self, vdn_id: int, outcome: str, status: int | None, started: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(RequestEvent(vdn_id, outcome, status, time.perf_counter() - started))
        except Exception:  # a broken metrics hook must not break fetching
            log.exception("on_request hook failed")

    def _attempt(
        self, vdn_id: int, page_num: int, page_size: int, url: str, counters: _Counters
    ) -> Page:
        self._limiter.acquire()
        counters.requests += 1
        started = time.perf_counter()
        try:
            response = self._send(url)
        except requests.exceptions.SSLError as error:
            self._emit(vdn_id, "connection_error", None, started)
            problem = _tls_config_problem(error, url)
            if problem is not None:
                raise ISalesError(problem, vdn_id=vdn_id) from None
            raise _Transient(f"TLS error: {_tls_reason(error, url, self._timeout)}") from None
        except requests.exceptions.Timeout as error:
            self._emit(vdn_id, "timeout", None, started)
            if isinstance(error, requests.exceptions.ConnectTimeout):
                raise _Transient(
                    f"connect timeout: no connection within {self._timeout:g}s"
                ) from None
            raise _Transient(f"no response within {self._timeout:g}s") from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ) as error:
            self._emit(vdn_id, "connection_error", None, started)
            raise _Transient(_connection_reason(error, url, self._timeout)) from None
        except requests.exceptions.RequestException as error:
            self._emit(vdn_id, "connection_error", None, started)
            # (an invalid header's message quotes its value: the signature, never shown)
            what = (
                "a request header is invalid"
                if isinstance(error, requests.exceptions.InvalidHeader)
                else _clean(str(error)) or type(error).__name__
            )
            raise ISalesError(f"request failed: {what} (GET {url})", vdn_id=vdn_id) from None

        status = response.status_code
        content_type = response.headers.get("Content-Type")
        if 200 <= status < 300:
            try:
                body = _decode_json(response.content, content_type)
            except ValueError:
                self._emit(vdn_id, "non_json", status, started)
                kind = content_type or "no Content-Type"
                raise _Transient(
                    f"HTTP {status} body is not JSON ({kind}): {_snippet(response.content)}"
                ) from None
            try:
                page = _parse_page(vdn_id, page_num, page_size, body)
            except ISalesError:
                self._emit(vdn_id, "vendor_error", status, started)
                raise
            self._emit(vdn_id, "ok", status, started)
            return page

        detail = _error_detail(response.content, content_type)
        if status == 401:
            self._emit(vdn_id, "auth_error", status, started)
            said = f"; server said: {detail}" if detail else ""
            raise AuthenticationError(
                f"HTTP 401 from {url}: the server rejected the signature; check "
                "isales.access_key/secret_key, isales.signing.signed_headers and the host "
                f"clock (not retried){said}{_clock_hint(response.headers.get('Date'))}",
                vdn_id=vdn_id,
            )
        # A vendor parameter-error code in an error status's JSON body is as final as in a
        # 200: repeating the same request cannot fix it, whatever the status.
        failure = _known_failure(response.content, content_type)
        if failure is not None:
            self._emit(vdn_id, "vendor_error", status, started)
            raise VendorError(failure[0], failure[1], vdn_id=vdn_id, status=status)
        self._emit(vdn_id, "http_error", status, started)
        if status in (408, 429) or status >= 500:
            suffix = f": {detail}" if detail else ""
            raise _Transient(
                f"HTTP {status}{suffix}", parse_retry_after(response.headers.get("Retry-After"))
            )
        if 300 <= status < 400:
            location = response.headers.get("Location", "no Location")
            raise HTTPStatusError(
                status,
                f"HTTP {status} redirect from {url} to {location}; set isales.base_url "
                "to the server's real address",
                vdn_id=vdn_id,
            )
        hint = ""
        if status == 403:
            hint = (
                "; the access key may lack permission for this API, or the server rejected "
                "the signature (check isales.access_key/secret_key and the host clock)"
            )
        raise HTTPStatusError(
            status,
            f"HTTP {status} from {url} (not retried): {detail or 'no body'}{hint}",
            vdn_id=vdn_id,
        )

    # ----------------------------------------------------------------- retry policy

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Transient) and error.retry_after is not None:
            return min(error.retry_after, self.config.backoff_max_seconds)
        # Exponential from backoff_initial_seconds, plus up to that much jitter so that
        # parallel VDNs do not retry in lockstep; never above backoff_max_seconds.
        initial = self.config.backoff_initial_seconds
        exponential: float = initial * 2.0 ** min(state.attempt_number - 1, 32)
        return min(exponential + random.uniform(0, initial), self.config.backoff_max_seconds)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        vdn_id, page_num = state.args[0], state.args[1]
        log.warning(
            "VDN %s page %s: %s; retry %d of %d in %.2fs",
            vdn_id,
            page_num,
            error,
            state.attempt_number,
            self.config.max_retries,
            delay,
        )
