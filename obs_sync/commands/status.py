"""What ``obs-sync status`` prints: the run records read by :mod:`obs_sync.store.status_query`,
as a table for people or JSON for tools (a stable document, docs/operations.md).

For thousands of VDNs the answer comes first: a summary (VDNs by state, the oldest
success, the longest failure), then the VDNs that need a look (failing, never synced,
stale, empty) before the healthy ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

import click

from obs_sync.commands.selection import chosen_sources, vdns_key
from obs_sync.commands.status_lists import lists_table, read_lists, with_lists
from obs_sync.commands.table import table_lines
from obs_sync.config import Config, MetricsConfig
from obs_sync.errors import EXIT_OK, UsageError
from obs_sync.results import DEFAULT_SOURCE, VdnKey, label
from obs_sync.store.status_query import Status, VdnRow
from obs_sync.text import duration, escape_controls, json_text, plural

# A VDN's state, in the order shown: the ones needing a look first.
STATES = ("failing", "never_synced", "stale", "empty", "ok")
JSON_FORMAT_VERSION = 1  # bumped only if a key changes meaning or goes (keys may be added)


def vdn_state(vdn: VdnRow, now: datetime, stale_after: timedelta) -> str:
    """failing (a failure streak), never_synced, stale (last success older than
    ``stale_after``), empty (the last success found totalCount 0) or ok."""
    if vdn.streak:
        return "failing"
    if vdn.last_success is None:
        return "never_synced"
    if now - vdn.last_success > stale_after:
        return "stale"
    if vdn.last_total_count == 0:
        return "empty"
    return "ok"


_FAR = datetime.max.replace(tzinfo=timezone.utc)


def _order(vdn: VdnRow, state: str) -> tuple[int, datetime, int, str]:
    # Within a state: the longest failing, the stalest first; else by VDN id.
    when = vdn.failing_since if state == "failing" else vdn.last_success
    if state not in ("failing", "stale"):
        when = None
    return STATES.index(state), when or _FAR, vdn.vdn_id, vdn.source


@dataclass(frozen=True)
class StatusView:
    """What ``status`` shows: the summary over the selected VDNs, and the listed ones in order."""

    status: Status
    stale_after: timedelta
    states: dict[VdnKey, str]
    listed: list[VdnRow]
    by_state: dict[str, int]
    oldest_success: VdnRow | None
    longest_failure: VdnRow | None
    database: str = ""
    failing_only: bool = False
    selected: list[int] | None = field(default=None)
    # A SOURCE column (table) when a source other than default is shown.
    sources: bool = False
    selected_sources: list[str] | None = None


def make_view(
    status: Status,
    stale_after: timedelta,
    *,
    failing_only: bool = False,
    selected: Sequence[int] | None = None,
    database: str = "",
    selected_sources: Sequence[str] | None = None,
) -> StatusView:
    """The summary over ``status.vdns``; the listing sorted, only failing ones if asked."""
    states = {(v.source, v.vdn_id): vdn_state(v, status.now, stale_after) for v in status.vdns}
    by_state = dict.fromkeys(STATES, 0)
    for state in states.values():
        by_state[state] += 1
    succeeded = [v for v in status.vdns if v.last_success is not None]
    failing = [v for v in status.vdns if v.streak and v.failing_since is not None]
    listed = sorted(status.vdns, key=lambda v: _order(v, states[(v.source, v.vdn_id)]))
    if failing_only:
        listed = [v for v in listed if states[(v.source, v.vdn_id)] == "failing"]
    return StatusView(
        status=status,
        stale_after=stale_after,
        states=states,
        listed=listed,
        by_state=by_state,
        oldest_success=min(succeeded, key=lambda v: (v.last_success, v.vdn_id), default=None),
        longest_failure=min(failing, key=lambda v: (v.failing_since, v.vdn_id), default=None),
        database=database,
        failing_only=failing_only,
        selected=list(selected) if selected is not None else None,
        sources=any(v.source != DEFAULT_SOURCE for v in status.vdns),
        selected_sources=list(selected_sources) if selected_sources else None,
    )


# Without a configuration (tests of the wording): metrics.max_failing_minutes's default.
_DEFAULT_STALE = timedelta(minutes=MetricsConfig.model_fields["max_failing_minutes"].default)


def _fixed_zone(now: datetime, zone: tzinfo | None) -> timezone:
    """``zone`` (None: this host's local time) as its UTC offset at ``now``: every time in the
    table is shown at that one offset, so the offset stated once is true for all of them,
    also across a daylight-saving change."""
    offset = now.astimezone(zone).utcoffset()
    return timezone(offset if offset is not None else timedelta(0))


def _zone_name(zone: timezone) -> str:
    offset = zone.utcoffset(None)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _when(value: datetime | None, zone: timezone) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _age(now: datetime, value: datetime | None) -> str:
    return "never" if value is None else duration(max((now - value).total_seconds(), 0))


# A URL's path and query (``scheme://host:port`` is kept): the part of an error a narrow
# LAST ERROR cell can lose first. ``--format json`` keeps the whole text.
_URL_TAIL = re.compile(r"\b(https?://[^\s/?#]+)[/?#][^\s)]*")


def _short_error(error: str, width: int) -> str:
    """An error on one line in at most ``width`` characters, its cause kept: URLs lose
    their path first, then the end goes, at a word boundary where one is near."""
    text = escape_controls(" ".join(error.split()))  # (records an old version wrote raw)
    if len(text) <= width:
        return text
    text = _URL_TAIL.sub(r"\1/...", text)
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    space = cut.rfind(" ")
    if space >= width * 3 // 4:
        return cut[:space].rstrip(",;:(") + " ..."
    return cut + "..."


def _summary_lines(view: StatusView, fixed: timezone, error_width: int) -> list[str]:
    now = view.status.now
    minutes = view.stale_after.total_seconds() / 60
    counts = ", ".join(
        f"{view.by_state[s]} {s.replace('_', ' ')}"
        + (f" (no success for over {minutes:g} min)" if s == "stale" else "")
        for s in STATES
    )
    lines = [f"Summary: {plural(len(view.status.vdns), 'VDN')}: {counts}"]
    oldest = view.oldest_success
    if oldest is not None:
        lines.append(
            f"  oldest success:  {label(oldest.source, oldest.vdn_id)}, "
            f"{_when(oldest.last_success, fixed)} "
            f"({_age(now, oldest.last_success)} ago)"
        )
    longest = view.longest_failure
    if longest is not None:
        lines.append(
            f"  longest failure: {label(longest.source, longest.vdn_id)}, failing since "
            f"{_when(longest.failing_since, fixed)} ({_age(now, longest.failing_since)}, "
            f"{plural(longest.streak, 'result')}): "
            f"{_short_error(longest.last_error or '', error_width)}"
        )
    return lines


def format_table(
    status: Status | StatusView,
    *,
    error_width: int = 80,
    zone: tzinfo | None = None,
    database: str = "",
) -> str:
    """The report for a terminal; times in ``zone`` (None: local time), which the first
    line names, since logs and JSON carry their own offsets and these would not.
    ``database``: which database this was read from (see ``describe_database``)."""
    view = status if isinstance(status, StatusView) else make_view(status, _DEFAULT_STALE)
    status = view.status
    database = database or view.database
    fixed = _fixed_zone(status.now, zone)
    lines = [f"warning: {warning}" for warning in status.warnings]
    lines.append(
        f"Times are in {_zone_name(fixed)} (local time); now {_when(status.now, fixed)}"
        if zone is None
        else f"Times are in {_zone_name(fixed)}; now {_when(status.now, fixed)}"
    )
    if database:
        lines.append(f"Database: {database}")
    lines += ["", *_summary_lines(view, fixed, error_width), "", "Recent runs:"]
    if not status.runs:
        lines.append("  (none yet)")
    else:
        run_rows = []
        for run in status.runs:
            duration = (
                f"{(run.finished_at - run.started_at).total_seconds():.1f} s"
                if run.finished_at
                else "running"
            )
            changed = f"+{run.inserted} ~{run.updated} -{run.deleted} ^{run.restored}"
            run_rows.append(
                [
                    str(run.run_id),
                    _when(run.started_at, fixed),
                    duration,
                    run.status,
                    run.trigger or "-",
                    str(run.vdns),
                    str(run.succeeded),
                    str(run.failed),
                    str(run.skipped),
                    changed,
                ]
            )
        header = ["RUN", "STARTED", "DURATION", "STATUS", "TRIGGER", "VDNS", "OK", "FAILED"]
        lines += [
            "  " + line
            for line in table_lines(
                [*header, "SKIPPED", "CHANGES (+new ~changed -deleted ^restored)"], run_rows
            )
        ]
    lines.append("")
    if view.failing_only:
        lines.append(f"Failing VDNs ({len(view.listed)}), the longest failing first:")
    else:
        lines.append("VDNs, those needing a look first (failing, never synced, stale, empty):")
    vdn_rows = []
    for vdn in view.listed:
        error = _short_error(vdn.last_error or "", error_width)
        vdn_rows.append(
            ([vdn.source] if view.sources else [])
            + [
                str(vdn.vdn_id),
                view.states[(vdn.source, vdn.vdn_id)].replace("_", " "),
                vdn.last_status or "never synced",
                _when(vdn.last_success, fixed),
                _age(status.now, vdn.last_success),
                str(vdn.streak),
                _when(vdn.failing_since, fixed),
                error if vdn.streak else "",
            ]
        )
    header = ["VDN", "STATE", "LAST RESULT", "LAST SUCCESS", "AGE", "STREAK", "FAILING SINCE"]
    if view.sources:
        header.insert(0, "SOURCE")
    if vdn_rows:
        lines += ["  " + line for line in table_lines([*header, "LAST ERROR"], vdn_rows)]
    else:
        lines.append("  (none)")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def format_json(status: Status | StatusView, *, database: str = "") -> str:
    """The stable JSON document (docs/operations.md, "obs-sync status")."""
    view = status if isinstance(status, StatusView) else make_view(status, _DEFAULT_STALE)
    status = view.status

    def row(item: Any) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(item).items()}

    def vdn(item: VdnRow) -> dict[str, Any]:
        state = view.states[(item.source, item.vdn_id)]
        return {**row(item), "state": state, "empty": item.last_total_count == 0}

    oldest, longest = view.oldest_success, view.longest_failure
    return json_text(
        {
            "format_version": JSON_FORMAT_VERSION,
            "now": status.now.isoformat(),
            "database": database or view.database or None,
            "warnings": status.warnings,
            "stale_after_minutes": view.stale_after.total_seconds() / 60,
            "filter": {
                "failing": view.failing_only,
                "vdns": view.selected,
                "sources": view.selected_sources,
            },
            "summary": {
                "vdns": len(status.vdns),
                "by_state": view.by_state,
                "oldest_success": None
                if oldest is None
                else {
                    "source": oldest.source,
                    "vdn_id": oldest.vdn_id,
                    "at": _jsonable(oldest.last_success),
                },
                "longest_failure": None
                if longest is None
                else {
                    "source": longest.source,
                    "vdn_id": longest.vdn_id,
                    "since": _jsonable(longest.failing_since),
                    "streak": longest.streak,
                    "last_error": longest.last_error,
                },
            },
            "runs": [row(r) for r in status.runs],
            "vdns": [vdn(v) for v in view.listed],
        },
        indent=2,
    )


def run_status_command(
    config: Config,
    fmt: str,
    *,
    failing_only: bool = False,
    vdn_ids: Sequence[int] = (),
    sources: Sequence[str] = (),
) -> int:
    """``obs-sync status``: read, then print the table or the JSON document; the exit code."""
    # Heavy, and only this command path needs them.
    from obs_sync.db.engine import make_engine
    from obs_sync.db.url import describe_database
    from obs_sync.store.status_query import read_status

    chosen = chosen_sources(config, sources)
    configured = {vdn for source in chosen for vdn in source.vdn_list}
    unknown = [v for v in vdn_ids if v not in configured]
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise UsageError(f"--vdn {shown}: not in {vdns_key(config)} (status shows configured VDNs)")
    keys = [
        (source.name, vdn)
        for source in chosen
        for vdn in source.vdn_list
        if not vdn_ids or vdn in set(vdn_ids)
    ]
    schema = config.database.schema_
    engine = make_engine(config)
    url = engine.url.render_as_string(hide_password=False)
    database = describe_database(url, schema, embedded=config.database.embedded)
    try:
        status = read_status(
            engine,
            schema,
            keys,
            heartbeat_seconds=config.sync.heartbeat_seconds,
        )
    finally:
        engine.dispose()
    stale_after = timedelta(minutes=config.metrics.max_failing_minutes)
    view = make_view(
        status,
        stale_after,
        failing_only=failing_only,
        selected=list(vdn_ids) or None,
        database=database,
        selected_sources=list(sources) or None,
    )
    lists = read_lists(config, vdn_ids, sources)  # display and business results
    click.echo(with_lists(format_json(view), lists) if fmt == "json" else format_table(view))
    if fmt != "json" and lists:
        click.echo(lists_table(lists))
    return EXIT_OK
