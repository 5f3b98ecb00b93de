"""The database connection side: URL, engine, pools, identifier quoting, schema revision,
migrations and the embedded server. Knows PostgreSQL, not the SQL for obs-sync's tables
(that is :mod:`obs_sync.store`)."""
