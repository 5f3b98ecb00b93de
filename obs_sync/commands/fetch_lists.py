"""``obs-sync fetch --code-list display_results|business_results``: one VDN's display or
business results as iSales sends them, printed; nothing is stored.

Also what the store would say of them: the bad data that would fail the list (exit 1), or
that they could be stored; and what was unexpected in the answers."""

from __future__ import annotations

from collections.abc import Sequence

import click

from obs_sync.code_lists import (
    DISPLAY_RESULTS,
    BadData,
    BusinessResultsSnapshot,
    BusinessRows,
    DisplayResultsSnapshot,
    DisplayRows,
    business_rows,
    display_rows,
)
from obs_sync.commands.selection import fetch_source
from obs_sync.commands.table import table_lines
from obs_sync.config import Config
from obs_sync.errors import EXIT_FAILED, EXIT_OK
from obs_sync.isales.client import ISalesClient
from obs_sync.isales.code_lists import fetch_business_results, fetch_display_results
from obs_sync.observability import setup_logging_for
from obs_sync.text import escape_controls, json_text, plural


def run_fetch_list(
    config: Config, sources: Sequence[str], vdn_id: int, code_list: str, fmt: str
) -> int:
    """``sources``: ``--source`` (once; required once several sources are configured)."""
    source = fetch_source(config, sources)
    setup_logging_for(config)
    with ISalesClient(source) as client:
        snapshot: DisplayResultsSnapshot | BusinessResultsSnapshot
        checked: DisplayRows | BusinessRows | BadData
        if code_list == DISPLAY_RESULTS:
            snapshot = fetch_display_results(client, vdn_id, source=source.name)
            rows = [
                (
                    e.def_id,
                    e.result_code,
                    e.display_result,
                    ",".join(snapshot.obs_codes.get(e.def_id, ("?",))),
                )
                for e in snapshot.entries
            ]
            header = ["DEF_ID", "RESULT_CODE", "DISPLAY_RESULT", "OBS_CODES"]
            keys = ["def_id", "result_code", "display_result", "obs_codes"]
            checked = display_rows(snapshot, max_code_bytes=config.sync.max_code_bytes)
        else:
            snapshot = fetch_business_results(client, vdn_id, source=source.name)
            rows = [
                (e.parent_code or "", e.code if e.code is not None else "", e.name, str(e.level))
                for e in snapshot.entries
            ]
            header = ["PARENT_CODE", "CODE", "NAME", "LEVEL"]
            keys = ["parent_code", "code", "name", "level"]
            checked = business_rows(snapshot, max_code_bytes=config.sync.max_code_bytes)
    if fmt == "json":
        lines = [json_text(dict(zip(keys, row, strict=True))) for row in rows]
    else:
        shown = [tuple(escape_controls(v) for v in row) for row in rows]
        lines = table_lines(header, shown, strip=False)
    if lines:
        click.echo("\n".join(lines))
    stats = snapshot.stats
    state = "complete" if snapshot.complete else f"INCOMPLETE: {snapshot.incomplete_reason}"
    click.echo(
        f"VDN {vdn_id} {code_list}: {plural(len(snapshot.entries), 'entry', 'entries')} "
        f"(totalCount {stats.total_count}), {plural(stats.pages, 'page')}, "
        f"{plural(stats.requests, 'request')} in {stats.seconds:.2f}s; {state}",
        err=True,
    )
    for line in snapshot.unexpected:
        click.echo(f"unexpected: {line}", err=True)
    if isinstance(checked, BadData):
        click.echo(f"would not be stored: {checked.reason}", err=True)
        return EXIT_FAILED
    return EXIT_OK if snapshot.complete else EXIT_FAILED
