"""Configuration: env expansion, VDN ranges, error messages that name the key, secrets hidden."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest

from obs_sync.config import (
    CONFIG_ENV,
    Config,
    ConfigError,
    load_config,
    parse_config,
    resolve_config_path,
)

SECRET = "s3cr3t-Value-42"
DB_PASSWORD = "hunter2-db-pw"
# The database is always chosen explicitly; tests about other keys choose the embedded one.
DB: dict[str, Any] = {"database": {"url": "embedded"}}


def isales(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "base_url": "https://10.0.0.5:18443",
        "access_key": "ak",
        "secret_key": SECRET,
        "vdn_ids": [1],
    }
    section.update(overrides)
    return section


def parse(env: dict[str, str] | None = None, **sections: Any) -> Config:
    data: dict[str, Any] = {**DB, "isales": isales()}
    data.update(sections)
    return parse_config(data, env or {})


def error_of(data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env or {})
    return str(info.value)


# ----------------------------------------------------------------------------- env expansion


def test_env_reference_is_expanded() -> None:
    env = {"SK": "x1", "AK": "key-1"}
    config = parse_config({**DB, "isales": isales(secret_key="${SK}", access_key="${AK}")}, env)
    assert config.isales.secret_key.get_secret_value() == "x1"
    assert config.isales.access_key == "key-1"


def test_missing_env_var_names_the_key_and_the_variable() -> None:
    message = error_of({**DB, "isales": isales(access_key="${ISALES_ACCESS_KEY}")})
    assert message.startswith("isales.access_key: environment variable ISALES_ACCESS_KEY")
    assert "${ISALES_ACCESS_KEY:-default}" in message


def test_env_default_used_when_unset_or_empty() -> None:
    data = {**DB, "isales": isales(locale="${LOC:-en_US}")}
    assert parse_config(data, {}).isales.locale == "en_US"
    assert parse_config(data, {"LOC": ""}).isales.locale == "en_US"
    assert parse_config(data, {"LOC": "zh_CN"}).isales.locale == "zh_CN"


def test_empty_default_and_set_but_empty_without_default() -> None:
    data = {**DB, "isales": isales(locale="${LOC:-}")}
    assert parse_config(data, {}).isales.locale is None
    # Set but empty, no default: the empty value is used as is.
    data = {**DB, "isales": isales(locale="x${EMPTY}y")}
    assert parse_config(data, {"EMPTY": ""}).isales.locale == "xy"


def test_several_references_in_one_value_and_inside_lists() -> None:
    data = {
        **DB,
        "isales": isales(
            base_url="https://${HOST}:${PORT}",
            vdn_ids=["${FIRST}", "${LO}-${HI}"],
        ),
    }
    env = {"HOST": "10.1.2.3", "PORT": "28080", "FIRST": "7", "LO": "20", "HI": "22"}
    config = parse_config(data, env)
    assert config.isales.base_url == "https://10.1.2.3:28080"
    assert config.isales.vdn_list == [7, 20, 21, 22]
    # A list item names its index in the error.
    message = error_of(data, {"HOST": "h", "PORT": "1", "FIRST": "7", "LO": "1"})
    assert message.startswith("isales.vdn_ids[1]: environment variable HI is not set")
    assert "${HI:-default}" in message
    # For a secret, no hint to write a default into the file.
    secret = error_of({**DB, "isales": isales(secret_key="${ISALES_SECRET_KEY}")}, {})
    assert "isales.secret_key: environment variable ISALES_SECRET_KEY is not set" in secret
    assert ":-default" not in secret and "keep the value out of the file" in secret


def test_os_environ_is_the_default_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBS_TEST_SK", "from-environ")
    config = parse_config({**DB, "isales": isales(secret_key="${OBS_TEST_SK}")})
    assert config.isales.secret_key.get_secret_value() == "from-environ"


def test_non_string_values_pass_through_expansion() -> None:
    config = parse(isales=isales(page_size=10, timeout_seconds=2.5, verify_tls=False))
    assert (config.isales.page_size, config.isales.timeout_seconds) == (10, 2.5)
    assert config.isales.verify_tls is False


# ----------------------------------------------------------------------------- VDN ids


@pytest.mark.parametrize(
    ("vdn_ids", "expected"),
    [
        ([1, 2, "100-103"], [1, 2, 100, 101, 102, 103]),
        ([3, "1-3", 2], [1, 2, 3]),  # duplicates and overlap collapse, sorted
        (["5"], [5]),
        (["1 - 2"], [1, 2]),
        (["9999-9999"], [9999]),
        (5, [5]),  # a lone id is a one-item list
        ("7-8", [7, 8]),
    ],
)
def test_vdn_ids_expand(vdn_ids: Any, expected: list[int]) -> None:
    assert parse(isales=isales(vdn_ids=vdn_ids)).isales.vdn_list == expected


@pytest.mark.parametrize(
    ("vdn_ids", "message"),
    [
        ([1, 2, 10000], "isales.vdn_ids[2]: 10000 is outside 1..9999"),
        ([0], "isales.vdn_ids[0]: 0 is outside 1..9999"),
        (["1-10000"], "isales.vdn_ids[0]: 10000 is outside 1..9999"),
        (["5-3"], "isales.vdn_ids[0]: range '5-3' is reversed (write \"3-5\")"),
        ([True], "isales.vdn_ids[0]: True is not a VDN id"),
        (["abc"], "isales.vdn_ids[0]: 'abc' is not a VDN id"),
        ([1.5], "isales.vdn_ids[0]: 1.5 is not a VDN id"),
        ([], "isales.vdn_ids: list at least one VDN id"),
    ],
)
def test_bad_vdn_ids_name_the_item(vdn_ids: Any, message: str) -> None:
    text = error_of({**DB, "isales": isales(vdn_ids=vdn_ids)})
    assert text.startswith(message)
    # Exactly one line: no follow-on noise such as "at least 1 item after validation".
    assert "\n" not in text


# ----------------------------------------------------------------------------- other keys


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"page_size": 51}, "isales.page_size: Input should be less than or equal to 50"),
        ({"page_size": 0}, "isales.page_size: Input should be greater than or equal to 1"),
        ({"base_url": "ftp://x"}, "isales.base_url: 'ftp://x' is not an http(s) URL"),
        ({"verify_tls": "/no/such/ca.pem"}, "isales.verify_tls: CA bundle '/no/such/ca.pem'"),
        ({"bogus": 1}, "isales.bogus: unknown key"),
        ({"secret_key": ""}, "isales.secret_key: is empty"),
        ({"access_key": ""}, "isales.access_key:"),
        ({"signing": {"signed_headers": []}}, "isales.signing.signed_headers: list at least one"),
        (
            {"signing": {"timestamp_precision": "nanos"}},
            "isales.signing.timestamp_precision: Input should be 'seconds' or 'milliseconds'",
        ),
        ({"max_requests_per_second": -1}, "isales.max_requests_per_second:"),
        ({"timeout_seconds": 0}, "isales.timeout_seconds:"),
    ],
)
def test_errors_name_the_key(overrides: dict[str, Any], message: str) -> None:
    assert error_of({**DB, "isales": isales(**overrides)}).startswith(message)


def test_missing_required_keys_each_on_a_line() -> None:
    lines = error_of({**DB, "isales": {"base_url": "https://h"}}).splitlines()
    assert set(lines) == {
        "isales.access_key: is required",
        "isales.secret_key: is required",
        "isales.vdn_ids: is required",
    }


def test_top_level_shape_errors() -> None:
    assert "YAML mapping with a 'sources' list or an 'isales' section" in error_of([1])
    assert error_of({**DB, "isales": None}).startswith("isales:")
    assert error_of({}).startswith("sources: is required")


def test_signing_and_tls_values_are_normalized() -> None:
    config = parse(
        isales=isales(signing={"signed_headers": ["Host", " Content-Type "]}, verify_tls="FALSE")
    )
    assert config.isales.signing.signed_headers == ("content-type", "host")
    assert config.isales.verify_tls is False
    assert parse(isales=isales(verify_tls="true")).isales.verify_tls is True


def test_verify_tls_accepts_an_existing_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse(isales=isales(verify_tls=str(ca))).isales.verify_tls == str(ca)


def test_relative_ca_path_is_taken_from_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = etc / "config.yaml"
    path.write_text(
        "isales: {base_url: 'https://h:1', access_key: a, secret_key: s, vdn_ids: [1], "
        "verify_tls: ca.pem}\ndatabase: {url: embedded}\n"
    )
    monkeypatch.chdir(tmp_path)  # elsewhere, as under systemd's WorkingDirectory
    assert load_config(path).isales.verify_tls == str(etc / "ca.pem")

    path.write_text(path.read_text().replace("ca.pem", "missing.pem"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert f"(looked at '{etc / 'missing.pem'}')" in str(error.value)


def test_database_url_normalized_and_checked() -> None:
    url = f"postgresql://u:{DB_PASSWORD}@h:5432/db"
    config = parse(database={"url": url})
    assert config.database.url.get_secret_value().startswith("postgresql+psycopg://u:")
    assert config.database.schema_ == "obs_sync"
    message = error_of(
        {**DB, "isales": isales(), "database": {"url": f"mysql://u:{DB_PASSWORD}@h/db"}}
    )
    assert message.startswith("database.url: must be a PostgreSQL URL")
    assert DB_PASSWORD not in message
    bad_schema = {"url": "embedded", "schema": "Bad-Name"}
    assert error_of({"isales": isales(), "database": bad_schema}).startswith("database.schema:")


def _names_both_choices(message: str) -> None:
    assert "postgresql+psycopg://" in message and "`embedded`" in message
    assert "OBS_SYNC_DATABASE_URL" in message or "export it" in message


@pytest.mark.parametrize(
    "data",
    [
        {"isales": isales()},  # no database section
        {"isales": isales(), "database": {"schema": "obs_sync"}},  # no url
        {"isales": isales(), "database": {"url": ""}},
        {"isales": isales(), "database": {"url": "  "}},
        {"isales": isales(), "database": {"url": "${OBS_SYNC_DATABASE_URL:-}"}},
    ],
    ids=["no-section", "no-url", "empty", "blank", "empty-default"],
)
def test_an_empty_or_unset_database_url_is_an_error_naming_both_choices(data: Any) -> None:
    message = error_of(data)
    assert message.startswith("database.url: is not set")
    _names_both_choices(message)


def test_an_unset_database_variable_names_both_choices() -> None:
    data = {"isales": isales(), "database": {"url": "${OBS_SYNC_DATABASE_URL}"}}
    message = error_of(data, {})
    assert message.startswith("database.url: environment variable OBS_SYNC_DATABASE_URL")
    _names_both_choices(message)
    # Set but empty: the same error as an empty value.
    _names_both_choices(error_of(data, {"OBS_SYNC_DATABASE_URL": ""}))


@pytest.mark.parametrize("value", ["embedded", " Embedded ", "EMBEDDED"])
def test_embedded_is_chosen_only_explicitly(value: str) -> None:
    config = parse(database={"url": value})
    assert config.database.embedded
    assert config.database.url.get_secret_value() == "embedded"
    assert not parse(database={"url": "postgresql://u@h/db"}).database.embedded


def test_a_command_without_the_database_may_leave_the_url_unset() -> None:
    data = {"isales": isales(), "database": {"url": "${OBS_SYNC_DATABASE_URL}"}}
    config = parse_config(data, {}, database=False)
    assert not config.database.embedded and config.database.url.get_secret_value() == ""
    assert not parse_config({"isales": isales()}, {}, database=False).database.embedded


def test_schedule_rules() -> None:
    assert parse().schedule.interval_minutes == 60
    assert parse(schedule={"cron": "*/30 * * * *"}).schedule.interval_minutes is None
    both = {**DB, "isales": isales(), "schedule": {"interval_minutes": 5, "cron": "* * * * *"}}
    assert "set interval_minutes or cron, not both" in error_of(both)
    assert "schedule.cron: '* *' must have 5 fields" in error_of(
        {**DB, "isales": isales(), "schedule": {"cron": "* *"}}
    )


# ----------------------------------------------------------------------------- secrets


def test_secrets_never_in_repr_str_or_dump() -> None:
    config = parse(database={"url": f"postgresql://u:{DB_PASSWORD}@h/db"})
    for text in (
        repr(config),
        str(config),
        repr(config.isales),
        str(config.isales.secret_key),
        config.model_dump_json(),
        repr(config.model_dump()),
    ):
        assert SECRET not in text
        assert DB_PASSWORD not in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"secret_key": [SECRET]},  # wrong type: pydantic would normally echo the input
        {"secret_key": {"value": SECRET}},
        {"access_key": [SECRET]},
        {"vdn_ids": [SECRET]},  # an error message that does print its value, for contrast
    ],
)
def test_secret_values_not_echoed_by_type_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**DB, "isales": isales(**overrides)}, {})
    rendered = "".join(traceback.format_exception(info.value))
    if "vdn_ids" in overrides:
        assert SECRET in rendered  # proves the check can fail
    else:
        assert SECRET not in rendered


def test_validation_error_chain_is_suppressed() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**DB, "isales": isales(page_size=99)}, {})
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_yaml_error_reports_position_not_content(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f'isales:\n  secret_key: "{SECRET}\n  access_key: [unclosed\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line ")
    assert "invalid YAML" in message
    assert SECRET not in "".join(traceback.format_exception(info.value))


# ----------------------------------------------------------------------------- files


def test_load_config_file_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "isales:\n  base_url: https://h:1/\n  access_key: ak\n  secret_key: ${SK:-zz}\n"
        "  vdn_ids: [1, '3-4']\ndatabase:\n  url: embedded\n"
    )
    config = load_config(path)
    assert config.isales.base_url == "https://h:1"  # trailing slash removed
    assert config.isales.vdn_list == [1, 3, 4]
    path.write_text("isales:\n  base_url: https://h:1\ndatabase: {url: embedded}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: isales.access_key: is required")


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "no such configuration file" in str(info.value)
    assert "--config" in str(info.value)


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, "/etc/obs-sync.yaml")
    assert resolve_config_path("given.yaml") == Path("given.yaml")
    assert resolve_config_path(None) == Path("/etc/obs-sync.yaml")
    monkeypatch.delenv(CONFIG_ENV)
    assert resolve_config_path(None) == Path("config.yaml")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://rv:p@ss:w/rd%!@127.0.0.1:5432/db",  # / ends the host part
        "postgresql://rv:p@ss@127.0.0.1/db",  # two @
        "postgresql://rv:p%ss@127.0.0.1/db",  # a bare %
    ],
)
def test_unencoded_database_password_is_a_clear_error_that_hides_it(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse(database={"url": url})
    message = str(error.value)
    assert message.startswith(
        ("database.url: cannot be parsed", "database.url: the port after the host is not")
    )
    assert "percent-encode" in message
    for piece in ("p@ss", "ss:w", "rd%!", "p%ss", "127.0.0.1"):
        assert piece not in message


def test_encoded_and_socket_database_urls_are_accepted() -> None:
    for url in (
        "postgresql+psycopg://rv:p%40ss%3Aw%2Frd%25%21@127.0.0.1:5432/db",
        "postgresql://postgres:@/obs_sync?host=/tmp/pg",
        "postgresql://u@h1:5432,h2:5433/db",
        "postgresql://u:pw@[::1]:5432/db",
    ):
        assert parse(database={"url": url}).database.url.get_secret_value()


def test_keys_with_a_stray_newline_are_named_without_their_value() -> None:
    access = error_of({**DB, "isales": isales(access_key="ak-123\n")})
    assert access.startswith("isales.access_key: has surrounding whitespace or a control")
    assert "ak-123" not in access
    secret = error_of({**DB, "isales": isales(secret_key="sk-very-secret\n")})
    assert secret.startswith("isales.secret_key: contains a control character")
    assert "sk-very-secret" not in secret


def test_postgres_scheme_is_accepted_and_a_bad_port_is_named() -> None:
    config = parse(database={"url": "postgres://u:pw@h:5432/db"})
    assert config.database.url.get_secret_value() == "postgresql+psycopg://u:pw@h:5432/db"
    message = error_of({**DB, "isales": isales(), "database": {"url": "postgresql://u@h:99999/db"}})
    assert message == "database.url: port 99999 is outside 1..65535"


def test_database_only_commands_do_not_need_the_isales_keys() -> None:
    data = {
        "isales": isales(access_key="${ISALES_ACCESS_KEY}", secret_key="${ISALES_SECRET_KEY}"),
        "database": {"url": "${DB_URL}"},
    }
    env = {"DB_URL": "postgresql://u@h/db"}
    with pytest.raises(ConfigError, match="ISALES_ACCESS_KEY is not set"):
        parse_config(data, env)
    config = parse_config(data, env, credentials=False)
    assert config.database.url.get_secret_value() == "postgresql+psycopg://u@h/db"
    # The database is still required as configured.
    with pytest.raises(ConfigError, match="DB_URL is not set"):
        parse_config(data, {}, credentials=False)
