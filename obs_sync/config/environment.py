"""``${VAR}`` and ``${VAR:-default}`` in configuration values, from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from obs_sync.config.database import EXAMPLE_URL
from obs_sync.config.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BARE_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")  # the shell's $NAME, not expanded here
_LITERAL_HINT = (
    "a value that must hold it literally goes in an environment variable, referred to as ${NAME}"
)


def _check_references(value: str, env: Mapping[str, str], path: str) -> None:
    """Refuse what is surely a broken reference, naming the key (never the value, which
    may be a secret): a ``${`` that opens no ``${NAME}`` / ``${NAME:-default}``, and a
    shell-style ``$NAME`` of a variable that is set. Both would otherwise pass as literal
    text and fail much later (a secret key: a 401 for every VDN). Errors, not warnings:
    each surely fails every request, and a literal value has a way (the environment)."""
    rest = _ENV_REF.sub("", value)
    if "${" in rest:
        raise ConfigError(
            f"{path}: `${{` opens no reference (a missing `}}`, or not a variable name): "
            f"write ${{NAME}} or ${{NAME:-default}}; {_LITERAL_HINT}"
        )
    for match in _BARE_REF.finditer(rest):
        name = match.group(1)
        if name in env:
            raise ConfigError(
                f"{path}: ${name} is not expanded (only ${{{name}}} is), and {name} is "
                f"set in the environment: write ${{{name}}}; {_LITERAL_HINT}"
            )


# The iSales credentials, which commands that only use the database do not need.
CREDENTIALS = frozenset({"isales.access_key", "isales.secret_key"})
UNSET_CREDENTIAL = "unset-not-needed-by-this-command"


def expand_env(
    value: Any, env: Mapping[str, str], path: str, optional: frozenset[str] = frozenset()
) -> Any:
    if isinstance(value, str):
        _check_references(value, env, path)
        # A source's keys are what the isales section's are (sources[2].secret_key).
        key = re.sub(r"^sources\[\d+\]", "isales", path)

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and (env[name] != "" or default is None):
                return env[name]
            if default is not None:
                return default
            if path == "database.url" and path in optional:
                return ""  # unset: fine for a command that never opens the database
            if key in optional:
                return UNSET_CREDENTIAL
            # A default in the file is fine for a port, not for a secret (or a URL with one).
            secret = key in ("isales.secret_key", "database.url")
            hint = (
                "export it, e.g. from a systemd EnvironmentFile=; keep the value out of the file"
                if secret
                else f"export it, or write ${{{name}:-default}}"
            )
            if path == "database.url":
                hint = (
                    f"export it as a PostgreSQL URL like {EXAMPLE_URL}, or as `embedded` for "
                    "obs-sync's own embedded PostgreSQL, e.g. from a systemd EnvironmentFile="
                )
            raise ConfigError(f"{path}: environment variable {name} is not set ({hint})")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: expand_env(v, env, f"{path}.{k}" if path else str(k), optional)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]", optional) for i, v in enumerate(value)]
    return value
