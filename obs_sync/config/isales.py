"""The ``isales`` section: the server, the credentials, the VDNs, signing and the limits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from obs_sync.code_lists import (
    CODE_LISTS,
    DEFAULT_CODE_LISTS,
    OBS_RESULT_CODES,
    CodeListName,
    parse_code_lists,
)
from obs_sync.config.section import CONTROL, Section
from obs_sync.headers import SENT_HEADERS, unsent_headers

VDN_MIN, VDN_MAX = 1, 9999


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


class SigningConfig(Section):
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


class ISalesConfig(Section):
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
    # Which code lists to sync (obs_sync/code_lists.py): OBS result codes (today's), the
    # tenant's display results with their OBS codes, business results with sub-statuses.
    code_lists: tuple[CodeListName, ...] = DEFAULT_CODE_LISTS
    # The first snapshot of each list of each VDN as valid since ever (-infinity), so calls
    # made before the first sync are labelled too (docs/semantics.md, "The initial load").
    first_sync_as_baseline: bool = False

    @field_validator("code_lists", mode="before")
    @classmethod
    def _code_lists(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"list code lists, e.g. [{', '.join(CODE_LISTS)}]")
        lists = parse_code_lists([str(v) for v in value])
        if OBS_RESULT_CODES not in lists:
            # The VDN's record (sync_run_vdn) and the run's status follow its OBS codes.
            raise ValueError(
                f"include {OBS_RESULT_CODES}: the other lists are synced beside it, e.g. "
                f"[{', '.join(CODE_LISTS)}]"
            )
        return lists

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
        if CONTROL.search(value) or not value.isprintable():
            raise ValueError(f"{shown} contains a control character (a stray newline or escape?)")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{shown} is not an http(s) URL (e.g. https://10.0.0.5:18443)")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError as error:
            raise ValueError(
                f"{shown} has an invalid port (e.g. https://10.0.0.5:18443)"
            ) from error
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
        if value != value.strip() or CONTROL.search(value):
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
        if CONTROL.search(secret):  # would sign wrongly: every request a 401
            raise ValueError("contains a control character (a trailing newline?)")
        if secret != secret.strip():  # the same: every request a 401, not a clear error
            raise ValueError("has leading or trailing whitespace (pasted with a space?): remove it")
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
        missing = unsent_headers(self.signing.signed_headers, sendable)
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
