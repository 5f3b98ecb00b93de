"""Pure parts of the iSales client: body validation, Retry-After, the rate limiter."""

from __future__ import annotations

import errno
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import urllib3

from obs_sync.isales.diagnosis import clean as _clean
from obs_sync.isales.diagnosis import diagnose as _diagnose
from obs_sync.isales.errors import DataError, VendorError
from obs_sync.isales.page import Page, parse_retry_after
from obs_sync.isales.page import merge as _merge
from obs_sync.isales.page import parse_page as _parse_page
from obs_sync.isales.vendor import FAILURE_CODES, SUCCESS
from obs_sync.ratelimit import RateLimiter


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "resultCode": SUCCESS,
        "returnCode": SUCCESS,
        "resultDesc": "query queryOBSResultCode Success!",
        "returnDesc": "query queryOBSResultCode Success!",
        "totalCount": 2,
        "obsCodes": [
            {"obsCodeDesc": "The switch is busy.", "obsCode": "00605"},
            {"obsCodeDesc": "The call is rejected.", "obsCode": "00604"},
        ],
    }
    data.update(overrides)
    return data


def test_parse_a_good_page_keeps_server_order_and_string_codes() -> None:
    page = _parse_page(3, 1, 50, body())
    assert page == Page(
        vdn_id=3,
        page_num=1,
        page_size=50,
        total_count=2,
        codes=(("00605", "The switch is busy."), ("00604", "The call is rejected.")),
        result_desc="query queryOBSResultCode Success!",
    )


def test_missing_or_null_obs_codes_is_an_empty_page() -> None:
    del_codes = body(totalCount=0)
    del del_codes["obsCodes"]
    assert _parse_page(1, 1, 50, del_codes).codes == ()
    assert _parse_page(1, 1, 50, body(obsCodes=None, totalCount=0)).codes == ()


@pytest.mark.parametrize("code", sorted(FAILURE_CODES))
def test_every_vendor_failure_code_has_its_meaning(code: str) -> None:
    with pytest.raises(VendorError) as info:
        _parse_page(4, 1, 50, body(resultCode=code, returnCode=code, resultDesc="pageSize bad"))
    error = info.value
    assert (error.code, error.meaning, error.desc) == (code, FAILURE_CODES[code], "pageSize bad")
    assert str(error).startswith(
        f"VDN 4: iSales failure code {code} ({FAILURE_CODES[code]}): pageSize bad"
    )
    assert error.vdn_id == 4
    assert not error.retryable


def test_codes_compare_as_exact_strings() -> None:
    # 7 vs 8 digits, and a number instead of a string: none of them is success.
    for code in ("02000000", "200000", 200000, " 0200000"):
        with pytest.raises((VendorError, DataError)):
            _parse_page(1, 1, 50, body(resultCode=code))


def test_return_code_is_checked_too() -> None:
    with pytest.raises(VendorError) as info:
        _parse_page(1, 1, 50, body(returnCode="0200001", returnDesc="bad pageNum"))
    assert info.value.code == "0200001"
    assert info.value.desc == "bad pageNum"


def test_only_one_of_result_code_and_return_code_is_enough() -> None:
    """The spec lists both; a server sending only one of them (absent or null) is understood,
    and a failure in either still wins."""
    for missing in ("resultCode", "returnCode"):
        data = body()
        del data[missing]
        assert len(_parse_page(1, 1, 50, data).codes) == 2
        assert len(_parse_page(1, 1, 50, body(**{missing: None})).codes) == 2
    only_return = body(returnCode="02000007", returnDesc="pageSize 99")
    del only_return["resultCode"]
    with pytest.raises(VendorError) as info:
        _parse_page(1, 1, 50, only_return)
    assert (info.value.code, info.value.desc) == ("02000007", "pageSize 99")


def test_result_code_takes_precedence_over_return_code() -> None:
    both = body(resultCode="02000006", resultDesc="r", returnCode="02000007", returnDesc="x")
    with pytest.raises(VendorError) as info:
        _parse_page(1, 1, 50, both)
    assert (info.value.code, info.value.desc) == ("02000006", "r")


@pytest.mark.parametrize("total", [2, "2", " 2 ", 2.0])
def test_total_count_as_a_number_or_a_digit_string(total: Any) -> None:
    assert _parse_page(1, 1, 50, body(totalCount=total)).total_count == 2


