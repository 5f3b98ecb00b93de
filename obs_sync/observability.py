"""Logging setup, Prometheus metrics and the /metrics + /healthz HTTP endpoint.

Logging: one line per record on stderr, readable text by default or one JSON object per line
(``logging.format: json``); both carry the run id and VDN from :mod:`obs_sync.logcontext`.
Every formatted line (message, extras and traceback) passes through a redactor that masks the
configured secrets, a last line of defence behind code that never logs them.

Metrics live in their own :class:`~prometheus_client.CollectorRegistry` so tests and several
daemons in one process never collide on the global registry.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import unquote, urlsplit

from obs_sync.logcontext import ContextFilter

if TYPE_CHECKING:
    from obs_sync.config import Config, LoggingConfig
    from obs_sync.health import Health

log = logging.getLogger(__name__)

REDACTED = "***"

# LogRecord attributes that are not "extras" passed by the caller.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "run_id", "vdn_id", "taskName"}
)


def config_secrets(config: Config) -> list[str]:
    """The secret values in ``config`` that must never appear in output."""
    secrets = [config.isales.secret_key.get_secret_value()]
    url = config.database.url.get_secret_value()
    if url:
        password = urlsplit(url).password
        if password:
            # As written in the URL and as decoded (a driver error could show either).
            secrets += [password, unquote(password)]
    return [s for s in secrets if s]


# Secrets shorter than this are masked only where they stand alone (not inside a longer
# word): masking every "ab" of a weak password "ab" would garble every line ("datab***se").
WHOLE_TOKEN_BELOW = 6


class Redactor:
    """Masks the given secrets in text (see :data:`WHOLE_TOKEN_BELOW` for short ones)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._short = {
            secret: re.compile(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])")
            for secret in self.secrets
            if len(secret) < WHOLE_TOKEN_BELOW
        }

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                short = self._short.get(secret)
                if short is None:
                    text = text.replace(secret, REDACTED)
                else:
                    text = short.sub(REDACTED, text)
        return text


