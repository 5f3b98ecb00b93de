"""Logging setup and the redaction of secrets from everything logged or shown.

Logging: one line per record on stderr, readable text by default or one JSON object per line
(``logging.format: json``); both carry the run id and VDN from :mod:`obs_sync.logcontext`.
Every formatted line (message, extras and traceback) passes through a redactor that masks the
configured secrets, a last line of defence behind code that never logs them. Control
characters (a server's ESC sequences, \r) are escaped in everything written
(:func:`obs_sync.text.escape_controls`): here for logs, through :func:`redactor_for` for run
records and command output.

The daemon's metrics and its /metrics + /healthz endpoint are in :mod:`obs_sync.daemon.metrics`.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import unquote, urlsplit

from obs_sync.logcontext import ContextFilter
from obs_sync.text import escape_controls, json_text

if TYPE_CHECKING:
    from obs_sync.config import Config, LoggingConfig

log = logging.getLogger(__name__)

REDACTED = "***"

# A dict passed as ``extra={FIELDS: {...}}``: its keys become top-level keys of a JSON log
# line (a run's or a VDN's result: status, counts, ...); text lines leave them out (their
# message already says it in words).
FIELDS = "fields"

# LogRecord attributes that are not "extras" passed by the caller.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "run_id", "vdn_id", "taskName", FIELDS}
)


def config_secrets(config: Config) -> list[str]:
    """The secret values in ``config`` that must never appear in output."""
    secrets = [source.secret_key.get_secret_value() for source in config.sources]
    url = config.database.url.get_secret_value()
    if url:
        password = urlsplit(url).password
        if password:
            # As written in the URL and as decoded (a driver error could show either).
            secrets += [password, unquote(password)]
    return [s for s in secrets if s]


# Secrets shorter than this are masked only where they stand alone (not inside a longer
# word): masking every "ab" of a weak password "ab" would garble every line ("datab***se").
WHOLE_TOKEN_BELOW = 6


class Redactor:
    """Masks the given secrets in text (see :data:`WHOLE_TOKEN_BELOW` for short ones);
    with ``escape``, also escapes control characters (for one-line text that is shown)."""

    def __init__(self, secrets: Iterable[str] = (), *, escape: bool = False) -> None:
        self.escape = escape
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._short = {
            secret: re.compile(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])")
            for secret in self.secrets
            if len(secret) < WHOLE_TOKEN_BELOW
        }

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                short = self._short.get(secret)
                if short is None:
                    text = text.replace(secret, REDACTED)
                else:
                    text = short.sub(REDACTED, text)
        return escape_controls(text) if self.escape else text


def redactor_for(config: Config) -> Redactor:
    """For text that leaves the process other than by logging: run records, status, CLI
    (secrets masked, control characters escaped)."""
    return Redactor(config_secrets(config), escape=True)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123Z INFO run=12 vdn=7 message key=value``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"{record.levelname:<7}"]
        run_id = getattr(record, "run_id", None)
        vdn_id = getattr(record, "vdn_id", None)
        if run_id is not None:
            parts.append(f"run={run_id}")
        if vdn_id is not None:
            parts.append(f"vdn={vdn_id}")
        parts.append(escape_controls(record.getMessage()))
        parts.extend(f"{k}={escape_controls(str(v))}" for k, v in _extras(record).items())
        line = " ".join(parts)
        trace = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        if trace:  # its lines kept, each escaped
            line += "\n" + "\n".join(escape_controls(part) for part in trace.splitlines())
        return self.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, run_id, vdn_id, extras, exc."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_controls(record.getMessage()),
            "run_id": getattr(record, "run_id", None),
            "vdn_id": getattr(record, "vdn_id", None),
        }
        for key, value in _extras(record).items():
            data.setdefault(key, escape_controls(value) if isinstance(value, str) else value)
        for key, value in (getattr(record, FIELDS, None) or {}).items():
            data.setdefault(key, escape_controls(value) if isinstance(value, str) else value)
        if record.exc_info:
            trace = self.formatException(record.exc_info).splitlines()
            data["exc"] = "\n".join(escape_controls(line) for line in trace)
        # Redact the serialised line: covers extras and tracebacks too. A secret containing
        # characters that JSON escapes is also masked in its escaped form.
        line = json_text(data, default=str)
        escaped = [json_text(s)[1:-1] for s in self.redact.secrets]
        return Redactor([*self.redact.secrets, *escaped])(line)


def setup_logging(
    config: LoggingConfig, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Route every log record to ``stream`` (stderr) in the configured format.

    Replaces handlers installed by an earlier call, so it can be called once per command.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    secret_list = list(secrets)
    handler.setFormatter(
        JsonFormatter(secret_list) if config.format == "json" else TextFormatter(secret_list)
    )
    handler.addFilter(ContextFilter(handler))
    handler.set_name("obs-sync")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "obs-sync"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
    # Libraries chatter at INFO/DEBUG (connection pools, scheduler internals); keep them at
    # WARNING unless the operator asked for DEBUG.
    noisy = logging.DEBUG if config.level == "DEBUG" else logging.WARNING
    for name in ("urllib3", "apscheduler", "sqlalchemy", "alembic"):
        logging.getLogger(name).setLevel(noisy)
    return handler


def setup_logging_for(config: Config, stream: TextIO | None = None) -> logging.Handler:
    """:func:`setup_logging` with the config's own secrets masked."""
    return setup_logging(config.logging, secrets=config_secrets(config), stream=stream)
