"""``obs-sync verify``: the integrity checks (:mod:`obs_sync.store.integrity`) and, with
``--upstream``, a comparison with a fresh fetch from iSales (the normal client, nothing
written); the findings as text or JSON.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import click

from obs_sync.commands.selection import chosen_sources
from obs_sync.commands.table import table_lines
from obs_sync.commands.verify_lists import compare_lists_upstream
from obs_sync.db.engine import make_engine
from obs_sync.diff import StoredCode, compute_changes
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.observability import redactor_for, setup_logging_for
from obs_sync.results import DEFAULT_SOURCE, VdnKey
from obs_sync.store.integrity import (
    Finding,
    UnknownVdnError,
    VerifyError,
    present_codes,
    verify_database,
)
from obs_sync.text import id_ranges, plural

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config

__all__ = [
    "UnknownVdnError",
    "UpstreamReport",
    "VerifyError",
    "compare_snapshot",
    "compare_upstream",
    "format_json",
    "format_text",
    "run_verify",
    "verify_database",
    "verify_upstream",
]


def run_verify(
    config: Config,
    *,
    vdn_ids: Sequence[int] | None,
    upstream: bool,
    fmt: str,
    sources: Sequence[str] = (),
) -> int:
    """The command: print the findings; exit 0 (all holds) or 1 (findings listed). A
    ``vdn_ids`` VDN neither configured nor stored raises UnknownVdnError (exit 2);
    ``sources``: only these sources (an unknown one: exit 2)."""
    chosen = chosen_sources(config, sources)
    setup_logging_for(config)  # the client's retries and warnings, in the configured format
    schema = config.database.schema_
    engine = make_engine(config)
    report: UpstreamReport | None = None
    try:
        findings = verify_database(
            engine,
            schema,
            keep_days=config.sync.keep_run_records_days,
            vdn_ids=vdn_ids,
            configured=sorted({vdn for source in chosen for vdn in source.vdn_list}),
            heartbeat_seconds=config.sync.heartbeat_seconds,
            sources=[source.name for source in chosen] if sources else None,
        )
        if upstream:
            keys = [
                (source.name, vdn)
                for source in chosen
                for vdn in source.vdn_list
                if vdn_ids is None or vdn in vdn_ids
            ]
            if vdn_ids is not None and len(chosen) == 1:
                keys = [(chosen[0].name, vdn) for vdn in vdn_ids]
            report = compare_upstream(config, engine, keys)
            findings = sorted(findings + report.findings, key=Finding.sort_key)
            # Display and business results, for the sources that sync them.
            listed = compare_lists_upstream(config, engine, keys)
            findings = sorted(findings + listed, key=Finding.sort_key)
    finally:
        engine.dispose()
    click.echo(
        format_json(findings, schema, report)
        if fmt == "json"
        else format_text(findings, schema, report)
    )
    return 1 if findings else 0


# ------------------------------------------------------------------------- upstream


@dataclass(frozen=True)
class UpstreamReport:
    """What ``--upstream`` compared: the server, the VDNs, the codes on both sides."""

    base_url: str
    vdns: tuple[int, ...]  # asked for
    compared: tuple[int, ...]  # fetched completely: every difference is a finding
    incomplete: tuple[int, ...]  # fetched in part: deletions upstream not compared
    failed: tuple[int, ...]  # not fetched: nothing compared
    codes_fetched: int
    codes_stored: int  # present codes in the database, of the VDNs fetched
    findings: list[Finding]

    def line(self) -> str:
        parts = [
            f"upstream: compared {plural(len(self.compared), 'VDN')}"
            f"{f' ({id_ranges(self.compared)})' if self.compared else ''} with "
            f"{self.base_url}: {plural(self.codes_fetched, 'code')} fetched, "
            f"{self.codes_stored} present in the database"
        ]
        if self.incomplete:
            parts.append(f"incomplete fetch: {id_ranges(self.incomplete)}")
        if self.failed:
            parts.append(f"fetch failed: {id_ranges(self.failed)}")
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["findings"]  # listed once, with the others
        return data


def verify_upstream(
    config: Config,
    engine: Engine,
    vdn_ids: Sequence[int | VdnKey],
    *,
    fetch: Callable[[int], Any] | None = None,
) -> list[Finding]:
    """The findings of :func:`compare_upstream`."""
    return compare_upstream(config, engine, vdn_ids, fetch=fetch).findings


def compare_upstream(
    config: Config,
    engine: Engine,
    vdn_ids: Sequence[int | VdnKey],
    *,
    fetch: Callable[[int], Any] | None = None,
) -> UpstreamReport:
    """Compare each VDN's present codes with a fresh fetch from iSales; writes nothing.

    ``upstream-missing``: iSales has the code, the database has it not (or deleted);
    ``upstream-extra``: the database has a present code a complete fetch lacks;
    ``upstream-desc``: the descriptions differ; ``upstream-fetch``: the fetch failed or was
    incomplete (nothing compared, or only what was fetched). ``vdn_ids``: (source, vdn_id)
    keys, or ids of the only source; each source is asked with its own key.
    """
    keys = [key if isinstance(key, tuple) else (config.sources[0].name, key) for key in vdn_ids]
    redact = redactor_for(config)
    findings: list[Finding] = []
    compared: list[int] = []
    incomplete: list[int] = []
    failed: list[int] = []
    codes_fetched = codes_stored = 0
    used = [source for source in config.sources if any(k[0] == source.name for k in keys)]
    with contextlib.ExitStack() as closing:
        clients = {s.name: closing.enter_context(ISalesClient(s)) for s in used}
        for source, vdn_id in keys:
            client = clients[source]
            try:
                snapshot = (fetch or client.fetch_snapshot)(vdn_id)
            except ISalesError as error:
                findings.append(
                    Finding(
                        vdn_id, None, "upstream-fetch", redact(f"fetch failed: {error}"), source
                    )
                )
                failed.append(vdn_id)
                continue
            stored = present_codes(engine, config.database.schema_, vdn_id, source)
            findings += [
                replace(finding, source=source)
                for finding in compare_snapshot(vdn_id, stored, snapshot.codes, snapshot.complete)
            ]
            codes_fetched += len(snapshot.codes)
            codes_stored += len(stored)
            (compared if snapshot.complete else incomplete).append(vdn_id)
            if not snapshot.complete:
                findings.append(
                    Finding(
                        vdn_id,
                        None,
                        "upstream-fetch",
                        f"incomplete fetch ({snapshot.incomplete_reason}): codes missing "
                        "upstream not compared",
                        source,
                    )
                )
    return UpstreamReport(
        base_url=", ".join(dict.fromkeys(source.base_url for source in used)),
        vdns=tuple(key[1] for key in keys),
        compared=tuple(compared),
        incomplete=tuple(incomplete),
        failed=tuple(failed),
        codes_fetched=codes_fetched,
        codes_stored=codes_stored,
        findings=sorted(findings, key=Finding.sort_key),
    )


def compare_snapshot(
    vdn_id: int, stored: Mapping[str, str], fetched: Mapping[str, str], complete: bool
) -> list[Finding]:
    """The differences between the stored present codes and a fetched snapshot: what a
    sync would change (:func:`obs_sync.diff.compute_changes`, no deletion withheld)."""
    rows = {code: StoredCode(code, desc, deleted=False) for code, desc in stored.items()}
    changes = compute_changes(rows, fetched, complete=complete, max_delete_fraction=1)
    findings = [
        Finding(vdn_id, code, "upstream-missing", f"iSales has it: {desc!r}")
        for code, desc in changes.inserts
    ]
    findings += [
        Finding(vdn_id, code, "upstream-desc", f"stored {old!r}, iSales says {new!r}")
        for code, old, new in changes.updates
    ]
    findings += [
        Finding(vdn_id, code, "upstream-extra", f"iSales no longer has {stored[code]!r}")
        for code in changes.deletes
    ]
    return findings


# --------------------------------------------------------------------------- output


def format_text(
    findings: Sequence[Finding], schema: str, upstream: UpstreamReport | None = None
) -> str:
    head = [upstream.line()] if upstream is not None else []
    if not findings:
        return "\n".join([*head, f"obs-sync verify: every check holds (schema {schema})"])
    sources = any(f.source != DEFAULT_SOURCE for f in findings)
    rows = [
        # VDN 0: a finding about the runs, not one VDN (dead-run).
        ((f.source,) if sources else ())
        + (str(f.vdn_id or "-"), f.obs_code if f.obs_code is not None else "-", f.check, f.detail)
        for f in findings
    ]
    header = ("VDN", "CODE", "CHECK", "DETAIL")
    lines = head + table_lines(("SOURCE", *header) if sources else header, rows, strip=False)
    vdns = len({(f.source, f.vdn_id) for f in findings if f.vdn_id})
    lines.append(
        f"obs-sync verify: {len(findings)} finding(s) in {vdns} VDN(s) (schema {schema}); "
        "docs/operations.md#obs-sync-verify says what to do about each"
    )
    return "\n".join(lines)


def format_json(
    findings: Sequence[Finding], schema: str, upstream: UpstreamReport | None = None
) -> str:
    data: dict[str, Any] = {
        "schema": schema,
        "ok": not findings,
        "findings": [asdict(f) for f in findings],
    }
    if upstream is not None:
        data["upstream"] = upstream.as_json()
    return json.dumps(data, ensure_ascii=False, indent=2)
