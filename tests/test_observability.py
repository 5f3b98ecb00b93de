"""Logging formats, secret redaction, metrics and the /metrics + /healthz endpoint."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from pydantic import SecretStr

from obs_sync.config import LoggingConfig, parse_config
from obs_sync.daemon.metrics import Metrics, MetricsServer
from obs_sync.health import Health
from obs_sync.logcontext import PendingRun, bind
from obs_sync.observability import config_secrets, setup_logging
from obs_sync.simulator import Simulator

SECRET = "s3cr3t-Key/with+chars\"'"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, list[str]]]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    yield stream, [SECRET]
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)


def test_text_lines_carry_run_and_vdn(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging(LoggingConfig(format="text"), secrets=secrets, stream=stream)
    log = logging.getLogger("obs_sync.test")
    log.info("outside")
    with bind(run=42):
        log.info("in run")
        with bind(vdn=7):
            log.warning("in vdn %d", 7, extra={"pages": 3})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert "run=" not in lines[0] and lines[0].endswith("outside")
    assert " INFO    run=42 in run" in lines[1]
    assert " WARNING run=42 vdn=7 in vdn 7 pages=3" in lines[2]
    assert lines[2][:4].isdigit() and "T" in lines[2].split()[0]


def test_json_lines(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging(LoggingConfig(format="json", level="DEBUG"), secrets=secrets, stream=stream)
    log = logging.getLogger("obs_sync.test")
    with bind(run=5, vdn=9):
        log.debug("fetched %s", "page", extra={"page_num": 2})
        try:
            raise RuntimeError("kaput")
        except RuntimeError:
            log.exception("failed")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 2
    first, second = records
    assert first["level"] == "DEBUG" and first["logger"] == "obs_sync.test"
    assert first["message"] == "fetched page"
    assert first["run_id"] == 5 and first["vdn_id"] == 9 and first["page_num"] == 2
    assert first["ts"].endswith("Z")
    assert "RuntimeError: kaput" in second["exc"]


def test_lines_of_a_pending_run_wait_for_its_id(capture: tuple[io.StringIO, list[str]]) -> None:
    stream, secrets = capture
    setup_logging(LoggingConfig(format="json"), secrets=secrets, stream=stream)
    log = logging.getLogger("obs_sync.test")
    pending = PendingRun()
    with bind(run=pending, vdn=3):
        log.warning("before the run record exists")
    log.info("not part of the run")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "not part of the run"
    ]
    pending.resolve(17)
    with bind(run=pending, vdn=4):
        log.warning("after")
    pending.resolve(99)  # idempotent: the first id stays
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["message"], r["run_id"], r["vdn_id"]) for r in records] == [
        ("not part of the run", None, None),
        ("before the run record exists", 17, 3),
        ("after", 17, 4),
    ]


def test_a_run_that_never_gets_an_id_loses_no_line(
    capture: tuple[io.StringIO, list[str]],
) -> None:
    stream, secrets = capture
    setup_logging(LoggingConfig(format="text"), secrets=secrets, stream=stream)
    pending = PendingRun()
    with bind(run=pending):
        logging.getLogger("obs_sync.test").error("database unreachable")
    pending.resolve(None)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("ERROR   database unreachable")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_everywhere(capture: tuple[io.StringIO, list[str]], fmt: str) -> None:
    stream, secrets = capture
    setup_logging(LoggingConfig(format=fmt), secrets=secrets, stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("obs_sync.test")
    log.error("message %s", SECRET, extra={"detail": f"x{SECRET}y"})
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("with traceback")
    output = stream.getvalue()
    assert SECRET not in output
    assert json.dumps(SECRET)[1:-1] not in output
    assert "***" in output


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_short_secret_is_masked_where_it_stands_alone_not_inside_words(fmt: str) -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(format=fmt), secrets=["ab"], stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("obs_sync.test")
    log.error("connecting to database postgresql://u:ab@db.example/x as ab, 'ab', ab_1")
    output = stream.getvalue()
    assert "database" in output and "db.example" in output  # words keep their letters
    assert output.count("***") == 4
    assert "u:***@" in output


def test_config_secrets() -> None:
    config = parse_config(
        {
            "isales": {
                "base_url": "http://127.0.0.1:1",
                "access_key": "ak",
                "secret_key": "the-secret",
                "vdn_ids": [1],
            },
            "database": {"url": "postgresql://u:p%40ss@localhost/db"},
        },
        env={},
    )
    secrets = config_secrets(config)
    assert "the-secret" in secrets
    assert "p%40ss" in secrets and "p@ss" in secrets
    assert isinstance(config.isales.secret_key, SecretStr)


@dataclass
class _Vdn:
    vdn_id: int
    status: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    restored: int = 0
    total_count: int | None = None
    skip_reason: str | None = None
    source: str = "default"

    @property
    def key(self) -> tuple[str, int]:
        return (self.source, self.vdn_id)


@dataclass
class _Event:
    vdn_id: int
    outcome: str
    status: int | None
    seconds: float
    source: str = "default"


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["Content-Type"]


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted label pairs: value}`` of the samples called ``name`` in exposition ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_and_healthz_endpoint() -> None:
    metrics = Metrics()
    verdict = [Health("starting", "waiting for the first run to finish")]
    server = MetricsServer("127.0.0.1", 0, metrics=metrics, health=lambda: verdict[0]).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body, ctype = _get(base + "/healthz")
        assert status == 200 and ctype == "application/json"
        assert json.loads(body) == {
            "status": "starting",
            "reason": "waiting for the first run to finish",
        }

        now = datetime(2024, 1, 1, tzinfo=timezone.utc)
        metrics.on_request(_Event(1, "ok", 200, 0.02))
        metrics.on_request(_Event(1, "http_error", 503, 0.5))
        metrics.on_vdn(_Vdn(1, "succeeded", inserted=3, updated=1), now)
        metrics.on_vdn(_Vdn(2, "failed"), now)
        metrics.on_run("failed", 12.5, now)
        status, body, ctype = _get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        text = body.decode()
        assert 'obs_sync_runs_total{status="failed"} 1.0' in text
        assert 'obs_sync_vdn_results_total{source="default",status="succeeded"} 1.0' in text
        assert 'obs_sync_vdn_results_total{source="default",status="failed"} 1.0' in text
        assert 'obs_sync_codes_changed_total{kind="inserted",source="default"} 3.0' in text
        assert 'obs_sync_codes_changed_total{kind="updated",source="default"} 1.0' in text
        last_success = samples(text, "obs_sync_vdn_last_success_timestamp_seconds")
        assert last_success == {(("source", "default"), ("vdn", "1")): now.timestamp()}
        assert 'obs_sync_vdns_failing{source="default"} 1.0' in text
        assert (
            'obs_sync_http_request_duration_seconds_count{outcome="http_error",source="default"} '
            "1.0" in text
        )
        assert "obs_sync_run_duration_seconds_count 1.0" in text
        assert samples(text, "obs_sync_last_run_finish_timestamp_seconds") == {(): now.timestamp()}
        assert "obs_sync_last_run_success_timestamp_seconds 0.0" in text
        assert "obs_sync_healthy 1.0" in text

        verdict[0] = Health("unhealthy", "VDN 2 failing for 5 min")
        status, body, _ = _get(base + "/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "unhealthy"
        assert "obs_sync_healthy 0.0" in _get(base + "/metrics")[1].decode()
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "BREW"])
def test_other_methods_get_a_405_naming_get_not_an_html_501(method: str) -> None:
    import http.client

    server = MetricsServer("127.0.0.1", 0, metrics=Metrics(), health=lambda: Health("ok", ""))
    server.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(method, "/metrics", body=b'{"x": 1}' if method != "HEAD" else None)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 405
        assert response.getheader("Allow") == "GET"
        assert response.getheader("Content-Type") == "application/json"
        if method != "HEAD":  # a HEAD answer has no body by definition
            assert "GET" in json.loads(body)["error"] and b"<html" not in body.lower()
        connection.close()
        # The server still answers GET afterwards.
        assert _get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200
    finally:
        server.stop()


def test_counter_label_values_exist_from_the_start_at_zero() -> None:
    text = Metrics().render()[0].decode()
    for series in (
        'obs_sync_codes_changed_total{kind="deleted",source="default"} 0.0',
        'obs_sync_vdn_results_total{source="default",status="guarded"} 0.0',
        'obs_sync_runs_total{status="error"} 0.0',
        'obs_sync_http_request_duration_seconds_count{outcome="auth_error",source="default"} 0.0',
        'obs_sync_vdns_failing{source="default"} 0.0',
        'obs_sync_vdns_empty{source="default"} 0.0',
    ):
        assert series in text


def test_two_metrics_instances_do_not_collide() -> None:
    Metrics()
    Metrics()  # a second registry in the same process must not raise "Duplicated timeseries"


def test_exposition_has_build_info_help_everywhere_and_no_created_series() -> None:
    import platform
    import re

    from prometheus_client.parser import text_string_to_metric_families

    import obs_sync

    metrics = Metrics()
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    metrics.on_request(_Event(1, "ok", 200, 0.02))
    metrics.on_vdn(_Vdn(1, "succeeded", inserted=3), now)
    metrics.on_run("succeeded", 1.0, now)
    text = metrics.render()[0].decode()

    families = list(text_string_to_metric_families(text))
    assert [f.name for f in families if not f.documentation.strip()] == []
    names = {sample.name for family in families for sample in family.samples}
    assert [name for name in names if name.endswith("_created")] == []
    # Every family also says so in the text itself (what Prometheus and Grafana show).
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    types = re.findall(r"^# TYPE (\S+) ", text, re.M)
    assert sorted(set(types) - set(helps)) == []
    assert [name for name, help_text in helps.items() if not help_text.strip()] == []
    assert samples(text, "obs_sync_build_info") == {
        (
            ("python", platform.python_version()),
            ("python_implementation", platform.python_implementation()),
            ("version", obs_sync.__version__),
        ): 1.0
    }


def test_runs_that_reach_their_deadline_are_counted_once_each() -> None:
    from obs_sync.results import VdnResult

    metrics = Metrics()
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def deadline_runs() -> float:
        return samples(metrics.render()[0].decode(), "obs_sync_run_deadline_exceeded_total")[()]

    assert deadline_runs() == 0
    # A run whose last two VDNs never started because the deadline had passed.
    metrics.on_vdn(VdnResult("default", 1, "succeeded", started_at=now, finished_at=now), now)
    for vdn in (2, 3):
        skipped = VdnResult(
            "default", vdn, "skipped", started_at=now, finished_at=now, skip_reason="deadline"
        )
        metrics.on_vdn(skipped, now)
    metrics.on_run("succeeded", 50.0, now)
    assert deadline_runs() == 1
    # Skips for other reasons (another replica, shutdown) and later runs do not count.
    metrics.on_vdn(
        VdnResult("default", 1, "skipped", started_at=now, finished_at=now, skip_reason="locked"),
        now,
    )
    metrics.on_vdn(
        VdnResult("default", 2, "skipped", started_at=now, finished_at=now, skip_reason="stopped"),
        now,
    )
    metrics.on_run("stopped", 1.0, now)
    metrics.on_run("succeeded", 1.0, now)
    assert deadline_runs() == 1


def test_every_per_vdn_series_carries_its_source() -> None:
    """Two sources with the same VDN id (two servers, or one in two languages): each has
    its own series, and the counts of failing and empty VDNs are per source."""
    metrics = Metrics(["north", "south"])
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    metrics.on_request(_Event(1, "ok", 200, 0.02, source="north"))
    metrics.on_request(_Event(1, "auth_error", 401, 0.01, source="south"))
    metrics.on_vdn(_Vdn(1, "succeeded", inserted=4, total_count=0, source="north"), now)
    metrics.on_vdn(_Vdn(1, "failed", source="south"), now)
    text = metrics.render()[0].decode()
    assert samples(text, "obs_sync_vdn_last_success_timestamp_seconds") == {
        (("source", "north"), ("vdn", "1")): now.timestamp()
    }
    assert samples(text, "obs_sync_vdns_failing") == {
        (("source", "north"),): 0.0,
        (("source", "south"),): 1.0,
    }
    assert samples(text, "obs_sync_vdns_empty") == {
        (("source", "north"),): 1.0,
        (("source", "south"),): 0.0,
    }
    inserted = samples(text, "obs_sync_codes_changed_total")
    assert inserted[(("kind", "inserted"), ("source", "north"))] == 4
    assert inserted[(("kind", "inserted"), ("source", "south"))] == 0
    requests = samples(text, "obs_sync_http_request_duration_seconds_count")
    assert requests[(("outcome", "auth_error"), ("source", "south"))] == 1
    assert requests[(("outcome", "auth_error"), ("source", "north"))] == 0
    results = samples(text, "obs_sync_vdn_results_total")
    assert results[(("source", "south"), ("status", "failed"))] == 1
    assert results[(("source", "north"), ("status", "failed"))] == 0
    # Not per VDN: no source label.
    assert samples(text, "obs_sync_healthy") == {} or (
        set(samples(text, "obs_sync_healthy")) == {()}
    )
    # A run that could not start fails every (source, VDN) of the configuration.
    metrics.mark_failing([("north", 1), ("north", 2), ("south", 1)])
    failing = samples(metrics.render()[0].decode(), "obs_sync_vdns_failing")
    assert failing == {(("source", "north"),): 2.0, (("source", "south"),): 1.0}


def test_seeded_series_keep_their_source() -> None:
    metrics = Metrics(["north"])
    then = datetime(2024, 1, 1, tzinfo=timezone.utc)
    metrics.seed(
        {("north", 5): then, ("gone", 5): then},  # a source no longer configured
        [("gone", 5)],
        empty=[("north", 5)],
    )
    text = metrics.render()[0].decode()
    assert set(samples(text, "obs_sync_vdn_last_success_timestamp_seconds")) == {
        (("source", "gone"), ("vdn", "5")),
        (("source", "north"), ("vdn", "5")),
    }
    assert samples(text, "obs_sync_vdns_failing") == {
        (("source", "gone"),): 1.0,
        (("source", "north"),): 0.0,
    }
    assert samples(text, "obs_sync_vdns_empty")[(("source", "north"),)] == 1.0


def test_healthz_per_source() -> None:
    north = Health("unhealthy", "VDN 3 of source north failing for 55 min")
    south = Health("ok", "")
    verdict = Health(north.status, north.reason, (("north", north), ("south", south)))
    server = MetricsServer("127.0.0.1", 0, metrics=Metrics(), health=lambda: verdict).start()
    try:
        base = f"http://127.0.0.1:{server.port}/healthz"
        status, body, _ = _get(base)
        assert status == 503
        assert json.loads(body)["sources"] == {
            "north": {"status": "unhealthy", "reason": north.reason},
            "south": {"status": "ok", "reason": ""},
        }
        status, body, _ = _get(base + "?source=south")
        assert status == 200 and json.loads(body) == {"status": "ok", "reason": ""}
        status, body, _ = _get(base + "?source=north")
        assert status == 503 and "failing for 55 min" in json.loads(body)["reason"]
        status, body, _ = _get(base + "?source=west")
        assert status == 404
        assert json.loads(body)["error"] == "no source 'west' (sources: north, south)"
    finally:
        server.stop()


def test_request_series_are_counted_under_the_clients_source(simulator: Simulator) -> None:
    """Each source's client reports its requests under its own name (one server, two
    languages here); a client of the isales: section, under default."""
    from obs_sync.config import SourceConfig
    from obs_sync.isales.client import ISalesClient
    from tests.fixtures_sim import isales_config, source_config_dict

    metrics = Metrics(["zh", "en"])
    zh = SourceConfig.model_validate(source_config_dict(simulator, "zh"))
    en = SourceConfig.model_validate(source_config_dict(simulator, "en", locale="en_US"))
    for config in (zh, en, isales_config(simulator)):
        with ISalesClient(config, on_request=metrics.on_request) as client:
            client.fetch_snapshot(1)  # 120 codes, pages of 50: 3 requests
    counts = samples(metrics.render()[0].decode(), "obs_sync_http_request_duration_seconds_count")
    assert {labels: n for labels, n in counts.items() if ("outcome", "ok") in labels} == {
        (("outcome", "ok"), ("source", "en")): 3.0,
        (("outcome", "ok"), ("source", "zh")): 3.0,
        (("outcome", "ok"), ("source", "default")): 3.0,
    }
