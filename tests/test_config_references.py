"""Broken environment references and pasted whitespace are configuration errors naming
the key (issue 17, item 6), caught by ``obs-sync check``'s config step before any request:
an unbalanced ``${``, a shell-style ``$NAME`` of a variable that is set, a secret key with
leading or trailing whitespace. Values are never echoed (they may be secrets)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from obs_sync.config import ConfigError, parse_config

SECRET = "s3cr3t-value"
ENV = {"ISALES_ACCESS_KEY": "ak-value", "ISALES_SECRET_KEY": SECRET, "PORT": "18443"}


def config(env: dict[str, str] = ENV, **isales: Any) -> Any:
    section = {
        "base_url": "http://127.0.0.1:18443",
        "access_key": "${ISALES_ACCESS_KEY}",
        "secret_key": "${ISALES_SECRET_KEY}",
        "vdn_ids": [1],
        **isales,
    }
    return parse_config({"isales": section, "database": {"url": "embedded"}}, env=env)


def refused(**isales: Any) -> str:
    with pytest.raises(ConfigError) as error:
        config(**isales)
    message = str(error.value)
    assert SECRET not in message and "ak-value" not in message
    return message


@pytest.mark.parametrize(
    "value",
    ["${ISALES_SECRET_KEY", "pre${ISALES_SECRET_KEY", "${ISALES_SECRET_KEY}${", "${}", "${1X}"],
)
def test_an_unbalanced_or_malformed_reference_names_the_key(value: str) -> None:
    message = refused(secret_key=value)
    assert message.startswith("isales.secret_key: ")
    assert "${NAME}" in message  # the fix: the form that is expanded


def test_a_shell_style_reference_to_a_set_variable_is_an_error() -> None:
    message = refused(access_key="$ISALES_ACCESS_KEY")
    assert message.startswith("isales.access_key: ")
    assert "${ISALES_ACCESS_KEY}" in message  # the fix, with the variable's name
    message = refused(base_url="http://127.0.0.1:$PORT")
    assert message.startswith("isales.base_url: ") and "${PORT}" in message


def test_a_dollar_that_names_no_set_variable_is_kept_literally() -> None:
    """A literal ``$`` (e.g. in a password) is fine when no such variable is set: only a
    reference that is surely meant (its variable exists) is refused."""
    parsed = config(access_key="ak$NOT_SET_ANYWHERE", secret_key="pa$$word")
    assert parsed.isales.access_key == "ak$NOT_SET_ANYWHERE"
    assert parsed.isales.secret_key.get_secret_value() == "pa$$word"


def test_values_from_the_environment_are_not_searched_for_references() -> None:
    """Only the file's text is checked: a secret may hold any characters."""
    env = {**ENV, "ISALES_SECRET_KEY": "x${PORT$PORT"}
    assert config(env).isales.secret_key.get_secret_value() == "x${PORT$PORT"


@pytest.mark.parametrize("secret", [SECRET + " ", " " + SECRET, SECRET + "\u00a0"])
def test_a_secret_with_surrounding_whitespace_is_an_error(secret: str) -> None:
    with pytest.raises(ConfigError) as error:
        config({**ENV, "ISALES_SECRET_KEY": secret})
    message = str(error.value)
    assert message.startswith("isales.secret_key: ") and "whitespace" in message
    assert SECRET not in message


def test_check_reports_each_as_its_config_step(tmp_path: Path) -> None:
    """The real command: FAIL on the config line, exit 2, before any request is made."""
    cases = {
        "secret_key: ${ISALES_SECRET_KEY\n": "isales.secret_key",
        "secret_key: ${ISALES_SECRET_KEY}\n  access_key: $ISALES_ACCESS_KEY\n": (
            "isales.access_key"
        ),
    }
    env = {**ENV, "PATH": "/usr/bin:/bin"}
    for tail, key in cases.items():
        path = tmp_path / "config.yaml"
        lines = "isales:\n  base_url: http://127.0.0.1:1\n  vdn_ids: [1]\n  " + tail
        if "access_key" not in tail:
            lines += "  access_key: ${ISALES_ACCESS_KEY}\n"
        path.write_text(lines + "database: {url: embedded}\n")
        result = subprocess.run(
            [sys.executable, "-m", "obs_sync", "--config", str(path), "check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout.startswith(f"FAIL  config    {path}: {key}: "), result.stdout
        assert SECRET not in result.stdout + result.stderr
    trailing = tmp_path / "config.yaml"
    trailing.write_text(
        "isales: {base_url: 'http://127.0.0.1:1', vdn_ids: [1], access_key: a,\n"
        "         secret_key: '${ISALES_SECRET_KEY} '}\ndatabase: {url: embedded}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(trailing), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "isales.secret_key" in result.stdout and "whitespace" in result.stdout
