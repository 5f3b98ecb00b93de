"""The bundled iSales simulator over real HTTP on loopback: shape, paging, validation, auth."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from obs_sync.signing import C2Auth, authorization, format_timestamp
from obs_sync.simulator import Simulator, SimulatorData, SimulatorDataError
from obs_sync.simulator.data import server_order_key
from tests.fixtures_sim import (
    CONTENT_TYPE,
    SIM_ACCESS_KEY,
    SIM_SECRET_KEY,
    TlsSimulator,
    c2_session,
    isales_config,
)

SUCCESS = "0200000"


def get(
    sim: Simulator, vdn: int | str, session: requests.Session | None = None, **params: Any
) -> requests.Response:
    session = session or c2_session(sim)
    query = {"pageSize": 50, "pageNum": 1, **params}
    return session.get(sim.api_url(vdn), params=query, timeout=10)


def all_codes(
    sim: Simulator, vdn: int, page_size: int = 50, **headers: str
) -> list[dict[str, Any]]:
    session = c2_session(sim)
    session.headers.update(headers)
    codes: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(sim, vdn, session, pageSize=page_size, pageNum=page).json()
        if not body["obsCodes"]:
            return codes
        codes.extend(body["obsCodes"])
        page += 1


def test_vendor_json_shape_and_content_type(simulator: Simulator) -> None:
    response = get(simulator, 1)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    body = response.json()
    assert set(body) == {
        "resultCode",
        "resultDesc",
        "totalCount",
        "obsCodes",
        "returnCode",
        "returnDesc",
    }
    assert body["resultCode"] == body["returnCode"] == SUCCESS
    assert body["totalCount"] == 120
    assert len(body["obsCodes"]) == 50
    for item in body["obsCodes"]:
        assert set(item) == {"obsCode", "obsCodeDesc"}
        assert isinstance(item["obsCode"], str) and len(item["obsCode"]) == 5
        assert isinstance(item["obsCodeDesc"], str) and item["obsCodeDesc"]


def test_paging_covers_every_code_once_in_unsorted_server_order(simulator: Simulator) -> None:
    fetched = all_codes(simulator, 2, page_size=50)
    codes = [c["obsCode"] for c in fetched]
    assert len(codes) == 120 == len(set(codes))
    assert {c["obsCode"]: c["obsCodeDesc"] for c in fetched} == simulator.data.codes(2)
    assert codes != sorted(codes)  # the vendor's order is arbitrary, not by code
    keys = [server_order_key(2, c) for c in codes]
    assert keys == sorted(keys)  # but stable within a data version
    assert [c["obsCode"] for c in all_codes(simulator, 2, page_size=7)] == codes


def test_last_partial_page_and_out_of_range_page(simulator: Simulator) -> None:
    last = get(simulator, 1, pageNum=3).json()
    assert len(last["obsCodes"]) == 20 and last["totalCount"] == 120
    beyond = get(simulator, 1, pageNum=4).json()
    assert beyond["resultCode"] == SUCCESS
    assert beyond["obsCodes"] == [] and beyond["totalCount"] == 120


def test_vdn_without_data_is_empty(simulator: Simulator) -> None:
    body = get(simulator, 42).json()
    assert body["resultCode"] == SUCCESS
    assert body["totalCount"] == 0 and body["obsCodes"] == []


def test_locale_header_selects_language(simulator: Simulator) -> None:
    zh = {c["obsCode"]: c["obsCodeDesc"] for c in all_codes(simulator, 1)}
    en = {c["obsCode"]: c["obsCodeDesc"] for c in all_codes(simulator, 1, locale="en_US")}
    explicit_zh = {c["obsCode"]: c["obsCodeDesc"] for c in all_codes(simulator, 1, locale="zh_CN")}
    assert zh.keys() == en.keys() and zh == explicit_zh
    assert all(text.isascii() for text in en.values())
    assert not any(text.isascii() for text in zh.values())
    assert en == simulator.data.codes(1, "en_US")


@pytest.mark.parametrize(
    ("vdn", "params", "code"),
    [
        (0, {}, "02000007"),
        (10000, {}, "02000007"),
        ("abc", {}, "02000006"),
        (1, {"pageSize": 0}, "02000007"),
        (1, {"pageSize": 51}, "02000007"),
        (1, {"pageSize": "x"}, "02000006"),
        (1, {"pageSize": "1.5"}, "02000006"),
        (1, {"pageSize": ""}, "02000001"),
        (1, {"pageNum": 0}, "02000007"),
        (1, {"pageNum": -1}, "02000007"),
        (1, {"pageNum": "99999999999999"}, "02000007"),
        (1, {"pageNum": "one"}, "02000006"),
        (1, {"extra": "1"}, "02000011"),
    ],
)
def test_parameter_errors_use_vendor_codes(
    simulator: Simulator, vdn: int | str, params: dict[str, Any], code: str
) -> None:
    response = get(simulator, vdn, **params)
    assert response.status_code == 200
    body = response.json()
    assert body["resultCode"] == body["returnCode"] == code
    assert body["resultDesc"]  # the detail names the parameter
    assert "obsCodes" not in body


def test_missing_parameter_is_empty_code(simulator: Simulator) -> None:
    session = c2_session(simulator)
    for params in ({"pageNum": 1}, {"pageSize": 50}):
        body = session.get(simulator.api_url(1), params=params, timeout=10).json()
        assert body["resultCode"] == "02000001"
        assert next(iter({"pageSize", "pageNum"} - set(params))) in body["resultDesc"]


def test_unknown_path_and_method(simulator: Simulator) -> None:
    session = c2_session(simulator)
    assert session.get(f"{simulator.url}/rest/isales/v1/other", timeout=10).status_code == 404
    response = session.post(simulator.api_url(1), params={"pageSize": 1, "pageNum": 1}, timeout=10)
    assert response.status_code == 405


# -- signatures ---------------------------------------------------------------------------


def raw_request(sim: Simulator, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """Send exactly these bytes (no client library fixing anything up)."""
    lines = [
        f"GET {target} HTTP/1.1",
        *(f"{k}: {v}" for k, v in headers.items()),
        "Connection: close",
    ]
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def signed_headers(
    sim: Simulator,
    path: str,
    query: list[tuple[str, str]],
    *,
    secret: str = SIM_SECRET_KEY,
    access_key: str = SIM_ACCESS_KEY,
    host: str | None = None,
    when: datetime | None = None,
    precision: str = "seconds",
    signed: dict[str, str] | None = None,
) -> dict[str, str]:
    host = host or sim.host_header
    to_sign = signed if signed is not None else {"content-type": CONTENT_TYPE, "host": host}
    timestamp = format_timestamp(when or datetime.now(timezone.utc), precision)  # type: ignore[arg-type]
    auth = authorization(access_key, secret, timestamp, "GET", path, query, to_sign)
    return {"Host": sim.host_header, "Content-Type": CONTENT_TYPE, "Authorization": auth}


PATH = "/rest/isales/v1/openapi/campaigns/1/queryOBSResultCode"
QUERY = [("pageSize", "50"), ("pageNum", "1")]
TARGET = f"{PATH}?pageSize=50&pageNum=1"


def test_good_signature_on_raw_wire(simulator: Simulator) -> None:
    status, body = raw_request(simulator, TARGET, signed_headers(simulator, PATH, QUERY))
    assert status == 200 and json.loads(body)["totalCount"] == 120
    status, _ = raw_request(
        simulator, TARGET, signed_headers(simulator, PATH, QUERY, precision="milliseconds")
    )
    assert status == 200


def test_query_order_and_encoding_are_canonicalized(simulator: Simulator) -> None:
    # Different raw order than signed: the canonical query is sorted, so it still verifies.
    status, _ = raw_request(
        simulator,
        f"{PATH}?pageNum=1&pageSize=50",
        signed_headers(simulator, PATH, QUERY),
    )
    assert status == 200


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "unknown_key", "tampered_query", "wrong_host", "skewed_clock", "malformed"],
)
def test_bad_signatures_get_401(simulator: Simulator, case: str) -> None:
    target = TARGET
    if case == "wrong_secret":
        headers = signed_headers(simulator, PATH, QUERY, secret="nope")
    elif case == "unknown_key":
        headers = signed_headers(simulator, PATH, QUERY, access_key="someone-else")
    elif case == "tampered_query":
        headers = signed_headers(simulator, PATH, QUERY)
        target = f"{PATH}?pageSize=50&pageNum=2"
    elif case == "wrong_host":  # signs a Host other than the one on the wire
        headers = signed_headers(simulator, PATH, QUERY, host="127.0.0.1")
    elif case == "skewed_clock":
        late = datetime.now(timezone.utc) - timedelta(minutes=20)
        headers = signed_headers(simulator, PATH, QUERY, when=late)
    else:
        headers = signed_headers(simulator, PATH, QUERY)
        headers["Authorization"] = "C2 " + headers["Authorization"]
    status, body = raw_request(simulator, target, headers)
    assert status == 401
    assert SIM_SECRET_KEY not in body.decode()
    assert simulator.stats.auth_failures == 1


def test_missing_headers_get_401(simulator: Simulator) -> None:
    headers = signed_headers(simulator, PATH, QUERY)
    del headers["Authorization"]
    assert raw_request(simulator, TARGET, headers)[0] == 401
    # Signed content-type, but the header is not sent.
    headers = signed_headers(simulator, PATH, QUERY)
    del headers["Content-Type"]
    assert raw_request(simulator, TARGET, headers)[0] == 401
    # Valid signature over host only: the server requires content-type to be signed.
    headers = signed_headers(simulator, PATH, QUERY, signed={"host": simulator.host_header})
    status, body = raw_request(simulator, TARGET, headers)
    assert status == 401 and b"content-type" in body


def test_signed_header_requirement_is_configurable(
    make_simulator: Callable[..., Simulator],
) -> None:
    sim = make_simulator(signed_headers=["host"])
    headers = signed_headers(sim, PATH, QUERY, signed={"host": sim.host_header})
    assert raw_request(sim, TARGET, headers)[0] == 200


def test_wrong_content_type_is_415(simulator: Simulator) -> None:
    session = requests.Session()
    session.auth = C2Auth(SIM_ACCESS_KEY, SIM_SECRET_KEY)
    session.headers["Content-Type"] = "text/plain"
    response = session.get(simulator.api_url(1), params={"pageSize": 1, "pageNum": 1}, timeout=10)
    assert response.status_code == 415
    session.headers["Content-Type"] = "application/json;charset=UTF-8"  # no space: accepted
    assert session.get(simulator.api_url(1), params={"pageSize": 1, "pageNum": 1}).ok


def test_keep_alive_reuses_one_connection(simulator: Simulator) -> None:
    session = c2_session(simulator)
    for page in (1, 2, 3):
        assert get(simulator, 1, session, pageNum=page).ok
    assert simulator.stats.max_in_flight == 1
    assert simulator.stats.connections == 1


# -- data ---------------------------------------------------------------------------------


def test_generation_is_deterministic() -> None:
    first = SimulatorData.generate(range(1, 4), 30, seed=7)
    assert first.codes(3) == SimulatorData.generate(range(1, 4), 30, seed=7).codes(3)
    assert first.codes(3) != SimulatorData.generate(range(1, 4), 30, seed=8).codes(3)
    assert first.codes(1) != first.codes(2)
    assert first.vdn_ids() == [1, 2, 3] and first.codes(4) == {}


def test_data_changes_while_running(simulator: Simulator) -> None:
    before = simulator.data.codes(1)
    gone = next(iter(before))
    simulator.data.remove_code(1, gone)
    simulator.data.set_code(1, "99999", "新代码")
    changed = next(c for c in before if c != gone)
    simulator.data.set_code(1, changed, {"zh_CN": "改了", "en_US": "changed"})
    fetched = {c["obsCode"]: c["obsCodeDesc"] for c in all_codes(simulator, 1)}
    assert gone not in fetched and fetched["99999"] == "新代码" and fetched[changed] == "改了"
    assert len(fetched) == 120
    english = {c["obsCode"]: c["obsCodeDesc"] for c in all_codes(simulator, 1, locale="en_US")}
    assert english[changed] == "changed" and english["99999"] == "新代码"  # one string: all locales
    simulator.data.set_codes(3, {})
    assert get(simulator, 3).json()["totalCount"] == 0
    simulator.data.set_codes(77, {"00001": "x"})
    assert get(simulator, 77).json()["obsCodes"] == [{"obsCode": "00001", "obsCodeDesc": "x"}]


def test_data_from_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "codes.yaml"
    yaml_file.write_text(
        '1:\n  "00603": {zh_CN: 被叫无应答, en_US: No answer}\n  "00605": busy\n"2": {}\n',
        encoding="utf-8",
    )
    data = SimulatorData.from_file(yaml_file)
    assert data.codes(1) == {"00603": "被叫无应答", "00605": "busy"}
    assert data.codes(1, "en_US")["00603"] == "No answer" and data.vdn_ids() == [1, 2]
    json_file = tmp_path / "codes.json"
    json_file.write_text(json.dumps({"5": {"001": "a"}}), encoding="utf-8")
    assert SimulatorData.from_file(json_file).codes(5) == {"001": "a"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("1:\n  00603: unquoted\n", encoding="utf-8")
    with pytest.raises(SimulatorDataError, match="quote codes"):
        SimulatorData.from_file(bad)
    bad.write_text("10000: {}\n", encoding="utf-8")
    with pytest.raises(SimulatorDataError, match=r"outside 1\.\.9999"):
        SimulatorData.from_file(bad)


# -- TLS ----------------------------------------------------------------------------------


def test_tls_with_private_ca(tls_simulator: TlsSimulator) -> None:
    sim, ca_bundle = tls_simulator
    assert sim.url.startswith("https://127.0.0.1:")
    session = requests.Session()
    session.auth = C2Auth(SIM_ACCESS_KEY, SIM_SECRET_KEY)
    session.headers["Content-Type"] = CONTENT_TYPE
    # Per request: requests lets REQUESTS_CA_BUNDLE in the environment override session.verify.
    body = session.get(
        sim.api_url(1), params={"pageSize": 50, "pageNum": 1}, timeout=10, verify=ca_bundle
    ).json()
    assert body["totalCount"] == 120
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sim.api_url(1), params={"pageSize": 50, "pageNum": 1}, timeout=10)
    assert isales_config(sim, verify_tls=ca_bundle).verify_tls == ca_bundle
