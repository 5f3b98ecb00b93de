"""Which request headers can be signed: those every request carries, and the one rule.

The configuration checks ``isales.signing.signed_headers`` against it up front (no request
is made, no run recorded); the signer checks each request against it again.
"""

from __future__ import annotations

from collections.abc import Iterable

# The headers every request carries (the client's own, and those the HTTP library adds):
# only these can be signed. ``locale`` too when isales.locale is set.
SENT_HEADERS = frozenset(
    {"accept", "accept-encoding", "content-length", "content-type", "host", "user-agent"}
)


def unsent_headers(signed: Iterable[str], sent: Iterable[str]) -> list[str]:
    """The ``signed`` header names that are not among ``sent`` (compared case-blind)."""
    present = {name.lower() for name in sent}
    return [name for name in signed if name.lower() not in present]
