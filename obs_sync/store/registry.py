"""The VDN registry (table ``vdn``, migration 0002; keyed ``(source, vdn_id)`` since 0006):
which VDNs are configured.

A run's start records the configured set; the ``last_*`` columns are kept by a trigger on
``sync_run_vdn`` (every run record inserted updates them), so this module only knows the
configuration side:

- a **full run** (every configured VDN of every source: the daemon, ``obs-sync sync``
  without ``--vdn`` or ``--source``) marks every configured VDN configured (adding the new
  ones) and every other VDN of the registry not configured;
- a **partial run** (``--vdn``, ``--source``) marks its own VDNs configured (they are
  configured: the command checks) and leaves every other VDN's flag alone, because it
  does not sync them.

Rows are locked in ``(source, vdn_id)`` order, as the trigger does, so concurrent runs
never deadlock on the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from obs_sync.db.url import quote_identifier
from obs_sync.results import VdnKey

__all__ = ["register_vdns"]

# One statement (one round trip, atomic in autocommit). In the usual run every VDN is
# registered and configured already: nothing is written or locked.
_REGISTER = (
    "WITH run AS (SELECT * FROM unnest(%(sources)s::text[], %(ids)s::int4[]) AS k(s, id)), "
    "gone AS (UPDATE {s}.vdn SET configured = false WHERE (source, vdn_id) IN ("
    "SELECT source, vdn_id FROM {s}.vdn AS v WHERE %(full)s AND configured "
    "AND NOT EXISTS (SELECT FROM run WHERE run.s = v.source AND run.id = v.vdn_id) "
    "ORDER BY source, vdn_id FOR UPDATE) RETURNING vdn_id) "
    "INSERT INTO {s}.vdn AS v (source, vdn_id, configured, first_seen_at) "
    "SELECT s, id, true, clock_timestamp() FROM run "
    "WHERE NOT EXISTS (SELECT FROM {s}.vdn AS o WHERE o.source = run.s AND o.vdn_id = run.id "
    "AND o.configured) "
    "ORDER BY s, id ON CONFLICT (source, vdn_id) DO UPDATE SET configured = true"
)


def register_vdns(
    connection: psycopg.Connection[Any], schema: str, keys: Sequence[VdnKey], *, full: bool
) -> None:
    """Record ``keys`` (source, vdn_id) as configured; with ``full``, every other VDN as
    not configured."""
    s = quote_identifier(schema)
    ordered = sorted(set(keys))
    connection.execute(
        _REGISTER.format(s=s),
        {"sources": [k[0] for k in ordered], "ids": [k[1] for k in ordered], "full": full},
    )
