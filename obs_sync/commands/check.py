"""``obs-sync check``: is this configuration ready to sync? Each check passes or says what to fix.

Checks, in order: the configuration (already parsed by the CLI, so it passes here), the
database (connect, server version, schema state) and one signed iSales request
(``pageSize=1`` for the first configured VDN). A failed check carries a one-line fix for
the kind of failure seen (401, TLS, refused connection, timeout, vendor failure code,
database authentication, ...).
"""

from __future__ import annotations

import errno
import functools
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from obs_sync.code_lists import DISPLAY_RESULTS, OBS_RESULT_CODES
from obs_sync.config import Config, SourceConfig
from obs_sync.daemon.schedule import ScheduleError, make_trigger
from obs_sync.db.embedded import EmbeddedError
from obs_sync.db.engine import make_engine
from obs_sync.db.errors import PRIVILEGE_FIX, sqlstate
from obs_sync.db.migrate import head_revision, known_revisions
from obs_sync.db.revision import revision_sa
from obs_sync.db.server import server_version
from obs_sync.db.url import describe_database
from obs_sync.errors import one_line
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_list_parse import LIST_FIELDS, Notes, list_page
from obs_sync.isales.diagnosis import setup_fix
from obs_sync.isales.errors import (
    AUTH_ADVICE,
    AuthenticationError,
    DataError,
    HTTPStatusError,
    TransportError,
    VendorError,
)
from obs_sync.isales.events import Counters
from obs_sync.isales.vendor import BUSINESS_RESULTS_PATH, DISPLAY_RESULTS_PATH
from obs_sync.observability import redactor_for
from obs_sync.text import escape_controls, plural


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _vdns_shown(vdns: list[int]) -> str:
    return f"{vdns[0]}..{vdns[-1]}" if len(vdns) > 1 else str(vdns[0])


def check_config(config: Config, path: Path | None) -> CheckResult:
    where = f"{path}: " if path else ""

    try:
        make_trigger(config.schedule)  # what `obs-sync run` would refuse at start
    except ScheduleError as error:
        return CheckResult(
            "config",
            False,
            f"{where}{error}",
            'a 5-field crontab "minute hour day month weekday", e.g. "*/30 * * * *", '
            "or schedule.interval_minutes instead",
        )
    database = "embedded PostgreSQL" if config.database.embedded else "at database.url"
    if config.legacy:
        vdns = config.sources[0].vdn_list
        what = (
            f"{plural(len(vdns), 'VDN')} ({_vdns_shown(vdns)}), iSales {config.sources[0].base_url}"
        )
    else:
        what = (
            f"{plural(len(config.sources), 'source')} ("
            + "; ".join(
                f"{source.name}: {plural(len(source.vdn_list), 'VDN')} "
                f"({_vdns_shown(source.vdn_list)}) at {source.base_url}, {source.effective_locale}"
                for source in config.sources
            )
            + ")"
        )
    return CheckResult(
        "config",
        True,
        f"{where}{what}, database {database}, schema {config.database.schema_}",
    )


def _database_fix(error: BaseException, message: str) -> str:
    if sqlstate(error) == "42501":  # insufficient_privilege: connected, but not allowed
        return PRIVILEGE_FIX
    text = message.lower()
    if "password authentication failed" in text or "authentication failed" in text:
        return "check the user name and password in database.url (or the server's pg_hba.conf)"
    if "role" in text and "does not exist" in text:
        return (
            "the user in database.url does not exist: create it (CREATE ROLE ... LOGIN) "
            "or fix the URL"
        )
    if "database" in text and "does not exist" in text:
        return "create the database (createdb NAME) or fix its name at the end of database.url"
    if "no pg_hba.conf entry" in text:
        return "allow this host in the server's pg_hba.conf, or connect with sslmode=require"
    if "could not translate host name" in text or "name or service not known" in text:
        return "the host in database.url does not resolve: fix the host name"
    if "connection refused" in text or "timeout" in text or "timed out" in text:
        return (
            "nothing answers at the host:port in database.url: start PostgreSQL, fix the "
            "port, or open the firewall"
        )
    return "check database.url and that the PostgreSQL server accepts connections from this host"


