"""The pure diff: every rule and edge case by example, then invariants by property.

The reference model below applies ``Changes`` to a plain dict the way the store applies
them to ``result_code`` and ``result_code_history``; the properties check that the model
ends where the upstream says it should, and that the history it builds answers "the
description at time T" for every past step.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obs_sync.diff import Changes, StoredCode, compute_changes, find_unstorable

Stored = dict[str, StoredCode]


def stored(
    present: Mapping[str, str] | None = None, deleted: Mapping[str, str] | None = None
) -> Stored:
    out = {c: StoredCode(c, d, False) for c, d in (present or {}).items()}
    out.update({c: StoredCode(c, d, True) for c, d in (deleted or {}).items()})
    return out


def diff(
    s: Stored, fetched: Mapping[str, str], *, complete: bool = True, fraction: float = 1.0
) -> Changes:
    return compute_changes(s, fetched, complete=complete, max_delete_fraction=fraction)


def apply(s: Mapping[str, StoredCode], ch: Changes) -> Stored:
    """Reference model of the store: apply Changes, checking each one is legal on ``s``."""
    out = dict(s)
    for code, desc in ch.inserts:
        assert code not in out, f"insert of existing code {code!r}"
        out[code] = StoredCode(code, desc, False)
    for code, old, new in ch.updates:
        row = out[code]
        assert not row.deleted and row.obs_code_desc == old and old != new
        out[code] = StoredCode(code, new, False)
    for code, desc in ch.restores:
        assert out[code].deleted, f"restore of present code {code!r}"
        out[code] = StoredCode(code, desc, False)
    for code in ch.deletes:
        row = out[code]
        assert not row.deleted, f"delete of deleted code {code!r}"
        out[code] = StoredCode(code, row.obs_code_desc, True)
    return out


def present(s: Mapping[str, StoredCode]) -> dict[str, str]:
    return {c: r.obs_code_desc for c, r in s.items() if not r.deleted}


EMPTY = Changes((), (), (), (), 0, False, ())


# --- every rule by example -------------------------------------------------------------


def test_new_codes_are_inserted_sorted() -> None:
    ch = diff({}, {"b": "B", "a": "A", "10": "ten", "9": "nine"})
    assert ch.inserts == (("10", "ten"), ("9", "nine"), ("a", "A"), ("b", "B"))
    assert (ch.updates, ch.deletes, ch.restores, ch.unchanged) == ((), (), (), 0)
    assert not ch.is_empty and not ch.guarded


def test_changed_description_is_an_update_with_old_and_new() -> None:
    ch = diff(stored({"a": "old", "b": "same"}), {"a": "new", "b": "same"})
    assert ch.updates == (("a", "old", "new"),)
    assert ch.unchanged == 1
    assert (ch.inserts, ch.deletes, ch.restores) == ((), (), ())


def test_present_code_absent_from_complete_snapshot_is_deleted() -> None:
    ch = diff(stored({"a": "A", "b": "B", "c": "C"}), {"a": "A", "c": "C"}, fraction=0.5)
    assert ch.deletes == ("b",)
    assert ch.unchanged == 2 and not ch.guarded and ch.withheld_deletes == ()


def test_incomplete_snapshot_never_deletes() -> None:
    s = stored({"a": "A", "b": "B", "c": "C"})
    ch = diff(s, {"a": "A2"}, complete=False, fraction=1.0)
    assert ch.deletes == () and ch.withheld_deletes == () and not ch.guarded
    assert ch.updates == (("a", "A", "A2"),)
    # Even an empty incomplete answer deletes nothing and is not "guarded": it is incomplete.
    assert diff(s, {}, complete=False, fraction=0.0) == EMPTY


def test_deleted_code_that_comes_back_is_restored_with_the_fetched_description() -> None:
    s = stored({"a": "A"}, deleted={"x": "old text", "y": "Y"})
    ch = diff(s, {"a": "A", "x": "new text", "y": "Y"})
    assert ch.restores == (("x", "new text"), ("y", "Y"))
    assert ch.updates == () and ch.inserts == () and ch.unchanged == 1


def test_restore_happens_from_an_incomplete_snapshot_too() -> None:
    ch = diff(stored(deleted={"x": "X"}), {"x": "X"}, complete=False)
    assert ch.restores == (("x", "X"),)


def test_deleted_code_still_absent_is_nothing() -> None:
    s = stored({"a": "A"}, deleted={"x": "X"})
    assert diff(s, {"a": "A"}, fraction=0.0) == Changes((), (), (), (), 1, False, ())
    assert diff(s, {"a": "A"}, complete=False) == Changes((), (), (), (), 1, False, ())


def test_no_change_is_empty() -> None:
    s = stored({"a": "A", "b": "B"}, deleted={"z": "Z"})
    ch = diff(s, {"b": "B", "a": "A"}, fraction=0.0)
    assert ch.is_empty and ch.unchanged == 2 and ch == Changes((), (), (), (), 2, False, ())


def test_empty_everything() -> None:
    assert diff({}, {}, fraction=0.0) == EMPTY
    assert EMPTY.is_empty


def test_all_kinds_at_once_sorted() -> None:
    s = stored({"p1": "same", "p2": "old", "p3": "gone", "p0": "gone too"}, deleted={"d1": "D"})
    ch = diff(s, {"n2": "N2", "n1": "N1", "p2": "new", "p1": "same", "d1": "D!"}, fraction=0.5)
    assert ch == Changes(
        inserts=(("n1", "N1"), ("n2", "N2")),
        updates=(("p2", "old", "new"),),
        deletes=("p0", "p3"),
        restores=(("d1", "D!"),),
        unchanged=1,
        guarded=False,
        withheld_deletes=(),
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("café", "cafe\u0301"),  # NFC vs NFD: look alike, differ
        ("text", "text "),  # trailing space kept
        (" text", "text"),
        ("a b", "a\u00a0b"),  # no-break space
        ("Busy", "busy"),
        ("\U0001f469\u200d\U0001f4bb", "\U0001f469\U0001f4bb"),  # ZWJ sequence vs two emoji
        ("line\n", "line\r\n"),
        ("", " "),
        ("x" * 10_000, "x" * 9_999 + "y"),
    ],
)
def test_descriptions_compare_exactly(old: str, new: str) -> None:
    ch = diff(stored({"c": old}), {"c": new})
    assert ch.updates == (("c", old, new),)
    assert diff(stored({"c": new}), {"c": new}).is_empty


def test_codes_compare_exactly() -> None:
    # " 1" and "1" are different codes: one is inserted, the other deleted.
    ch = diff(stored({"1": "one"}), {" 1": "one"})
    assert ch.inserts == ((" 1", "one"),) and ch.deletes == ("1",)


def test_output_does_not_depend_on_input_order() -> None:
    s1 = stored({c: c.upper() for c in "qwertyuiop"}, deleted={"z": "Z", "x": "X"})
    s2 = dict(reversed(list(s1.items())))
    f1 = {"z": "Z", "a": "A", "q": "changed", "w": "W", "m": "M", "x": "x"}
    f2 = dict(reversed(list(f1.items())))
    assert diff(s1, f1) == diff(s2, f2) == diff(s1, f2)


def test_changes_is_immutable() -> None:
    ch = diff({}, {"a": "A"})
    with pytest.raises(AttributeError):
        ch.guarded = True  # type: ignore[misc]


# --- the mass-deletion guard -----------------------------------------------------------


def ten() -> Stored:
    return stored({str(i): f"d{i}" for i in range(10)})


def keep(n: int) -> dict[str, str]:
    """A complete snapshot of ten() that drops the first n codes."""
    return {str(i): f"d{i}" for i in range(n, 10)}


def test_guard_boundary_at_exactly_the_fraction_is_allowed() -> None:
    ch = diff(ten(), keep(5), fraction=0.5)  # 5 of 10 = 0.5, not more than 0.5
    assert not ch.guarded and ch.deletes == tuple(str(i) for i in range(5))


def test_guard_withholds_all_deletes_above_the_fraction() -> None:
    ch = diff(ten(), keep(6), fraction=0.5)  # 6 of 10 > 0.5
    assert ch.guarded and ch.deletes == ()
    assert ch.withheld_deletes == tuple(str(i) for i in range(6))
    assert ch.is_empty  # withheld deletions are not writes


def test_guard_still_applies_inserts_updates_and_restores() -> None:
    s = stored({"a": "A", "b": "B", "c": "C"}, deleted={"r": "R"})
    ch = diff(s, {"a": "A2", "n": "N", "r": "R2"}, fraction=0.5)
    assert ch.guarded and ch.withheld_deletes == ("b", "c") and ch.deletes == ()
    assert ch.updates == (("a", "A", "A2"),)
    assert ch.inserts == (("n", "N"),) and ch.restores == (("r", "R2"),)
    assert not ch.is_empty


def test_guard_denominator_is_present_codes_not_deleted_ones() -> None:
    # 2 present + 8 deleted; dropping 2 present is 100% of present codes.
    s = stored({"a": "A", "b": "B"}, deleted={str(i): "x" for i in range(8)})
    assert diff(s, {}, fraction=0.9).guarded
    # and codes the snapshot inserts do not dilute the fraction of this run
    ch = diff(stored({"a": "A", "b": "B"}), {c: c for c in "cdefghij"}, fraction=0.9)
    assert ch.guarded and ch.withheld_deletes == ("a", "b") and len(ch.inserts) == 8


def test_empty_complete_answer_for_a_vdn_with_codes_is_guarded() -> None:
    ch = diff(ten(), {}, fraction=0.5)
    assert ch.guarded and len(ch.withheld_deletes) == 10 and ch.deletes == ()
    assert ch.is_empty


def test_empty_complete_answer_with_one_code_is_guarded() -> None:
    ch = diff(stored({"a": "A"}), {}, fraction=0.5)
    assert ch.guarded and ch.withheld_deletes == ("a",)


def test_zero_present_codes_is_never_guarded() -> None:
    for fraction in (0.0, 0.5, 1.0):
        assert diff({}, {}, fraction=fraction) == EMPTY
        only_deleted = stored(deleted={"a": "A"})
        assert diff(only_deleted, {}, fraction=fraction) == EMPTY
        ch = diff(only_deleted, {"b": "B"}, fraction=fraction)
        assert ch.inserts == (("b", "B"),) and not ch.guarded


def test_fraction_one_never_guards_even_an_empty_answer() -> None:
    ch = diff(ten(), {}, fraction=1.0)
    assert not ch.guarded and len(ch.deletes) == 10


def test_fraction_zero_guards_any_deletion() -> None:
    big = stored({str(i): "d" for i in range(1000)})
    snap = {str(i): "d" for i in range(1, 1000)}
    ch = diff(big, snap, fraction=0.0)
    assert ch.guarded and ch.withheld_deletes == ("0",) and ch.deletes == ()
    # ... but a run with nothing to delete is not guarded.
    assert not diff(big, {**snap, "0": "d"}, fraction=0.0).guarded


def test_guard_is_not_reported_for_incomplete_snapshots() -> None:
    ch = diff(ten(), {}, complete=False, fraction=0.0)
    assert not ch.guarded and ch.withheld_deletes == () and ch.deletes == ()


@pytest.mark.parametrize(
    ("fraction", "present_n", "delete_n", "guarded"),
    [
        # The fraction is read as the decimal written: 0.29 * 100 is 28.999... in binary
        # floating point, yet deleting exactly 29 of 100 is "not more than 0.29".
        (0.29, 100, 29, False),
        (0.29, 100, 30, True),
        (0.1, 30, 3, False),
        (0.1, 30, 4, True),
        (0.7, 10, 7, False),
        (0.7, 10, 8, True),
        (0.57, 100, 57, False),
        (0.57, 100, 58, True),
        (0.5, 3, 1, False),
        (0.5, 3, 2, True),
        (0.999, 1000, 999, False),
        (0.999, 1000, 1000, True),
        (1e-3, 1000, 1, False),
        (1e-3, 1000, 2, True),
        (1, 4, 4, False),  # an int from YAML
        (0, 4, 1, True),
    ],
)
def test_guard_threshold_is_exact(
    fraction: float, present_n: int, delete_n: int, guarded: bool
) -> None:
    s = stored({f"c{i:04d}": "d" for i in range(present_n)})
    snap = {f"c{i:04d}": "d" for i in range(delete_n, present_n)}
    ch = diff(s, snap, fraction=fraction)
    assert ch.guarded is guarded
    assert len(ch.deletes) + len(ch.withheld_deletes) == delete_n
    assert (len(ch.withheld_deletes) if guarded else len(ch.deletes)) == delete_n


@pytest.mark.parametrize("fraction", [-0.01, 1.01, float("nan"), float("inf"), -float("inf")])
def test_fraction_out_of_range_is_rejected(fraction: float) -> None:
    with pytest.raises(ValueError, match=r"sync\.max_delete_fraction must be between 0 and 1"):
        diff({}, {}, fraction=fraction)


@pytest.mark.parametrize("fraction", ["0.5", None, True])
def test_fraction_of_wrong_type_is_rejected(fraction: object) -> None:
    with pytest.raises(TypeError, match="max_delete_fraction must be a number"):
        diff({}, {}, fraction=fraction)  # type: ignore[arg-type]


# --- find_unstorable -------------------------------------------------------------------


def test_storable_values_report_nothing() -> None:
    fetched = {
        "00605": "The switch is busy.",
        "é": "café \U0001f600 \U0001f469\u200d\U0001f4bb",
        "long": "x" * 100_000,
        "ctl": "tab\tnewline\n\x01\x7f\u2028",
        "": "",
    }
    assert find_unstorable(fetched) == []


def test_nul_in_description_is_reported_with_code_and_position() -> None:
    problems = find_unstorable({"ok": "fine", "b": "bad\x00desc"})
    assert problems == [
        "obsCodeDesc of obsCode 'b' contains a NUL character (U+0000) at position 3"
    ]


def test_nul_in_code_and_non_ascii_description() -> None:
    problems = find_unstorable({"a\x00": "ok", "z": "caf\u00e9\x00"})
    assert problems == [
        "obsCode 'a\\x00' contains a NUL character (U+0000) at position 1",
        "obsCodeDesc of obsCode 'z' contains a NUL character (U+0000) at position 4",
    ]


def test_unpaired_surrogate_is_reported() -> None:
    # json.loads('"\\ud800"') yields a lone surrogate, which has no UTF-8 encoding.
    problems = find_unstorable({"s": "ab\ud800", "\udfff": "x"})
    assert problems == [
        "obsCodeDesc of obsCode 's' contains an unpaired surrogate (U+D800) at position 2, "
        "which is not valid Unicode text",
        "obsCode '\\udfff' contains an unpaired surrogate (U+DFFF) at position 0, "
        "which is not valid Unicode text",
    ]


def test_problems_are_sorted_and_long_codes_shortened() -> None:
    long_code = "k" * 100 + "\x00"
    problems = find_unstorable({"zz": "\x00", long_code: "\x00", "aa": "\x00"})
    assert [p.split("obsCode ")[-1][:4] for p in problems] == ["'aa'", "'kkk", "'kkk", "'zz'"]
    assert "'" + "k" * 40 + "...'" in problems[1]
    assert "position 100" in problems[1] and "obsCodeDesc" in problems[2]


def test_both_code_and_description_of_one_entry_reported_code_first() -> None:
    assert find_unstorable({"\x00": "\x00"}) == [
        "obsCode '\\x00' contains a NUL character (U+0000) at position 0",
        "obsCodeDesc of obsCode '\\x00' contains a NUL character (U+0000) at position 0",
    ]


# --- properties ------------------------------------------------------------------------

# Few codes and few descriptions, so that snapshots keep colliding with stored state.
codes_st = st.text(alphabet="ab1", min_size=1, max_size=2)
LONG = "\U0001f4de" * 3000 + "end"  # long and astral, built once (hypothesis shrinks slowly)
descs_st = st.one_of(
    st.sampled_from(
        ["busy", "Busy", "busy ", "café", "cafe\u0301", "\U0001f600", "\U0001f469\u200d\U0001f4bb"]
    ),
    st.just(LONG),
    st.just(LONG + "!"),
    st.text(max_size=6),
)
fraction_st = st.one_of(
    st.sampled_from([0.0, 0.25, 0.29, 0.5, 1 / 3, 0.75, 1.0, 1]),
    st.floats(min_value=0.0, max_value=1.0),
)
stored_st = st.dictionaries(codes_st, st.tuples(descs_st, st.booleans()), max_size=10).map(
    lambda d: {c: StoredCode(c, desc, dead) for c, (desc, dead) in d.items()}
)
fetched_st = st.dictionaries(codes_st, descs_st, max_size=10)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def guard_expected(n_delete: int, n_present: int, fraction: float) -> bool:
    # Independent of the implementation's Fraction arithmetic: decimal of the written value.
    return n_delete > 0 and Decimal(n_delete) > Decimal(repr(float(fraction))) * n_present


@FAST
@given(stored_st, fetched_st, st.booleans(), fraction_st)
def test_changes_match_a_set_based_oracle(
    s: Stored, fetched: dict[str, str], complete: bool, fraction: float
) -> None:
    ch = compute_changes(s, fetched, complete=complete, max_delete_fraction=fraction)
    pres = present(s)
    gone = {c for c, r in s.items() if r.deleted}
    assert ch.inserts == tuple(sorted((c, fetched[c]) for c in fetched.keys() - s.keys()))
    assert ch.updates == tuple(
        sorted(
            (c, pres[c], fetched[c]) for c in fetched.keys() & pres.keys() if pres[c] != fetched[c]
        )
    )
    assert ch.restores == tuple(sorted((c, fetched[c]) for c in fetched.keys() & gone))
    assert ch.unchanged == sum(1 for c in fetched.keys() & pres.keys() if pres[c] == fetched[c])
    missing = tuple(sorted(pres.keys() - fetched.keys())) if complete else ()
    expect_guard = guard_expected(len(missing), len(pres), fraction)
    assert ch.guarded is expect_guard
    assert ch.deletes == (() if expect_guard else missing)
    assert ch.withheld_deletes == (missing if expect_guard else ())
    assert ch.is_empty is (not (ch.inserts or ch.updates or ch.deletes or ch.restores))


@FAST
@given(stored_st, fetched_st, st.booleans(), fraction_st)
def test_applying_changes_reaches_the_expected_state_and_is_idempotent(
    s: Stored, fetched: dict[str, str], complete: bool, fraction: float
) -> None:
    ch = compute_changes(s, fetched, complete=complete, max_delete_fraction=fraction)
    after = apply(s, ch)  # also asserts every change is legal on s

    # Counts add up.
    n_present = len(present(s))
    assert len(ch.inserts) + len(ch.updates) + len(ch.restores) + ch.unchanged == len(fetched)
    not_fetched_present = n_present - ch.unchanged - len(ch.updates)
    if complete:
        assert len(ch.deletes) + len(ch.withheld_deletes) == not_fetched_present
    else:
        assert ch.deletes == ch.withheld_deletes == () and not ch.guarded
    if ch.guarded:
        assert ch.deletes == () and ch.withheld_deletes

    # Nothing is ever forgotten: every stored code stays (possibly deleted), descriptions of
    # deleted codes are kept.
    assert s.keys() <= after.keys()
    assert after.keys() == s.keys() | fetched.keys()
    for c in ch.deletes:
        assert after[c].obs_code_desc == s[c].obs_code_desc

    # Where the present state ends up.
    if complete and not ch.guarded:
        assert present(after) == fetched
    else:
        assert present(after) == {**present(s), **fetched}

    # Diffing the same snapshot again writes nothing.
    again = compute_changes(after, fetched, complete=complete, max_delete_fraction=fraction)
    assert (again.inserts, again.updates, again.restores) == ((), (), ())
    assert again.unchanged == len(fetched)
    if not ch.guarded:
        assert again.is_empty and not again.guarded
    else:
        # The same codes are still missing; with the fraction taken against the (possibly
        # larger) present set of this second run, they are withheld or deleted.
        assert set(again.deletes) | set(again.withheld_deletes) == set(ch.withheld_deletes)


@settings(FAST, max_examples=100)
@given(stored_st, fetched_st, st.booleans(), fraction_st, st.randoms(use_true_random=False))
def test_result_is_independent_of_mapping_order(
    s: Stored, fetched: dict[str, str], complete: bool, fraction: float, rnd: random.Random
) -> None:
    s_items, f_items = list(s.items()), list(fetched.items())
    rnd.shuffle(s_items)
    rnd.shuffle(f_items)
    a = compute_changes(s, fetched, complete=complete, max_delete_fraction=fraction)
    b = compute_changes(
        dict(s_items), dict(f_items), complete=complete, max_delete_fraction=fraction
    )
    assert a == b


# A history model of result_code_history: versions per code, times are step numbers.


@dataclass
class Version:
    desc: str
    valid_from: int
    valid_to: int | None = None


@dataclass
class History:
    versions: dict[str, list[Version]] = field(default_factory=dict)

    def open(self, code: str, desc: str, t: int) -> None:
        vs = self.versions.setdefault(code, [])
        assert not vs or vs[-1].valid_to is not None, f"second open version of {code!r}"
        vs.append(Version(desc, t))

    def close(self, code: str, t: int) -> None:
        last = self.versions[code][-1]
        assert last.valid_to is None, f"closing a closed version of {code!r}"
        last.valid_to = t

    def apply(self, ch: Changes, t: int) -> None:
        for code, desc in ch.inserts:
            assert code not in self.versions
            self.open(code, desc, t)
        for code, _old, new in ch.updates:
            self.close(code, t)  # closed and opened at the same instant
            self.open(code, new, t)
        for code in ch.deletes:
            self.close(code, t)
        for code, desc in ch.restores:
            self.open(code, desc, t)

    def at(self, t: int) -> dict[str, str]:
        """The description of every code valid at time t (the BI "as of" query)."""
        out = {}
        for code, vs in self.versions.items():
            for v in vs:
                if v.valid_from <= t and (v.valid_to is None or t < v.valid_to):
                    out[code] = v.desc
        return out


step_st = st.tuples(fetched_st, st.booleans())  # (snapshot, complete)


@settings(FAST, max_examples=250)
@given(st.lists(step_st, min_size=1, max_size=12), fraction_st)
def test_random_upstream_histories_against_a_simple_model(
    steps: list[tuple[dict[str, str], bool]], fraction: float
) -> None:
    state: Stored = {}
    history = History()
    model: dict[str, str] = {}  # what the current table should say is present
    seen: list[dict[str, str]] = []  # present state after each step
    for t, (fetched, complete) in enumerate(steps, start=1):
        ch = compute_changes(state, fetched, complete=complete, max_delete_fraction=fraction)
        state = apply(state, ch)
        history.apply(ch, t)

        # Simple model: a complete, unguarded snapshot becomes the truth; otherwise the
        # fetched codes are overlaid and nothing disappears.
        model = dict(fetched) if complete and not ch.guarded else {**model, **fetched}
        assert present(state) == model
        if ch.guarded:
            # The withheld codes are exactly the present ones the snapshot lacked.
            assert list(ch.withheld_deletes) == sorted(present(state).keys() - fetched.keys())
        seen.append(dict(model))

        # The current table and the open versions agree.
        open_versions = {
            c: vs[-1].desc for c, vs in history.versions.items() if vs[-1].valid_to is None
        }
        assert open_versions == present(state)
        assert history.versions.keys() == state.keys()

        # A re-sync of the same answer writes nothing.
        again = compute_changes(state, fetched, complete=complete, max_delete_fraction=fraction)
        assert not (again.inserts or again.updates or again.restores)
        if not ch.guarded:
            assert again.is_empty

    # History invariants: versions never overlap, at most one open version (the last), no
    # empty versions, and the "as of" query reproduces every past state.
    for vs in history.versions.values():
        for prev, nxt in itertools.pairwise(vs):
            assert prev.valid_to is not None and prev.valid_to <= nxt.valid_from
        for v in vs:
            assert v.valid_to is None or v.valid_from < v.valid_to
    for t, expected in enumerate(seen, start=1):
        assert history.at(t) == expected


@settings(FAST, max_examples=100)
@given(fetched_st, st.booleans())
def test_empty_store_inserts_everything(fetched: dict[str, str], complete: bool) -> None:
    ch = compute_changes({}, fetched, complete=complete, max_delete_fraction=0.0)
    assert ch.inserts == tuple(sorted(fetched.items()))
    assert present(apply({}, ch)) == fetched and not ch.guarded


@FAST
@given(
    st.dictionaries(
        st.text(st.one_of(st.characters(), st.sampled_from("\x00\ud800\udfffa")), max_size=5),
        st.text(st.one_of(st.characters(), st.sampled_from("\x00\udbff\udc00a")), max_size=5),
        max_size=8,
    )
)
def test_find_unstorable_flags_exactly_nul_and_surrogates(fetched: dict[str, str]) -> None:
    def bad(v: str) -> bool:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return "\x00" in v

    expected = sum(bad(c) for c in fetched) + sum(bad(d) for d in fetched.values())
    assert len(find_unstorable(fetched)) == expected


def test_surrogate_halves_in_separate_values_do_not_pair_up() -> None:
    # Halves of one emoji split across two descriptions stay two unpaired surrogates.
    problems = find_unstorable({"a": "\ud83d", "b": "\ude00"})
    assert len(problems) == 2 and "U+D83D" in problems[0] and "U+DE00" in problems[1]
