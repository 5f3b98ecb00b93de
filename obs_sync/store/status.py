"""Transitional: moved to :mod:`obs_sync.store.status_query`; the command layer and the daemon
import it from here until their imports follow (remove this module then)."""

from obs_sync.store.status_query import RunRow, Status, StatusError, VdnRow, read_status

__all__ = ["RunRow", "Status", "StatusError", "VdnRow", "read_status"]
