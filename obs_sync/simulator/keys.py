"""The simulator's access keys: each an AK/SK pair, global or granted some VDNs.

In Huawei's CEC a C2 key is handed out per integration user or tenant space: a private key
reaches only the VDNs (tenant spaces) granted to it, a global key every VDN of the system.
A correctly signed request for a VDN its key is not granted is answered HTTP 403 (the
simulator's choice where the vendor says nothing, docs/simulator.md). Secrets never appear
in a repr, the control API or the stats.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from obs_sync.simulator.data import VDN_MAX, VDN_MIN, SimulatorDataError

_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


class AccessKeyError(SimulatorDataError):
    """A key definition is invalid; the message names the key and the field."""


def parse_vdn_grant(items: Any, where: str = "") -> frozenset[int] | None:
    """``None`` (global) or VDN ids written as ints and ``"a-b"`` ranges (also comma-joined)."""
    if items is None:
        return None
    if isinstance(items, (str, int)) and not isinstance(items, bool):
        items = [items]
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise AccessKeyError(f'{where}vdn_ids must be a list like [1, "3-5"] or null (every VDN)')
    granted: set[int] = set()
    for item in items:
        parts = item.split(",") if isinstance(item, str) else [item]
        for part in parts:
            if isinstance(part, int) and not isinstance(part, bool):
                low = high = part
            elif isinstance(part, str) and (match := _RANGE.fullmatch(part)):
                low = int(match.group(1))
                high = int(match.group(2) or low)
            else:
                raise AccessKeyError(f'{where}{part!r} is not a VDN id (an integer or "a-b")')
            if low > high:
                raise AccessKeyError(f"{where}range {part!r} is reversed")
            if low < VDN_MIN or high > VDN_MAX:
                raise AccessKeyError(f"{where}{part!r} is outside {VDN_MIN}..{VDN_MAX}")
            granted.update(range(low, high + 1))
    return frozenset(granted)


@dataclass(frozen=True)
class AccessKey:
    """One AK/SK pair; ``vdn_ids`` None = a global key (every VDN), else only those VDNs."""

    access_key: str
    secret_key: str = field(repr=False)
    vdn_ids: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.access_key, str) or not self.access_key or "/" in self.access_key:
            raise AccessKeyError(
                f"access key {self.access_key!r} must be a non-empty string without /"
            )
        if not isinstance(self.secret_key, str) or not self.secret_key:
            raise AccessKeyError(f"access key {self.access_key!r}: secret_key must be non-empty")
        if self.vdn_ids is not None and not isinstance(self.vdn_ids, frozenset):
            grant = parse_vdn_grant(self.vdn_ids, f"access key {self.access_key!r}: ")
            object.__setattr__(self, "vdn_ids", grant)

    def grants(self, vdn_id: int) -> bool:
        return self.vdn_ids is None or vdn_id in self.vdn_ids

    def describe(self) -> dict[str, Any]:
        """What the control API shows: never the secret."""
        grant = None if self.vdn_ids is None else sorted(self.vdn_ids)
        return {"access_key": self.access_key, "vdn_ids": grant}


class KeyRing:
    """The keys a simulator accepts. Thread-safe; changes apply to the next request."""

    def __init__(self, keys: Iterable[AccessKey] = ()) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, AccessKey] = {}
        self._secrets: dict[str, str] = {}
        for key in keys:
            self.add(key)

    def add(self, key: AccessKey) -> None:
        """Add a key or replace the one with the same access key."""
        with self._lock:
            keys = {**self._keys, key.access_key: key}
            self._keys, self._secrets = keys, {k.access_key: k.secret_key for k in keys.values()}

    def remove(self, access_key: str) -> bool:
        with self._lock:
            if access_key not in self._keys:
                return False
            keys = {k: v for k, v in self._keys.items() if k != access_key}
            self._keys, self._secrets = keys, {k.access_key: k.secret_key for k in keys.values()}
            return True

    def get(self, access_key: str) -> AccessKey | None:
        return self._keys.get(access_key)

    @property
    def secrets(self) -> Mapping[str, str]:
        """AK -> SK, for signature verification (a snapshot: replaced, never mutated)."""
        return self._secrets

    def __iter__(self) -> Iterator[AccessKey]:
        return iter(list(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing({sorted(self._keys)})"


def load_keys(path: str | Path) -> list[AccessKey]:
    """A keys file (JSON or YAML): ``{"<access key>": {secret_key: .., vdn_ids: [..] | null}}``."""
    path = Path(path)
    where = f"{path}: "
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise AccessKeyError(f"{where}cannot read: {error.strerror}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise AccessKeyError(f"{where}not valid JSON/YAML: {error}") from error
    if not isinstance(raw, Mapping) or not raw:
        raise AccessKeyError(
            f'{where}top level must be a mapping {{"<access key>": {{secret_key: ..., '
            "vdn_ids: [...]}}}}"
        )
    keys: list[AccessKey] = []
    for access_key, entry in raw.items():
        here = f"{where}access key {access_key!r}: "
        if not isinstance(entry, Mapping) or set(entry) - {"secret_key", "vdn_ids"}:
            raise AccessKeyError(f"{here}give {{secret_key: ..., vdn_ids: [...] or null}}")
        if "secret_key" not in entry:
            raise AccessKeyError(f"{here}secret_key is required")
        keys.append(
            AccessKey(
                str(access_key),
                entry["secret_key"],
                parse_vdn_grant(entry.get("vdn_ids"), here),
            )
        )
    return keys
