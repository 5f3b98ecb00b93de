"""The source registry (tables ``source`` and ``locale_switch``, migration 0006): the
locale each source's data is written in, checked at a run's start.

:func:`prepare_sources` runs in the run's preparation (obs_sync/engine/prepare.py), after
the run's record exists: for each source of the run it records the configured locale when
none is known yet, records a switch when one was asked for (one ``locale_switch`` row and
the source's new locale: that is the one event), or refuses the source (its VDNs are then
not fetched, nothing is written for them). It returns the refusals and the VDNs whose
stored descriptions are still in another language (their next changed descriptions are
relabelled, not changed). The decisions are :func:`obs_sync.locales.decide`'s.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from obs_sync.db.url import quote_identifier
from obs_sync.locales import Refusal, RunSource, SourceState, decide


def prepare_sources(
    connection: psycopg.Connection[Any],
    schema: str,
    run_id: int,
    sources: Sequence[RunSource],
    switch: Collection[str],
) -> SourceState:
    """Check and record the locale of every source of the run: one read when nothing is to
    be recorded (the usual run), else one transaction (sources locked in name order, so
    concurrent runs never deadlock)."""
    s = quote_identifier(schema)
    state = _read(connection, s, sources)
    if all(
        decide(state.recorded.get(source.name), source.locale, switch=source.name in switch)
        == "keep"
        for source in sources
    ):
        return state
    state = SourceState()
    with connection.transaction():
        for source in sorted(sources, key=lambda item: item.name):
            connection.execute(
                f"INSERT INTO {s}.source (source, locale, first_seen_at) "
                "VALUES (%(name)s, NULL, clock_timestamp()) ON CONFLICT (source) DO NOTHING",
                {"name": source.name},
            )
            row = connection.execute(
                f"SELECT locale FROM {s}.source WHERE source = %(name)s FOR UPDATE",
                {"name": source.name},
            ).fetchone()
            assert row is not None
            recorded: str | None = row[0]
            decision = decide(recorded, source.locale, switch=source.name in switch)
            params = {"name": source.name, "new": source.locale, "old": recorded, "run": run_id}
            if decision == "refuse":
                assert recorded is not None
                state.refused[source.name] = Refusal(
                    source.name, recorded, source.locale, source.key
                )
                continue
            if decision == "keep":
                continue
            # VDNs with no language recorded are in the one recorded until now (or, when
            # none was, in the configured one: data from before migration 0006).
            connection.execute(
                f"UPDATE {s}.vdn SET locale = coalesce(%(old)s, %(new)s) "
                "WHERE source = %(name)s AND locale IS NULL",
                params,
            )
            connection.execute(
                f"UPDATE {s}.source SET locale = %(new)s, locale_since = clock_timestamp() "
                "WHERE source = %(name)s",
                params,
            )
            if decision == "switch":
                connection.execute(
                    f"INSERT INTO {s}.locale_switch (source, from_locale, to_locale, "
                    "switched_at, sync_run_id) VALUES (%(name)s, %(old)s, %(new)s, "
                    "clock_timestamp(), %(run)s)",
                    params,
                )
                state.switched.append((source.name, recorded, source.locale))
        state.relabel = _read(connection, s, sources).relabel
    return state


def inspect_sources(
    connection: psycopg.Connection[Any],
    schema: str,
    sources: Sequence[RunSource],
    switch: Collection[str],
) -> SourceState:
    """What :func:`prepare_sources` would decide, read only (a dry run records nothing)."""
    state = _read(connection, quote_identifier(schema), sources)
    for source in sources:
        recorded = state.recorded.get(source.name)
        if decide(recorded, source.locale, switch=source.name in switch) == "refuse":
            assert recorded is not None
            state.refused[source.name] = Refusal(source.name, recorded, source.locale, source.key)
    return state


def _read(connection: psycopg.Connection[Any], s: str, sources: Sequence[RunSource]) -> SourceState:
    """Each source's recorded locale, and the VDNs whose descriptions are in another one
    than the source's configured locale (one statement)."""
    rows = connection.execute(
        f"SELECT c.name, r.locale, (SELECT array_agg(v.vdn_id) FROM {s}.vdn AS v "
        "WHERE v.source = c.name AND v.locale IS NOT NULL AND v.locale <> c.locale) "
        "FROM unnest(%(names)s::text[], %(locales)s::text[]) AS c(name, locale) "
        f"LEFT JOIN {s}.source AS r ON r.source = c.name",
        {"names": [x.name for x in sources], "locales": [x.locale for x in sources]},
    ).fetchall()
    state = SourceState()
    for name, locale, vdns in rows:
        if locale is not None:
            state.recorded[name] = locale
        state.relabel.update((name, int(vdn)) for vdn in vdns or ())
    return state
