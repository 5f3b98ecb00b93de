"""Reading a database URL: the one place that splits ``database.url``.

:func:`connect_params` reads it as SQLAlchemy's psycopg dialect does (psycopg keywords);
:func:`url_problem` refuses, at configuration time, a URL that libpq, SQLAlchemy and
:func:`connect_params` might split differently (an unencoded ``@`` or ``/`` in the
password, a port out of range), so all of them open the same connection.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from obs_sync.config.errors import ConfigError

_ENCODINGS = "@ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25"


def url_problem(url: str) -> str | None:
    """Why readers of the URL (libpq, SQLAlchemy, ours) might split it differently, if so."""
    netloc = urlsplit(url).netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if "@" in userinfo or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
        return (
            "cannot be parsed into user, password, host and port; percent-encode special "
            f"characters in the user name and password ({_ENCODINGS})"
        )
    if "," in hostport:  # several hosts: each port is checked by libpq itself
        return None
    port = hostport.rpartition("]")[2].rpartition(":")[2] if ":" in hostport else ""
    if port.isdigit() and not 1 <= int(port) <= 65535:
        return f"port {port} is outside 1..65535"
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return (
            "the port after the host is not a number; a / ? or # in the password ends the "
            f"host part early: percent-encode them ({_ENCODINGS})"
        )
    return None


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