def redactor_for(config: Config) -> Redactor:
    """For text that leaves the process other than by logging: run records, status, CLI."""
    return Redactor(config_secrets(config))


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123Z INFO run=12 vdn=7 message key=value``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}"]
        run_id = getattr(record, "run_id", None)
        vdn_id = getattr(record, "vdn_id", None)
        if run_id is not None:
            parts.append(f"run={run_id}")
        if vdn_id is not None:
            parts.append(f"vdn={vdn_id}")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in _extras(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, run_id, vdn_id, extras, exc."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "run_id": getattr(record, "run_id", None),
            "vdn_id": getattr(record, "vdn_id", None),
        }
        for key, value in _extras(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # Redact the serialised line: covers extras and tracebacks too. A secret containing
        # characters that JSON escapes is also masked in its escaped form.
        line = json.dumps(data, default=str, ensure_ascii=False)
        escaped = [json.dumps(s, ensure_ascii=False)[1:-1] for s in self.redact.secrets]
        return Redactor([*self.redact.secrets, *escaped])(line)


def setup_logging(
    config: LoggingConfig, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Route every log record to ``stream`` (stderr) in the configured format.

    Replaces handlers installed by an earlier call, so it can be called once per command.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    secret_list = list(secrets)
    handler.setFormatter(
        JsonFormatter(secret_list) if config.format == "json" else TextFormatter(secret_list)
    )
    handler.addFilter(ContextFilter(handler))
    handler.set_name("obs-sync")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "obs-sync"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
    # Libraries chatter at INFO/DEBUG (connection pools, scheduler internals); keep them at
    # WARNING unless the operator asked for DEBUG.
    noisy = logging.DEBUG if config.level == "DEBUG" else logging.WARNING
    for name in ("urllib3", "apscheduler", "sqlalchemy", "alembic"):
        logging.getLogger(name).setLevel(noisy)
    return handler


def setup_logging_for(config: Config, stream: TextIO | None = None) -> logging.Handler:
    """:func:`setup_logging` with the config's own secrets masked."""
    return setup_logging(config.logging, secrets=config_secrets(config), stream=stream)


# --------------------------------------------------------------------------------------
# Metrics


class _RequestEventLike(Protocol):
    @property
    def outcome(self) -> str: ...
    @property
    def seconds(self) -> float: ...


class _VdnResultLike(Protocol):
    @property
    def vdn_id(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def inserted(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def deleted(self) -> int: ...
    @property
    def restored(self) -> int: ...


REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def build_labels() -> dict[str, str]:
    """The labels of ``obs_sync_build_info``: what is running, for dashboards and upgrades."""
    from obs_sync import __version__

    return {
        "version": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


class Metrics:
    """The daemon's Prometheus metrics (names and labels listed in docs/operations.md)."""

    def __init__(self) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            Info,
            disable_created_metrics,
        )

        # ``_created`` series (one per counter/histogram child) double the exposition and
        # nothing here uses them. The switch is process-wide: the daemon's only metrics
        # are these.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Info("obs_sync_build", "The running obs-sync: version and Python.", registry=r).info(
            build_labels()
        )
        self.runs = Counter("obs_sync_runs", "Sync runs by final status.", ["status"], registry=r)
        self.vdn_results = Counter(
            "obs_sync_vdn_results",
            "Per-VDN sync results by status (succeeded, failed, incomplete, skipped, guarded).",
            ["status"],
            registry=r,
        )
        self.vdn_last_success = Gauge(
            "obs_sync_vdn_last_success_timestamp_seconds",
            "Unix time of each VDN's last successful sync (one series per VDN).",
            ["vdn"],
            registry=r,
        )
        self.vdns_failing = Gauge(
            "obs_sync_vdns_failing",
            "VDNs whose latest result was failed, incomplete or guarded.",
            registry=r,
        )
        self.codes_changed = Counter(
            "obs_sync_codes_changed",
            "Result codes written, by kind (inserted, updated, deleted, restored).",
            ["kind"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "obs_sync_http_request_duration_seconds",
            "iSales HTTP requests by outcome; _count is the number of requests.",
            ["outcome"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "obs_sync_run_duration_seconds",
            "Wall time of whole sync runs.",
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.last_run_finish = Gauge(
            "obs_sync_last_run_finish_timestamp_seconds",
            "Unix time the last run finished (whatever its status).",
            registry=r,
        )
        self.last_run_success = Gauge(
            "obs_sync_last_run_success_timestamp_seconds",
            "Unix time the last run in which every VDN succeeded finished.",
            registry=r,
        )
        self.deadline_runs = Counter(
            "obs_sync_run_deadline_exceeded",
            "Runs that reached schedule.run_deadline_seconds with VDNs not started "
            "(recorded as skipped).",
            registry=r,
        )
        self.healthy = Gauge(
            "obs_sync_healthy",
            "1 while /healthz answers 200, else 0 (absent when the endpoint is off).",
            registry=r,
        )
        # Every known label value exists from the start at 0, so rate() and increase()
        # alerts also see the first occurrence (a series born at 1 has no increase).
        for status in ("succeeded", "failed", "stopped", "error"):
            self.runs.labels(status)
        for status in ("succeeded", "failed", "incomplete", "skipped", "guarded"):
            self.vdn_results.labels(status)
        for kind in ("inserted", "updated", "deleted", "restored"):
            self.codes_changed.labels(kind)
        from obs_sync.isales import OUTCOMES  # the daemon imports the client anyway

        for outcome in sorted(OUTCOMES):
            self.request_seconds.labels(outcome)
        self._failing: set[int] = set()
        self._deadline_hit = False  # in the run in flight, a VDN was skipped at the deadline
        self._lock = threading.Lock()

    def seed(self, last_success: Mapping[int, datetime], failing: Iterable[int]) -> None:
        """State recorded before this process started (from the run records), so the
        per-VDN series do not vanish from dashboards and alerts at every restart."""
        with self._lock:
            for vdn_id, when in last_success.items():
                self.vdn_last_success.labels(str(vdn_id)).set(when.timestamp())
            self._failing.update(failing)
            self.vdns_failing.set(len(self._failing))

    def on_request(self, event: _RequestEventLike) -> None:
        self.request_seconds.labels(event.outcome).observe(max(event.seconds, 0.0))

    def on_vdn(self, result: _VdnResultLike, finished_at: datetime | None = None) -> None:
        self.vdn_results.labels(result.status).inc()
        for kind in ("inserted", "updated", "deleted", "restored"):
            count = int(getattr(result, kind) or 0)
            if count:
                self.codes_changed.labels(kind).inc(count)
        with self._lock:
            if result.status == "succeeded":
                when = finished_at or datetime.now(timezone.utc)
                self.vdn_last_success.labels(str(result.vdn_id)).set(when.timestamp())
                self._failing.discard(result.vdn_id)
            elif result.status in ("failed", "incomplete", "guarded"):
                self._failing.add(result.vdn_id)
            elif getattr(result, "skip_reason", None) == "deadline":
                self._deadline_hit = True
            self.vdns_failing.set(len(self._failing))

    def on_run(self, status: str, seconds: float, finished_at: datetime) -> None:
        self.runs.labels(status).inc()
        self.run_seconds.observe(max(seconds, 0.0))
        self.last_run_finish.set(finished_at.timestamp())
        if status == "succeeded":
            self.last_run_success.set(finished_at.timestamp())
        with self._lock:
            if self._deadline_hit:
                self.deadline_runs.inc()
            self._deadline_hit = False

    def mark_failing(self, vdn_ids: Iterable[int]) -> None:
        with self._lock:
            self._failing.update(vdn_ids)
            self.vdns_failing.set(len(self._failing))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------------------
# HTTP endpoint


class MetricsServer:
    """Serves ``GET /metrics`` and ``GET /healthz`` from daemon threads."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        health: Callable[[], Health],
    ) -> None:
        self.metrics = metrics
        self.health = health
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "obs-sync"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/metrics":
                    body, content_type = server.metrics.render()
                    self._send(200, body, content_type)
                elif path in ("/healthz", "/health"):
                    verdict = server.health()
                    self._send(verdict.http_status, verdict.to_json(), "application/json")
                else:
                    self._send(404, b'{"error": "try /metrics or /healthz"}', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http %s %s", self.address_string(), format % args)

        metrics.healthy.set_function(lambda: 1.0 if health().ok else 0.0)
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="obs-sync-metrics", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
