"""Loading a configuration: which file, read, parsed as YAML, expanded and validated."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from obs_sync.config.environment import CREDENTIALS, expand_env
from obs_sync.config.errors import ConfigError, format_validation_error
from obs_sync.config.file import read_config_text
from obs_sync.config.model import Config
from obs_sync.config.shape import check_shape
from obs_sync.errors import one_line

DEFAULT_CONFIG_PATH = Path("config.yaml")
CONFIG_ENV = "OBS_SYNC_CONFIG"


def parse_config(
    data: Any,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    credentials: bool = True,
    database: bool = True,
) -> Config:
    """Validate a configuration mapping; relative file paths are taken from ``base_dir``.

    ``credentials=False`` is for commands that only use the database (status, db ...): an
    unset environment variable in the iSales keys is then not an error, so an operator
    can run them without the service's secrets; the keys hold a placeholder.
    ``database=False`` is for commands that never open the database (fetch): an unset
    ``database.url`` is then not an error (it stays empty).
    """
    if not isinstance(data, dict):
        raise ConfigError(
            "the configuration must be a YAML mapping with a 'sources' list or an 'isales' section"
        )
    check_shape(data)
    optional = (frozenset() if credentials else CREDENTIALS) | (
        frozenset() if database else {"database.url"}
    )
    expanded = expand_env(data, os.environ if env is None else env, "", optional)
    try:
        context = {"base_dir": base_dir, "database": database}
        return Config.model_validate(expanded, context=context)
    except ValidationError as error:
        # Not chained: pydantic's error quotes the input, which may be a secret.
        raise ConfigError(format_validation_error(error)) from None


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    if path:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_config(
    path: str | os.PathLike[str] | None = None, *, credentials: bool = True, database: bool = True
) -> Config:
    """Load ``--config PATH``, else ``$OBS_SYNC_CONFIG``, else ``./config.yaml``
    (``credentials``, ``database``: as for :func:`parse_config`)."""
    resolved = resolve_config_path(path)
    try:
        text = read_config_text(resolved)
    except ConfigError as error:
        raise ConfigError(f"{resolved}: {error}") from error
    except FileNotFoundError as error:
        if path:
            hint = "check the --config path"
        elif os.environ.get(CONFIG_ENV):
            hint = f"check {CONFIG_ENV}"
        else:
            hint = (
                f"pass --config PATH, set {CONFIG_ENV}, or copy config.example.yaml to config.yaml"
            )
        raise ConfigError(f"{resolved}: no such configuration file ({hint})") from error
    except OSError as error:
        raise ConfigError(f"{resolved}: cannot read: {error.strerror}") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # Not chained: the parser's error quotes the line, which may hold a secret.
        raise ConfigError(f"{resolved}:{where}: invalid YAML") from None
    except RecursionError as error:  # the YAML parser recurses once per nesting level
        raise ConfigError(
            f"{resolved}: nested too deeply to be an obs-sync configuration (invalid YAML)"
        ) from error
    except (ValueError, OverflowError) as error:  # e.g. an integer of over 4300 digits
        raise ConfigError(f"{resolved}: invalid YAML value ({one_line(error)})") from error
    try:
        return parse_config(
            data,
            base_dir=resolved.absolute().parent,
            credentials=credentials,
            database=database,
        )
    except ConfigError as error:
        raise ConfigError(f"{resolved}: {error}") from error
