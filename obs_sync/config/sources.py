"""The ``sources:`` list: each source is one iSales server reached with one key, in one
language, for some of that server's VDNs.

A source is everything of the ``isales`` section (:class:`~obs_sync.config.isales.ISalesConfig`)
plus a ``name``. Today's ``isales:`` section is one source named ``default``. Sources may
share a ``base_url`` (several keys on one server, or one server in two languages) and may
list the same VDN id (several servers); two sources with the same server, VDN and locale
would store the same codes twice and are refused. Sources on one server share its rate
limit and concurrency bound (the lowest any of them sets): see :func:`servers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator

from obs_sync.config.isales import ISalesConfig
from obs_sync.results import DEFAULT_SOURCE

SOURCE_NAME = re.compile(r"[a-z0-9_-]{1,32}")
# The language of descriptions fetched without a locale header (the API's default).
SERVER_DEFAULT_LOCALE = "zh_CN"


class SourceConfig(ISalesConfig):
    name: str

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not SOURCE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a source name: use 1 to 32 of a-z, 0-9, _ and - "
                '(e.g. "region-north"); it is stored in every row and used in --source'
            )
        return value

    @property
    def effective_locale(self) -> str:
        """The language of what this source fetches: its ``locale``, or the server's
        default (zh_CN) when no locale header is sent."""
        return self.locale or SERVER_DEFAULT_LOCALE


def from_isales(isales: ISalesConfig) -> SourceConfig:
    """Today's ``isales:`` section as the one source ``default``."""
    # Already validated: copied as it is (validating again would re-parse what it parsed).
    return SourceConfig.model_construct(name=DEFAULT_SOURCE, **dict(isales))


def check_sources(sources: Sequence[SourceConfig]) -> None:
    """Raise ValueError (``@sources[i].key: why and the fix``) for names used twice and for
    two sources with the same server, VDN and locale."""
    seen: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source.name in seen:
            raise ValueError(
                f"@[{index}].name: {source.name!r} is already the name of sources"
                f"[{seen[source.name]}]: give every source its own name"
            )
        seen[source.name] = index
    owners: dict[tuple[str, int, str], str] = {}
    for index, source in enumerate(sources):
        for vdn in source.vdn_list:
            key = (source.base_url, vdn, source.effective_locale)
            other = owners.setdefault(key, source.name)
            if other != source.name:
                raise ValueError(
                    f"@[{index}].vdn_ids: VDN {vdn} of {source.base_url} in locale "
                    f"{key[2]} is also in source {other!r}: the same codes would be stored "
                    "twice; list it in one of them (or give one of them another locale)"
                )


@dataclass(frozen=True)
class Server:
    """The sources of one ``base_url``: they share its rate limit and concurrency bound."""

    base_url: str
    sources: tuple[SourceConfig, ...]

    @property
    def max_concurrency(self) -> int:
        return min(source.max_concurrency for source in self.sources)

    @property
    def max_requests_per_second(self) -> float:
        rates = [s.max_requests_per_second for s in self.sources if s.max_requests_per_second]
        # 0 is unlimited: the bound is the lowest limit any source of the server sets.
        return min(rates) if rates else 0


def servers(sources: Sequence[SourceConfig]) -> tuple[Server, ...]:
    """The configured servers in the order their first source is listed."""
    grouped: dict[str, list[SourceConfig]] = {}
    for source in sources:
        grouped.setdefault(source.base_url, []).append(source)
    return tuple(Server(url, tuple(group)) for url, group in grouped.items())
