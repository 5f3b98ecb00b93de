"""The ``database`` section: which PostgreSQL (a URL, or the embedded one) and the bounds."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from obs_sync.config.database_url import url_problem
from obs_sync.config.section import CONTROL, Section

# database.url's value that asks for obs-sync's own embedded PostgreSQL. An empty URL is
# an error, never a fallback: a forgotten OBS_SYNC_DATABASE_URL must not send the data to
# a private server the BI tool never sees.
EMBEDDED = "embedded"
EXAMPLE_URL = "postgresql+psycopg://user:pass@host:5432/db"
DATABASE_CHOICES = (
    f"set database.url (or OBS_SYNC_DATABASE_URL) to a PostgreSQL URL like {EXAMPLE_URL}, "
    "or to `embedded` for obs-sync's own embedded PostgreSQL"
)


class DatabaseConfig(Section):
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
        if CONTROL.search(text) or not text.isprintable():
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
        problem = url_problem(text)
        if problem:
            raise ValueError(problem)  # never echoes the URL: it may hold the password
        return SecretStr(text)

    @property
    def embedded(self) -> bool:
        """True when the configuration chose the embedded PostgreSQL (``url: embedded``)."""
        return self.url.get_secret_value() == EMBEDDED
