"""The VDN registry (table ``vdn``, migration 0002): which VDNs are configured.

A run's start records the configured set; the ``last_*`` columns are kept by a trigger on
``sync_run_vdn`` (every run record inserted updates them), so this module only knows the
configuration side:

- a **full run** (every configured VDN: the daemon, ``obs-sync sync`` without ``--vdn``)
  marks every VDN of ``isales.vdn_ids`` configured (adding the new ones) and every other
  VDN of the registry not configured;
- a **``--vdn`` run** marks its own VDNs configured (they are in ``isales.vdn_ids``: the
  command checks) and leaves every other VDN's flag alone, because it does not sync them.

Rows are locked in ``vdn_id`` order, as the trigger does, so concurrent runs never
deadlock on the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from obs_sync.db.url import quote_identifier

__all__ = ["register_vdns"]

# One statement (one round trip, atomic in autocommit). In the usual run every VDN is
# registered and configured already: nothing is written or locked.
_REGISTER = (
    "WITH gone AS (UPDATE {s}.vdn SET configured = false WHERE vdn_id IN ("
    "SELECT vdn_id FROM {s}.vdn WHERE %(full)s AND configured "
    "AND vdn_id <> ALL(%(ids)s::int4[]) ORDER BY vdn_id FOR UPDATE) RETURNING vdn_id) "
    "INSERT INTO {s}.vdn AS v (vdn_id, configured, first_seen_at) "
    "SELECT id, true, clock_timestamp() FROM unnest(%(ids)s::int4[]) AS id "
    "WHERE NOT EXISTS (SELECT FROM {s}.vdn AS o WHERE o.vdn_id = id AND o.configured) "
    "ORDER BY id ON CONFLICT (vdn_id) DO UPDATE SET configured = true"
)


def register_vdns(
    connection: psycopg.Connection[Any], schema: str, vdn_ids: Sequence[int], *, full: bool
) -> None:
    """Record ``vdn_ids`` as configured; with ``full``, every other VDN as not configured."""
    s = quote_identifier(schema)
    connection.execute(_REGISTER.format(s=s), {"ids": sorted(set(vdn_ids)), "full": full})
