"""Configuration: YAML with ``${VAR}`` / ``${VAR:-default}`` from the environment, validated
up front (:mod:`.model` and its sections :mod:`.isales`, :mod:`.database`).

Reading the file (:mod:`.file`), the alias-bomb guard (:mod:`.shape`), ``${VAR}`` expansion
(:mod:`.environment`) and the error wording (:mod:`.errors`) each have a module; loading
ties them together (:mod:`.loading`). The names below are the package's public ones.
"""

from obs_sync.config.database import (
    DATABASE_CHOICES,
    EMBEDDED,
    EXAMPLE_URL,
    DatabaseConfig,
)
from obs_sync.config.environment import CREDENTIALS, UNSET_CREDENTIAL
from obs_sync.config.errors import ConfigError, format_validation_error
from obs_sync.config.file import MAX_CONFIG_BYTES
from obs_sync.config.isales import VDN_MAX, VDN_MIN, ISalesConfig, SigningConfig, parse_vdn_ids
from obs_sync.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    load_config,
    parse_config,
    resolve_config_path,
)
from obs_sync.config.model import (
    MAX_CODE_BYTES_CAP,
    MIN_INTERVAL_MINUTES,
    Config,
    LoggingConfig,
    MetricsConfig,
    ScheduleConfig,
    SyncConfig,
)
from obs_sync.config.shape import MAX_CONFIG_DEPTH, MAX_CONFIG_VALUES
from obs_sync.config.sources import Server, SourceConfig, servers

__all__ = [
    "CONFIG_ENV",
    "CREDENTIALS",
    "DATABASE_CHOICES",
    "DEFAULT_CONFIG_PATH",
    "EMBEDDED",
    "EXAMPLE_URL",
    "MAX_CODE_BYTES_CAP",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_VALUES",
    "MIN_INTERVAL_MINUTES",
    "UNSET_CREDENTIAL",
    "VDN_MAX",
    "VDN_MIN",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "ISalesConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ScheduleConfig",
    "Server",
    "SigningConfig",
    "SourceConfig",
    "SyncConfig",
    "format_validation_error",
    "load_config",
    "parse_config",
    "parse_vdn_ids",
    "resolve_config_path",
    "servers",
]
