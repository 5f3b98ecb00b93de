"""obs-sync: a PostgreSQL copy, with change history, of CC-iSales OBS result codes."""

__version__ = "0.1.0"
