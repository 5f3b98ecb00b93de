"""Small wording helpers shared by the messages people read."""

from __future__ import annotations


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 VDN``, ``2 VDNs``; ``words`` for irregular plurals (``retry``/``retries``)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def minutes(value: float) -> str:
    """A configured number of minutes as a person would say it (``90 s``, ``5 min``)."""
    return f"{value * 60:g} s" if value < 1 else f"{value:g} min"
