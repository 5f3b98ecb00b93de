"""obs-sync's advisory locks: their keys, and who holds one another run found held."""

from __future__ import annotations

import zlib

from obs_sync.results import INT4_MAX


def lock_class(schema: str, purpose: str) -> int:
    """First key of a two-key advisory lock, distinct per schema and purpose (int4 >= 0)."""
    return zlib.crc32(f"obs-sync:{schema}:{purpose}".encode()) & INT4_MAX


def describe_holder(
    pid: int | None, application: str | None, user: str | None, state: str | None
) -> str | None:
    """The session holding a VDN's lock, in a skip's error (None: released meanwhile)."""
    if pid is None:
        return None
    what = state or "state unknown"
    return f"pid {pid}, application_name {application or ''!r}, user {user!r}, {what}"
