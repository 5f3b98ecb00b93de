"""Configuration: YAML with ``${VAR}`` / ``${VAR:-default}`` from the environment.

Validated up front.

Every problem is reported as ``dotted.key[index]: what is wrong`` so the operator knows
what to fix. Secrets are :class:`pydantic.SecretStr` and never printed.
"""

from __future__ import annotations

import os
import re
import stat
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

from obs_sync.errors import UsageError, one_line

DEFAULT_CONFIG_PATH = Path("config.yaml")
CONFIG_ENV = "OBS_SYNC_CONFIG"
VDN_MIN, VDN_MAX = 1, 9999

# Fixed limits of the file itself, checked before anything in it is trusted (so they cannot
# be keys of it): a real configuration is a few KiB, a few hundred values, 4 levels deep.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_VALUES = 10_000  # after YAML aliases are expanded: an alias bomb stops here
MAX_CONFIG_DEPTH = 32
MAX_ERRORS_SHOWN = 20


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
            if path == "database.url" and path in optional:
                return ""  # unset: fine for a command that never opens the database
            if path in optional:
                return UNSET_CREDENTIAL
            # A default in the file is fine for a port, not for a secret (or a URL with one).
            secret = path in ("isales.secret_key", "database.url")
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


def parse_vdn_ids(items: Any) -> list[int]:
    """VDN ids written as in ``isales.vdn_ids`` (ints, ``"a-b"`` ranges; on the command line
    also comma-separated), expanded and sorted; ValueError names the bad item."""
    ranges = [
        _vdn_range(part)
        for item in items
        for part in (item.split(",") if isinstance(item, str) else [item])
    ]
    return sorted({v for low, high in ranges for v in range(low, high + 1)})


VdnRange = Annotated[tuple[int, int], BeforeValidator(_vdn_range)]


class _Section(BaseModel):
    # nan/inf are never a sane timeout, interval or fraction (and .inf passes any lower bound).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


# The headers every request carries (the client's own, and those the HTTP library adds):
# only these can be signed. ``locale`` too when isales.locale is set.
SENT_HEADERS = frozenset(
    {"accept", "accept-encoding", "content-length", "content-type", "host", "user-agent"}
)


class ISalesConfig(_Section):
    base_url: str
    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    # No min_length here: pydantic would check it after dropping invalid items and add a
    # misleading "at least 1 item" error next to the real one; _vdn_ids checks instead.
    vdn_ids: tuple[VdnRange, ...]
    page_size: int = Field(50, ge=1, le=50)
    # Bounds a whole attempt: connecting, the headers and the body (isales/wire.py).
    timeout_seconds: float = Field(10, ge=0.1, le=600)
    # The largest response body accepted, counted after decompression: 50 codes with long
    # descriptions fit many times over; a bigger body fails the request (a data error).
    max_response_bytes: int = Field(8 * 1024 * 1024, ge=1024, le=1_000_000_000)
    verify_tls: bool | str = True
    max_concurrency: int = Field(4, ge=1, le=256)
    max_requests_per_second: float = Field(20, ge=0, le=10_000)  # 0: unlimited
    locale: str | None = None
    signing: SigningConfig = SigningConfig()
    # Retry policy for transient failures (connection errors, timeouts, 429, 5xx, non-JSON).
    max_retries: int = Field(5, ge=0, le=20)
    backoff_initial_seconds: float = Field(0.5, ge=0, le=3600)
    backoff_max_seconds: float = Field(30, ge=0, le=3600)
    # Safety cap on pages per VDN, so a misbehaving server cannot loop us forever.
    max_pages: int = Field(2000, ge=1, le=100_000)

    @field_validator("max_requests_per_second")
    @classmethod
    def _rate(cls, value: float) -> float:
        if 0 < value < 0.01:  # one request in more than 100 s: a typo, not a rate limit
            raise ValueError("must be 0 (unlimited) or at least 0.01")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        # Errors quote the URL without any user:password part (a secret).
        shown = repr(re.sub(r"(?<=//)[^/@]*@", "***@", value))
        if _CONTROL.search(value) or not value.isprintable():
            raise ValueError(f"{shown} contains a control character (a stray newline or escape?)")
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

    @model_validator(mode="after")
    def _signable(self) -> ISalesConfig:
        # Checked here, not when the client is built: a run record must not be written first.
        sendable = SENT_HEADERS | ({"locale"} if self.locale else set())
        missing = [h for h in self.signing.signed_headers if h not in sendable]
        if missing:
            raise ValueError(
                f"@signing.signed_headers: {', '.join(missing)} is never sent (sign a subset "
                f"of: {', '.join(sorted(sendable | {'locale'}))}; locale only when "
                "isales.locale is set)"
            )
        return self

    @property
    def vdn_list(self) -> list[int]:
        """The configured VDN ids, ranges expanded, sorted, without duplicates."""
        return sorted({v for low, high in self.vdn_ids for v in range(low, high + 1)})


