"""/healthz knows the other code lists: a VDN's display (or business) results failing for
longer than metrics.max_failing_minutes make the daemon unhealthy, naming the list, until
the list succeeds; the streak is read back from ``sync_run_code_list`` at a restart. Real
PostgreSQL, the bundled simulator over loopback, an in-process daemon serving real HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from obs_sync.config import parse_config
from obs_sync.daemon.daemon import Daemon
from obs_sync.engine.run import run_sync
from obs_sync.simulator import Simulator
from obs_sync.simulator.code_lists import CodeListFault
from tests.fixtures_db import config_dict
from tests.polling import wait_for
from tests.test_daemon_sources import free_port

ALL = ["obs_result_codes", "display_results", "business_results"]
LIST = ("default", 3, "display_results")


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start(daemon: Daemon) -> threading.Thread:
    thread = threading.Thread(target=lambda: daemon.serve(install_signals=False), daemon=True)
    thread.start()
    return thread


def stop(daemon: Daemon, thread: threading.Thread) -> None:
    daemon.request_shutdown("test over")
    thread.join(30)
    assert not thread.is_alive()


def test_a_failing_display_results_list_turns_health_red_then_green(
    simulator: Simulator, database_url: str
) -> None:
    # Every detail call of VDN 3 fails: its display results are incomplete, all else succeeds.
    simulator.code_lists.add_fault(CodeListFault("detail_status", vdn_id=3, times=None))
    port = free_port()
    data = config_dict(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0, code_lists=ALL)
    data["schedule"] = {"interval_minutes": 60, "run_at_start": True}
    # A failure older than 60 ms is "too long": the list turns the daemon unhealthy at once.
    data["metrics"] = {"host": "127.0.0.1", "port": port, "max_failing_minutes": 0.001}
    daemon = Daemon(parse_config(data, env={}))
    thread = start(daemon)
    try:
        wait_for(lambda: daemon.runs_finished >= 1, "the first run")
        assert list(daemon.health.failing()) == [LIST]  # the VDNs' OBS codes all succeeded
        status, body = wait_for(lambda: (r := healthz(port))[0] == 503 and r, "healthz 503")
        assert body["status"] == "unhealthy"
        assert "VDN 3" in body["reason"] and "display_results" in body["reason"]
        assert body["sources"]["default"]["status"] == "unhealthy"

        simulator.code_lists.clear_faults()
        daemon.run_once()  # the next run (the schedule's would be an hour away)
        assert daemon.health.failing() == {}
        status, body = healthz(port)
        assert (status, body["status"]) == (200, "ok")
    finally:
        stop(daemon, thread)


def test_a_restarted_daemon_reads_the_lists_failure_streak_back(
    simulator: Simulator, database_url: str
) -> None:
    simulator.code_lists.add_fault(CodeListFault("detail_status", vdn_id=3, times=None))
    data = config_dict(simulator, database_url, vdn_ids=[1, 2, 3], max_retries=0, code_lists=ALL)
    config = parse_config(data, env={})
    # Earlier processes: VDN 3's display results failed, succeeded once, then failed twice
    # (the streak that counts starts after that success).
    assert {r.key: r.status for r in run_sync(config).code_lists}[LIST] == "incomplete"
    simulator.code_lists.clear_faults()
    assert {r.key: r.status for r in run_sync(config).code_lists}[LIST] == "succeeded"
    simulator.code_lists.add_fault(CodeListFault("detail_status", vdn_id=3, times=None))
    began = {r.key: r for r in run_sync(config).code_lists}[LIST].finished_at
    assert {r.key: r.status for r in run_sync(config).code_lists}[LIST] == "incomplete"
    time.sleep(0.1)  # the streak is now older than max_failing_minutes below (60 ms)

    data["schedule"] = {"interval_minutes": 60, "run_at_start": False}
    data["metrics"] = {"host": "127.0.0.1", "port": 0, "max_failing_minutes": 0.001}
    daemon = Daemon(parse_config(data, env={}))
    thread = start(daemon)
    try:
        wait_for(lambda: daemon.seeded, "the run records read")
        # No run in this process: the streak is the one recorded, from its first failure.
        failing = daemon.health.failing()
        assert list(failing) == [LIST]
        assert (failing[LIST].since, failing[LIST].count) == (began, 2)
        assert failing[LIST].error
        health = daemon.health.check()
        assert health.status == "unhealthy"
        assert "VDN 3" in health.reason and "display_results" in health.reason
        assert daemon.metrics is not None
        gauge = daemon.metrics.registry.get_sample_value(
            "obs_sync_code_lists_failing", {"source": "default", "code_list": "display_results"}
        )
        assert gauge == 1
    finally:
        stop(daemon, thread)