def test_unknown_fields_are_ignored() -> None:
    data = body(serverTime=1700000000000, extra={"x": [1]})
    data["obsCodes"][0]["obsCodeType"] = 3
    assert _parse_page(1, 1, 50, data).codes[0] == ("00605", "The switch is busy.")


def test_unknown_failure_code_is_reported_as_unknown() -> None:
    with pytest.raises(VendorError) as info:
        _parse_page(1, 1, 50, body(resultCode="0299999", resultDesc="internal"))
    assert "unknown failure code" in str(info.value)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "response body is a JSON list, not an object"),
        ("oops", "response body is a JSON str, not an object"),
        (
            body(resultCode=None, returnCode=None),
            "response has neither resultCode nor returnCode",
        ),
        (body(totalCount="two"), "totalCount is 'two', expected a non-negative integer"),
        (body(totalCount="-1"), "totalCount is '-1'"),
        (body(totalCount="2.5"), "totalCount is '2.5'"),
        (body(totalCount=2.5), "totalCount is 2.5"),
        (body(totalCount=True), "totalCount is True"),
        (body(totalCount=-1), "totalCount is -1"),
        (body(totalCount=None), "totalCount is None"),
        (body(obsCodes={"a": 1}), "obsCodes is a dict, expected a list"),
        (body(obsCodes=["00603"]), "obsCodes[0] is not an object"),
        (body(obsCodes=[{"obsCodeDesc": "x"}]), "obsCodes[0].obsCode is missing"),
        (body(obsCodes=[{"obsCode": "  ", "obsCodeDesc": "x"}]), "obsCodes[0].obsCode is '  '"),
        (body(obsCodes=[{"obsCode": 603, "obsCodeDesc": "x"}]), "obsCodes[0].obsCode is 603"),
        (body(obsCodes=[{"obsCode": "00603"}]), "obsCode '00603' has obsCodeDesc None"),
        (
            body(obsCodes=[{"obsCode": "00603", "obsCodeDesc": 5}]),
            "obsCode '00603' has obsCodeDesc 5",
        ),
    ],
)
def test_malformed_bodies_are_data_errors_naming_vdn_and_code(data: Any, message: str) -> None:
    with pytest.raises(DataError) as info:
        _parse_page(9, 2, 50, data)
    assert str(info.value).startswith("VDN 9: page 2: ")
    assert message in str(info.value)
    assert not info.value.retryable


def test_a_bad_item_after_good_ones_is_named_by_its_index() -> None:
    good = [{"obsCode": f"0060{i}", "obsCodeDesc": "x"} for i in range(3)]
    with pytest.raises(DataError, match=r"obsCodes\[3\]\.obsCode is missing"):
        _parse_page(9, 2, 50, body(obsCodes=[*good, {"obsCodeDesc": "y"}], totalCount=4))


def test_string_and_dict_subclasses_read_like_plain_ones() -> None:
    class Text(str):
        pass

    class Item(dict[str, Any]):
        pass

    items = [
        Item(obsCode=Text("00605"), obsCodeDesc=Text("busy")),
        {"obsCode": "00604", "obsCodeDesc": "rejected"},
    ]
    page = _parse_page(3, 1, 50, body(obsCodes=items))
    assert page.codes == (("00605", "busy"), ("00604", "rejected"))


def test_merge_deduplicates_and_rejects_conflicts() -> None:
    codes: dict[str, str] = {}
    _merge(1, codes, _parse_page(1, 1, 50, body()))
    _merge(1, codes, _parse_page(1, 2, 50, body()))  # exact repeat: harmless
    assert list(codes) == ["00605", "00604"]
    clash = body(obsCodes=[{"obsCode": "00604", "obsCodeDesc": "Something else."}])
    with pytest.raises(DataError) as info:
        _merge(1, codes, _parse_page(1, 3, 50, clash))
    assert "VDN 1: obsCode '00604' appears twice with different descriptions" in str(info.value)


# ----------------------------------------------------------------------------- transport reasons

URL = "http://isales.example:8080/rest/isales/v1/openapi/campaigns/1/queryOBSResultCode?pageNum=1"


def test_an_errno_deep_in_the_chain_is_the_reason() -> None:
    unreachable = OSError(errno.ENETUNREACH, "Network is unreachable")
    wrapped = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/rest/x?pageNum=1", unreachable)
    )
    found = _diagnose(wrapped, URL, 5)
    assert found.category == "unreachable" and found.retryable
    assert "isales.base_url" in found.fix


