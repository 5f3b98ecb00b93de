"""The paging walk alone: drift, restart, probes, caps and incomplete snapshots, no HTTP.

Each case is a small fake server: a function from (page_num, page_size) to a Page.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from obs_sync.isales.errors import DataError, VendorError
from obs_sync.isales.page import Page
from obs_sync.isales.paging import Pager

VDN = 7


def codes(n: int, prefix: str = "c") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:03d}", f"desc {i}") for i in range(n)]


def server(
    rows: list[tuple[str, str]],
    *,
    total: Callable[[int], int] | None = None,
    cap: int | None = None,
) -> tuple[Callable[[int, int], Page], list[tuple[int, int]]]:
    """Pages ``rows`` by the asked size (or ``cap``, a server's own limit); ``total(call)``
    overrides totalCount on the n-th call. Returns the fetch function and the calls made."""
    calls: list[tuple[int, int]] = []

    def fetch(page_num: int, page_size: int) -> Page:
        calls.append((page_num, page_size))
        size = min(page_size, cap) if cap else page_size
        chunk = rows[(page_num - 1) * size : page_num * size]
        count = total(len(calls)) if total else len(rows)
        return Page(VDN, page_num, page_size, count, tuple(chunk))

    return fetch, calls


def page(fetch: Callable[[int, int], Page], *, size: int = 2, max_pages: int = 100) -> Pager:
    return Pager(fetch, VDN, page_size=size, max_pages=max_pages)


def test_reads_every_page_until_the_count_is_reached() -> None:
    fetch, calls = server(codes(5))
    pager = page(fetch)
    paged = pager.run()
    assert paged.incomplete_reason is None and paged.total == 5
    assert list(paged.codes) == [c for c, _ in codes(5)]
    assert calls == [(1, 2), (2, 2), (3, 2)]  # the short last page needs no probe
    assert (pager.pages, pager.restarts) == (3, 0)


def test_a_full_last_page_is_followed_by_one_probe_past_the_end() -> None:
    fetch, calls = server(codes(4))
    paged = page(fetch).run()
    assert paged.incomplete_reason is None
    assert calls == [(1, 2), (2, 2), (3, 2)]


def test_a_probe_the_server_refuses_says_nothing_lies_there() -> None:
    rows = codes(4)

    def fetch(page_num: int, page_size: int) -> Page:
        if page_num > 2:
            raise VendorError("02000007", "pageNum out of range", vdn_id=VDN)
        return Page(VDN, page_num, page_size, 4, tuple(rows[(page_num - 1) * 2 : page_num * 2]))

    assert page(fetch).run().incomplete_reason is None


def test_codes_past_the_total_make_the_snapshot_incomplete() -> None:
    # totalCount understated by a whole page: the probe finds more codes.
    fetch, _ = server(codes(6), total=lambda _: 4)
    paged = page(fetch).run()
    assert paged.incomplete_reason is not None and "past totalCount 4" in paged.incomplete_reason


def test_a_total_that_changes_once_restarts_the_walk() -> None:
    rows = codes(5)
    fetch, calls = server(rows, total=lambda call: 6 if call == 1 else 5)
    pager = page(fetch)
    paged = pager.run()
    assert paged.incomplete_reason is None and pager.restarts == 1
    assert calls[:2] == [(1, 2), (2, 2)] and calls[2] == (1, 2)  # stopped at the drift
    assert len(paged.codes) == 5


def test_a_total_that_changes_again_after_the_restart_is_incomplete() -> None:
    fetch, _ = server(codes(5), total=lambda call: 5 + call)
    pager = page(fetch)
    paged = pager.run()
    assert pager.restarts == 1
    assert paged.incomplete_reason is not None
    assert "again after a restart" in paged.incomplete_reason


def test_max_pages_bounds_the_walk_and_says_which_key_to_raise() -> None:
    fetch, calls = server(codes(10))
    paged = page(fetch, max_pages=3).run()
    assert len(calls) == 3
    assert paged.incomplete_reason is not None and "isales.max_pages" in paged.incomplete_reason


def test_an_empty_page_before_the_total_is_incomplete() -> None:
    fetch, _ = server(codes(3), total=lambda _: 8)
    paged = page(fetch).run()
    assert paged.incomplete_reason == "page 3 was empty after 3 of 8 codes"


def test_a_server_paging_by_a_smaller_size_is_followed() -> None:
    fetch, calls = server(codes(7), cap=3)
    paged = page(fetch, size=5).run()
    assert paged.incomplete_reason is None and len(paged.codes) == 7
    assert calls == [(1, 5), (2, 3), (3, 3)]


def test_repeated_codes_count_once_and_leave_the_count_short() -> None:
    rows = codes(3)
    fetch, _ = server([*rows, rows[0]])  # 4 rows, 3 distinct, totalCount 4
    paged = page(fetch).run()
    assert paged.incomplete_reason == "fetched 3 distinct codes but totalCount is 4"


def test_a_code_with_two_descriptions_is_a_data_error_and_pages_are_counted() -> None:
    fetch, _ = server([("a", "one"), ("b", "two"), ("a", "other")])
    pager = page(fetch)
    with pytest.raises(DataError, match="appears twice"):
        pager.run()
    assert pager.pages == 2  # what the failed fetch cost is still known
