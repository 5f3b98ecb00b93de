"""Codes too long to store (``sync.max_code_bytes``): dropped from a snapshot, which then
deletes nothing (docs/semantics.md, "Long codes")."""

from __future__ import annotations

from dataclasses import replace

from obs_sync.snapshot import Snapshot


def without_long_codes(snapshot: Snapshot, max_code_bytes: int) -> Snapshot:
    """``snapshot`` without its codes longer than ``max_code_bytes`` (UTF-8), which cannot be
    stored: only those codes fail. The rest is applied as an incomplete snapshot, whose
    reason names the code, so nothing is deleted on that run."""
    # A character is at most 4 bytes of UTF-8: the usual snapshot is cleared by its longest
    # code's length alone, without encoding every code.
    if 4 * max(map(len, snapshot.codes), default=0) <= max_code_bytes:
        return snapshot
    long = sorted(code for code in snapshot.codes if _utf8_bytes(code) > max_code_bytes)
    if not long:
        return snapshot
    first = long[0]
    shown = first if len(first) <= 40 else first[:40] + "..."
    more = f" (and {len(long) - 1} more)" if len(long) > 1 else ""
    reason = (
        f"obsCode {shown!r} is {_utf8_bytes(first)} bytes, longer "
        f"than sync.max_code_bytes = {max_code_bytes}{more}: not stored"
    )
    if snapshot.incomplete_reason:
        reason = f"{snapshot.incomplete_reason}; {reason}"
    rejected = set(long)
    return replace(
        snapshot,
        codes={code: desc for code, desc in snapshot.codes.items() if code not in rejected},
        complete=False,
        incomplete_reason=reason,
    )


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))  # a lone surrogate is failed elsewhere
