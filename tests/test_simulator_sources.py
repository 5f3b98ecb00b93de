"""The simulator as several sources see it, over real HTTP on loopback: one server with
several keys each granted some VDNs, several servers with overlapping VDN ids, locales."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import HTTPStatusError
from obs_sync.simulator import (
    AccessKey,
    AccessKeyError,
    Fault,
    Simulator,
    SimulatorData,
    SimulatorDataError,
    load_keys,
)
from tests.fixtures_sim import (
    SECOND_KEY,
    SIM_ACCESS_KEY,
    SIM_SECRET_KEY,
    TENANT_A,
    TENANT_B,
    c2_session,
    isales_config,
    source_config_dict,
)

SUCCESS = "0200000"


def get(
    sim: Simulator, vdn: int | str, key: AccessKey | None = None, **headers: str
) -> requests.Response:
    session = c2_session(sim, key=key)
    session.headers.update(headers)
    return session.get(sim.api_url(vdn), params={"pageSize": 50, "pageNum": 1}, timeout=10)


def every_code(sim: Simulator, vdn: int, key: AccessKey | None = None, **headers: str) -> dict:
    session = c2_session(sim, key=key)
    session.headers.update(headers)
    codes: dict[str, str] = {}
    page = 1
    while True:
        params = {"pageSize": 50, "pageNum": page}
        body = session.get(sim.api_url(vdn), params=params, timeout=10).json()
        if not body["obsCodes"]:
            return codes
        codes.update({c["obsCode"]: c["obsCodeDesc"] for c in body["obsCodes"]})
        page += 1


# -- one server, several keys ------------------------------------------------------------


def test_each_key_reads_only_its_granted_vdns(tenant_simulator: Simulator) -> None:
    sim = tenant_simulator
    for key, granted in ((TENANT_A, {1, 2}), (TENANT_B, {3, 4, 5})):
        for vdn in range(1, 6):
            response = get(sim, vdn, key)
            if vdn in granted:
                assert response.status_code == 200
                assert response.json()["totalCount"] == 120
            else:
                assert response.status_code == 403
                reason = response.json()["reason"]
                assert key.access_key in reason and f"VDN {vdn}" in reason
                assert key.secret_key not in response.text
    # The global key (granted nothing in particular) reads every VDN.
    assert all(get(sim, vdn).status_code == 200 for vdn in range(1, 6))
    assert sim.stats.forbidden == 5
    assert sim.stats.by_access_key == {
        TENANT_A.access_key: 5,
        TENANT_B.access_key: 5,
        SIM_ACCESS_KEY: 5,
    }
    assert sim.stats.recent[-1].access_key == SIM_ACCESS_KEY


def test_keys_on_one_server_see_the_same_data(tenant_simulator: Simulator) -> None:
    sim = tenant_simulator
    assert every_code(sim, 1, TENANT_A) == every_code(sim, 1) == sim.data.codes(1)
    assert every_code(sim, 3, TENANT_B) == sim.data.codes(3)


def test_the_signature_is_checked_before_the_grant(tenant_simulator: Simulator) -> None:
    wrong = AccessKey(TENANT_A.access_key, "not-the-secret", TENANT_A.vdn_ids)
    response = get(tenant_simulator, 3, wrong)  # not granted AND badly signed
    assert response.status_code == 401
    assert response.json()["reason"] == "signature mismatch"
    assert tenant_simulator.stats.forbidden == 0


def test_the_grant_is_checked_after_the_vdn_id_and_before_the_page(
    tenant_simulator: Simulator,
) -> None:
    session = c2_session(tenant_simulator, key=TENANT_A)
    bad_vdn = session.get(tenant_simulator.api_url(0), params={"pageSize": 50, "pageNum": 1})
    assert bad_vdn.status_code == 200 and bad_vdn.json()["resultCode"] == "02000007"
    bad_page = session.get(tenant_simulator.api_url(3), params={"pageSize": 99, "pageNum": 1})
    assert bad_page.status_code == 403  # a key learns nothing of a VDN it cannot read


def test_the_client_is_refused_once_without_retrying(tenant_simulator: Simulator) -> None:
    config = isales_config(
        tenant_simulator, access_key=TENANT_A.access_key, secret_key=TENANT_A.secret_key
    )
    with ISalesClient(config) as isales:
        assert len(isales.fetch_snapshot(2).codes) == 120
        with pytest.raises(HTTPStatusError) as caught:
            isales.fetch_snapshot(3)
    assert caught.value.status == 403 and caught.value.vdn_id == 3
    assert "permission" in str(caught.value)
    assert "not granted VDN 3" in str(caught.value)  # the server's reason is passed on
    assert tenant_simulator.stats.forbidden == 1  # never retried


def test_keys_change_while_running(tenant_simulator: Simulator) -> None:
    sim = tenant_simulator
    late = AccessKey("late-ak", "late-sk", frozenset({4}))
    assert get(sim, 4, late).status_code == 401  # not yet known
    sim.keys.add(late)
    assert get(sim, 4, late).status_code == 200
    assert get(sim, 1, late).status_code == 403
    sim.keys.add(AccessKey("late-ak", "late-sk", frozenset({1})))  # replaced: now VDN 1 only
    assert get(sim, 1, late).status_code == 200
    assert get(sim, 4, late).status_code == 403
    assert sim.keys.remove("late-ak") and not sim.keys.remove("late-ak")
    assert get(sim, 1, late).status_code == 401


def test_control_api_lists_and_sets_keys_never_showing_a_secret(
    tenant_simulator: Simulator,
) -> None:
    base = f"{tenant_simulator.url}/_sim"
    listed = requests.get(f"{base}/keys", timeout=10).json()["keys"]
    assert {k["access_key"]: k["vdn_ids"] for k in listed} == {
        SIM_ACCESS_KEY: None,
        TENANT_A.access_key: [1, 2],
        TENANT_B.access_key: [3, 4, 5],
    }
    put = requests.put(
        f"{base}/keys/ctl-ak", json={"secret_key": "ctl-sk", "vdn_ids": ["2-3"]}, timeout=10
    )
    assert put.json() == {"access_key": "ctl-ak", "vdn_ids": [2, 3]}
    ctl = AccessKey("ctl-ak", "ctl-sk")
    assert get(tenant_simulator, 3, ctl).status_code == 200
    assert get(tenant_simulator, 4, ctl).status_code == 403
    health = requests.get(f"{base}/health", timeout=10).json()
    assert health["keys"] == 4 and {"zh_CN", "en_US"} <= set(health["locales"])
    everything = requests.get(f"{base}/keys", timeout=10).text + put.text + health["url"]
    assert not any(s in everything for s in ("ctl-sk", SIM_SECRET_KEY, TENANT_A.secret_key))
    bad = requests.put(f"{base}/keys/x", json={"secret_key": "s", "vdn_ids": [0]}, timeout=10)
    assert bad.status_code == 400 and "outside 1..9999" in bad.json()["error"]
    assert requests.put(f"{base}/keys/x", json={"vdn_ids": [1]}, timeout=10).status_code == 400
    assert requests.delete(f"{base}/keys/ctl-ak", timeout=10).status_code == 200
    assert requests.delete(f"{base}/keys/ctl-ak", timeout=10).status_code == 404
    assert get(tenant_simulator, 3, ctl).status_code == 401


def test_faults_can_hit_one_key_only(tenant_simulator: Simulator) -> None:
    sim = tenant_simulator
    sim.faults.add(
        Fault(kind="http_status", status=503, times=None, access_key=TENANT_B.access_key)
    )
    assert get(sim, 1, TENANT_A).status_code == 200
    assert get(sim, 3, TENANT_B).status_code == 503
    assert get(sim, 3).status_code == 200  # the global key on the same VDN


def test_a_key_never_shows_its_secret() -> None:
    key = AccessKey("ak-1", "very-secret-sk", frozenset({1}))
    assert "very-secret-sk" not in repr(key) and "very-secret-sk" not in str(key.describe())
    sim = Simulator(access_key="ak-0", secret_key="other-secret", keys=[key])
    assert "secret" not in repr(sim) and "secret" not in repr(sim.keys)


@pytest.mark.parametrize(
    ("vdn_ids", "message"),
    [
        ([0], "outside 1..9999"),
        (["5-3"], "reversed"),
        (["x"], "is not a VDN id"),
        ([True], "is not a VDN id"),
        ({"1": 2}, "must be a list"),
    ],
)
def test_bad_grants_are_refused_naming_the_key(vdn_ids: Any, message: str) -> None:
    with pytest.raises(AccessKeyError, match=message) as caught:
        AccessKey("ak-x", "sk", vdn_ids)
    assert "ak-x" in str(caught.value)


def test_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "tenant-a: {secret_key: sa, vdn_ids: [1, '3-4']}\nglobal: {secret_key: sg, vdn_ids: null}\n"
    )
    keys = {k.access_key: k for k in load_keys(path)}
    assert keys["tenant-a"].vdn_ids == {1, 3, 4} and keys["global"].vdn_ids is None
    assert keys["tenant-a"].secret_key == "sa"
    for text, message in (
        ("[]", "top level must be a mapping"),
        ("a: {vdn_ids: [1]}", "secret_key is required"),
        ("a: {secret_key: s, vdns: [1]}", "give {secret_key"),
        ("a: {secret_key: s, vdn_ids: [10000]}", "outside"),
    ):
        path.write_text(text)
        with pytest.raises(AccessKeyError, match=message) as caught:
            load_keys(path)
        assert str(path) in str(caught.value)


# -- several servers ---------------------------------------------------------------------


def test_two_servers_with_the_same_vdn_ids_serve_their_own_data_and_keys(
    simulator: Simulator, second_simulator: Simulator
) -> None:
    assert simulator.port != second_simulator.port
    first, second = every_code(simulator, 1), every_code(second_simulator, 1, SECOND_KEY)
    assert len(first) == len(second) == 120
    assert first != second and first.keys() != second.keys()
    assert second == second_simulator.data.codes(1)
    # Each server knows only its own key.
    refused = get(second_simulator, 1)
    assert refused.status_code == 401 and refused.json()["reason"] == "unknown access key"
    assert get(simulator, 1, SECOND_KEY).status_code == 401
    # Faults and stats are per server.
    simulator.faults.add(Fault(kind="http_status", status=503, times=None))
    assert get(simulator, 2).status_code == 503
    assert get(second_simulator, 2, SECOND_KEY).status_code == 200
    assert second_simulator.stats.by_status[503] == 0


def test_a_server_stopped_leaves_the_other_serving(
    simulator: Simulator, second_simulator: Simulator
) -> None:
    url = simulator.api_url(1)
    simulator.stop()
    with pytest.raises(requests.ConnectionError):
        c2_session(simulator).get(url, params={"pageSize": 50, "pageNum": 1}, timeout=5)
    assert get(second_simulator, 1, SECOND_KEY).status_code == 200


def test_source_config_dict_points_a_source_at_a_server_and_key(
    tenant_simulator: Simulator,
) -> None:
    source = source_config_dict(tenant_simulator, "tenant_a", TENANT_A, locale="en_US")
    assert source["name"] == "tenant_a" and source["base_url"] == tenant_simulator.url
    assert (source["access_key"], source["secret_key"]) == ("tenant-a-ak", "tenant-a-sk")
    assert source["locale"] == "en_US"


# -- locales -----------------------------------------------------------------------------


def test_every_code_reads_differently_per_locale(simulator: Simulator) -> None:
    zh = every_code(simulator, 1)
    en = every_code(simulator, 1, locale="en_US")
    assert zh.keys() == en.keys()
    assert all(zh[code] != en[code] for code in zh)
    assert every_code(simulator, 1, locale="en-us") == en  # any case, - or _
    assert every_code(simulator, 1, locale="zh_CN") == zh
    assert every_code(simulator, 1, locale="fr_FR") == zh  # no text in it: the default
    assert every_code(simulator, 1, locale="not a locale!") == zh


def test_locales_of_the_data_are_served(tmp_path: Path) -> None:
    path = tmp_path / "codes.yaml"
    path.write_text(
        '1:\n  "00603": {zh_CN: 被叫无应答, en_US: No answer., pt_br: Sem resposta.}\n'
        '  "00605": 交换机忙\n'
    )
    data = SimulatorData.from_file(path)
    assert data.locales() == ["en_US", "pt_BR", "zh_CN"]
    with Simulator(data, access_key=SIM_ACCESS_KEY, secret_key=SIM_SECRET_KEY) as sim:
        assert every_code(sim, 1, locale="pt_BR") == {"00603": "Sem resposta.", "00605": "交换机忙"}
        assert every_code(sim, 1, locale="en_US")["00603"] == "No answer."
        sim.data.set_code(1, "00605", {"zh_CN": "忙", "ja_JP": "話し中"})
        assert every_code(sim, 1, locale="ja-jp") == {"00603": "被叫无应答", "00605": "話し中"}
    path.write_text('1: {"00603": {zh_CN: x, "en US!": y}}\n')
    with pytest.raises(SimulatorDataError, match="not a locale"):
        SimulatorData.from_file(path)


def test_faults_can_hit_one_locale_only(simulator: Simulator) -> None:
    simulator.faults.add(Fault(kind="http_status", status=500, times=None, locale="en-US"))
    assert get(simulator, 1, locale="en_US").status_code == 500
    assert get(simulator, 1).status_code == 200
    assert get(simulator, 1, locale="zh_CN").status_code == 200


def test_one_server_in_two_locales_through_the_client(simulator: Simulator) -> None:
    with (
        ISalesClient(isales_config(simulator)) as zh,
        ISalesClient(isales_config(simulator, locale="en_US")) as en,
    ):
        zh_codes = zh.fetch_snapshot(1).codes
        en_codes = en.fetch_snapshot(1).codes
    assert zh_codes.keys() == en_codes.keys()
    assert all(zh_codes[c] != en_codes[c] for c in zh_codes)
    assert {r.locale for r in simulator.stats.recent} == {None, "en_US"}


# -- the command line --------------------------------------------------------------------


@pytest.mark.slow
def test_cli_simulator_serves_keys_from_a_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"{TENANT_A.access_key}: {{secret_key: {TENANT_A.secret_key}, vdn_ids: [1]}}\n")
    env = {**os.environ, "ISALES_ACCESS_KEY": SIM_ACCESS_KEY, "ISALES_SECRET_KEY": SIM_SECRET_KEY}
    command = [sys.executable, "-m", "obs_sync", "simulator", "--port", "0", "--vdns", "3"]
    process = subprocess.Popen(
        [*command, "--keys", str(keys)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("iSales simulator listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        session = c2_session(Simulator(), key=TENANT_A)
        api = f"{url}/rest/isales/v1/openapi/campaigns/{{}}/queryOBSResultCode"
        params = {"pageSize": 50, "pageNum": 1}
        assert session.get(api.format(1), params=params, timeout=10).status_code == 200
        assert session.get(api.format(2), params=params, timeout=10).status_code == 403
        assert c2_session(Simulator()).get(api.format(2), params=params).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_cli_simulator_refuses_a_bad_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("tenant: {secret_key: s, vdn_ids: ['9-1']}\n")
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "simulator", "--port", "0", "--keys", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--keys" in result.stderr and "reversed" in result.stderr
