"""Configuration: YAML with ``${VAR}`` / ``${VAR:-default}`` from the environment.

Validated up front.

Every problem is reported as ``dotted.key[index]: what is wrong`` so the operator knows
what to fix. Secrets are :class:`pydantic.SecretStr` and never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from obs_sync.errors import UsageError

DEFAULT_CONFIG_PATH = Path("config.yaml")
CONFIG_ENV = "OBS_SYNC_CONFIG"
VDN_MIN, VDN_MAX = 1, 9999


class ConfigError(UsageError):
    """The configuration cannot be used; the message names the key and the fix."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# The iSales credentials, which commands that only use the database do not need.
CREDENTIALS = frozenset({"isales.access_key", "isales.secret_key"})
UNSET_CREDENTIAL = "unset-not-needed-by-this-command"


def _expand_env(
    value: Any, env: Mapping[str, str], path: str, optional: frozenset[str] = frozenset()
) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and (env[name] != "" or default is None):
                return env[name]
            if default is not None:
                return default
            if path in optional:
                return UNSET_CREDENTIAL
            # A default in the file is fine for a port, not for a secret (or a URL with one).
            secret = path in ("isales.secret_key", "database.url")
            hint = (
                "export it, e.g. from a systemd EnvironmentFile=; keep the value out of the file"
                if secret
                else f"export it, or write ${{{name}:-default}}"
            )
            raise ConfigError(f"{path}: environment variable {name} is not set ({hint})")

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _expand_env(v, env, f"{path}.{k}" if path else str(k), optional)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand_env(v, env, f"{path}[{i}]", optional) for i, v in enumerate(value)]
    return value


def _vdn_range(item: Any) -> tuple[int, int]:
    """One ``vdn_ids`` entry: an int or an inclusive ``"a-b"`` range."""
    if isinstance(item, bool):
        raise ValueError(f'{item!r} is not a VDN id (use an integer or a range like "100-120")')
    if isinstance(item, int):
        low = high = item
    elif isinstance(item, str) and re.fullmatch(r"\s*\d+\s*(-\s*\d+\s*)?", item):
        bounds = [int(p) for p in item.split("-")]
        low, high = bounds[0], bounds[-1]
        if low > high:
            raise ValueError(f'range {item!r} is reversed (write "{high}-{low}")')
    else:
        raise ValueError(f'{item!r} is not a VDN id (use an integer or a range like "100-120")')
    for value in (low, high):
        if not VDN_MIN <= value <= VDN_MAX:
            raise ValueError(f"{value} is outside {VDN_MIN}..{VDN_MAX}")
    return low, high