# database.url's value that asks for obs-sync's own embedded PostgreSQL. An empty URL is
# an error, never a fallback: a forgotten OBS_SYNC_DATABASE_URL must not send the data to
# a private server the BI tool never sees.
EMBEDDED = "embedded"
EXAMPLE_URL = "postgresql+psycopg://user:pass@host:5432/db"
DATABASE_CHOICES = (
    f"set database.url (or OBS_SYNC_DATABASE_URL) to a PostgreSQL URL like {EXAMPLE_URL}, "
    "or to `embedded` for obs-sync's own embedded PostgreSQL"
)


class DatabaseConfig(_Section):
    # May carry a password. Validated even when left out: unset is an error naming the choices.
    url: SecretStr = Field(SecretStr(""), validate_default=True)
    schema_: str = Field("obs_sync", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Bounds on every obs-sync session (0 turns one off), so a held lock or a hung peer
    # cannot block a run forever: see docs/operations.md.
    lock_timeout_seconds: float = Field(30, ge=0, le=86_400)
    statement_timeout_seconds: float = Field(600, ge=0, le=86_400)
    idle_in_transaction_timeout_seconds: float = Field(60, ge=0, le=86_400)
    keepalives_idle_seconds: int = Field(60, ge=1, le=86_400)
    keepalives_interval_seconds: int = Field(10, ge=1, le=3600)
    keepalives_count: int = Field(6, ge=1, le=100)

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )

    @field_validator(
        "lock_timeout_seconds", "statement_timeout_seconds", "idle_in_transaction_timeout_seconds"
    )
    @classmethod
    def _timeout(cls, value: float) -> float:
        if 0 < value < 0.01:  # below PostgreSQL's millisecond: a typo, not a bound
            raise ValueError("must be 0 (no limit) or at least 0.01")
        return value

    @field_validator("schema_")
    @classmethod
    def _not_a_system_schema(cls, value: str) -> str:
        # PostgreSQL reserves pg_* (CREATE SCHEMA refuses it; pg_catalog, pg_toast, pg_temp_N
        # are its own) and information_schema is the standard's: pg_dump skips them all.
        if value.startswith("pg_") or value == "information_schema":
            raise ValueError(
                f"{value!r} is a PostgreSQL system schema (pg_dump skips it); use a schema of "
                "your own, e.g. obs_sync"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        text = value.get_secret_value().strip()
        if _CONTROL.search(text) or not text.isprintable():
            # never echoes the URL: it may hold the password
            raise ValueError("contains a control character (a stray newline or escape?)")
        if not text:
            if not (info.context or {}).get("database", True):
                return SecretStr("")  # a command that never opens the database (fetch)
            raise ValueError(f"is not set: choose the database: {DATABASE_CHOICES}")
        if text.lower() == EMBEDDED:
            return SecretStr(EMBEDDED)
        # "postgres://" is what many tools (Heroku, Django settings, psql docs) write.
        text = re.sub(r"^postgres(ql)?(\+psycopg)?://", "postgresql+psycopg://", text)
        if not text.startswith("postgresql+psycopg://"):
            raise ValueError(
                "must be a PostgreSQL URL like postgresql+psycopg://user:pass@host:5432/db "
                "(or `embedded` for obs-sync's own embedded PostgreSQL)"
            )
        problem = _url_problem(text)
        if problem:
            raise ValueError(problem)  # never echoes the URL: it may hold the password
        return SecretStr(text)

    @property
    def embedded(self) -> bool:
        """True when the configuration chose the embedded PostgreSQL (``url: embedded``)."""
        return self.url.get_secret_value() == EMBEDDED


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


MIN_INTERVAL_MINUTES = 0.01  # 0.6 s: shorter than the scheduler and one run can keep up with


class ScheduleConfig(_Section):
    interval_minutes: float | None = Field(None, ge=MIN_INTERVAL_MINUTES, le=525_600)  # 1 year
    cron: str | None = None
    jitter_seconds: int = Field(0, ge=0, le=86_400)
    run_at_start: bool = True
    misfire_grace_seconds: int = Field(300, ge=1, le=86_400)
    # default: 0.9 x the interval
    run_deadline_seconds: float | None = Field(None, ge=1, le=604_800)
    shutdown_timeout_seconds: float = Field(30, ge=0.1, le=3600)

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


# The longest obsCode any setting may allow: a code is a key of three btree indexes, whose
# entries hold at most ~2,700 bytes (with the VDN id and the version's instants beside it).
MAX_CODE_BYTES_CAP = 2048


class SyncConfig(_Section):
    max_delete_fraction: float = Field(0.5, ge=0, le=1)
    # sync_run_vdn rows older than this are pruned after each run (0 keeps them forever).
    keep_run_records_days: float = Field(90, ge=0, le=36_500)
    # A longer obsCode (UTF-8 bytes) is not stored: only that code, and the VDN deletes nothing.
    max_code_bytes: int = Field(1024, ge=1, le=MAX_CODE_BYTES_CAP)
    # From this many consecutive runs that found the VDN's lock held, the VDN is failed.
    max_lock_skips: int = Field(3, ge=1, le=1000)
    # Fail fast (obs_sync/failfast.py): after this many rejected credentials in a run, or
    # this many VDNs in a row that cannot reach the server, the run asks for no more VDNs.
    max_auth_failures: int = Field(3, ge=1, le=1000)
    max_unreachable_vdns: int = Field(3, ge=1, le=10_000)
    # How often a running run's process says it is alive (sync_run.heartbeat_at).
    heartbeat_seconds: float = Field(5, ge=0.5, le=3600)


class MetricsConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)  # 0 turns the HTTP endpoint off
    # /healthz: a VDN failing longer is unhealthy
    max_failing_minutes: float = Field(180, ge=0.001, le=525_600)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    # A progress line every N seconds during a run (off a terminal; 0 = none).
    progress_interval_seconds: float = Field(30, ge=0, le=86_400)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(_Section):
    isales: ISalesConfig
    # Always validated (see _database_section): its url has no default to fall back to.
    database: DatabaseConfig
    schedule: ScheduleConfig = ScheduleConfig()
    sync: SyncConfig = SyncConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="before")
    @classmethod
    def _database_section(cls, data: Any) -> Any:
        # A missing section must still report database.url as unset, naming both choices.
        if isinstance(data, dict) and "database" not in data:
            return {**data, "database": {}}
        return data


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
        raise ConfigError("the configuration must be a YAML mapping with an 'isales' section")
    _check_shape(data)
    optional = (frozenset() if credentials else CREDENTIALS) | (
        frozenset() if database else {"database.url"}
    )
    expanded = _expand_env(data, os.environ if env is None else env, "", optional)
    try:
        context = {"base_dir": base_dir, "database": database}
        return Config.model_validate(expanded, context=context)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def _check_shape(data: Any) -> None:
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


