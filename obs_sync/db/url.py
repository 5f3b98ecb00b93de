"""``database.url``: which server, read as SQLAlchemy's psycopg dialect would; identifiers.

``database.url`` is a SQLAlchemy URL (``postgresql+psycopg://``); a one-shot sync connects
with plain psycopg (:func:`connect_params`) so it never imports SQLAlchemy.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from obs_sync.config import DATABASE_CHOICES, ConfigError

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


# driver://user:password@host:port/database?query; every part optional after the scheme.
_URL = re.compile(
    r"(?P<scheme>[\w+]+)://"
    r"(?:(?P<user>[^:/@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^/:?]*))"
    r"(?::(?P<port>[^/?]*))?"
    r"(?:/(?P<database>[^?]*))?"
    r"(?:\?(?P<query>.*))?\Z",
    re.DOTALL,
)


class URLError(ConfigError, ValueError):
    """database.url cannot be read (the message never contains the URL: it may hold a password)."""


def connect_params(url: str) -> dict[str, Any]:
    """psycopg keyword arguments for a SQLAlchemy ``postgresql+psycopg://`` URL.

    The same connection SQLAlchemy's psycopg dialect would open: user, password and
    database percent-decoded; host and port; every query parameter passed on as a libpq
    keyword (``host=/socket/dir`` of the embedded server, ``sslmode``, ...), a query
    ``host`` taking precedence; repeated ``host=h:p`` parameters in libpq's comma-separated
    multi-host form. The result holds the password: never log it.
    """
    match = _URL.match(url)
    if match is None or match["scheme"].split("+")[0] not in ("postgresql", "postgres"):
        raise URLError("database.url is not a postgresql+psycopg:// URL")
    params: dict[str, Any] = {}
    if match["user"]:
        params["user"] = unquote(match["user"])
    if match["password"]:  # empty: none (libpq then uses ~/.pgpass or trust)
        params["password"] = unquote(match["password"])
    host = match["ipv6"] or match["host"]
    if host:
        params["host"] = host
    if match["port"]:
        if not match["port"].isdigit():
            raise URLError("database.url has a port that is not a number")
        params["port"] = int(match["port"])
    if match["database"]:
        params["dbname"] = unquote(match["database"])
    hosts: list[str] = []
    for key, value in parse_qsl(match["query"] or ""):
        if key == "host":
            hosts.append(value)
        else:
            params[key] = value
    if len(hosts) == 1 and "port" not in params and re.fullmatch(r"[\w.-]*:\d*", hosts[0]):
        host, _, port = hosts[0].partition(":")
        params["host"] = host
        if port:
            params["port"] = int(port)
    elif len(hosts) == 1:
        params["host"] = hosts[0]
    elif hosts:
        pairs = [
            h.partition(":") if ":" in h and not h.startswith("/") else (h, "", "") for h in hosts
        ]
        params["host"] = ",".join(h for h, _, _ in pairs)
        if any(p for _, _, p in pairs):
            params["port"] = ",".join(p for _, _, p in pairs)
    return params
