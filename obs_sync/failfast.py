"""When a run stops asking the server: repeated rejected credentials, an unreachable server.

Pure: :class:`FailFast` is fed each fetched VDN's outcome (in the order fetches end) and
says when the run must stop starting VDNs, and why. The thresholds are configuration keys
(``sync.max_auth_failures``, ``sync.max_unreachable_vdns``, docs/operations.md):

* **authentication**: every rejected signature counts against the account (servers lock
  an access key out after a few), so after ``max_auth_failures`` rejections (HTTP 401, or
  403 "no permission for this API") in one run no more VDN is asked for;
* **circuit breaker**: after ``max_unreachable_vdns`` consecutive VDNs whose fetch failed on
  the way (connection refused, DNS, timeouts, TLS, 5xx and 429 after the retries), the rest
  of the run would only pile up retries; one fetch that gets an answer closes it again.

Each run starts closed (it probes the server again): the breaker is per run, by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TripReason = Literal["auth_rejected", "unreachable"]


def auth_fix(keys: str = "isales") -> str:
    """What to do about rejected credentials; ``keys``: the source's configuration keys
    (``isales``, or ``sources[1]``)."""
    return (
        f"fix {keys}.access_key/{keys}.secret_key (and check the host clock), then run "
        "again; `obs-sync check` tests one request"
    )


def unreachable_fix(keys: str = "isales") -> str:
    return (
        f"check that the iSales server is up and {keys}.base_url is right; the next run "
        "probes it again"
    )


AUTH_FIX = auth_fix()
UNREACHABLE_FIX = unreachable_fix()


@dataclass(frozen=True)
class Trip:
    """Why the run stopped asking, as a not-started VDN's error says it."""

    reason: TripReason
    error: str  # the reason and the fix, for each VDN not attempted


class FailFast:
    """Counts a run's fetch outcomes against the thresholds; ``trip`` once one is reached."""

    def __init__(
        self,
        max_auth_failures: int,
        max_unreachable_vdns: int,
        *,
        keys: str = "isales",
    ) -> None:
        """``keys``: the source's configuration keys (isales, sources[1]), for the fix."""
        self.keys = keys
        self.max_auth_failures = max_auth_failures
        self.max_unreachable_vdns = max_unreachable_vdns
        self.auth_failures = 0
        self.unreachable_streak = 0
        self.trip: Trip | None = None

    def observe(self, error_kind: str | None, status: int | None = None) -> Trip | None:
        """One fetch ended: ``error_kind`` None when it got an answer (a snapshot), else the
        failed fetch's kind (``auth``, ``transport``, ``http_status`` with its ``status``...).

        Returns the trip when this outcome reached a threshold (once per run)."""
        if self.trip is not None:
            return None
        if error_kind == "auth" or (error_kind == "http_status" and status == 403):
            self.auth_failures += 1
        if error_kind == "transport":
            self.unreachable_streak += 1
        else:  # an answer, even an error answer: the server is there
            self.unreachable_streak = 0
        if self.auth_failures >= self.max_auth_failures:
            self.trip = Trip(
                "auth_rejected",
                f"not attempted: the server rejected this run's credentials "
                f"{self.auth_failures} times (sync.max_auth_failures = "
                f"{self.max_auth_failures}); {auth_fix(self.keys)}",
            )
        elif self.unreachable_streak >= self.max_unreachable_vdns:
            self.trip = Trip(
                "unreachable",
                f"not attempted: the iSales server could not be reached for "
                f"{self.unreachable_streak} VDNs in a row (sync.max_unreachable_vdns = "
                f"{self.max_unreachable_vdns}); {unreachable_fix(self.keys)}",
            )
        return self.trip
