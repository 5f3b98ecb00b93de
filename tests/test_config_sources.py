"""The sources: list: names, duplicates, the isales: form as the source default, servers,
secrets per source (each a configuration error naming the key and the fix)."""

from __future__ import annotations

from typing import Any

import pytest

from obs_sync.config import ConfigError, parse_config, servers
from obs_sync.observability import config_secrets

DB: dict[str, Any] = {"database": {"url": "embedded"}}


def source(name: str, **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": name,
        "base_url": "https://10.0.0.5:18443",
        "access_key": f"ak-{name}",
        "secret_key": f"secret-of-{name}-123",
        "vdn_ids": [1, 2],
    }
    item.update(overrides)
    return item


def error_of(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return str(info.value)


def test_isales_is_the_one_source_default() -> None:
    isales = {k: v for k, v in source("x").items() if k != "name"}
    config = parse_config({**DB, "isales": isales}, {})
    assert [s.name for s in config.sources] == ["default"]
    assert config.legacy and config.isales is config.sources[0]
    assert config.isales.vdn_list == [1, 2] and config.vdn_keys == [("default", 1), ("default", 2)]


def test_sources_list() -> None:
    config = parse_config(
        {
            **DB,
            "sources": [
                source("north"),
                source("north-en", locale="en_US"),
                source("south", base_url="https://10.8.0.9:18443", vdn_ids=["1-3"]),
            ],
        },
        {},
    )
    assert [s.name for s in config.sources] == ["north", "north-en", "south"]
    assert not config.legacy
    assert config.source("south").vdn_list == [1, 2, 3]
    assert config.sources[0].effective_locale == "zh_CN"
    assert config.sources[1].effective_locale == "en_US"
    assert config.vdn_keys[:3] == [("north", 1), ("north", 2), ("north-en", 1)]
    with pytest.raises(ConfigError, match="needs one"):
        config.isales  # noqa: B018 - several sources: ambiguous
    with pytest.raises(ConfigError) as error:
        config.source("west")
    assert "--source" in str(error.value) and "north, north-en, south" in str(error.value)


def test_sources_on_one_server_share_its_limits() -> None:
    config = parse_config(
        {
            **DB,
            "sources": [
                source("a", max_concurrency=8, max_requests_per_second=0),
                source("b", vdn_ids=[3], max_concurrency=2, max_requests_per_second=5),
                source("c", base_url="https://h2:1", max_requests_per_second=0),
            ],
        },
        {},
    )
    first, second = servers(config.sources)
    assert [s.name for s in first.sources] == ["a", "b"]
    assert first.max_concurrency == 2 and first.max_requests_per_second == 5
    assert second.max_requests_per_second == 0  # unlimited


@pytest.mark.parametrize(
    ("data", "key", "fix"),
    [
        ({"sources": [source("a"), source("a", vdn_ids=[3])]}, "sources[1].name", "own name"),
        ({"sources": [source("Bad Name")]}, "sources[0].name", "a-z, 0-9"),
        ({"sources": [source("x" * 33)]}, "sources[0].name", "1 to 32"),
        ({"sources": [source("")]}, "sources[0].name", "1 to 32"),
        ({"sources": [source("a", vdn_ids=[])]}, "sources[0].vdn_ids", "list at least one"),
        ({"sources": []}, "sources", "at least one"),
        ({"sources": [source("a"), source("b")]}, "sources[1].vdn_ids", "in one of them"),
        (
            {"sources": [source("a")], "isales": {k: v for k, v in source("a").items()}},
            "sources",
            "keep one",
        ),
        ({}, "sources", "isales"),
    ],
)
def test_bad_sources_name_the_key_and_the_fix(data: dict[str, Any], key: str, fix: str) -> None:
    message = error_of({**DB, **data})
    assert message.startswith(f"{key}:"), message
    assert fix in message


def test_same_vdn_on_one_server_in_two_locales_or_on_two_servers_is_fine() -> None:
    parse_config(
        {**DB, "sources": [source("a"), source("b", locale="en_US")]}, {}
    )  # one server, two languages
    parse_config(
        {**DB, "sources": [source("a"), source("b", base_url="https://h2:1")]}, {}
    )  # two servers: VDN ids are per server


def test_a_source_key_problem_names_the_source_item() -> None:
    message = error_of({**DB, "sources": [source("a"), source("b", base_url="ftp://x")]})
    assert message.startswith("sources[1].base_url:")
    message = error_of({**DB, "sources": [source("a", secret_key="${NOPE}")]})
    assert message.startswith("sources[0].secret_key:") and "keep the value out" in message


def test_database_only_commands_do_not_need_any_sources_keys() -> None:
    config = parse_config(
        {**DB, "sources": [source("a", secret_key="${A_SK}", access_key="${A_AK}")]},
        {},
        credentials=False,
    )
    assert config.sources[0].name == "a"


def test_every_sources_secret_is_hidden() -> None:
    config = parse_config({**DB, "sources": [source("a"), source("b", vdn_ids=[9])]}, {})
    secrets = ["secret-of-a-123", "secret-of-b-123"]
    assert sorted(config_secrets(config)) == secrets
    shown = repr(config) + str(config) + repr(config.sources) + str(config.model_dump())
    for secret in secrets:
        assert secret not in shown
    # Errors about a source never quote its secret either.
    message = error_of({**DB, "sources": [source("a", secret_key=["secret-of-a-123"])]})
    assert "secret-of-a-123" not in message and message.startswith("sources[0].secret_key")
    from obs_sync.observability import redactor_for

    redact = redactor_for(config)
    assert redact("got secret-of-b-123 back") == "got *** back"
