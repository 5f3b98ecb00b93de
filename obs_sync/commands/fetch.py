"""``obs-sync fetch``: one VDN's codes as iSales sends them, printed; nothing is stored."""

from __future__ import annotations

from collections.abc import Sequence

import click

from obs_sync.code_lists import OBS_RESULT_CODES
from obs_sync.commands.selection import fetch_source
from obs_sync.commands.table import table_lines
from obs_sync.config import Config
from obs_sync.errors import EXIT_FAILED, EXIT_OK
from obs_sync.isales.client import ISalesClient
from obs_sync.observability import setup_logging_for
from obs_sync.results import label
from obs_sync.text import escape_controls, json_text, plural


def run_fetch(
    config: Config,
    vdn_id: int,
    fmt: str,
    sources: Sequence[str] = (),
    code_list: str = OBS_RESULT_CODES,
) -> int:
    """Print the codes (table or JSON lines) and a summary on stderr; the exit code.

    ``sources``: the source to ask (``--source``, once); required once several are configured.
    ``code_list``: another list (display or business results): commands/fetch_lists.py."""
    if code_list != OBS_RESULT_CODES:
        from obs_sync.commands.fetch_lists import run_fetch_list  # (it imports this module)

        return run_fetch_list(config, sources, vdn_id, code_list, fmt)
    chosen = fetch_source(config, sources)
    setup_logging_for(config)  # retries and incomplete-snapshot warnings go to stderr
    with ISalesClient(chosen) as client:
        snapshot = client.fetch_snapshot(vdn_id)
    codes = snapshot.codes
    if fmt == "json":  # exact data, its control characters JSON-escaped
        lines = [
            json_text({"obs_code": code, "obs_code_desc": desc}) for code, desc in codes.items()
        ]
    else:  # for a terminal: a description's ESC or \r is shown, not obeyed
        shown = [(escape_controls(code), escape_controls(desc)) for code, desc in codes.items()]
        lines = table_lines(["OBS_CODE", "DESCRIPTION"], shown, strip=False)
    if lines:
        click.echo("\n".join(lines))
    stats = snapshot.stats
    state = "complete" if snapshot.complete else f"INCOMPLETE: {snapshot.incomplete_reason}"
    click.echo(
        f"{label(chosen.name, vdn_id)}: {plural(len(codes), 'code')} "
        f"(totalCount {stats.total_count}), "
        f"{plural(stats.pages, 'page')}, {plural(stats.requests, 'request')} "
        f"({plural(stats.retries, 'retry', 'retries')}, {plural(stats.restarts, 'restart')}) "
        f"in {stats.seconds:.2f}s; {state}",
        err=True,
    )
    return EXIT_OK if snapshot.complete else EXIT_FAILED