def check_database(config: Config) -> CheckResult:
    try:
        engine = make_engine(config)
        try:
            with engine.connect() as connection:
                version = server_version(connection)
                schema = config.database.schema_
                revision = revision_sa(connection, schema)
            where = describe_database(
                engine.url.render_as_string(hide_password=False),
                schema,
                embedded=config.database.embedded,
            )
        finally:
            engine.dispose()
    except EmbeddedError as error:
        return CheckResult("database", False, error.problem, error.fix)
    except Exception as error:
        message = one_line(error)
        return CheckResult("database", False, message, _database_fix(error, message))
    found = f"{where}; server version {version}"
    return _schema_result(found, schema, revision)


def _schema_result(found: str, schema: str, revision: str | None) -> CheckResult:
    """The schema's migration state: usable now, upgraded by the next sync, or unusable."""

    head = head_revision()
    if revision is None:
        state = f"schema {schema} not created yet (the first sync creates it)"
    elif revision == head:
        state = f"schema {schema} at migration {revision} (current)"
    elif revision in known_revisions():
        state = (
            f"schema {schema} at migration {revision}, behind {head} "
            "(the next sync upgrades it, or obs-sync db upgrade)"
        )
    else:
        return CheckResult(
            "database",
            False,
            f"{found}; schema {schema} is at migration {revision}, which this obs-sync "
            f"version does not know (its newest is {head})",
            "upgrade obs-sync on this host to the version that migrated this schema, "
            "or set database.schema to another schema",
        )
    return CheckResult("database", True, f"{found}; {state}")


def _isales_fix(error: BaseException, base_url: str) -> str:
    if isinstance(error, AuthenticationError):
        return f"{AUTH_ADVICE} (the pair issued for this API; run NTP: the signature is timed)"
    if isinstance(error, VendorError):
        return (
            f"iSales answered with failure code {error.code} ({error.meaning}): check that "
            "the VDN id exists on this server (isales.vdn_ids) and isales.page_size"
        )
    if isinstance(error, HTTPStatusError):
        if error.status == 404:
            return (
                "HTTP 404: isales.base_url must be only scheme://host:port of the iSales "
                "server (no path), and the API must be enabled there"
            )
        if error.status == 403:
            return "HTTP 403: the access key lacks permission for queryOBSResultCode"
        return f"HTTP {error.status}: check isales.base_url points at the iSales server"
    if isinstance(error, DataError):
        return (
            "the server answered but not as the API describes: is isales.base_url the "
            "iSales server?"
        )
    if isinstance(error, TransportError):  # by the category the client recognised
        fix = setup_fix(error.category, urlsplit(base_url).scheme)
        return fix or error.fix or "see docs/operations.md (errors) for this message"
    return "see docs/operations.md (errors) for this message"


def check_isales(config: Config, source: SourceConfig | None = None) -> CheckResult:
    """One signed request for the source's first VDN (default: the only source); the
    verdict is named ``isales`` with one source (as before sources), ``isales:NAME`` else."""
    source = source or config.sources[0]
    name = "isales" if len(config.sources) == 1 else f"isales:{source.name}"
    vdn = source.vdn_list[0]
    # One quick attempt: check should answer in seconds, not after the sync's full backoff.
    quick = source.model_copy(
        update={"max_retries": min(source.max_retries, 1), "backoff_max_seconds": 1.0}
    )
    try:
        with ISalesClient(quick) as client:
            page = client.fetch_page(vdn, 1, 1)
    except Exception as error:
        detail = redactor_for(config)(one_line(error))  # the server's text may echo a secret
        if isinstance(error, AuthenticationError):
            detail = detail.replace(f"; {AUTH_ADVICE}", "")  # said once, as the fix
        fix = _isales_fix(error, source.base_url)
        if not config.legacy:  # the keys the fixes name are this source's
            index = config.sources.index(source)
            fix = fix.replace("isales.", f"sources[{index}].")
        return CheckResult(name, False, detail, fix)
    # (the server's text, shown: its control characters escaped)
    sample = (
        f", e.g. {escape_controls(page.codes[0][0])} = {page.codes[0][1]!r}" if page.codes else ""
    )
    return CheckResult(
        name,
        True,
        f"signed request for VDN {vdn} accepted: totalCount {page.total_count}{sample}",
    )


