"""Why a configuration cannot be used, said as ``dotted.key[index]: what is wrong``."""

from __future__ import annotations

from pydantic import ValidationError

from obs_sync.errors import ConfigurationError

MAX_ERRORS_SHOWN = 20


class ConfigError(ConfigurationError):
    """The configuration cannot be used; the message names the key and the fix."""


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union", "union")):
            continue
        else:
            text += f".{part}" if text else str(part)
    return text


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, ``key: message``; never the offending value of a secret."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        where = _location(tuple(item["loc"]))
        if message.startswith("@"):  # a model check naming the key below its section
            key, _, message = message[1:].partition(": ")
            where = f"{where}.{key}" if where else key
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against config.example.yaml)"
        elif item["type"] == "missing":
            message = "is required"
        elif item["type"] == "string_type":
            message += " (quote the value in YAML)"
        lines.append(f"{where}: {message}")
    if len(lines) > MAX_ERRORS_SHOWN:
        lines[MAX_ERRORS_SHOWN:] = [f"... and {len(lines) - MAX_ERRORS_SHOWN} more problems"]
    return "\n".join(lines)
