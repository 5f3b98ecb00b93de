"""``obs-sync verify``: the integrity checks (:mod:`obs_sync.store.integrity`) and, with
``--upstream``, a comparison with a fresh fetch from iSales (the normal client, nothing
written); the findings as text or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from obs_sync.commands.table import table_lines
from obs_sync.db.engine import make_engine
from obs_sync.diff import StoredCode, compute_changes
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.observability import redactor_for
from obs_sync.store.integrity import Finding, VerifyError, present_codes, verify_database

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from obs_sync.config import Config

__all__ = [
    "VerifyError",
    "compare_snapshot",
    "format_json",
    "format_text",
    "run_verify",
    "verify_database",
    "verify_upstream",
]


def run_verify(config: Config, *, vdn_ids: Sequence[int] | None, upstream: bool, fmt: str) -> int:
    """The command: print the findings; exit 0 (all holds) or 1 (findings listed)."""
    schema = config.database.schema_
    engine = make_engine(config)
    try:
        findings = verify_database(
            engine,
            schema,
            keep_days=config.sync.keep_run_records_days,
            vdn_ids=vdn_ids,
            heartbeat_seconds=config.sync.heartbeat_seconds,
        )
        if upstream:
            findings = sorted(
                findings + verify_upstream(config, engine, vdn_ids or config.isales.vdn_list),
                key=Finding.sort_key,
            )
    finally:
        engine.dispose()
    click.echo(format_json(findings, schema) if fmt == "json" else format_text(findings, schema))
    return 1 if findings else 0


# ------------------------------------------------------------------------- upstream


def verify_upstream(
    config: Config,
    engine: Engine,
    vdn_ids: Sequence[int],
    *,
    fetch: Callable[[int], Any] | None = None,
) -> list[Finding]:
    """Compare each VDN's present codes with a fresh fetch from iSales; writes nothing.

    ``upstream-missing``: iSales has the code, the database has it not (or deleted);
    ``upstream-extra``: the database has a present code a complete fetch lacks;
    ``upstream-desc``: the descriptions differ; ``upstream-fetch``: the fetch failed or was
    incomplete (nothing compared, or only what was fetched).
    """
    redact = redactor_for(config)
    findings: list[Finding] = []
    with ISalesClient(config.isales) as client:
        for vdn_id in vdn_ids:
            try:
                snapshot = (fetch or client.fetch_snapshot)(vdn_id)
            except ISalesError as error:
                findings.append(
                    Finding(vdn_id, None, "upstream-fetch", redact(f"fetch failed: {error}"))
                )
                continue
            stored = present_codes(engine, config.database.schema_, vdn_id)
            findings += compare_snapshot(vdn_id, stored, snapshot.codes, snapshot.complete)
            if not snapshot.complete:
                findings.append(
                    Finding(
                        vdn_id,
                        None,
                        "upstream-fetch",
                        f"incomplete fetch ({snapshot.incomplete_reason}): codes missing "
                        "upstream not compared",
                    )
                )
    return sorted(findings, key=Finding.sort_key)


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


def format_text(findings: Sequence[Finding], schema: str) -> str:
    if not findings:
        return f"obs-sync verify: every check holds (schema {schema})"
    rows = [
        # VDN 0: a finding about the runs, not one VDN (dead-run).
        (str(f.vdn_id or "-"), f.obs_code if f.obs_code is not None else "-", f.check, f.detail)
        for f in findings
    ]
    lines = table_lines(("VDN", "CODE", "CHECK", "DETAIL"), rows, strip=False)
    vdns = len({f.vdn_id for f in findings if f.vdn_id})
    lines.append(
        f"obs-sync verify: {len(findings)} finding(s) in {vdns} VDN(s) (schema {schema}); "
        "docs/operations.md#obs-sync-verify says what to do about each"
    )
    return "\n".join(lines)


def format_json(findings: Sequence[Finding], schema: str) -> str:
    return json.dumps(
        {"schema": schema, "ok": not findings, "findings": [asdict(f) for f in findings]},
        ensure_ascii=False,
        indent=2,
    )
