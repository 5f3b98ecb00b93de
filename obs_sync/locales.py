"""The language a source's data is written in, and what a run does when its configured
locale is another one (docs/semantics.md, "Languages").

Pure: :func:`decide` is given what the database recorded for a source and what the
configuration says now. Descriptions fetched in another language would otherwise be
recorded as every code "changed" (the history rewritten into the new language at that
instant): so a run whose locale differs writes nothing for that source, and says how to
switch; the switch (``obs-sync sync --switch-locale``) is recorded as one event, and the
translated descriptions as relabelled versions, not changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from obs_sync.results import DEFAULT_SOURCE, VdnKey

Decision = Literal["record", "keep", "switch", "refuse"]
SWITCH_FLAG = "--switch-locale"


def decide(recorded: str | None, configured: str, *, switch: bool) -> Decision:
    """``record``: nothing recorded yet (a new source, or data from before migration
    0006): the configured locale is recorded. ``keep``: the same. ``switch``: another one,
    and the switch was asked for. ``refuse``: another one, not asked for."""
    if recorded is None:
        return "record"
    if recorded == configured:
        return "keep"
    return "switch" if switch else "refuse"


@dataclass(frozen=True)
class Refusal:
    """A source whose configured locale is not the one its data is in."""

    source: str
    recorded: str
    configured: str
    key: str  # the configuration key of its locale (isales.locale, sources[i].locale)

    @property
    def error(self) -> str:
        select = "" if self.source == DEFAULT_SOURCE else f" --source {self.source}"
        return (
            f"not synced: the data of source {self.source} is in locale {self.recorded}, "
            f"{self.key} is now {self.configured}; nothing written for it (its descriptions "
            f"would all be recorded as changed). To switch its language as one event "
            f"(the translations recorded as relabelled, not changed): obs-sync sync{select} "
            f"{SWITCH_FLAG}; or set {self.key} back to {self.recorded}"
        )


@dataclass(frozen=True)
class RunSource:
    """One source of a run as the configuration has it."""

    name: str
    locale: str  # the effective locale (zh_CN when no header is sent)
    key: str  # its locale's configuration key, for messages


@dataclass
class SourceState:
    """What the run's start found: refused sources, VDNs to relabel, switches recorded."""

    refused: dict[str, Refusal] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)  # source -> locale in the database
    relabel: set[VdnKey] = field(default_factory=set)
    switched: list[tuple[str, str | None, str]] = field(default_factory=list)
