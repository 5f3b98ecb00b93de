"""The one table renderer of command output (``sync``, ``status``, ``fetch``, ``verify``,
``demo``): columns left-aligned, two spaces apart, aligned on a terminal also for Chinese
text (wide characters count two columns)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence


def display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and fullwidth characters (Chinese
    descriptions) take two, combining marks none."""
    return sum(
        0
        if unicodedata.combining(char)
        else 2
        if unicodedata.east_asian_width(char) in ("W", "F")
        else 1
        for char in text
    )


def table_lines(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    rule: bool = False,
    strip: bool = True,
) -> list[str]:
    """The header and the rows, each column as wide as its widest cell; the last column
    is not padded. ``rule``: a line of dashes under the header. ``strip``: no trailing
    spaces; off where a last cell's own trailing spaces are data (a description as sent).
    """
    body = [list(row) for row in rows]
    widths = [
        max([display_width(h), *(display_width(row[i]) for row in body)])
        for i, h in enumerate(header)
    ]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell + " " * (width - display_width(cell))
            for cell, width in zip(cells[:-1], widths, strict=False)
        ]
        text = "  ".join([*padded, *cells[-1:]])
        return text.rstrip() if strip else text

    lines = [line(header)]
    if rule:
        lines.append(line(["-" * width for width in widths]))
    return lines + [line(row) for row in body]
