"""Small wording helpers shared by the messages people read."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 VDN``, ``2 VDNs``; ``words`` for irregular plurals (``retry``/``retries``)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def id_ranges(ids: Iterable[int]) -> str:
    """``1-3, 5, 7-9``: ids as the ``--vdn`` option and ``isales.vdn_ids`` take them."""
    spans: list[list[int]] = []
    for value in sorted(set(ids)):
        if spans and value == spans[-1][1] + 1:
            spans[-1][1] = value
        else:
            spans.append([value, value])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)


def minutes(value: float) -> str:
    """A configured number of minutes, exactly as set, in words (``90 s``, ``5 min``); an
    elapsed time is :func:`duration`'s."""
    return f"{value * 60:g} s" if value < 1 else f"{value:g} min"


# (unit, its seconds, the seconds from which the next unit takes over, decimals shown)
_UNITS = (
    ("s", 1, 90, 0),
    ("min", 60, 90 * 60, 0),
    ("h", 3600, 48 * 3600, 1),
    ("d", 86400, math.inf, 1),
)


def duration(seconds: float, *, largest: str = "d", whole_units: bool = False) -> str:
    """An elapsed time, rounded, as a person would say it: ``45 s``, ``12 min``, ``3.5 h``,
    ``2.1 d`` (a unit until one and a half of the next, days from two). ``largest``: the
    largest unit used; ``whole_units``: the next unit as soon as one whole of it passed
    (``1 min`` from 60 s)."""
    for index, (unit, size, until, decimals) in enumerate(_UNITS):
        last = unit == largest or index == len(_UNITS) - 1
        if not last and whole_units:
            until = _UNITS[index + 1][1]
        if last or seconds < until:
            return f"{seconds / size:.{decimals}f} {unit}"
    raise AssertionError("unreachable: the last unit always answers")


# Characters a terminal acts on or a log reader splits lines at: C0 controls (ESC starts
# screen-clearing sequences, \r rewrites a line, \x07 rings the bell), DEL, C1 controls
# (U+009B is a one-character CSI on some terminals) and the Unicode line separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The same less C0, which json.dumps escapes itself (and whose \n indents a document).
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str) -> str:
    """``text`` safe to print: each control character written as an escape (``\\x1b``,
    ``\\r``, ``\\x9b``, ``\\u2028``), everything else as it is. For output only: data is
    stored as sent."""
    return _CONTROLS.sub(_escape, text)


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` with the controls JSON leaves raw (DEL,
    C1, U+2028/U+2029) escaped as ``\\uXXXX`` too: the same data for a JSON reader, safe
    on a terminal."""
    line = json.dumps(value, ensure_ascii=False, **options)
    return _JSON_RAW.sub(lambda match: f"\\u{ord(match.group()):04x}", line)
