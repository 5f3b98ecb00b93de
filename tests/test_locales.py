"""The pure rules of sources and languages: which source configurations are refused, and
what a run does with a source's recorded and configured locale (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obs_sync.config import ConfigError, parse_config
from obs_sync.locales import Refusal, decide

DB: dict[str, Any] = {"database": {"url": "embedded"}}
LOCALES = st.sampled_from(["zh_CN", "en_US", "pt_BR"])


@given(recorded=st.none() | LOCALES, configured=LOCALES, switch=st.booleans())
def test_a_run_writes_in_the_recorded_language_or_switches_when_asked(
    recorded: str | None, configured: str, switch: bool
) -> None:
    decision = decide(recorded, configured, switch=switch)
    if recorded is None:
        assert decision == "record"  # nothing known yet: the configured one is recorded
    elif recorded == configured:
        assert decision == "keep"  # whatever --switch-locale says: nothing to switch
    else:
        assert decision == ("switch" if switch else "refuse")


def test_the_refusal_names_both_locales_the_key_and_the_command() -> None:
    error = Refusal("north", "zh_CN", "en_US", "sources[2].locale").error
    assert "zh_CN" in error and "en_US" in error and "sources[2].locale" in error
    assert "obs-sync sync --source north --switch-locale" in error
    legacy = Refusal("default", "zh_CN", "en_US", "isales.locale").error
    assert "obs-sync sync --switch-locale" in legacy and "--source" not in legacy


SOURCE = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c", "north-1", "s_2"]),
        "base_url": st.sampled_from(["https://h1:1", "https://h2:1"]),
        "locale": st.sampled_from([None, "zh_CN", "en_US"]),
        "vdn_ids": st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True),
    }
)


@given(st.lists(SOURCE, min_size=1, max_size=4))
def test_sources_are_refused_exactly_for_a_repeated_name_or_server_vdn_and_locale(
    items: list[dict[str, Any]],
) -> None:
    sources = [{**item, "access_key": "ak", "secret_key": "sk"} for item in items]
    names = [item["name"] for item in items]
    seen: set[tuple[str, int, str]] = set()
    twice = False
    for item in items:
        for vdn in item["vdn_ids"]:
            key = (item["base_url"], vdn, item["locale"] or "zh_CN")  # no header: zh_CN
            twice = twice or key in seen
            seen.add(key)
    refused = len(set(names)) < len(names) or twice
    if refused:
        with pytest.raises(ConfigError) as error:
            parse_config({**DB, "sources": sources}, {})
        assert str(error.value).startswith("sources[")
    else:
        config = parse_config({**DB, "sources": sources}, {})
        assert [s.name for s in config.sources] == names
        assert len(config.vdn_keys) == sum(len(item["vdn_ids"]) for item in items)
