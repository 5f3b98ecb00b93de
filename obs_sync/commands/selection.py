"""``--source`` and ``--vdn`` of every command: which configured VDNs a command is about.

Checked before any request or write: an unknown source, or a VDN that none of the chosen
sources lists, is a usage error (exit 2) naming the option and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from obs_sync.errors import UsageError
from obs_sync.text import id_ranges

if TYPE_CHECKING:
    from obs_sync.config import Config, SourceConfig


def chosen_sources(config: Config, names: Sequence[str]) -> list[SourceConfig]:
    """The sources named by ``--source`` (default: every configured one)."""
    if not names:
        return list(config.sources)
    known = {source.name: source for source in config.sources}
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        raise UsageError(
            f"--source {unknown[0]}: no source of that name is configured (configured: "
            f"{', '.join(known)}); use one of them, or add it to sources:"
        )
    return [known[name] for name in dict.fromkeys(names)]


def vdns_key(config: Config) -> str:
    """The configuration key that lists the VDNs, for messages."""
    return "isales.vdn_ids" if config.legacy else "sources[].vdn_ids"


def check_configured(config: Config, names: Sequence[str], vdn_ids: Sequence[int]) -> None:
    """Every ``--vdn`` is configured in at least one of the chosen sources."""
    sources = chosen_sources(config, names)
    configured = {vdn for source in sources for vdn in source.vdn_list}
    unknown = [vdn for vdn in vdn_ids if vdn not in configured]
    if unknown:
        where = vdns_key(config)
        if names:
            where = " or ".join(f"the vdn_ids of source {s.name}" for s in sources)
        raise UsageError(
            f"--vdn {id_ranges(unknown)}: not in {where}; add it to the configuration to "
            "sync it (only configured VDNs are kept fresh)"
        )


def fetch_source(config: Config, sources: Sequence[str]) -> SourceConfig:
    """The source ``--source`` names (once); without it the only one (UsageError with
    several)."""
    if len(sources) > 1:
        raise UsageError(f"--source names {len(sources)} sources: fetch asks one per call")
    if sources:
        return chosen_sources(config, sources)[0]
    if len(config.sources) == 1:
        return config.sources[0]
    names = ", ".join(s.name for s in config.sources)
    raise UsageError(
        f"--source: {len(config.sources)} sources are configured ({names}): name the one "
        "to ask, e.g. --source " + config.sources[0].name
    )
