"""The simulator's result codes: generated deterministically or loaded from a file.

Per VDN the server answers each page in O(page): a :class:`PageSource` (the VDN's codes in
server order, each pre-encoded as a JSON object) is built once per data version and locale
and cached. Generated VDNs are not materialised until they are changed, and their page
sources sit in a bounded LRU cache, so 9,999 VDNs x 120 codes start instantly and use
little memory.
"""

from __future__ import annotations

import json
import json.encoder
import random
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_LOCALE = "zh_CN"
LOCALES = ("zh_CN", "en_US")
VDN_MIN, VDN_MAX = 1, 9999

# A description is one string for every locale, or a per-locale mapping.
Description = str | Mapping[str, str]

_CACHE_SIZE = 4096
_encode_string: Callable[[str], str] = json.encoder.encode_basestring

# (zh_CN, en_US) phrases for generated descriptions; the first ones are the vendor's own.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("交换机忙", "The switch is busy."),
    ("呼叫被拒绝", "The call is rejected."),
    ("被叫无应答", "The called party does not answer the call."),
    ("ACD无可用资源", "No resource available on the ACD."),
    ("ACD超时", "The ACD times out."),
    ("被叫用户忙", "The called party is busy."),
    ("号码不存在", "The number does not exist."),
    ("用户关机", "The phone is switched off."),
    ("不在服务区", "The called party is out of the service area."),
    ("呼叫成功", "The call succeeded."),
    ("客户拒绝营销", "The customer declined the offer."),
    ("转人工成功", "Transferred to an agent."),
    ("线路故障", "Line failure."),
    ("传真音", "Fax tone detected."),
    ("语音信箱", "Voicemail reached."),
    ("号码停机", "The number is suspended."),
)


class SimulatorDataError(ValueError):
    """Simulator data is malformed; the message names the VDN/code to fix."""


@dataclass(frozen=True)
class PageSource:
    """One VDN's codes for one locale, in server order, ready to page through."""

    vdn_id: int
    version: int
    items: tuple[tuple[str, str], ...]  # (obsCode, obsCodeDesc)
    fragments: tuple[str, ...]  # each item as a JSON object, vendor key order

    @property
    def total(self) -> int:
        return len(self.items)


def code_fragment(code: Any, desc: Any, *, omit_code: bool = False) -> str:
    """One ``obsCodes`` element as JSON (the vendor example puts obsCodeDesc first)."""
    if isinstance(code, str) and isinstance(desc, str) and not omit_code:
        # The hot path (every code, every data version): ~10x faster than json.dumps.
        return f'{{"obsCodeDesc":{_encode_string(desc)},"obsCode":{_encode_string(code)}}}'
    obj: dict[str, Any] = {"obsCodeDesc": desc}
    if not omit_code:
        obj["obsCode"] = code
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def server_order_key(vdn_id: int, code: str) -> int:
    """The vendor's order is arbitrary (not by code); ours is a stable hash of it."""
    return zlib.crc32(f"{vdn_id}:{code}".encode())


_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[_-]([A-Za-z]{2}))?")


def normalize_locale(value: str | None) -> str:
    """``en_US``/``en-us``/... -> ``en_US`` (language lower, country upper); absent or not
    shaped like a locale -> the default ``zh_CN``."""
    match = _LOCALE.fullmatch(value.strip()) if value else None
    if match is None:
        return DEFAULT_LOCALE
    language, country = match.group(1).lower(), match.group(2)
    return f"{language}_{country.upper()}" if country else language


def pick(desc: Description, locale: str) -> str:
    if isinstance(desc, str):
        return desc
    return desc.get(locale) or desc.get(DEFAULT_LOCALE) or next(iter(desc.values()), "")


def check_vdn(vdn_id: Any, where: str = "") -> int:
    if isinstance(vdn_id, str) and vdn_id.strip().isdigit():
        vdn_id = int(vdn_id)
    if isinstance(vdn_id, bool) or not isinstance(vdn_id, int):
        raise SimulatorDataError(f"{where}VDN {vdn_id!r} is not an integer")
    if not VDN_MIN <= vdn_id <= VDN_MAX:
        raise SimulatorDataError(f"{where}VDN {vdn_id} is outside {VDN_MIN}..{VDN_MAX}")
    return vdn_id