def _read_config_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_CONFIG_BYTES of UTF-8, else ConfigError.

    Opened non-blocking and checked with fstat first: a FIFO or a device (``/dev/zero``,
    ``/dev/urandom``) would otherwise block or never end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            kind = "a directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "a device or FIFO"
            raise ConfigError(f"is {kind}, not a regular file: give the path of a YAML file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"is larger than {MAX_CONFIG_BYTES // 1024} KiB, the limit for a configuration "
            "file; is this the right file?"
        )
    if b"\x00" in raw:
        raise ConfigError("is not a text file (it contains NUL bytes); give a YAML file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"is not UTF-8 text (invalid byte at offset {error.start}); save it as UTF-8"
        ) from None


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
        text = _read_config_text(resolved)
    except ConfigError as error:
        raise ConfigError(f"{resolved}: {error}") from None
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
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise ConfigError(
            f"{resolved}: nested too deeply to be an obs-sync configuration (invalid YAML)"
        ) from None
    except (ValueError, OverflowError) as error:  # e.g. an integer of over 4300 digits
        raise ConfigError(f"{resolved}: invalid YAML value ({one_line(error)})") from None
    try:
        return parse_config(
            data,
            base_dir=resolved.absolute().parent,
            credentials=credentials,
            database=database,
        )
    except ConfigError as error:
        raise ConfigError(f"{resolved}: {error}") from None
