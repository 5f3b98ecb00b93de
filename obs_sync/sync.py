"""Transitional: the engine moved to :mod:`obs_sync.engine`; the command layer imports it from
here until its imports follow (remove this module then)."""

from obs_sync.engine.run import run_sync
from obs_sync.engine.sizing import connections_per_run, worker_count

__all__ = ["connections_per_run", "run_sync", "worker_count"]
