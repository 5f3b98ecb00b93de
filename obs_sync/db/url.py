"""``database.url``: which server (configured or embedded), the session settings, identifiers.

``database.url`` is a SQLAlchemy URL (``postgresql+psycopg://``), read by
:mod:`obs_sync.config.database_url`; a one-shot sync connects with plain psycopg
(:func:`~obs_sync.config.database_url.connect_params`) so it never imports SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from obs_sync.config import DATABASE_CHOICES, ConfigError
from obs_sync.config.database_url import connect_params

if TYPE_CHECKING:
    from obs_sync.config import Config

# Every connection obs-sync opens says who it is and gives up on an unreachable server.
CONNECT_ARGS = {"application_name": "obs-sync", "connect_timeout": 10}


def session_args(config: Config, url_options: str | None = None) -> dict[str, Any]:
    """:data:`CONNECT_ARGS` plus the configured bounds on every obs-sync session.

    The server-side settings travel in libpq's ``options`` (no round trip): a lock or a
    statement waits at most ``lock_timeout`` / ``statement_timeout``, and a session idle in
    an open transaction (a hung or half-open writer holding its VDN's lock) is ended by the
    server after ``idle_in_transaction_session_timeout``. TCP keepalives are set on both
    ends (libpq's ``keepalives*`` and the server's ``tcp_keepalives_*``), so a peer that
    vanished is noticed in about idle + interval x count seconds. ``options`` already in
    ``database.url`` (``url_options``) come last, so they take precedence.
    """
    db = config.database
    server = {
        "lock_timeout": _milliseconds(db.lock_timeout_seconds),
        "statement_timeout": _milliseconds(db.statement_timeout_seconds),
        "idle_in_transaction_session_timeout": _milliseconds(
            db.idle_in_transaction_timeout_seconds
        ),
        "tcp_keepalives_idle": db.keepalives_idle_seconds,
        "tcp_keepalives_interval": db.keepalives_interval_seconds,
        "tcp_keepalives_count": db.keepalives_count,
    }
    options = " ".join(f"-c {name}={value}" for name, value in server.items())
    if url_options:
        options = f"{options} {url_options}"
    return {
        **CONNECT_ARGS,
        "keepalives": 1,
        "keepalives_idle": db.keepalives_idle_seconds,
        "keepalives_interval": db.keepalives_interval_seconds,
        "keepalives_count": db.keepalives_count,
        "options": options,
    }


def _milliseconds(seconds: float) -> int:
    """PostgreSQL's unit for these settings; 0 stays 0 (off), anything else at least 1 ms."""
    return max(1, round(seconds * 1000)) if seconds > 0 else 0


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (always quoted, like SQLAlchemy's)."""
    return '"' + name.replace('"', '""') + '"'


def database_url(config: Config) -> str:
    """The configured URL, or the embedded server's when the configuration chose it
    (``database.url: embedded``; started when needed)."""
    if not config.database.embedded:
        url = config.database.url.get_secret_value()
        if not url:  # loaded with database=False: this command should not open it
            raise ConfigError(f"database.url: is not set: {DATABASE_CHOICES}")
        return url
    # In-function: the embedded server is imported only when the configuration asks for it.
    from obs_sync.db.embedded import embedded_url

    return embedded_url()


def describe_database(url: str, schema: str, *, embedded: bool = False) -> str:
    """Which database ``url`` is, for the operator: host and port (or the socket directory),
    database, schema and user; never the password."""
    params = connect_params(url)
    host = str(params.get("host", ""))
    if not host:
        where = "the default Unix socket"
    elif host.startswith("/"):
        where = f"Unix socket in {host}"
    else:
        where = f"{host}:{params.get('port', 5432)}"
    kind = "embedded PostgreSQL" if embedded else "PostgreSQL"
    # libpq's defaults: the user is the OS account, the database is named after the user.
    user = params.get("user", "(the OS user)")
    database = params.get("dbname", "(named after the user)")
    return f"{kind} at {where}, database {database}, schema {schema}, user {user}"
