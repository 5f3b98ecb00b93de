"""The daemon with two sources, one of whose servers is down: /healthz and the metrics
say which source fails, the other stays healthy. Real PostgreSQL, real simulators over
loopback, an in-process daemon serving real HTTP."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from obs_sync.config import parse_config
from obs_sync.daemon.daemon import Daemon
from obs_sync.simulator import Simulator
from tests.fixtures_db import TEST_SCHEMA
from tests.fixtures_sim import SECOND_KEY, source_config_dict
from tests.polling import wait_for


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def series(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_server_down_makes_only_its_own_source_unhealthy(
    simulator: Simulator, second_simulator: Simulator, database_url: str
) -> None:
    south = source_config_dict(
        second_simulator, "south", SECOND_KEY, vdn_ids=["1-2"], max_retries=0
    )
    second_simulator.stop()  # the south server is down for the whole test
    port = free_port()
    config = parse_config(
        {
            "sources": [
                source_config_dict(simulator, "north", vdn_ids=["1-3"], max_retries=0),
                south,
            ],
            "database": {"url": database_url, "schema": TEST_SCHEMA},
            "schedule": {"interval_minutes": 60, "run_at_start": True},
            # A failure older than 60 ms is "too long": south turns unhealthy at once.
            "metrics": {"host": "127.0.0.1", "port": port, "max_failing_minutes": 0.001},
        },
        env={},
    )
    daemon = Daemon(config)
    thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: daemon.runs_finished >= 1, "the first run")
        status, body = wait_for(
            lambda: (r := get(f"{base}/healthz"))[0] == 503 and r, "healthz 503"
        )
        verdict = json.loads(body)
        assert verdict["status"] == "unhealthy"
        assert "of source south failing for" in verdict["reason"]
        assert verdict["sources"]["north"] == {"status": "ok", "reason": ""}
        assert verdict["sources"]["south"]["status"] == "unhealthy"

        north = get(f"{base}/healthz?source=north")
        assert north[0] == 200 and json.loads(north[1])["status"] == "ok"
        south = get(f"{base}/healthz?source=south")
        assert south[0] == 503 and "of source south failing for" in json.loads(south[1])["reason"]

        status, metrics = get(f"{base}/metrics")
        text = metrics.decode()
        assert status == 200
        assert series(text, "obs_sync_vdns_failing") == {
            (("source", "north"),): 0.0,
            (("source", "south"),): 2.0,
        }
        last = series(text, "obs_sync_vdn_last_success_timestamp_seconds")
        assert {labels for labels in last} == {
            (("source", "north"), ("vdn", str(vdn))) for vdn in (1, 2, 3)
        }
        requests = series(text, "obs_sync_http_request_duration_seconds_count")
        assert requests[(("outcome", "ok"), ("source", "north"))] == 9  # 3 VDNs x 3 pages
        assert requests[(("outcome", "ok"), ("source", "south"))] == 0
        assert requests[(("outcome", "connection_error"), ("source", "south"))] >= 1
        results = series(text, "obs_sync_vdn_results_total")
        assert results[(("source", "north"), ("status", "succeeded"))] == 3
        assert results[(("source", "south"), ("status", "succeeded"))] == 0
    finally:
        daemon.request_shutdown("test over")
        thread.join(30)
    assert not thread.is_alive()
