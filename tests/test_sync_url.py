"""database.url (a SQLAlchemy URL) to psycopg arguments: the sync's store connects without
SQLAlchemy, and must reach the same server, database and user SQLAlchemy would."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import create_engine

from obs_sync.config.database_url import URLError, connect_params
from obs_sync.db.pool import OwnPool

URLS = [
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    pytest.param(
        "postgresql+psycopg://u:p%40ss%3Aw%2Frd%25x@db.example.com:6543/obs%20data",
        # SQLAlchemy 2.0 (the newest on Python 3.10) leaves the database name
        # percent-encoded; 2.1 decodes it as libpq and obs-sync's own connections do.
        marks=pytest.mark.xfail(
            sqlalchemy.__version__.startswith("2.0."),
            reason="SQLAlchemy 2.0 does not decode a percent-encoded database name",
            strict=True,
        ),
    ),
    "postgresql+psycopg://u:p@ss/w:rd@db.example.com/obs",  # unencoded '/' and ':' in password
    "postgresql+psycopg://user@/obs?host=/var/run/postgresql",
    "postgresql+psycopg://postgres:@/obs_sync?host=/tmp/obs-sync data/pg",  # embedded server
    "postgresql+psycopg://u:pw@h/obs?sslmode=require&application_name=bi&connect_timeout=3",
    "postgresql+psycopg://u@[::1]:5433/obs",
    "postgresql+psycopg://u@/obs?host=h1:5432&host=h2:5433",
    "postgresql+psycopg://u@/obs?host=h1,h2&port=5432,5433",
    "postgresql+psycopg://u@/obs?host=h1:5444",
    "postgresql+psycopg:///obs",
    "postgresql+psycopg://",
]


def sqlalchemy_params(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    args, params = engine.dialect.create_connect_args(engine.url)
    params.pop("context", None)  # SQLAlchemy's own adapters map, not a connection setting
    assert args in ([], [""])
    return {key: str(value) if key == "port" else value for key, value in params.items()}


@pytest.mark.parametrize("url", URLS)
def test_same_connection_arguments_as_sqlalchemy(url: str) -> None:
    ours = {k: str(v) if k == "port" else v for k, v in connect_params(url).items()}
    assert ours == sqlalchemy_params(url)


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@h/db", "not a url secret", "postgresql+psycopg://u:secret@h:port/db"]
)
def test_unreadable_url_never_shows_the_password(url: str) -> None:
    with pytest.raises(URLError) as raised:
        connect_params(url)
    assert "secret" not in str(raised.value)


def test_password_not_in_pool_repr_nor_connection_errors() -> None:
    params = connect_params("postgresql+psycopg://nobody:s3cr%21t@127.0.0.1:1/x")
    assert params["password"] == "s3cr!t"
    pool = OwnPool({**params, "connect_timeout": 2}, 2)
    assert "s3cr" not in repr(pool)
    with pytest.raises(psycopg.OperationalError) as raised:
        pool.acquire()
    assert "s3cr" not in str(raised.value)


def test_engines_open_the_database_obs_sync_opens(pg_admin_url: str) -> None:
    """A percent-encoded database name: the migration engine (SQLAlchemy) and the store's
    own connections reach the same database, on every SQLAlchemy version."""
    from urllib.parse import urlsplit, urlunsplit

    from sqlalchemy import text

    from obs_sync.config import parse_config
    from obs_sync.db.engine import make_engine, single_use_engine

    name = "obs data %x"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # The admin URL (TCP or the embedded server's socket) with the database swapped.
        parts = urlsplit(pg_admin_url)
        url = urlunsplit(parts._replace(scheme="postgresql+psycopg", path="/obs%20data%20%25x"))
        isales = {
            "base_url": "http://127.0.0.1:1",
            "vdn_ids": [1],
            "access_key": "a",
            "secret_key": "s",
        }
        config = parse_config(
            {"isales": isales, "database": {"url": url}}, env={}, credentials=False
        )
        pool = OwnPool(connect_params(url), 1)
        with pool.connection() as conn:
            ours = conn.execute("SELECT current_database()").fetchone()
        pool.close()
        assert ours == (name,)
        for engine in (make_engine(config), single_use_engine(config)):
            try:
                with engine.connect() as conn:
                    assert conn.execute(text("SELECT current_database()")).scalar() == name
            finally:
                engine.dispose()
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
