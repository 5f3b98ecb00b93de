"""Signed CC-iSales client: one VDN's complete, verified snapshot of OBS result codes.

The vendor's API is ``queryOBSResultCode`` (its constants: :mod:`obs_sync.isales.vendor`);
signing is C2/AK-SK (:mod:`obs_sync.signing`). This module is the policy around one
request: rate limit, retry only what is transient (bounded exponential backoff with
jitter), map each HTTP status to an error, and report each attempt to ``on_request``.
The pages to ask for and whether the result is complete are decided by
:mod:`obs_sync.isales.paging`; a body is validated by :mod:`obs_sync.isales.page`;
transport failures are worded by :mod:`obs_sync.isales.diagnosis`; bytes move through
:mod:`obs_sync.isales.wire`. Shared by the sync's worker threads: one process-wide rate
limiter, one connection pool.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast

import requests
import tenacity
import urllib3
from requests.adapters import BaseAdapter

from obs_sync import __version__, logcontext
from obs_sync.config import VDN_MAX, VDN_MIN, ISalesConfig
from obs_sync.isales.diagnosis import clock_hint, diagnose
from obs_sync.isales.errors import (
    AUTH_ADVICE,
    AuthenticationError,
    Cancellation,
    DataError,
    HTTPStatusError,
    ISalesError,
    TransportError,
    VendorError,
)
from obs_sync.isales.events import Counters, RequestEvent
from obs_sync.isales.page import (
    NestingTooDeep,
    Page,
    decode_json,
    error_detail,
    known_failure,
    parse_page,
    parse_retry_after,
    snippet,
)
from obs_sync.isales.paging import Pager
from obs_sync.isales.vendor import MAX_PAGE_SIZE, PATH_TEMPLATE
from obs_sync.isales.wire import BodyTooLarge, UndecodableBody, Wire
from obs_sync.ratelimit import RateLimiter
from obs_sync.results import DEFAULT_SOURCE
from obs_sync.signing import C2Auth
from obs_sync.snapshot import FetchStats, Snapshot

log = logging.getLogger(__package__)  # "obs_sync.isales", as logs have always said

CONTENT_TYPE = "application/json; charset=UTF-8"
T = TypeVar("T")  # what a fetch_json parse returns


class _Failed(Exception):
    """One attempt failed on the way; ``retryable``: another attempt may fix it (internal)."""

    def __init__(
        self,
        message: str,
        category: str,
        *,
        fix: str = "",
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.category = category
        self.fix = fix
        self.retry_after = retry_after
        self.retryable = retryable


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _Failed) and error.retryable


class ISalesClient:
    """Fetches VDN snapshots; safe to share between up to ``max_concurrency`` threads."""

    def __init__(
        self,
        config: ISalesConfig,
        *,
        on_request: Callable[[RequestEvent], None] | None = None,
        adapter: BaseAdapter | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        """``adapter``: the requests transport (default: a pooled ``HTTPAdapter``).
        ``limiter``: shared by the clients of the sources on one server (their rate limit
        holds per server); default: this client's own, at ``max_requests_per_second``."""
        self.config = config
        # The source's name for its request events (a plain isales section: default).
        self.source: str = getattr(config, "name", DEFAULT_SOURCE)
        self._on_request = on_request
        self._timeout = config.timeout_seconds
        self._page_size = config.page_size
        auth = C2Auth(
            config.access_key,
            config.secret_key.get_secret_value(),
            config.signing.signed_headers,
            config.signing.timestamp_precision,
        )
        headers = {
            "User-Agent": f"obs-sync/{__version__}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "Content-Type": CONTENT_TYPE,
        }
        if config.locale:
            headers["locale"] = config.locale
        # Which of these may be signed was checked with the configuration (obs_sync.headers).

        self.wire = Wire(
            config.base_url,
            headers=headers,
            auth=auth,
            timeout=config.timeout_seconds,
            max_response_bytes=config.max_response_bytes,
            verify_tls=config.verify_tls,
            pool_size=max(config.max_concurrency, 1) + 1,
            adapter=adapter,
        )
        self._limiter = limiter or RateLimiter(config.max_requests_per_second)
        self._closed = False
        self._cancel = Cancellation()

        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(config.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(_retryable),
            before_sleep=self._before_sleep,
            sleep=self._cancel.sleep,
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
        self.wire.close()

    def cancel(self) -> None:
        """End every fetch in progress at its next request or retry wait (thread-safe)."""
        self._cancel.set()

    # ----------------------------------------------------------------- public API

    def fetch_page(self, vdn_id: int, page_num: int, page_size: int) -> Page:
        """Fetch and validate one page (with retries). Used by ``check`` and the paging loop."""
        if not VDN_MIN <= vdn_id <= VDN_MAX:
            raise ValueError(f"vdn_id {vdn_id} is outside {VDN_MIN}..{VDN_MAX}")
        if page_num < 1:
            raise ValueError(f"page_num {page_num} must be >= 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size {page_size} is outside 1..{MAX_PAGE_SIZE}")
        return self._fetch_page(vdn_id, page_num, page_size, Counters())

    def fetch_snapshot(self, vdn_id: int) -> Snapshot:
        """Every page of one VDN, verified; ``complete`` says whether deletions are safe."""
        if not VDN_MIN <= vdn_id <= VDN_MAX:
            raise ValueError(f"vdn_id {vdn_id} is outside {VDN_MIN}..{VDN_MAX}")
        started = time.perf_counter()
        counters = Counters()
        pager = Pager(
            lambda page_num, page_size: self._fetch_page(vdn_id, page_num, page_size, counters),
            vdn_id,
            page_size=self._page_size,
            max_pages=self.config.max_pages,
        )

        def stats(total_count: int | None) -> FetchStats:
            return FetchStats(
                pages=pager.pages,
                requests=counters.requests,
                retries=counters.retries,
                restarts=pager.restarts,
                total_count=total_count,
                seconds=time.perf_counter() - started,
            )

        with logcontext.bind(vdn=vdn_id):
            try:
                paged = pager.run()
            except ISalesError as error:
                error.stats = stats(None)  # so a failed VDN still reports what it cost
                raise
        return Snapshot(
            vdn_id=vdn_id,
            codes=paged.codes,
            complete=paged.incomplete_reason is None,
            stats=stats(paged.total),
            incomplete_reason=paged.incomplete_reason,
        )

    # ----------------------------------------------------------------- one page

    def _url(self, vdn_id: int, page_num: int, page_size: int) -> str:
        path = PATH_TEMPLATE.format(vdn_id=vdn_id)
        return f"{self.wire.base_url}{path}?pageSize={page_size}&pageNum={page_num}"

    def _fetch_page(self, vdn_id: int, page_num: int, page_size: int, counters: Counters) -> Page:
        url = self._url(vdn_id, page_num, page_size)
        parse = lambda body: parse_page(vdn_id, page_num, page_size, body)  # noqa: E731
        return self.fetch_json(vdn_id, url, f"page {page_num}", parse, counters)

    def fetch_json(
        self, vdn_id: int, url: str, what: str, parse: Callable[[Any], T], counters: Counters
    ) -> T:
        """A GET with retries; ``parse`` validates the JSON, ``what`` names it ("page 2")."""
        before = counters.requests
        try:
            return cast(T, self._retrying(self._attempt, vdn_id, what, url, parse, counters))
        except _Failed as last:
            attempts = counters.requests - before
            tried = f"failed after {attempts} attempt{'s' * (attempts != 1)}"
            if not last.retryable:
                tried = "not retried"
            fix = f"; {last.fix}" if last.fix else ""
            # The cause first: a reader (or a status table cutting the line short) sees
            # why before the long URL.
            raise TransportError(
                f"{last}; {tried}{fix} (GET {url})",
                vdn_id=vdn_id,
                attempts=attempts,
                category=last.category,
                fix=last.fix,
                retryable=last.retryable,
            ) from last
        finally:
            counters.retries += max(0, counters.requests - before - 1)

    def _emit(self, vdn_id: int, outcome: str, status: int | None, started: float) -> None:
        if self._on_request is None:
            return
        try:
            elapsed = time.perf_counter() - started
            self._on_request(RequestEvent(vdn_id, outcome, status, elapsed, source=self.source))
        except Exception:  # a broken metrics hook must not break fetching
            log.exception("on_request hook failed")

    def _attempt(
        self, vdn_id: int, what: str, url: str, parse: Callable[[Any], T], counters: Counters
    ) -> T:
        if self._closed:
            raise ISalesError("the iSales client is closed")
        self._cancel.check()
        self._limiter.acquire()
        counters.requests += 1
        started = time.perf_counter()
        try:
            reply = self.wire.get(url)
        except BodyTooLarge as error:
            self._emit(vdn_id, "vendor_error", None, started)
            inflated = " decompressed" if error.coding else ""
            raise DataError(
                f"{what}: the{inflated} response body is larger than "
                f"isales.max_response_bytes ({error.limit} bytes); raise that setting if the "
                f"server's pages really are this large (GET {url})",
                vdn_id=vdn_id,
            ) from error
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            OSError,
            UndecodableBody,
        ) as error:
            found = diagnose(error, url, self._timeout)
            if found.timeout:
                self._emit(vdn_id, "timeout", None, started)
            else:
                self._emit(vdn_id, "connection_error", None, started)
            raise _Failed(
                found.reason, found.category, fix=found.fix, retryable=found.retryable
            ) from error

        status, content = reply.status, reply.content
        content_type = reply.headers.get("Content-Type")
        if 200 <= status < 300:
            try:
                body = decode_json(content, content_type)
            except NestingTooDeep as error:
                self._emit(vdn_id, "vendor_error", status, started)
                raise DataError(
                    f"{what}: the response body's JSON nests too deeply to be read (GET {url})",
                    vdn_id=vdn_id,
                ) from error
            except ValueError as error:
                self._emit(vdn_id, "non_json", status, started)
                kind = content_type or "no Content-Type"
                raise _Failed(
                    f"HTTP {status} body is not JSON ({kind}): {snippet(content)}", "non_json"
                ) from error
            try:
                parsed = parse(body)
            except ISalesError:
                self._emit(vdn_id, "vendor_error", status, started)
                raise
            self._emit(vdn_id, "ok", status, started)
            return parsed

        detail = error_detail(content, content_type)
        if status == 401:
            self._emit(vdn_id, "auth_error", status, started)
            said = f"; server said: {detail}" if detail else ""
            raise AuthenticationError(
                f"HTTP 401 from {url}: the server rejected the signature; {AUTH_ADVICE} "
                f"(not retried){said}{clock_hint(reply.headers.get('Date'))}",
                vdn_id=vdn_id,
            )
        # A vendor parameter-error code in an error status's JSON body is as final as in a
        # 200: repeating the same request cannot fix it, whatever the status.
        failure = known_failure(content, content_type)
        if failure is not None:
            self._emit(vdn_id, "vendor_error", status, started)
            raise VendorError(failure[0], failure[1], vdn_id=vdn_id, status=status)
        self._emit(vdn_id, "http_error", status, started)
        if status in (408, 429) or status >= 500:
            suffix = f": {detail}" if detail else ""
            raise _Failed(
                f"HTTP {status}{suffix}",
                "http_status",
                retry_after=parse_retry_after(reply.headers.get("Retry-After")),
            )
        if 300 <= status < 400:
            location = reply.headers.get("Location", "no Location")
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
        if isinstance(error, _Failed) and error.retry_after is not None:
            return min(error.retry_after, self.config.backoff_max_seconds)
        # Exponential from backoff_initial_seconds, plus up to that much jitter so that
        # parallel VDNs do not retry in lockstep; never above backoff_max_seconds.
        initial = self.config.backoff_initial_seconds
        exponential: float = initial * 2.0 ** min(state.attempt_number - 1, 32)
        return min(exponential + random.uniform(0, initial), self.config.backoff_max_seconds)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        vdn_id, what = state.args[0], state.args[1]
        log.warning(
            "VDN %s %s: %s; retry %d of %d in %.2fs",
            vdn_id,
            what,
            error,
            state.attempt_number,
            self.config.max_retries,
            delay,
        )