def code_list_checks(config: Config) -> list[Callable[[], CheckResult]]:
    """One signed request per other code list a source syncs (display_results: the list
    page; business_results: its page), for the source's first VDN."""
    return [
        functools.partial(_check_list, config, source, name)
        for source in config.sources
        for name in source.code_lists
        if name != OBS_RESULT_CODES
    ]


def _check_list(config: Config, source: SourceConfig, name: str) -> CheckResult:
    vdn = source.vdn_list[0]
    label = name if len(config.sources) == 1 else f"{name}:{source.name}"  # as isales:NAME
    path = (DISPLAY_RESULTS_PATH if name == DISPLAY_RESULTS else BUSINESS_RESULTS_PATH).format(
        vdn_id=vdn
    )
    quick = source.model_copy(update={"max_retries": min(source.max_retries, 1)})
    try:
        with ISalesClient(quick) as client:
            total, _ = client.fetch_json(
                vdn,
                f"{client.wire.base_url}{path}?pageSize=1&pageNum=1",
                f"{name} page 1",
                lambda body: list_page(vdn, f"{name} page 1", body, Notes(), LIST_FIELDS),
                Counters(),
            )
    except Exception as error:
        detail = redactor_for(config)(one_line(error))
        return CheckResult(label, False, detail, _isales_fix(error, source.base_url))
    return CheckResult(label, True, f"signed request for VDN {vdn} accepted: totalCount {total}")


def check_metrics(config: Config) -> CheckResult:
    """Can ``obs-sync run`` listen on metrics.host:metrics.port? (It refuses to start if not.)"""
    host, port = config.metrics.host, config.metrics.port
    if port == 0:
        return CheckResult("metrics", True, "endpoint off (metrics.port: 0)")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the daemon's HTTP server does: a port in TIME_WAIT is not "in use".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        reason = error.strerror or one_line(error)
        fix = (
            "set metrics.port to a free port (0 turns the endpoint off)"
            if error.errno == errno.EADDRINUSE
            else "set metrics.host to an address of this machine (0.0.0.0: all of them)"
        )
        if error.errno == errno.EADDRINUSE:
            # Most likely the daemon itself, already running: then all is well.
            target = "127.0.0.1" if host in ("0.0.0.0", "") else host
            target = f"[{target}]" if ":" in target else target
            # Straight to the port: an HTTP(S)_PROXY in the environment must not answer.
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with direct.open(f"http://{target}:{port}/healthz", timeout=2) as r:
                    server = r.headers.get("Server", "")
            except urllib.error.HTTPError as answer:  # 503 is an answer too
                server = answer.headers.get("Server", "")
            except OSError:
                server = ""
            if server.startswith("obs-sync"):
                return CheckResult(
                    "metrics", True, f"{host}:{port} is served by a running obs-sync daemon"
                )
        return CheckResult("metrics", False, f"cannot listen on {host}:{port}: {reason}", fix)
    return CheckResult(
        "metrics", True, f"{host}:{port} is free for /metrics and /healthz (obs-sync run)"
    )


def run_checks(
    config: Config,
    path: Path | None = None,
    *,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []
    checks: list[Callable[[], CheckResult]] = [
        lambda: check_config(config, path),
        lambda: check_database(config),
        *(lambda source=source: check_isales(config, source) for source in config.sources),
        *code_list_checks(config),  # display and business results, when configured
        lambda: check_metrics(config),
    ]
    for check in checks:
        result = check()
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def format_result(result: CheckResult) -> str:
    line = f"{'PASS' if result.ok else 'FAIL'}  {result.name:<9} {result.detail}"
    if result.fix:
        line += f"\n      {'':<9} fix: {result.fix}"
    return line
