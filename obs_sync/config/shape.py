"""The alias-bomb guard: a parsed structure too big or too deep to be a configuration."""

from __future__ import annotations

from typing import Any

from obs_sync.config.errors import ConfigError

# Fixed limits, checked before anything in the file is trusted (so they cannot be keys of
# it): a real configuration is a few hundred values, 4 levels deep.
MAX_CONFIG_VALUES = 10_000  # after YAML aliases are expanded: an alias bomb stops here
MAX_CONFIG_DEPTH = 32


def check_shape(data: Any) -> None:
    """Refuse a structure too big or too deep to be a configuration, before walking it.

    YAML aliases share one object, so ``yaml.safe_load`` of an alias bomb is small; what
    would explode is every later walk (``${VAR}`` expansion, validation). Sizes are counted
    as if expanded, each shared object once (memoized), so this check itself stays cheap.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(value: Any, depth: int) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"nested more than {MAX_CONFIG_DEPTH} levels deep; this is not an obs-sync "
                "configuration (see config.example.yaml)"
            )
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigError("a YAML alias refers to itself (a cycle): remove the alias")
        active.add(key)
        children = value.values() if isinstance(value, dict) else value
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded "
                    "(an alias bomb?); this is not an obs-sync configuration"
                )
        active.discard(key)
        sizes[key] = total
        return total

    size(data, 0)
