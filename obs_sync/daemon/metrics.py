"""The daemon's Prometheus metrics and its /metrics + /healthz HTTP endpoint.

Metrics live in their own :class:`~prometheus_client.CollectorRegistry` so tests and several
daemons in one process never collide on the global registry. Names and labels are listed in
docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import platform
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from obs_sync import __version__
from obs_sync.code_list_diff import ListResult
from obs_sync.code_lists import OBS_RESULT_CODES, ListKey
from obs_sync.health import Health
from obs_sync.isales.events import OUTCOMES, RequestEvent
from obs_sync.results import DEFAULT_SOURCE, FAILING, VDN_STATUSES, VdnKey, VdnResult

log = logging.getLogger(__name__)

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


def build_labels() -> dict[str, str]:
    """The labels of ``obs_sync_build_info``: what is running, for dashboards and upgrades."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }


CODE_CHANGE_KINDS = ("inserted", "updated", "deleted", "restored")


class Metrics:
    """The daemon's Prometheus metrics (names and labels listed in docs/operations.md).

    Every per-VDN series carries a ``source`` label (the configured source's name;
    ``default`` for a configuration with the single ``isales:`` section)."""

    def __init__(
        self,
        sources: Iterable[str] = (DEFAULT_SOURCE,),
        code_lists: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
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
            "Per-VDN sync results by source and status (succeeded, failed, incomplete, "
            "skipped, guarded).",
            ["source", "status"],
            registry=r,
        )
        self.vdn_last_success = Gauge(
            "obs_sync_vdn_last_success_timestamp_seconds",
            "Unix time of each VDN's last successful sync (one series per source and VDN).",
            ["source", "vdn"],
            registry=r,
        )
        self.vdns_failing = Gauge(
            "obs_sync_vdns_failing",
            "VDNs whose latest result was failed, incomplete or guarded, per source.",
            ["source"],
            registry=r,
        )
        self.vdns_empty = Gauge(
            "obs_sync_vdns_empty",
            "Configured VDNs whose latest successful sync found no code at all (totalCount "
            "0), per source: usually a wrong id in the source's vdn_ids.",
            ["source"],
            registry=r,
        )
        self.codes_changed = Counter(
            "obs_sync_codes_changed",
            "Result codes written, by source and kind (inserted, updated, deleted, restored).",
            ["source", "kind"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "obs_sync_http_request_duration_seconds",
            "iSales HTTP requests by source and outcome; _count is the number of requests.",
            ["source", "outcome"],
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
        self.code_list_results = Counter(
            "obs_sync_code_list_results",
            "Results of the other code lists (code_list: display_results, business_results) "
            "per VDN, by source and status.",
            ["source", "code_list", "status"],
            registry=r,
        )
        self.code_lists_failing = Gauge(
            "obs_sync_code_lists_failing",
            "VDNs whose latest result for a code list was failed, incomplete or guarded.",
            ["source", "code_list"],
            registry=r,
        )
        self.healthy = Gauge(
            "obs_sync_healthy",
            "1 while /healthz answers 200, else 0 (absent when the endpoint is off).",
            registry=r,
        )
        # Every known label value exists from the start at 0, so rate() and increase()
        # alerts also see the first occurrence (a series born at 1 has no increase).
        for status in ("succeeded", "failed", "stopped", "error", "abandoned"):
            self.runs.labels(status)
        self._failing: set[VdnKey] = set()
        self._lists_failing: set[tuple[str, str, int]] = set()  # (source, code_list, vdn)
        self._empty: set[VdnKey] = set()
        self._sources: set[str] = set()
        self._deadline_hit = False  # in the run in flight, a VDN was skipped at the deadline
        self._lock = threading.Lock()
        for source in sources:
            self._add_source(source)
        # The other code lists a source syncs (config: sources[].code_lists) exist from the
        # start too; OBS result codes are the per-VDN series above.
        for source, names in (code_lists or {}).items():
            for name in names:
                if name == OBS_RESULT_CODES:
                    continue
                for list_status in VDN_STATUSES:  # (sync_run_code_list: the same five)
                    self.code_list_results.labels(source, name, list_status)
                self.code_lists_failing.labels(source, name).set(0)

    def _add_source(self, source: str) -> None:
        """Every series of a source exists from the start (counters at 0, gauges at 0)."""
        if source in self._sources:
            return
        self._sources.add(source)
        for status in VDN_STATUSES:
            self.vdn_results.labels(source, status)
        for kind in CODE_CHANGE_KINDS:
            self.codes_changed.labels(source, kind)
        for outcome in sorted(OUTCOMES):
            self.request_seconds.labels(source, outcome)
        self.vdns_failing.labels(source).set(0)
        self.vdns_empty.labels(source).set(0)

    def _set_counts(self) -> None:
        """The per-source gauges of failing and empty VDNs (under the lock)."""
        for source in self._sources:
            self.vdns_failing.labels(source).set(sum(s == source for s, _ in self._failing))
            self.vdns_empty.labels(source).set(sum(s == source for s, _ in self._empty))

    def seed(
        self,
        last_success: Mapping[VdnKey, datetime],
        failing: Iterable[VdnKey],
        *,
        empty: Iterable[VdnKey] = (),
        last_run_success: datetime | None = None,
        lists_failing: Iterable[ListKey] = (),
    ) -> None:
        """State recorded before this process started (from the run records), so the
        series do not vanish from dashboards and alerts at every restart: per (source,
        VDN), its last success, failing and empty VDNs, the last run in which all
        succeeded, and the failing lists, (source, vdn_id, code_list)."""
        with self._lock:
            for (source, vdn_id), when in last_success.items():
                self._add_source(source)
                self.vdn_last_success.labels(source, str(vdn_id)).set(when.timestamp())
            self._failing.update(failing)
            self._empty.update(empty)
            for source, _ in (*self._failing, *self._empty):
                self._add_source(source)
            self._set_counts()
            if last_run_success is not None:
                self.last_run_success.set(last_run_success.timestamp())
            self._lists_failing.update((s, name, vdn) for s, vdn, name in lists_failing)
            for source, name in {(s, name) for s, name, _ in self._lists_failing}:
                self._set_list_count(source, name)

    def on_abandoned(self, count: int) -> None:
        """Runs found dead (their process gone) and marked abandoned by this daemon."""
        self.runs.labels("abandoned").inc(count)

    def on_request(self, event: RequestEvent) -> None:
        with self._lock:
            self._add_source(event.source)
        self.request_seconds.labels(event.source, event.outcome).observe(max(event.seconds, 0.0))

    def on_vdn(self, result: VdnResult, finished_at: datetime | None = None) -> None:
        source, key = result.source, result.key
        with self._lock:
            self._add_source(source)
        self.vdn_results.labels(source, result.status).inc()
        for kind in CODE_CHANGE_KINDS:
            count = int(getattr(result, kind) or 0)
            if count:
                self.codes_changed.labels(source, kind).inc(count)
        with self._lock:
            if result.status == "succeeded":
                when = finished_at or datetime.now(timezone.utc)
                self.vdn_last_success.labels(source, str(result.vdn_id)).set(when.timestamp())
                self._failing.discard(key)
                if result.total_count == 0:
                    self._empty.add(key)
                else:
                    self._empty.discard(key)
            elif result.status in FAILING:
                self._failing.add(key)
            elif result.skip_reason == "deadline":
                self._deadline_hit = True
            self._set_counts()

    def on_code_list(self, result: ListResult) -> None:
        """One list of one VDN (engine/code_lists.py): its result, and whether it fails."""
        source, name = result.source, result.code_list
        self.code_list_results.labels(source, name, result.status).inc()
        with self._lock:
            if result.status == "succeeded":
                self._lists_failing.discard((source, name, result.vdn_id))
            elif result.status in FAILING:
                self._lists_failing.add((source, name, result.vdn_id))
            self._set_list_count(source, name)

    def _set_list_count(self, source: str, name: str) -> None:
        """The gauge of one source's VDNs failing one list (under the lock)."""
        failing = sum(1 for s, n, _ in self._lists_failing if (s, n) == (source, name))
        self.code_lists_failing.labels(source, name).set(failing)

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

    def mark_failing(self, keys: Iterable[VdnKey]) -> None:
        """Every (source, vdn_id) of a run that could not start."""
        with self._lock:
            self._failing.update(keys)
            for source, _ in self._failing:
                self._add_source(source)
            self._set_counts()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --------------------------------------------------------------------------------------
# HTTP endpoint


class MetricsServer:
    """Serves ``GET /metrics`` and ``GET /healthz`` (``?source=NAME``: that source's
    verdict alone) from daemon threads."""

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
                parts = urlsplit(self.path)
                path = parts.path
                if path == "/metrics":
                    body, content_type = server.metrics.render()
                    self._send(200, body, content_type)
                elif path in ("/healthz", "/health"):
                    verdict = server.health()
                    wanted = parse_qs(parts.query).get("source")
                    if wanted:
                        one = verdict.source(wanted[0])
                        if one is None:
                            known = ", ".join(name for name, _ in verdict.sources)
                            error = {"error": f"no source {wanted[0]!r} (sources: {known})"}
                            self._send(404, json.dumps(error).encode(), "application/json")
                            return
                        verdict = one
                    self._send(verdict.http_status, verdict.to_json(), "application/json")
                else:
                    self._send(404, b'{"error": "try /metrics or /healthz"}', "application/json")

            def __getattr__(self, name: str) -> Any:
                # Every method other than GET (POST, PUT, HEAD, made-up ones): a 405 in
                # JSON naming what is allowed, not http.server's HTML 501 page.
                if name.startswith("do_"):
                    return self._not_allowed
                raise AttributeError(name)

            def _not_allowed(self) -> None:
                # A request body is never read: close the connection rather than parse it
                # as the next request.
                self.close_connection = True
                body = json.dumps(
                    {"error": f"method {self.command} not allowed: GET /metrics or /healthz"}
                ).encode()
                self._send(405, body, "application/json", {"Allow": "GET", "Connection": "close"})

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                headers: Mapping[str, str] | None = None,
            ) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has headers only
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