VdnRange = Annotated[tuple[int, int], BeforeValidator(_vdn_range)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SigningConfig(_Section):
    signed_headers: tuple[str, ...] = ("content-type", "host")
    timestamp_precision: Literal["seconds", "milliseconds"] = "seconds"

    @field_validator("signed_headers", mode="before")
    @classmethod
    def _headers_text(cls, value: Any) -> Any:
        # The spec's own form, "content-type;host" (or comma-separated), is a list too.
        if isinstance(value, str):
            return [name for name in re.split(r"[;,]", value) if name.strip()]
        return value

    @field_validator("signed_headers")
    @classmethod
    def _headers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(sorted({v.strip().lower() for v in value}))
        if not names or "" in names:
            raise ValueError("list at least one header name, e.g. [content-type, host]")
        bad = [name for name in names if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an HTTP header name")
        return names


class ISalesConfig(_Section):
    base_url: str
    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    # No min_length here: pydantic would check it after dropping invalid items and add a
    # misleading "at least 1 item" error next to the real one; _vdn_ids checks instead.
    vdn_ids: tuple[VdnRange, ...]
    page_size: int = Field(50, ge=1, le=50)
    timeout_seconds: float = Field(10, gt=0)
    verify_tls: bool | str = True
    max_concurrency: int = Field(4, ge=1, le=256)
    max_requests_per_second: float = Field(20, ge=0)
    locale: str | None = None
    signing: SigningConfig = SigningConfig()
    # Retry policy for transient failures (connection errors, timeouts, 429, 5xx, non-JSON).
    max_retries: int = Field(5, ge=0, le=20)
    backoff_initial_seconds: float = Field(0.5, ge=0)
    backoff_max_seconds: float = Field(30, ge=0)
    # Safety cap on pages per VDN, so a misbehaving server cannot loop us forever.
    max_pages: int = Field(2000, ge=1)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        # Errors quote the URL without any user:password part (a secret).
        shown = repr(re.sub(r"(?<=//)[^/@]*@", "***@", value))
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{shown} is not an http(s) URL (e.g. https://10.0.0.5:18443)")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError:
            raise ValueError(f"{shown} has an invalid port (e.g. https://10.0.0.5:18443)") from None
        if parts.query or parts.fragment or "@" in parts.netloc or " " in value:
            raise ValueError(
                f"{shown} must be only scheme://host:port (no user, query, fragment or spaces)"
            )
        if "/rest/isales" in parts.path:
            raise ValueError(
                f"{shown} includes the API path: give only scheme://host:port "
                "(obs-sync appends /rest/isales/v1/openapi/...)"
            )
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        # Sent as a header: surrounding spaces would reach the server (which then falls
        # back to zh_CN); an empty value (e.g. ${ISALES_LOCALE:-}) means no header.
        value = value.strip() if value is not None else None
        if not value:
            return None
        if not re.fullmatch(r"[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*", value):
            raise ValueError(f"{value!r} is not a locale like en_US or zh_CN")
        return value

    @field_validator("vdn_ids", mode="before")
    @classmethod
    def _vdn_ids_list(cls, value: Any) -> Any:
        # A lone id or range (vdn_ids: 5) means a one-item list.
        return [value] if isinstance(value, (int, str)) else value

    @field_validator("vdn_ids")
    @classmethod
    def _vdn_ids(cls, value: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        if not value:
            raise ValueError('list at least one VDN id, e.g. [1, 2, "100-120"]')
        return value

    @field_validator("access_key")
    @classmethod
    def _access(cls, value: str) -> str:
        # It is sent in the Authorization header: a stray newline (from a file or an
        # environment variable) would fail every request with an unclear error.
        if value != value.strip() or _CONTROL.search(value):
            raise ValueError(
                "has surrounding whitespace or a control character (a trailing newline?)"
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not secret:
            raise ValueError("is empty (set it, e.g. secret_key: ${ISALES_SECRET_KEY})")
        if _CONTROL.search(secret):  # would sign wrongly: every request a 401
            raise ValueError("contains a control character (a trailing newline?)")
        return value

    @field_validator("verify_tls")
    @classmethod
    def _verify(cls, value: bool | str, info: ValidationInfo) -> bool | str:
        if isinstance(value, str):
            if value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            path = Path(value).expanduser()
            # A relative path is relative to the configuration file, not to the working
            # directory (which differs under systemd, cron, ...).
            base = (info.context or {}).get("base_dir")
            if not path.is_absolute() and base is not None:
                path = Path(base) / path
            if not path.is_file():
                raise ValueError(
                    f"CA bundle {value!r} does not exist"
                    + (f" (looked at {str(path)!r})" if str(path) != value else "")
                    + "; use true, false or the path of a PEM file"
                )
            return str(path)
        return value

    @property
    def vdn_list(self) -> list[int]:
        """The configured VDN ids, ranges expanded, sorted, without duplicates."""
        return sorted({v for low, high in self.vdn_ids for v in range(low, high + 1)})


class DatabaseConfig(_Section):
    url: SecretStr = SecretStr("")  # may carry a password
    schema_: str = Field("obs_sync", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        # "postgres://" is what many tools (Heroku, Django settings, psql docs) write.
        text = re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql+psycopg://", text)
        if text and not text.startswith("postgresql+psycopg://"):
            raise ValueError(
                "must be a PostgreSQL URL like postgresql+psycopg://user:pass@host:5432/db "
                "(or empty for the embedded PostgreSQL)"
            )
        problem = _url_problem(text) if text else None
        if problem:
            raise ValueError(problem)  # never echoes the URL: it may hold the password
        return SecretStr(text)


_ENCODINGS = "@ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25"


def _url_problem(url: str) -> str | None:
    """Why readers of the URL (libpq, SQLAlchemy, ours) might split it differently, if so."""
    netloc = urlsplit(url).netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if "@" in userinfo or re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
        return (
            "cannot be parsed into user, password, host and port; percent-encode special "
            f"characters in the user name and password ({_ENCODINGS})"
        )
    if "," in hostport:  # several hosts: each port is checked by libpq itself
        return None
    port = hostport.rpartition("]")[2].rpartition(":")[2] if ":" in hostport else ""
    if port.isdigit() and not 1 <= int(port) <= 65535:
        return f"port {port} is outside 1..65535"
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return (
            "the port after the host is not a number; a / ? or # in the password ends the "
            f"host part early: percent-encode them ({_ENCODINGS})"
        )
    return None


class ScheduleConfig(_Section):
    interval_minutes: float | None = Field(None, gt=0)
    cron: str | None = None
    jitter_seconds: int = Field(0, ge=0)
    run_at_start: bool = True
    misfire_grace_seconds: int = Field(300, ge=1)
    run_deadline_seconds: float | None = Field(None, gt=0)  # default: 0.9 x the interval
    shutdown_timeout_seconds: float = Field(30, gt=0)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        if value and len(value.split()) != 5:
            raise ValueError(
                f'{value!r} must have 5 fields "minute hour day month weekday", e.g. "*/30 * * * *"'
            )
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if self.interval_minutes is not None and self.cron:
            raise ValueError("set interval_minutes or cron, not both")
        if self.interval_minutes is None and not self.cron:
            object.__setattr__(self, "interval_minutes", 60.0)
        return self


class SyncConfig(_Section):
    max_delete_fraction: float = Field(0.5, ge=0, le=1)
    # sync_run_vdn rows older than this are pruned after each run (0 keeps them forever).
    keep_run_records_days: float = Field(90, ge=0)


class MetricsConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)  # 0 turns the HTTP endpoint off
    max_failing_minutes: float = Field(180, gt=0)  # /healthz: a VDN failing longer is unhealthy


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(_Section):
    isales: ISalesConfig
    database: DatabaseConfig = DatabaseConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    sync: SyncConfig = SyncConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()


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
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against config.example.yaml)"
        elif item["type"] == "missing":
            message = "is required"
        elif item["type"] == "string_type":
            message += " (quote the value in YAML)"
        lines.append(f"{_location(tuple(item['loc']))}: {message}")
    return "\n".join(lines)


def parse_config(
    data: Any,
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    credentials: bool = True,
) -> Config:
    """Validate a configuration mapping; relative file paths are taken from ``base_dir``.

    ``credentials=False`` is for commands that only use the database (status, db ...): an
    unset environment variable in the iSales keys is then not an error, so an operator
    can run them without the service's secrets; the keys hold a placeholder.
    """
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping with an 'isales' section")
    optional = frozenset() if credentials else CREDENTIALS
    expanded = _expand_env(data, os.environ if env is None else env, "", optional)
    try:
        return Config.model_validate(expanded, context={"base_dir": base_dir})
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    if path:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None, *, credentials: bool = True) -> Config:
    """Load ``--config PATH``, else ``$OBS_SYNC_CONFIG``, else ``./config.yaml``."""
    resolved = resolve_config_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        if path:
            hint = "check the --config path"
        elif os.environ.get(CONFIG_ENV):
            hint = f"check {CONFIG_ENV}"
        else:
            hint = (
                f"pass --config PATH, set {CONFIG_ENV}, or copy config.example.yaml to config.yaml"
            )
        raise ConfigError(f"{resolved}: no such configuration file ({hint})") from None
    except OSError as error:
        raise ConfigError(f"{resolved}: cannot read: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{resolved}:{where}: invalid YAML") from None
    try:
        return parse_config(data, base_dir=resolved.absolute().parent, credentials=credentials)
    except ConfigError as error:
        raise ConfigError(f"{resolved}: {error}") from None
