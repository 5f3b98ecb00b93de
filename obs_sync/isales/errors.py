"""The iSales client's errors: one line each, naming the VDN and what to check."""

from __future__ import annotations

import threading

from obs_sync.errors import ObsSyncError
from obs_sync.isales.vendor import FAILURE_CODES, LIKELY_CAUSES, UNKNOWN_FAILURE
from obs_sync.snapshot import FetchStats


class ISalesError(ObsSyncError):
    """A fetch failed; the message is one clear line naming the VDN and what to check."""

    kind = "isales"  # one word for logs (a VDN result's error_category); each kind has its own

    def __init__(self, message: str, *, vdn_id: int | None = None, retryable: bool = False):
        if vdn_id is not None:
            message = f"VDN {vdn_id}: {message}"
        super().__init__(message)
        self.vdn_id = vdn_id
        self.retryable = retryable  # a later run may succeed (the client already retried)
        # What the failed fetch did (pages read, requests sent), set by fetch_snapshot.
        self.stats: FetchStats | None = None


# What to check after a 401: in the client's error, and as `obs-sync check`'s fix (which
# then leaves it out of the detail line, so the advice is printed once).
AUTH_ADVICE = "check isales.access_key/secret_key, isales.signing.signed_headers and the host clock"


class AuthenticationError(ISalesError):
    """HTTP 401: the server rejected the signature. Never retried."""

    kind = "auth"


class Cancelled(ISalesError):
    """The run ended the fetch (interrupted past its bound): nothing of the VDN is applied."""

    kind = "cancelled"


class Cancellation:
    """Lets a run end its fetches early: each checks before a request, and the waits
    between retries end at once (a request on the wire ends within isales.timeout_seconds)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("fetch cancelled before its next request")

    def sleep(self, seconds: float) -> None:  # tenacity's wait between retries
        if self._event.wait(seconds):
            raise Cancelled("fetch cancelled while waiting to retry")


class VendorError(ISalesError):
    """The body carried a failure resultCode/returnCode."""

    kind = "vendor"

    def __init__(
        self, code: str, desc: str, *, vdn_id: int | None = None, status: int | None = None
    ):
        self.code = code
        self.meaning = FAILURE_CODES.get(code, UNKNOWN_FAILURE)
        self.desc = desc
        self.status = status  # the HTTP status when not 200
        where = f" (HTTP {status})" if status is not None and status != 200 else ""
        likely = LIKELY_CAUSES.get(code)
        # The likely cause and its fix (empty when the vendor's meaning is all there is).
        self.cause, self.fix = likely if likely is not None else ("", "")
        advice = f"; likely cause: {self.cause}: {self.fix}" if likely is not None else ""
        super().__init__(
            f"iSales failure code {code} ({self.meaning}){where}: "
            f"{desc or '(no resultDesc)'}{advice}",
            vdn_id=vdn_id,
            retryable=code not in FAILURE_CODES,
        )


class DataError(ISalesError):
    """The server's data cannot be trusted: malformed body, bad or conflicting codes."""

    kind = "data"


class HTTPStatusError(ISalesError):
    """An HTTP status that retrying cannot fix (4xx other than 401/429, redirects)."""

    kind = "http_status"

    def __init__(self, status: int, message: str, *, vdn_id: int | None = None):
        self.status = status
        super().__init__(message, vdn_id=vdn_id)


class TransportError(ISalesError):
    """A request failed on the way (connection, TLS, timeout, 429, 5xx, non-JSON): after
    the retries when another attempt might have helped, at once when it cannot (a TLS
    certificate, a port that is not HTTPS: ``retryable`` is then False).

    ``category`` says what happened (``obs_sync.isales.diagnosis``: ``refused``, ``dns``,
    ``timeout``, ``tls_certificate``...; ``http_status``, ``non_json``) and ``fix`` the
    thing to try; both are in the message too."""

    kind = "transport"

    def __init__(
        self,
        message: str,
        *,
        vdn_id: int | None = None,
        attempts: int = 0,
        category: str = "network",
        fix: str = "",
        retryable: bool = True,
    ):
        self.attempts = attempts
        self.category = category
        self.fix = fix
        super().__init__(message, vdn_id=vdn_id, retryable=retryable)
