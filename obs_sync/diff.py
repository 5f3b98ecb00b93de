"""Decide what changed between the stored codes of one VDN and a fetched snapshot.

Pure functions over plain data: no I/O, no clock, no database. The store turns the
returned ``Changes`` into set-based SQL; docs/semantics.md states the rules in prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Changes",
    "StoredCode",
    "compute_changes",
    "find_unstorable",
    "matches",
    "no_changes",
    "present",
]


@dataclass(frozen=True)
class StoredCode:
    """One row of ``result_code`` as the diff needs it (``deleted`` = ``deleted_at`` is set)."""

    obs_code: str
    obs_code_desc: str
    deleted: bool


@dataclass(frozen=True)
class Changes:
    """What applying one snapshot writes. Every tuple is sorted by obs_code."""

    inserts: tuple[tuple[str, str], ...]  # (obs_code, desc): codes never stored before
    updates: tuple[tuple[str, str, str], ...]  # (obs_code, old_desc, new_desc)
    deletes: tuple[str, ...]  # present codes absent from a complete snapshot
    restores: tuple[tuple[str, str], ...]  # (obs_code, desc): deleted codes that came back
    unchanged: int  # present codes fetched with an identical description
    guarded: bool  # the mass-deletion guard withheld deletions
    withheld_deletes: tuple[str, ...]  # the deletions the guard withheld

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to write (a guarded diff can be empty: deletes withheld)."""
        return not (self.inserts or self.updates or self.deletes or self.restores)


def _guard_limit(max_delete_fraction: float) -> Fraction:
    """The fraction as the decimal the operator wrote.

    ``Fraction(str(0.29))`` is exactly 29/100, whereas the float product ``0.29 * 100`` is
    28.999..., which would guard a VDN deleting exactly 29 of 100 codes.
    """
    if isinstance(max_delete_fraction, bool) or not isinstance(max_delete_fraction, int | float):
        raise TypeError(f"max_delete_fraction must be a number, got {max_delete_fraction!r}")
    if not 0 <= max_delete_fraction <= 1:  # also rejects NaN
        raise ValueError(
            f"sync.max_delete_fraction must be between 0 and 1, got {max_delete_fraction!r}"
        )
    return Fraction(str(max_delete_fraction))


def compute_changes(
    stored: Mapping[str, StoredCode],
    fetched: Mapping[str, str],
    *,
    complete: bool,
    max_delete_fraction: float,
) -> Changes:
    """Compare one VDN's stored codes (deleted ones included) with a fetched snapshot.

    ``stored`` maps obs_code to its stored row; the key is authoritative. ``fetched`` maps
    obs_code to the description as sent. Descriptions compare exactly (no normalization).
    Only a ``complete`` snapshot deletes; the guard withholds all deletions when they
    exceed ``max_delete_fraction`` of the present stored codes (see docs/semantics.md).
    """
    limit = _guard_limit(max_delete_fraction)

    inserts: list[tuple[str, str]] = []
    updates: list[tuple[str, str, str]] = []
    restores: list[tuple[str, str]] = []
    unchanged = 0
    get = stored.get
    # One pass over the snapshot; the common no-change case only does a lookup and a
    # string comparison per code and allocates nothing.
    for code, desc in fetched.items():
        row = get(code)
        if row is None:
            inserts.append((code, desc))
        elif row.deleted:
            restores.append((code, desc))
        elif row.obs_code_desc != desc:
            updates.append((code, row.obs_code_desc, desc))
        else:
            unchanged += 1

    present_count = present(stored)
    deletes: list[str] = []
    # When the snapshot matched every present code there is nothing to delete, so the
    # set-difference scan is skipped on the no-change path.
    if complete and present_count > unchanged + len(updates):
        deletes = [code for code, row in stored.items() if not row.deleted and code not in fetched]

    withheld: list[str] = []
    guarded = False
    # Exact rational comparison: deletes > fraction * present.
    if deletes and len(deletes) * limit.denominator > limit.numerator * present_count:
        guarded = True
        withheld, deletes = deletes, []

    return Changes(
        inserts=tuple(sorted(inserts)),
        updates=tuple(sorted(updates)),
        deletes=tuple(sorted(deletes)),
        restores=tuple(sorted(restores)),
        unchanged=unchanged,
        guarded=guarded,
        withheld_deletes=tuple(sorted(withheld)),
    )


def present(stored: Mapping[str, StoredCode]) -> int:
    """How many of the stored codes are present (not deleted)."""
    return sum(1 for row in stored.values() if not row.deleted)


def matches(rows: Sequence[tuple[str, str, bool]], codes: Mapping[str, str]) -> bool:
    """True when the stored rows are exactly the snapshot: all present, same descriptions."""
    if len(rows) != len(codes):
        return False
    get = codes.get
    return all(not deleted and get(code) == desc for code, desc, deleted in rows)


def no_changes(unchanged: int) -> Changes:
    """The diff of a snapshot identical to the ``unchanged`` present codes stored."""
    return Changes(
        inserts=(),
        updates=(),
        deletes=(),
        restores=(),
        unchanged=unchanged,
        guarded=False,
        withheld_deletes=(),
    )


def _describe(value: str, limit: int = 40) -> str:
    """A short, printable rendering of a possibly long or odd value for an error message."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return ascii(shown)


def _problem(value: str) -> str | None:
    if value.isascii():
        # Fast path: ASCII can only fail on NUL.
        pos = value.find("\x00")
        return None if pos < 0 else f"contains a NUL character (U+0000) at position {pos}"
    pos = value.find("\x00")
    if pos >= 0:
        return f"contains a NUL character (U+0000) at position {pos}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates (JSON "\ud800" escapes decode to them) have no UTF-8 form.
        return (
            f"contains an unpaired surrogate (U+{ord(value[exc.start]):04X}) at position "
            f"{exc.start}, which is not valid Unicode text"
        )
    return None


def find_unstorable(fetched: Mapping[str, str]) -> list[str]:
    """Describe every code or description PostgreSQL ``text`` cannot hold, sorted by obs_code.

    PostgreSQL text rejects NUL characters, and a UTF-8 database cannot take unpaired
    surrogates. An empty list means the snapshot can be written as is; otherwise the
    store reports a data error for the VDN and writes nothing.
    """
    # Fast path: one C-level scan of everything joined; only a hit looks at each value.
    joined = "".join(fetched) + "".join(fetched.values())
    if _problem(joined) is None:
        return []
    problems: list[tuple[str, int, str]] = []
    for code, desc in fetched.items():
        code_problem = _problem(code)
        if code_problem is not None:
            problems.append((code, 0, f"obsCode {_describe(code)} {code_problem}"))
        desc_problem = _problem(desc)
        if desc_problem is not None:
            problems.append((code, 1, f"obsCodeDesc of obsCode {_describe(code)} {desc_problem}"))
    # Sorted only when something is wrong, so the clean path stays a single scan.
    return [message for _, _, message in sorted(problems)]