def _check_codes(vdn_id: int, codes: Any, where: str = "") -> dict[str, Description]:
    if not isinstance(codes, Mapping):
        raise SimulatorDataError(
            f"{where}VDN {vdn_id}: codes must be a mapping of obsCode to description"
        )
    checked: dict[str, Description] = {}
    for code, desc in codes.items():
        if not isinstance(code, str) or not code.strip():
            raise SimulatorDataError(
                f"{where}VDN {vdn_id}: code {code!r} is not a non-empty string "
                '(quote codes in YAML, e.g. "00603": ..., or leading zeros are lost)'
            )
        checked[code] = _check_desc(vdn_id, code, desc, where)
    return checked


def _check_desc(vdn_id: int, code: str, desc: Any, where: str = "") -> Description:
    if isinstance(desc, str):
        return desc
    if (
        isinstance(desc, Mapping)
        and desc
        and all(isinstance(k, str) and isinstance(v, str) for k, v in desc.items())
    ):
        bad = [k for k in desc if _LOCALE.fullmatch(k.strip()) is None]
        if not bad:
            return {normalize_locale(k): v for k, v in desc.items()}
        raise SimulatorDataError(
            f"{where}VDN {vdn_id}: code {code!r}: {bad[0]!r} is not a locale "
            "(write it like zh_CN or en_US)"
        )
    raise SimulatorDataError(
        f"{where}VDN {vdn_id}: code {code!r}: description must be a string or a mapping "
        f"like {{zh_CN: ..., en_US: ...}}, not {type(desc).__name__}"
    )


