"""The tenant's other code lists: display results (with their OBS codes) and business results.

Pure functions over plain data: no I/O, no clock, no database (the spec is
``isales-code-lists.md``; the fetch is :mod:`obs_sync.isales.code_lists`, the store
:mod:`obs_sync.store.code_lists`). Three steps per list of one VDN:

1. :func:`display_rows` / :func:`business_rows` turn what was fetched into the rows to
   store, or into :class:`BadData` naming every problem (a duplicate ``defId`` or business
   code, a failCode under two display results, an empty label or name, a code longer than
   ``sync.max_code_bytes``, a child whose parent has no code, text PostgreSQL cannot hold).
   Bad data fails only that list of that VDN: nothing of it is written, the stored rows
   stay as they were.
2. :mod:`obs_sync.code_list_diff` compares each table's stored rows with them and
   decides the list's status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from obs_sync.diff import _problem
from obs_sync.snapshot import FetchStats

__all__ = [
    "BUSINESS_RESULTS",
    "CODE_LISTS",
    "DEFAULT_CODE_LISTS",
    "DISPLAY_RESULTS",
    "OBS_RESULT_CODES",
    "BadData",
    "BusinessEntry",
    "BusinessResultsSnapshot",
    "BusinessRows",
    "CodeListName",
    "DisplayEntry",
    "DisplayResultsSnapshot",
    "DisplayRows",
    "ListKey",
    "business_rows",
    "display_rows",
    "parse_code_lists",
]

CodeListName = Literal["obs_result_codes", "display_results", "business_results"]
OBS_RESULT_CODES: Final = "obs_result_codes"
DISPLAY_RESULTS: Final = "display_results"
BUSINESS_RESULTS: Final = "business_results"
CODE_LISTS: tuple[CodeListName, ...] = (OBS_RESULT_CODES, DISPLAY_RESULTS, BUSINESS_RESULTS)
DEFAULT_CODE_LISTS: tuple[CodeListName, ...] = (OBS_RESULT_CODES,)
# (source, vdn_id, code_list): one of a VDN's other code lists, as VdnKey is the VDN itself
ListKey = tuple[str, int, str]


# ------------------------------------------------------------------------------ fetched


@dataclass(frozen=True)
class DisplayEntry:
    """One display result as ``queryOBSResults`` listed it."""

    def_id: str
    result_code: str
    display_result: str


@dataclass(frozen=True)
class DisplayResultsSnapshot:
    """One VDN's display results as fetched.

    ``entries``: every distinct entry the list pages carried (a defId listed twice with
    different fields appears twice: bad data). ``obs_codes``: per defId whose detail call
    succeeded, the failCodes it listed, in the server's order. ``complete``: every page and
    every detail call succeeded and the counts agree; only then may rows be deleted.
    ``unexpected``: what the server sent that the spec does not describe (extra fields,
    numbers as strings...), one line each, for the logs and the run record.
    """

    vdn_id: int
    entries: tuple[DisplayEntry, ...]
    obs_codes: Mapping[str, tuple[str, ...]]
    complete: bool
    incomplete_reason: str | None = None
    stats: FetchStats = field(default_factory=FetchStats)
    unexpected: tuple[str, ...] = ()
    source: str = "default"


@dataclass(frozen=True)
class BusinessEntry:
    """One business result (level 1, ``parent_code`` None) or sub-status (level 2).

    ``code`` None: the server sent none (absent, null or blank). ``parent_code`` of a
    sub-status is its parent's code as sent (None when the parent had none).
    """

    code: str | None
    name: str
    level: int
    parent_code: str | None = None
    position: str = ""  # where it was, e.g. "page 1, data[3].children[0]"


@dataclass(frozen=True)
class BusinessResultsSnapshot:
    """One VDN's business results as fetched; fields as for :class:`DisplayResultsSnapshot`."""

    vdn_id: int
    entries: tuple[BusinessEntry, ...]
    complete: bool
    incomplete_reason: str | None = None
    stats: FetchStats = field(default_factory=FetchStats)
    unexpected: tuple[str, ...] = ()
    source: str = "default"


# ------------------------------------------------------------------------------ checked rows


