"""Simulator faults, stats, the /_sim/ control API and the `obs-sync simulator` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from obs_sync.simulator import Fault, FaultError, Simulator
from tests.fixtures_sim import SIM_ACCESS_KEY, SIM_SECRET_KEY, c2_session

SUCCESS = "0200000"


def page(
    sim: Simulator, vdn: int = 1, num: int = 1, size: int = 50, **kw: Any
) -> requests.Response:
    return c2_session(sim).get(
        sim.api_url(vdn), params={"pageSize": size, "pageNum": num}, timeout=10, **kw
    )


def test_http_status_with_retry_after_then_recovers(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="http_status", status=429, retry_after=2, times=2))
    for _ in range(2):
        response = page(simulator)
        assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert page(simulator).status_code == 200
    simulator.faults.add(Fault(kind="http_status", status=500))
    response = page(simulator)
    assert response.status_code == 500 and "Retry-After" not in response.headers
    assert simulator.stats.faults["http_status"] == 3
    assert simulator.stats.by_status[200] == 1


def test_http_status_with_a_vendor_failure_body(simulator: Simulator) -> None:
    simulator.faults.add(
        Fault(kind="http_status", status=400, vendor_body=True, code="02000007", desc="bad")
    )
    response = page(simulator)
    assert response.status_code == 400
    assert response.json() == {
        "returnCode": "02000007",
        "resultCode": "02000007",
        "resultDesc": "bad",
        "returnDesc": "bad",
    }
    assert simulator.stats.recent[-1].result_code == "02000007"
    with pytest.raises(FaultError, match="vendor_body"):
        Fault(kind="http_status", vendor_body="yes")  # type: ignore[arg-type]


def test_fault_filters_by_vdn_and_page(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="http_status", status=503, vdn_id=2, page_num=2, times=None))
    assert page(simulator, vdn=1, num=2).status_code == 200
    assert page(simulator, vdn=2, num=1).status_code == 200
    assert page(simulator, vdn=2, num=2).status_code == 503
    assert page(simulator, vdn=2, num=2).status_code == 503  # forever
    simulator.faults.clear()
    assert page(simulator, vdn=2, num=2).status_code == 200


def test_slow_response(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="slow", delay_seconds=2))
    session = c2_session(simulator)
    with pytest.raises(requests.exceptions.ReadTimeout):  # the client gives up during the delay
        session.get(simulator.api_url(1), params={"pageSize": 1, "pageNum": 1}, timeout=0.3)
    simulator.faults.add(Fault(kind="slow", delay_seconds=0.05))
    assert page(simulator).json()["totalCount"] == 120  # then answers normally


def test_non_json_body(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="non_json"))
    response = page(simulator)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()


def test_result_code_failure(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="result_code", code="02000008", desc="conversion failed"))
    body = page(simulator).json()
    assert body["resultCode"] == body["returnCode"] == "02000008"
    assert body["resultDesc"] == "conversion failed"


def test_total_drift_only_between_pages(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="total_drift", delta=3, times=1))
    assert page(simulator, num=1).json()["totalCount"] == 120  # page 1 is the baseline
    assert page(simulator, num=2).json()["totalCount"] == 123
    assert page(simulator, num=2).json()["totalCount"] == 120  # used up


def test_empty_page_while_total_positive(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="empty_page", page_num=2))
    body = page(simulator, num=2).json()
    assert body["obsCodes"] == [] and body["totalCount"] == 120
    assert len(page(simulator, num=2).json()["obsCodes"]) == 50


def test_drop_connection(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="drop_connection"))
    with pytest.raises(requests.exceptions.ConnectionError):
        page(simulator)
    assert page(simulator).status_code == 200
    assert simulator.stats.by_status[0] == 1


def test_duplicate_code(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="duplicate_code"))
    codes = page(simulator).json()["obsCodes"]
    assert len(codes) == 51
    first, extra = codes[0], codes[-1]
    assert extra["obsCode"] == first["obsCode"] and extra["obsCodeDesc"] != first["obsCodeDesc"]


@pytest.mark.parametrize("variant", ["blank", "missing", "null", "number"])
def test_bad_code(simulator: Simulator, variant: str) -> None:
    simulator.faults.add(Fault(kind="bad_code", variant=variant))  # type: ignore[arg-type]
    first = page(simulator).json()["obsCodes"][0]
    if variant == "missing":
        assert "obsCode" not in first
    elif variant == "null":
        assert first["obsCode"] is None
    elif variant == "number":
        assert isinstance(first["obsCode"], int)
    else:
        assert first["obsCode"].strip() == ""


def test_page_faults_skip_empty_pages(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="duplicate_code"))
    assert page(simulator, num=9).json()["obsCodes"] == []  # nothing to duplicate: not used
    assert len(page(simulator, num=1).json()["obsCodes"]) == 51


def test_one_fault_per_request_in_order(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="http_status", status=500))
    simulator.faults.add(Fault(kind="http_status", status=503))
    assert [page(simulator).status_code for _ in range(3)] == [500, 503, 200]


def test_latency_applies_to_every_request(make_simulator: Any) -> None:
    sim = make_simulator(latency_seconds=1.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        c2_session(sim).get(sim.api_url(1), params={"pageSize": 1, "pageNum": 1}, timeout=0.2)


def test_invalid_faults_are_rejected() -> None:
    with pytest.raises(FaultError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(FaultError, match="times"):
        Fault(kind="slow", times=0)
    with pytest.raises(FaultError, match="unknown fault field"):
        Fault.from_dict({"kind": "slow", "dely": 1})


def test_stats_count_and_reset(simulator: Simulator) -> None:
    page(simulator, vdn=1)
    page(simulator, vdn=2, num=2, headers={"locale": "en_US"})
    stats = simulator.stats
    assert stats.requests == 2 and stats.by_vdn == {1: 1, 2: 1}
    assert stats.codes_served == 100
    last = stats.recent[-1]
    assert (last.vdn_id, last.page_num, last.locale, last.host) == (
        2,
        2,
        "en_US",
        simulator.host_header,
    )
    stats.reset()
    assert stats.requests == 0 and not stats.recent


# -- control API --------------------------------------------------------------------------


def test_control_api(simulator: Simulator) -> None:
    base = f"{simulator.url}/_sim"
    assert requests.get(f"{base}/health", timeout=10).json()["status"] == "ok"
    response = requests.post(
        f"{base}/faults", json=[{"kind": "http_status", "status": 503, "vdn_id": 1}], timeout=10
    )
    assert response.status_code == 201
    assert requests.get(f"{base}/faults", timeout=10).json()["faults"][0]["status"] == 503
    assert page(simulator, vdn=1).status_code == 503
    bad = requests.post(f"{base}/faults", json={"kind": "nope"}, timeout=10)
    assert bad.status_code == 400 and "kind" in bad.json()["error"]

    assert requests.put(f"{base}/data/1", json={"00001": "one"}, timeout=10).ok
    assert page(simulator, vdn=1).json()["obsCodes"] == [{"obsCode": "00001", "obsCodeDesc": "one"}]
    patch = {"set": {"00002": "two"}, "remove": ["00001"]}
    assert requests.patch(f"{base}/data/1", json=patch, timeout=10).json()["count"] == 1
    assert requests.get(f"{base}/data/1", timeout=10).json()["codes"] == {"00002": "two"}
    assert requests.delete(f"{base}/data/1", timeout=10).ok
    assert simulator.data.codes(1) == {}
    assert requests.put(f"{base}/data/1", json={"x": 1}, timeout=10).status_code == 400

    stats = requests.get(f"{base}/stats", timeout=10).json()
    assert stats["requests"] == 2 and stats["by_status"] == {"200": 1, "503": 1}
    requests.delete(f"{base}/faults", timeout=10)
    assert len(simulator.faults) == 0
    assert requests.patch(f"{base}/settings", json={"latency_seconds": 0.01}, timeout=10).ok
    assert simulator.latency_seconds == 0.01
    assert requests.get(f"{base}/nope", timeout=10).status_code == 404


@pytest.mark.slow
def test_cli_simulator_controlled_from_another_process(tmp_path: Any) -> None:
    env = {**os.environ, "ISALES_ACCESS_KEY": SIM_ACCESS_KEY, "ISALES_SECRET_KEY": SIM_SECRET_KEY}
    command = [sys.executable, "-m", "obs_sync", "simulator", "--port", "0", "--vdns", "3"]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the server is up
        assert line.startswith("iSales simulator listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        sim = Simulator(access_key=SIM_ACCESS_KEY, secret_key=SIM_SECRET_KEY)  # for URLs only
        api = f"{url}/rest/isales/v1/openapi/campaigns/2/queryOBSResultCode"
        requests.post(f"{url}/_sim/faults", json={"kind": "http_status", "status": 503}, timeout=10)
        session = c2_session(sim)
        params = {"pageSize": 50, "pageNum": 1}
        assert session.get(api, params=params, timeout=10).status_code == 503
        assert session.get(api, params=params, timeout=10).json()["totalCount"] == 120
        stats = requests.get(f"{url}/_sim/stats", timeout=10).json()
        assert stats["by_status"] == {"200": 1, "503": 1}
        assert SIM_SECRET_KEY not in " ".join(process.args)  # type: ignore[arg-type]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        time.sleep(0)
