"""``obs-sync verify --upstream`` for the other code lists: each configured list of each
VDN compared with a fresh fetch (what a sync would change); writes nothing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from obs_sync.code_list_diff import ListPlan, plan_business_results, plan_display_results
from obs_sync.code_lists import OBS_RESULT_CODES, DisplayResultsSnapshot
from obs_sync.config import Config
from obs_sync.db.pool import EnginePool
from obs_sync.engine.code_lists import FETCHERS
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.errors import ISalesError
from obs_sync.observability import redactor_for
from obs_sync.store.code_list_writes import TABLES
from obs_sync.store.code_lists import CodeListStore
from obs_sync.store.integrity import Finding

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def compare_lists_upstream(
    config: Config, engine: Engine, keys: Sequence[tuple[str, int]]
) -> list[Finding]:
    """``upstream-<list>`` findings: rows iSales has that are not stored (or differ), rows
    stored that a complete fetch lacks, a fetch that failed, was incomplete or bad data."""
    redact = redactor_for(config)
    store = CodeListStore(EnginePool(engine), config.database.schema_)
    findings: list[Finding] = []
    for source in config.sources:
        lists = [n for n in source.code_lists if n != OBS_RESULT_CODES]
        if not lists:
            continue
        with ISalesClient(source) as client:
            for vdn_id in [vdn for named, vdn in keys if named == source.name]:
                for name in lists:
                    check = f"upstream-{name}"
                    try:
                        snapshot = FETCHERS[name](client, vdn_id, source=source.name)
                    except ISalesError as error:
                        failed = redact(f"fetch failed: {error}")
                        findings.append(Finding(vdn_id, None, check, failed, source.name))
                        continue
                    stored = [store.read(source.name, vdn_id, t)[0] for t in TABLES[name]]
                    plan: ListPlan
                    if isinstance(snapshot, DisplayResultsSnapshot):
                        plan = plan_display_results(
                            snapshot, stored[0], stored[1],
                            max_code_bytes=config.sync.max_code_bytes, max_delete_fraction=1,
                        )  # fmt: skip
                    else:
                        plan = plan_business_results(
                            snapshot, stored[0],
                            max_code_bytes=config.sync.max_code_bytes, max_delete_fraction=1,
                        )  # fmt: skip
                    findings += _findings(source.name, vdn_id, check, plan, redact)
    return findings


def _findings(
    source: str, vdn_id: int, check: str, plan: ListPlan, redact: Callable[[str], str]
) -> list[Finding]:
    """What a sync would change, one finding per row (and the list's error, if any)."""
    found = [Finding(vdn_id, None, check, redact(plan.error), source)] if plan.error else []
    for table, changes in plan.tables.items():

        def finding(key: tuple[str, ...], detail: str, table: str = table) -> Finding:
            return Finding(vdn_id, f"{table} {'/'.join(key)}", check, detail, source)

        found += [finding(k, f"iSales has it: {v}") for k, v in changes.inserts]
        found += [finding(k, f"stored {old}, iSales says {new}") for k, old, new in changes.updates]
        found += [finding(k, f"stored as deleted, iSales has it: {v}") for k, v in changes.restores]
        found += [finding(k, "iSales no longer has it") for k in changes.deletes]
    return found
