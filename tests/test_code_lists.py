"""The code lists' pure core: rows or bad data, the per-table diff, the list's status."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obs_sync.code_list_diff import (
    ListResult,
    Stored,
    diff_rows,
    plan_business_results,
    plan_display_results,
)
from obs_sync.code_lists import (
    BadData,
    BusinessEntry,
    BusinessResultsSnapshot,
    DisplayEntry,
    DisplayResultsSnapshot,
    DisplayRows,
    business_rows,
    display_rows,
    parse_code_lists,
)
from obs_sync.config import ConfigError, parse_config
from obs_sync.daemon.metrics import Metrics

codes = st.text(alphabet="0123456789", min_size=1, max_size=5)
labels = st.text(alphabet="abcXYZ 客户未接听", min_size=1, max_size=8).filter(str.strip)
keys = st.tuples(codes)
values = st.tuples(labels)
tables = st.dictionaries(keys, values, max_size=12)


def stored_from(rows: dict[Any, Any], deleted: set[Any]) -> dict[Any, Stored[Any]]:
    return {k: Stored(v, k in deleted) for k, v in rows.items()}


def apply(stored: dict[Any, Stored[Any]], changes: Any) -> dict[Any, Stored[Any]]:
    out = dict(stored)
    for key, value in changes.inserts:
        out[key] = Stored(value, False)
    for key, _, new in changes.updates:
        out[key] = Stored(new, False)
    for key, value in changes.restores:
        out[key] = Stored(value, False)
    for key in changes.deletes:
        out[key] = Stored(out[key].value, True)
    return out


@settings(max_examples=300)
@given(tables, st.data(), tables)
def test_a_complete_unguarded_diff_makes_the_store_equal_the_fetch(
    stored_rows: dict[Any, Any], data: st.DataObject, fetched: dict[Any, Any]
) -> None:
    deleted = data.draw(st.sets(st.sampled_from(sorted(stored_rows)))) if stored_rows else set()
    stored = stored_from(stored_rows, deleted)
    changes = diff_rows(stored, fetched, complete=True, max_delete_fraction=1.0)
    after = apply(stored, changes)
    assert {k: r.value for k, r in after.items() if not r.deleted} == fetched
    # Nothing stored is ever lost: deleted rows stay, with their last value.
    assert set(after) == set(stored) | set(fetched)
    # And a second diff of the same fetch writes nothing.
    again = diff_rows(after, fetched, complete=True, max_delete_fraction=1.0)
    assert again.is_empty and again.unchanged == len(fetched)


@given(tables, tables)
def test_an_incomplete_fetch_never_deletes(stored_rows: dict[Any, Any], fetched: Any) -> None:
    changes = diff_rows(
        stored_from(stored_rows, set()), fetched, complete=False, max_delete_fraction=1.0
    )
    assert changes.deletes == () and changes.withheld == ()


@given(st.integers(1, 30), st.integers(0, 30), st.sampled_from([0.0, 0.1, 0.29, 0.5, 1.0]))
def test_the_guard_withholds_exactly_when_deletions_exceed_the_fraction(
    present: int, removed: int, fraction: float
) -> None:
    removed = min(removed, present)
    stored = {(f"{i:05d}",): Stored(("x",), False) for i in range(present)}
    fetched = {k: ("x",) for k in list(stored)[removed:]}
    changes = diff_rows(stored, fetched, complete=True, max_delete_fraction=fraction)
    over = removed > Fraction(str(fraction)) * present
    assert changes.guarded == (over and removed > 0)
    assert len(changes.deletes) == (0 if over else removed)
    assert len(changes.withheld) == (removed if over else 0)


def display(
    entries: list[tuple[str, str, str]], obs: dict[str, tuple[str, ...]], *, complete: bool = True
) -> DisplayResultsSnapshot:
    return DisplayResultsSnapshot(
        vdn_id=1,
        entries=tuple(DisplayEntry(*e) for e in entries),
        obs_codes=obs,
        complete=complete,
        incomplete_reason=None if complete else "page 2 was empty after 50 of 60 codes",
    )


@given(st.dictionaries(codes, st.tuples(codes, labels, st.sets(codes, max_size=4)), max_size=8))
def test_display_rows_are_stored_iff_every_failcode_has_one_display_result(
    spec: dict[str, tuple[str, str, set[str]]],
) -> None:
    snapshot = display(
        [(d, c, label) for d, (c, label, _) in spec.items()],
        {d: tuple(sorted(fc)) for d, (_, _, fc) in spec.items()},
    )
    rows = display_rows(snapshot, max_code_bytes=1024)
    owners: dict[str, set[str]] = {}
    for def_id, (_, _, fail_codes) in spec.items():
        for code in fail_codes:
            owners.setdefault(code, set()).add(def_id)
    shared = sorted(code for code, ds in owners.items() if len(ds) > 1)
    if shared:
        assert isinstance(rows, BadData)
        for code in shared:
            assert any(
                f"failCode {code!r} is grouped under two display results" in p
                for p in rows.problems
            )
        assert "nothing of this list was stored" in rows.reason
    else:
        assert isinstance(rows, DisplayRows)
        assert rows.results == {d: (c, label) for d, (c, label, _) in spec.items()}
        assert rows.mappings == {(d, fc) for d, (_, _, fcs) in spec.items() for fc in fcs}


def test_display_bad_data_names_each_problem() -> None:
    snapshot = display(
        [
            ("1", "002", "No answer"),
            ("1", "003", "No answer"),  # duplicate defId, other fields
            ("2", "", "Busy"),  # empty code
            ("3", "004", "  "),  # empty label
            ("4", "x" * 20, "Long"),  # code over max_code_bytes
        ],
        {"1": ("00603",), "2": ("0" * 17,)},
    )
    rows = display_rows(snapshot, max_code_bytes=16)
    assert isinstance(rows, BadData)
    text = "\n".join(rows.problems)
    assert "duplicate defId '1'" in text
    assert "defId '2' has an empty resultCode" in text
    assert "defId '3' (resultCode '004') has an empty label" in text
    assert "defId '4': its resultCode is longer than sync.max_code_bytes = 16" in text
    assert "failCode '00000000000000000' of display result defId '2' is longer" in text


def test_an_exact_repeat_of_a_display_result_is_harmless() -> None:
    snapshot = display([("1", "002", "A"), ("1", "002", "A")], {"1": ("00603", "00603")})
    rows = display_rows(snapshot, max_code_bytes=1024)
    assert isinstance(rows, DisplayRows) and rows.mappings == {("1", "00603")}


def business(entries: list[BusinessEntry], complete: bool = True) -> BusinessResultsSnapshot:
    return BusinessResultsSnapshot(vdn_id=1, entries=tuple(entries), complete=complete)


def test_business_rows_key_children_by_their_parent() -> None:
    rows = business_rows(
        business(
            [
                BusinessEntry("1", "Failed", 1),
                BusinessEntry("1", "Hung up", 2, parent_code="1"),
                BusinessEntry("2", "Busy", 2, parent_code="1"),
                BusinessEntry("2", "Interested", 1),
            ]
        ),
        max_code_bytes=1024,
    )
    assert not isinstance(rows, BadData)
    assert rows.results == {
        ("", "1"): ("Failed", 1),
        ("1", "1"): ("Hung up", 2),
        ("1", "2"): ("Busy", 2),
        ("", "2"): ("Interested", 1),
    }


def test_business_bad_data_names_each_problem() -> None:
    rows = business_rows(
        business(
            [
                BusinessEntry(None, "No code", 1, position="page 1, data[0]"),
                BusinessEntry("7", "Orphan", 2, parent_code=None, position="page 1, data[0]"),
                BusinessEntry("1", "A", 1),
                BusinessEntry("1", "B", 1),  # duplicate code
                BusinessEntry("2", "", 1),  # empty name
                BusinessEntry("3" * 9, "Long", 1),
            ]
        ),
        max_code_bytes=8,
    )
    assert isinstance(rows, BadData)
    text = "\n".join(rows.problems)
    assert "business result 'No code' (page 1, data[0]) has no code" in text
    assert "sub-status 'Orphan' (page 1, data[0]) is a child without a parent code" in text
    assert "duplicate business code '1': named 'A' and 'B'" in text
    assert "(code '2') has an empty name" in text
    assert "its code is longer than sync.max_code_bytes = 8" in text


def test_a_nul_in_a_label_is_bad_data_not_a_database_error() -> None:
    rows = display_rows(display([("1", "002", "a\x00b")], {}), max_code_bytes=64)
    assert isinstance(rows, BadData)
    assert "contains a NUL character" in rows.reason


def test_display_plan_lifecycle_regrouped_removed_restored() -> None:
    snapshot = display(
        [("1", "002", "No answer"), ("2", "007", "Wrong number")],
        {"1": ("00603",), "2": ("00604", "00605")},
    )
    stored_results = {
        ("1",): Stored(("002", "No answer!"), False),  # label changed
        ("2",): Stored(("007", "Wrong number"), True),  # restored
        ("3",): Stored(("009", "Gone"), False),  # removed
    }
    stored_maps = {
        ("1", "00604"): Stored((), False),  # regrouped: 00604 moves from 1 to 2
        ("1", "00603"): Stored((), False),
    }
    plan = plan_display_results(
        snapshot, stored_results, stored_maps, max_code_bytes=1024, max_delete_fraction=1.0
    )
    assert plan.status == "succeeded"
    results, maps = plan.tables["display_result"], plan.tables["display_result_obs_code"]
    assert results.updates == ((("1",), ("002", "No answer!"), ("002", "No answer")),)
    assert results.restores == ((("2",), ("007", "Wrong number")),)
    assert results.deletes == (("3",),)
    assert maps.inserts == ((("2", "00604"), ()), (("2", "00605"), ()))
    assert maps.deletes == (("1", "00604"),)


def test_an_incomplete_display_list_deletes_nothing_and_says_why() -> None:
    snapshot = display([("1", "002", "No answer")], {}, complete=False)
    plan = plan_display_results(
        snapshot,
        {("3",): Stored(("009", "Gone"), False)},
        {("3", "00603"): Stored((), False)},
        max_code_bytes=1024,
        max_delete_fraction=1.0,
    )
    assert plan.status == "incomplete"
    assert plan.count("deletes") == 0
    assert plan.error is not None and "nothing deleted" in plan.error


def test_bad_data_fails_the_list_with_no_changes() -> None:
    plan = plan_business_results(
        business([BusinessEntry(None, "x", 1)]),
        {("", "1"): Stored(("A", 1), False)},
        max_code_bytes=1024,
        max_delete_fraction=1.0,
    )
    assert plan.status == "failed" and plan.tables == {} and plan.is_empty
    assert plan.error is not None and "has no code" in plan.error


def test_guarded_business_results() -> None:
    stored = {("", str(i)): Stored((f"n{i}", 1), False) for i in range(10)}
    plan = plan_business_results(
        business([BusinessEntry("1", "n1", 1)]),
        stored,
        max_code_bytes=1024,
        max_delete_fraction=0.5,
    )
    assert plan.status == "guarded" and plan.count("withheld") == 9
    assert plan.error is not None and "sync.max_delete_fraction" in plan.error


@pytest.mark.parametrize(
    ("given_names", "expected"),
    [
        (["business_results", "obs_result_codes"], ("obs_result_codes", "business_results")),
        (["display_results"], ("display_results",)),
    ],
)
def test_code_lists_setting(given_names: list[str], expected: tuple[str, ...]) -> None:
    assert parse_code_lists(given_names) == expected


def test_an_unknown_code_list_is_named() -> None:
    with pytest.raises(ValueError, match="'display_result' is not a code list; use a subset of"):
        parse_code_lists(["display_result"])


BASE = {"base_url": "http://127.0.0.1:1", "access_key": "a", "secret_key": "b", "vdn_ids": [1]}


def test_code_lists_default_to_obs_result_codes_per_source() -> None:
    config = parse_config({"isales": BASE, "database": {"url": "embedded"}}, env={})
    assert config.sources[0].code_lists == ("obs_result_codes",)
    two = parse_config(
        {
            "sources": [
                {
                    **BASE,
                    "name": "a",
                    "code_lists": ["business_results", "display_results", "obs_result_codes"],
                },
                {**BASE, "name": "b", "vdn_ids": [2]},
            ],
            "database": {"url": "embedded"},
        },
        env={},
    )
    assert [s.code_lists for s in two.sources] == [
        ("obs_result_codes", "display_results", "business_results"),
        ("obs_result_codes",),
    ]


def test_an_unknown_code_list_in_the_config_names_the_key_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "sources": [{**BASE, "name": "a", "code_lists": ["labels"]}],
                "database": {"url": "embedded"},
            },
            env={},
        )
    message = str(caught.value)
    assert "sources[0].code_lists" in message
    assert "'labels' is not a code list; use a subset of obs_result_codes, display_results" in (
        message
    )


def test_metrics_count_each_list_and_its_failing_vdns() -> None:
    metrics = Metrics()
    at = datetime(2026, 12, 7, tzinfo=timezone.utc)
    metrics.on_code_list(ListResult("default", 1, "display_results", "failed", at))
    metrics.on_code_list(ListResult("default", 2, "display_results", "incomplete", at))
    metrics.on_code_list(ListResult("default", 1, "business_results", "succeeded", at))
    text = metrics.render()[0].decode()
    assert (
        'obs_sync_code_list_results_total{code_list="display_results",source="default",'
        'status="failed"} 1.0' in text
    )
    assert 'obs_sync_code_lists_failing{code_list="display_results",source="default"} 2.0' in text
    metrics.on_code_list(ListResult("default", 1, "display_results", "succeeded", at))
    text = metrics.render()[0].decode()
    assert 'obs_sync_code_lists_failing{code_list="display_results",source="default"} 1.0' in text