class SimulatorData:
    """Result codes per VDN. Thread-safe: changes take effect for the next request."""

    def __init__(self, codes: Mapping[int, Mapping[str, Description]] | None = None) -> None:
        self._lock = threading.RLock()
        self._explicit: dict[int, dict[str, Description]] = {}
        self._generated: frozenset[int] = frozenset()
        self._gen_count = 0
        self._gen_seed = 0
        self._versions: dict[int, int] = {}
        self._version = 0
        self._cache: OrderedDict[tuple[int, str], PageSource] = OrderedDict()
        # Locales some description is written in: a request in any other gets zh_CN text.
        self._locales: set[str] = set(LOCALES)
        for vdn_id, vdn_codes in (codes or {}).items():
            vdn = check_vdn(vdn_id)
            self._explicit[vdn] = self._noted(_check_codes(vdn, vdn_codes))

    # -- construction -----------------------------------------------------------------

    @classmethod
    def generate(
        cls, vdn_ids: Iterable[int] = range(1, 11), codes_per_vdn: int = 120, seed: int = 1
    ) -> SimulatorData:
        """Deterministic data: same arguments, same codes, descriptions and order.

        Codes are 5-digit strings with leading zeros drawn from a shared range, so VDNs
        overlap partly (like real deployments); descriptions carry zh_CN and en_US text.
        """
        if codes_per_vdn < 0 or codes_per_vdn > 90_000:
            raise SimulatorDataError(f"codes_per_vdn {codes_per_vdn} is outside 0..90000")
        data = cls()
        data._generated = frozenset(check_vdn(v) for v in vdn_ids)
        data._gen_count = codes_per_vdn
        data._gen_seed = seed
        return data

    @classmethod
    def from_file(cls, path: str | Path) -> SimulatorData:
        """JSON or YAML: ``{"<vdn>": {"<obsCode>": "<desc>" | {zh_CN: .., en_US: ..}}}``."""
        path = Path(path)
        where = f"{path}: "
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SimulatorDataError(f"{where}cannot read: {error.strerror}") from error
        try:
            raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as error:
            raise SimulatorDataError(f"{where}not valid JSON/YAML: {error}") from error
        if not isinstance(raw, Mapping):
            raise SimulatorDataError(
                f'{where}top level must be a mapping {{"<vdn>": {{code: desc}}}}'
            )
        data = cls()
        for key, vdn_codes in raw.items():
            vdn = check_vdn(key, where)
            data._explicit[vdn] = data._noted(_check_codes(vdn, vdn_codes or {}, where))
        return data

    def _generate_vdn(self, vdn_id: int) -> dict[str, Description]:
        rng = random.Random(f"obs-sync-sim/{self._gen_seed}/{vdn_id}")
        span = max(4 * self._gen_count, 2400)
        numbers = rng.sample(range(600, 600 + span), self._gen_count)
        phrases = rng.choices(_PHRASES, k=self._gen_count)
        codes: dict[str, Description] = {}
        for number, (zh, en) in zip(numbers, phrases, strict=True):
            code = f"{number:05d}"
            codes[code] = {"zh_CN": f"{zh}（{code}）", "en_US": f"{en} ({code})"}
        return codes

    # -- reading ------------------------------------------------------------------------

    def _raw(self, vdn_id: int) -> Mapping[str, Description]:
        if vdn_id in self._explicit:
            return self._explicit[vdn_id]
        if vdn_id in self._generated:
            return self._generate_vdn(vdn_id)
        return {}

    def vdn_ids(self) -> list[int]:
        """VDNs that have data (possibly zero codes after changes)."""
        with self._lock:
            return sorted(self._generated | self._explicit.keys())

    def served_locale(self, locale: str | None) -> str:
        """The locale whose text a request's ``locale`` header gets: the normalized header
        when some description is written in it (zh_CN and en_US always), else zh_CN."""
        wanted = normalize_locale(locale)
        return wanted if wanted in self._locales else DEFAULT_LOCALE

    def locales(self) -> list[str]:
        """The locales descriptions are served in (besides the zh_CN fallback)."""
        with self._lock:
            return sorted(self._locales)

    def page_source(self, vdn_id: int, locale: str | None = DEFAULT_LOCALE) -> PageSource:
        with self._lock:
            locale = self.served_locale(locale)
            key = (vdn_id, locale)
            source = self._cache.get(key)
            if source is not None:
                self._cache.move_to_end(key)
                return source
            raw = self._raw(vdn_id)
            base = zlib.crc32(f"{vdn_id}:".encode())  # == server_order_key, incrementally
            ordered = sorted(raw.items(), key=lambda i: zlib.crc32(i[0].encode(), base))
            items = tuple((code, pick(desc, locale)) for code, desc in ordered)
            source = PageSource(
                vdn_id=vdn_id,
                version=self._versions.get(vdn_id, 0),
                items=items,
                fragments=tuple(code_fragment(c, d) for c, d in items),
            )
            self._cache[key] = source
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return source

    def codes(self, vdn_id: int, locale: str | None = DEFAULT_LOCALE) -> dict[str, str]:
        """The VDN's codes as the server currently returns them (server order)."""
        return dict(self.page_source(vdn_id, locale).items)

    def total(self, vdn_id: int) -> int:
        return self.page_source(vdn_id).total

    def version(self, vdn_id: int | None = None) -> int:
        """Bumped on every change (globally, or for one VDN)."""
        with self._lock:
            return self._version if vdn_id is None else self._versions.get(vdn_id, 0)

    def summary(self) -> dict[int, int]:
        """Code count per VDN that has data."""
        return {vdn: self.total(vdn) for vdn in self.vdn_ids()}

    # -- changing -----------------------------------------------------------------------

    def _changed(self, vdn_id: int) -> None:
        self._version += 1
        self._versions[vdn_id] = self._version
        for locale in self._locales:
            self._cache.pop((vdn_id, locale), None)

    def _noted(self, codes: dict[str, Description]) -> dict[str, Description]:
        for desc in codes.values():
            if not isinstance(desc, str):
                self._locales.update(desc)
        return codes

    def _materialized(self, vdn_id: int) -> dict[str, Description]:
        if vdn_id not in self._explicit:
            self._explicit[vdn_id] = dict(self._raw(vdn_id))
        return self._explicit[vdn_id]

    def set_codes(self, vdn_id: int, codes: Mapping[str, Description]) -> None:
        """Replace a VDN's codes (an empty mapping leaves the VDN with no codes)."""
        vdn = check_vdn(vdn_id)
        checked = _check_codes(vdn, codes)
        with self._lock:
            self._explicit[vdn] = self._noted(checked)
            self._changed(vdn)

    def set_code(self, vdn_id: int, code: str, desc: Description) -> None:
        """Add a code or change its description."""
        vdn = check_vdn(vdn_id)
        checked = _check_codes(vdn, {code: desc})
        with self._lock:
            self._materialized(vdn).update(self._noted(checked))
            self._changed(vdn)

    def remove_code(self, vdn_id: int, code: str) -> bool:
        """Remove a code; returns whether it was there."""
        vdn = check_vdn(vdn_id)
        with self._lock:
            codes = self._materialized(vdn)
            found = codes.pop(code, None) is not None
            self._changed(vdn)
            return found

    def update(
        self,
        vdn_id: int,
        set_codes: Mapping[str, Description] | None = None,
        remove: Iterable[str] = (),
    ) -> None:
        """Several changes to one VDN at once (atomic for readers)."""
        vdn = check_vdn(vdn_id)
        checked = _check_codes(vdn, set_codes or {})
        with self._lock:
            codes = self._materialized(vdn)
            for code in remove:
                codes.pop(code, None)
            codes.update(self._noted(checked))
            self._changed(vdn)
