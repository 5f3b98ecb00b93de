"""How many threads and database connections one run uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from obs_sync.config.sources import servers

if TYPE_CHECKING:
    from obs_sync.config import Config


def worker_count(config: Config) -> int:
    """Threads per run: twice the fetch slots, so one VDN is written while others fetch.

    Fetching is behind a semaphore of ``max_concurrency`` per server (sources on one
    ``base_url`` share it): a server never sees more requests at once, and at most this
    many snapshots are in memory. Summed over the configured servers.
    """
    return sum(2 * server.max_concurrency for server in servers(config.sources))


def connections_per_run(config: Config) -> int:
    """Database connections one run uses at most: every worker, plus the run's own."""
    return worker_count(config) + 1
