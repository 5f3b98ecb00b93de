"""obs-sync's tables: the SQL that writes them (the sync), reads them (status), prunes
and grants them; their SQLAlchemy metadata. Connections come from :mod:`obs_sync.db`."""