@dataclass(frozen=True)
class BadData:
    """Why a list of a VDN cannot be stored: every problem, one line each, sorted."""

    problems: tuple[str, ...]

    @property
    def reason(self) -> str:
        shown = "; ".join(self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        return f"{shown}{more}; nothing of this list was stored (the stored rows are kept)"


@dataclass(frozen=True)
class DisplayRows:
    """The rows of a VDN's display results to store.

    ``results``: def_id -> (result_code, display_result). ``mappings``: the (def_id,
    obs_code) pairs of the display results in ``read``, the defIds whose detail call
    succeeded (only their groupings are known).
    """

    results: Mapping[str, tuple[str, str]]
    mappings: frozenset[tuple[str, str]]
    read: frozenset[str]


@dataclass(frozen=True)
class BusinessRows:
    """(parent_code, code) -> (name, level); parent_code '' for a top-level result."""

    results: Mapping[tuple[str, str], tuple[str, int]]


def _shown(value: str, limit: int = 40) -> str:
    return ascii(value if len(value) <= limit else value[:limit] + "...")


def _too_long(value: str, max_code_bytes: int) -> bool:
    if 4 * len(value) <= max_code_bytes:  # cannot be longer: skip the encoding
        return False
    return len(value.encode("utf-8", "replace")) > max_code_bytes


def _text_problems(what: str, value: str) -> list[str]:
    problem = _problem(value)
    return [] if problem is None else [f"{what} {problem}"]


def display_rows(snapshot: DisplayResultsSnapshot, *, max_code_bytes: int) -> DisplayRows | BadData:
    """The rows to store, or every reason they cannot be (see the module docstring)."""
    problems: list[str] = []
    results: dict[str, tuple[str, str]] = {}
    for entry in snapshot.entries:
        where = f"display result defId {_shown(entry.def_id)}"
        seen = results.get(entry.def_id)
        fields = (entry.result_code, entry.display_result)
        if seen is not None:
            if seen != fields:
                problems.append(
                    f"duplicate defId {_shown(entry.def_id)}: listed as "
                    f"{_shown(seen[0])} {_shown(seen[1])} and as "
                    f"{_shown(fields[0])} {_shown(fields[1])}"
                )
            continue
        results[entry.def_id] = fields
        if not entry.result_code.strip():
            problems.append(f"{where} has an empty resultCode")
        if not entry.display_result.strip():
            problems.append(f"{where} (resultCode {_shown(entry.result_code)}) has an empty label")
        for name, value in (("defId", entry.def_id), ("resultCode", entry.result_code)):
            if _too_long(value, max_code_bytes):
                problems.append(
                    f"{where}: its {name} is longer than sync.max_code_bytes = {max_code_bytes}"
                )
        problems += _text_problems(f"{where}: defId", entry.def_id)
        problems += _text_problems(f"{where}: resultCode", entry.result_code)
        problems += _text_problems(f"{where}: displayResult", entry.display_result)

    owner: dict[str, str] = {}
    mappings: set[tuple[str, str]] = set()
    read = frozenset(d for d in snapshot.obs_codes if d in results)
    for def_id in sorted(read):
        for code in snapshot.obs_codes[def_id]:
            where = f"failCode {_shown(code)} of display result defId {_shown(def_id)}"
            if not code.strip():
                problems.append(f"{where} is blank")
                continue
            if _too_long(code, max_code_bytes):
                problems.append(f"{where} is longer than sync.max_code_bytes = {max_code_bytes}")
            problems += _text_problems(where, code)
            other = owner.setdefault(code, def_id)
            if other != def_id:
                problems.append(
                    f"failCode {_shown(code)} is grouped under two display results: defId "
                    f"{_shown(other)} (resultCode {_shown(results[other][0])}) and defId "
                    f"{_shown(def_id)} (resultCode {_shown(results[def_id][0])}); a call's "
                    "failCode maps to one display result"
                )
            mappings.add((def_id, code))
    if problems:
        return BadData(tuple(sorted(set(problems))))
    return DisplayRows(results=results, mappings=frozenset(mappings), read=read)


def business_rows(
    snapshot: BusinessResultsSnapshot, *, max_code_bytes: int
) -> BusinessRows | BadData:
    """The rows to store, or every reason they cannot be (see the module docstring)."""
    problems: list[str] = []
    results: dict[tuple[str, str], tuple[str, int]] = {}
    for entry in snapshot.entries:
        kind = "business result" if entry.level == 1 else "sub-status"
        where = (
            f"{kind} {_shown(entry.name)} ({entry.position})"
            if entry.position
            else (f"{kind} {_shown(entry.name)}")
        )
        if entry.level == 2 and entry.parent_code is None:
            problems.append(
                f"{where} is a child without a parent code: its business result has no code"
            )
            continue
        if entry.code is None:
            problems.append(f"{where} has no code; give it one in iSales")
            continue
        parent = entry.parent_code or ""
        key = (parent, entry.code)
        fields = (entry.name, entry.level)
        seen = results.get(key)
        if seen is not None:
            if seen != fields:
                under = f" under {_shown(parent)}" if parent else ""
                problems.append(
                    f"duplicate business code {_shown(entry.code)}{under}: named "
                    f"{_shown(seen[0])} and {_shown(entry.name)}"
                )
            continue
        results[key] = fields
        if not entry.name.strip():
            problems.append(f"{where} (code {_shown(entry.code)}) has an empty name")
        if _too_long(entry.code, max_code_bytes):
            problems.append(
                f"{where}: its code is longer than sync.max_code_bytes = {max_code_bytes}"
            )
        problems += _text_problems(f"{where}: code", entry.code)
        problems += _text_problems(f"{where}: name", entry.name)
    if problems:
        return BadData(tuple(sorted(set(problems))))
    return BusinessRows(results=results)


def parse_code_lists(names: Sequence[str]) -> tuple[CodeListName, ...]:
    """A ``code_lists:`` setting, checked: known names, each once, in the canonical order."""
    unknown = [name for name in names if name not in CODE_LISTS]
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not a code list; use a subset of {', '.join(CODE_LISTS)}"
        )
    if not names:
        raise ValueError(f"list at least one code list, e.g. [{OBS_RESULT_CODES}]")
    return tuple(name for name in CODE_LISTS if name in names)