def test_an_unknown_error_is_its_first_line_without_url_secrets_or_paths() -> None:
    class Odd(Exception):
        pass

    text = (
        "via http://user:s3cret@proxy.example:3128/a/b?token=abc and "
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /x?k=v "
        "<urllib3.connection.HTTPConnection object at 0x7f00deadbeef>\nsecond line"
    )
    reason = _diagnose(requests.exceptions.ConnectionError(Odd(text)), URL, 5).reason
    assert reason == "via http://proxy.example:3128 and Max retries exceeded"
    for leak in ("s3cret", "user", "token", "k=v", "0x7f", "second"):
        assert leak not in reason


def test_a_reason_is_one_bounded_line() -> None:
    assert _clean("x" * 500).endswith("...") and len(_clean("x" * 500)) == 160
    assert _clean("\n  first   line \n second") == "first line"


# ----------------------------------------------------------------------------- Retry-After


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(later, now) == pytest.approx(7.0)
    earlier = format_datetime(now - timedelta(seconds=7), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("soon", now) is None


# ----------------------------------------------------------------------------- rate limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)


def test_limiter_paces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    clock.now += 10  # idle time earns no burst credit beyond one request
    assert limiter.acquire() == 0
    assert limiter.acquire() == pytest.approx(0.25)


def test_limiter_unlimited_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    assert all(limiter.acquire() == 0 for _ in range(100))
    assert clock.slept == []


def test_limiter_is_shared_fairly_between_threads() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    threads = [
        threading.Thread(target=lambda: [limiter.acquire() for _ in range(25)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # 100 slots 0.1 s apart: every slot handed out exactly once, none twice.
    assert sorted(round(s, 6) for s in clock.slept) == [round(0.1 * i, 6) for i in range(1, 100)]


# ----------------------------------------------------------------------------- base_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://h:99999", "'https://h:99999' has an invalid port"),
        ("https://h:1?x=1", "must be only scheme://host:port"),
        ("https://h:1/#x", "must be only scheme://host:port"),
        ("https://user:s3cret-pw@h:1", "'https://***@h:1' must be only scheme://host:port"),
        ("https://h:1/rest/isales/v1/openapi", "includes the API path"),
    ],
)
def test_base_url_is_only_scheme_host_port(url: str, message: str) -> None:
    from obs_sync.config import ConfigError, parse_config

    isales = {"base_url": url, "access_key": "ak", "secret_key": "sk", "vdn_ids": [1]}
    with pytest.raises(ConfigError) as info:
        parse_config({"isales": isales}, database=False)
    assert str(info.value).startswith("isales.base_url: ")
    assert message in str(info.value) and "s3cret" not in str(info.value)


def test_base_url_may_carry_a_gateway_prefix() -> None:
    from obs_sync.config import parse_config

    isales = {"base_url": "https://gw:8443/cc/", "access_key": "a", "secret_key": "s", "vdn_ids": 1}
    assert parse_config({"isales": isales}, database=False).isales.base_url == "https://gw:8443/cc"


# ----------------------------------------------------------------------------- signed_headers


@pytest.mark.parametrize(
    "value", ["content-type;host", "Host, Content-Type", ["HOST", "content-type"]]
)
def test_signed_headers_also_in_the_specs_own_form(value: Any) -> None:
    from obs_sync.config import parse_config

    isales = {"base_url": "https://h:1", "access_key": "a", "secret_key": "s", "vdn_ids": 1}
    config = parse_config(
        {"isales": {**isales, "signing": {"signed_headers": value}}}, database=False
    )
    assert config.isales.signing.signed_headers == ("content-type", "host")


def test_signed_headers_must_be_header_names() -> None:
    from obs_sync.config import ConfigError, parse_config

    isales = {"base_url": "https://h:1", "access_key": "a", "secret_key": "s", "vdn_ids": 1}
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"isales": {**isales, "signing": {"signed_headers": ["content type"]}}}, database=False
        )
    assert str(info.value) == (
        "isales.signing.signed_headers: 'content type' is not an HTTP header name"
    )


def test_outcomes_lists_every_outcome_the_client_emits() -> None:
    # The daemon exports every outcome at 0 from the start (alerts on increase()).
    import inspect
    import re

    from obs_sync.isales import client, events

    emitted = set(re.findall(r'_emit\(vdn_id, "([a-z_]+)"', inspect.getsource(client)))
    assert emitted == set(events.OUTCOMES)
