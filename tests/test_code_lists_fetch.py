"""Fetching display and business results over real HTTP from the bundled simulator."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

import pytest

from obs_sync.code_lists import BadData, DisplayRows, business_rows, display_rows
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_lists import fetch_business_results, fetch_display_results
from obs_sync.isales.errors import AuthenticationError, DataError
from obs_sync.simulator import Simulator
from obs_sync.simulator.code_lists import BusinessResult, CodeListFault, display_results
from tests.fixtures_sim import isales_config


@pytest.fixture
def client(simulator: Simulator) -> Iterator[ISalesClient]:
    with ISalesClient(isales_config(simulator)) as made:
        yield made


@pytest.mark.parametrize("count", [0, 1, 20, 49, 51, 120])
def test_a_vdn_with_n_display_results_costs_a_page_per_50_and_one_detail_each(
    simulator: Simulator, client: ISalesClient, count: int
) -> None:
    simulator.code_lists.set_display(
        1,
        display_results({str(1000 + i): (f"{i:03d}", f"L{i}", [f"{i:05d}"]) for i in range(count)}),
    )
    snapshot = fetch_display_results(client, 1)
    assert snapshot.complete, snapshot.incomplete_reason
    # A VDN with no display results still costs its one page.
    assert snapshot.stats.requests == max(1, math.ceil(count / 50)) + count
    rows = display_rows(snapshot, max_code_bytes=1024)
    assert isinstance(rows, DisplayRows)
    assert len(rows.results) == count and len(rows.mappings) == count


def test_a_full_last_page_costs_one_probe_more(simulator: Simulator, client: ISalesClient) -> None:
    simulator.code_lists.set_display(
        1, display_results({str(1000 + i): (f"{i:03d}", "L", []) for i in range(50)})
    )
    snapshot = fetch_display_results(client, 1)
    assert snapshot.complete and snapshot.stats.requests == 2 + 50


def test_the_generated_lists_in_both_locales(
    simulator: Simulator, make_simulator: Callable[..., Simulator]
) -> None:
    with ISalesClient(isales_config(simulator, locale="en_US")) as english:
        snapshot = fetch_display_results(english, 2)
        business = fetch_business_results(english, 2)
    with ISalesClient(isales_config(simulator)) as chinese:
        chinese_snapshot = fetch_display_results(chinese, 2)
    assert snapshot.complete and len(snapshot.entries) == 20
    assert snapshot.entries[0].display_result == "No answer 1"
    assert chinese_snapshot.entries[0].display_result == "客户未接听1"
    # The failCodes are the VDN's own OBS codes, 6 under each display result.
    obs = set(simulator.data.codes(2))
    assert all(len(c) == 6 and set(c) <= obs for c in snapshot.obs_codes.values())
    rows = business_rows(business, max_code_bytes=1024)
    assert not isinstance(rows, BadData)
    assert len(rows.results) == 10 * (1 + 3)
    assert rows.results[("", "100000")] == ("Call failed 0", 1)
    assert rows.results[("100000", "100001")] == ("Hung up 0", 2)
    assert snapshot.unexpected == () and business.unexpected == ()


def test_a_failing_detail_call_makes_the_list_incomplete_and_keeps_the_rest(
    simulator: Simulator, client: ISalesClient
) -> None:
    def_id = simulator.code_lists.display(1)[3].def_id
    simulator.code_lists.add_fault(
        CodeListFault("detail_status", vdn_id=1, def_id=def_id, status=500, times=None)
    )
    snapshot = fetch_display_results(client, 1)
    assert not snapshot.complete
    assert snapshot.incomplete_reason is not None
    assert f"defId {def_id}: HTTP 500" in snapshot.incomplete_reason
    assert "the OBS codes of 1 of 20 display results could not be read" in (
        snapshot.incomplete_reason
    )
    assert def_id not in snapshot.obs_codes and len(snapshot.obs_codes) == 19
    assert len(snapshot.entries) == 20  # the display result itself is kept


def test_a_transient_detail_failure_is_retried(simulator: Simulator, client: ISalesClient) -> None:
    simulator.code_lists.add_fault(CodeListFault("detail_status", vdn_id=1, status=503, times=2))
    snapshot = fetch_display_results(client, 1)
    assert snapshot.complete
    assert snapshot.stats.retries == 2 and snapshot.stats.requests == 1 + 20 + 2


@pytest.mark.parametrize("kind", ["detail_gone", "detail_empty"])
def test_a_display_result_deleted_between_list_and_detail(
    simulator: Simulator, client: ISalesClient, kind: str
) -> None:
    def_id = simulator.code_lists.display(1)[0].def_id
    simulator.code_lists.add_fault(CodeListFault(kind, vdn_id=1, def_id=def_id))  # type: ignore[arg-type]
    snapshot = fetch_display_results(client, 1)
    assert not snapshot.complete
    reason = snapshot.incomplete_reason or ""
    if kind == "detail_empty":
        assert f"defId {def_id}: gone between the list and its detail" in reason
    else:
        assert f"defId {def_id}: iSales failure code 0200001" in reason
    assert def_id not in snapshot.obs_codes


def test_numbers_as_strings_are_read_and_named(simulator: Simulator, client: ISalesClient) -> None:
    simulator.code_lists.add_fault(CodeListFault("numbers_as_strings", vdn_id=1, times=None))
    snapshot = fetch_display_results(client, 1)
    business = fetch_business_results(client, 1)
    assert snapshot.complete and business.complete
    assert any("totalCount sent as a string" in line for line in snapshot.unexpected)
    assert any("vdnId sent as a string" in line for line in snapshot.unexpected)
    assert any("defLevel sent as a number" in line for line in business.unexpected)
    assert isinstance(display_rows(snapshot, max_code_bytes=1024), DisplayRows)
    assert not isinstance(business_rows(business, max_code_bytes=1024), BadData)


def test_a_business_result_without_a_code_fails_only_that_list(
    simulator: Simulator, client: ISalesClient
) -> None:
    simulator.code_lists.set_business(
        1,
        [
            BusinessResult("1", "Failed", (("11", "Hung up"),)),
            BusinessResult(None, "No code", (("21", "Orphan"),)),
        ],
    )
    business = fetch_business_results(client, 1)
    assert business.complete  # read in full; what cannot be stored is the core's to say
    rows = business_rows(business, max_code_bytes=1024)
    assert isinstance(rows, BadData)
    assert any("business result 'No code'" in p and "has no code" in p for p in rows.problems)
    assert any("sub-status 'Orphan'" in p and "without a parent code" in p for p in rows.problems)
    # The display results of the same VDN are not affected.
    assert fetch_display_results(client, 1).complete


def test_unknown_fields_are_named_and_nothing_is_lost(
    simulator: Simulator, client: ISalesClient
) -> None:
    real = simulator.code_lists._display_page

    def with_extra(vdn_id: int, size: int, num: int, locale: str) -> tuple[int, bytes]:
        status, body = real(vdn_id, size, num, locale)
        return status, body.replace(b'"defId"', b'"sortNo":"3","defId"', 1)

    simulator.code_lists._display_page = with_extra  # type: ignore[method-assign]
    snapshot = fetch_display_results(client, 1)
    assert snapshot.complete and len(snapshot.entries) == 20
    assert any("unknown field 'sortNo' (ignored)" in line for line in snapshot.unexpected)


def test_a_failcode_sent_as_a_number_is_a_data_error(
    simulator: Simulator, client: ISalesClient
) -> None:
    real = simulator.code_lists._detail

    def numeric(vdn_id: int, def_id: str, locale: str) -> tuple[int, bytes]:
        status, body = real(vdn_id, def_id, locale)
        return status, re.sub(rb'"failCode":"0*([0-9]+)"', rb'"failCode":\1', body, count=1)

    simulator.code_lists._detail = numeric  # type: ignore[method-assign]
    with pytest.raises(DataError, match=r"resultMapList\[0\]: failCode is [0-9]+ \(int\)"):
        fetch_display_results(client, 1)


def test_a_rejected_signature_ends_the_fetch(simulator: Simulator) -> None:
    with (
        ISalesClient(isales_config(simulator, secret_key="wrong")) as client,
        pytest.raises(AuthenticationError),
    ):
        fetch_display_results(client, 1)


def test_a_list_page_that_is_not_an_object_fails_the_list(
    simulator: Simulator, client: ISalesClient
) -> None:
    simulator.code_lists._business_page = (  # type: ignore[method-assign]
        lambda vdn_id, size, num, locale: (200, b"[1, 2]")
    )
    with pytest.raises(DataError, match="queryBusinessResults page 1: response body is a JSON"):
        fetch_business_results(client, 1)
