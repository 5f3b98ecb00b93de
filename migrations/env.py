"""Alembic environment for obs-sync.

The database and schema come from obs-sync, never from alembic.ini:

- ``obs-sync db upgrade`` / ``sync`` (obs_sync/db/migrate.py) pass an open connection and the
  schema in ``config.attributes``; the caller holds the migration advisory lock and commits.
- Running ``alembic -c migrations/alembic.ini [-x config=PATH] upgrade head`` directly reads
  obs-sync's configuration (``-x config=PATH``, else ``$OBS_SYNC_CONFIG``, else
  ./config.yaml) and takes the same lock. ``--sql`` (offline) prints the SQL for review.

The version table lives in the obs-sync schema, which is created if missing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from obs_sync.config import Config, load_config
from obs_sync.db import migrate
from obs_sync.db.engine import make_engine

alembic_config = context.config


def _configure_and_run(connection: Connection | None, schema: str, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        version_table_schema=schema,
        transactional_ddl=True,
        literal_binds=connection is None,
        dialect_name="postgresql" if connection is None else None,
    )
    with context.begin_transaction():
        context.run_migrations()


def _obs_sync_config() -> tuple[Config, str]:
    path = context.get_x_argument(as_dictionary=True).get("config")
    config = load_config(path)
    return config, config.database.schema_


def main() -> None:
    connection = alembic_config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection, alembic_config.attributes["schema"])
        return
    config, schema = _obs_sync_config()
    if context.is_offline_mode():
        print(f'CREATE SCHEMA IF NOT EXISTS "{schema}";')
        _configure_and_run(None, schema)
        return
    engine = make_engine(config)
    try:
        with engine.begin() as conn:
            migrate.lock_and_create_schema(conn, schema)
            _configure_and_run(conn, schema)
    finally:
        engine.dispose()


main()
