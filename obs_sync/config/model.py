"""The configuration model: its sections, validated up front.

Every problem is reported as ``dotted.key[index]: what is wrong`` so the operator knows
what to fix. Secrets are :class:`pydantic.SecretStr` and never printed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from obs_sync.config.database import DatabaseConfig
from obs_sync.config.errors import ConfigError
from obs_sync.config.isales import ISalesConfig
from obs_sync.config.section import Section
from obs_sync.config.sources import SourceConfig, check_sources, from_isales

MIN_INTERVAL_MINUTES = 0.01  # 0.6 s: shorter than the scheduler and one run can keep up with


class ScheduleConfig(Section):
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


class SyncConfig(Section):
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


class MetricsConfig(Section):
    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)  # 0 turns the HTTP endpoint off
    # /healthz: a VDN failing longer is unhealthy
    max_failing_minutes: float = Field(180, ge=0.001, le=525_600)


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"
    # A progress line every N seconds during a run (off a terminal; 0 = none).
    progress_interval_seconds: float = Field(30, ge=0, le=86_400)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(Section):
    # One of the two: today's single server and key (the source "default"), or the list.
    isales_section: ISalesConfig | None = Field(None, alias="isales")
    sources: tuple[SourceConfig, ...] = ()
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
            data = {**data, "database": {}}
        if isinstance(data, dict):
            if "isales" in data and "sources" in data:
                raise ValueError(
                    "@sources: both isales: and sources: are set: keep one (isales: is the "
                    "one source named default; move it into sources: as a list item with "
                    "name: default to add others)"
                )
            if "isales" not in data and "sources" not in data:
                raise ValueError(
                    "@sources: is required: a sources: list (name, base_url, access_key, "
                    "secret_key, vdn_ids per source), or one isales: section (see "
                    "config.example.yaml)"
                )
            if "isales" in data and data["isales"] is None:
                raise ValueError(
                    "@isales: is empty: give its keys (base_url, access_key, secret_key, "
                    "vdn_ids; see config.example.yaml)"
                )
            if "sources" in data and data["sources"] in (None, [], ()):
                raise ValueError(
                    "@sources: lists no source: add at least one (name, base_url, "
                    "access_key, secret_key, vdn_ids), or use one isales: section"
                )
        return data

    @model_validator(mode="after")
    def _sources(self) -> Config:
        if self.isales_section is not None:
            object.__setattr__(self, "sources", (from_isales(self.isales_section),))
        else:
            try:
                check_sources(self.sources)
            except ValueError as error:
                raise ValueError(str(error).replace("@[", "@sources[", 1)) from None
        return self

    @property
    def legacy(self) -> bool:
        """True when written with the single ``isales:`` section (the source default)."""
        return self.isales_section is not None

    @property
    def isales(self) -> SourceConfig:
        """The only source; a ConfigError when there are several (code that has to know
        the sources uses :attr:`sources`)."""
        if len(self.sources) != 1:
            raise ConfigError(
                f"{len(self.sources)} sources are configured: this needs one (internal: "
                "use config.sources)"
            )
        return self.sources[0]

    def source(self, name: str) -> SourceConfig:
        """The source named ``name``; a ConfigError naming the configured ones otherwise."""
        for source in self.sources:
            if source.name == name:
                return source
        names = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"--source: no source named {name!r} is configured (sources: {names})")

    @property
    def vdn_keys(self) -> list[tuple[str, int]]:
        """Every configured (source, vdn_id), in configured source order, VDNs sorted."""
        return [(s.name, vdn) for s in self.sources for vdn in s.vdn_list]
