"""The log lines of one VDN's result and of one run's, with their fields."""

from __future__ import annotations

import logging

from obs_sync.observability import FIELDS
from obs_sync.results import DEFAULT_SOURCE, RunResult, VdnResult
from obs_sync.text import plural

log = logging.getLogger("obs_sync.sync")  # the name the run's log lines have always carried


def log_result(result: VdnResult, dry_run: bool) -> None:
    counts = (
        f"+{result.inserted} ~{result.updated} -{result.deleted} ^{result.restored} "
        f"={result.unchanged}"
    )
    verb = "would apply" if dry_run else "applied"
    # The result as fields too: JSON logs carry them as keys (observability.FIELDS).
    extra = {FIELDS: result.fields()}
    if result.empty:
        where = (
            "isales.vdn_ids"
            if result.source == DEFAULT_SOURCE
            else f"the vdn_ids of source {result.source}"
        )
        log.warning(
            "%s is empty: the server reports totalCount 0 for it; a configured VDN "
            "without codes is usually a wrong id in %s (%s %s)",
            result.label,
            where,
            verb,
            counts,
            extra=extra,
        )
    elif result.status == "succeeded":
        log.debug("%s succeeded: %s %s", result.label, verb, counts, extra=extra)
    elif result.status == "guarded":
        log.error(
            "%s GUARDED: %d deletions withheld; %s %s. %s",
            result.label,
            result.withheld,
            verb,
            counts,
            result.error,
            extra=extra,
        )
    elif result.status == "incomplete":
        log.warning(
            "%s incomplete (%s %s): %s", result.label, verb, counts, result.error, extra=extra
        )
    elif result.status == "failed":
        log.warning("%s failed: %s", result.label, result.error, extra=extra)
    else:
        log.info("%s skipped: %s", result.label, result.error, extra=extra)


def log_run(result: RunResult) -> None:
    """One line per run with its result, also as fields (the daemon and ``sync`` alike)."""
    fields = result.fields()
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(fields["vdns_by_status"].items()))
    what = "dry run" if result.dry_run else f"run {result.run_id}"
    empty = f"; {plural(fields['vdns_empty'], 'empty VDN')}" if fields["vdns_empty"] else ""
    log.info(
        "%s finished: %s in %.1f s (%s); +%d ~%d -%d ^%d =%d; %s%s",
        what,
        result.status,
        fields["duration_seconds"],
        by_status or "no VDN",
        fields["inserted"],
        fields["updated"],
        fields["deleted"],
        fields["restored"],
        fields["unchanged"],
        plural(fields["requests"], "request"),
        empty,
        extra={FIELDS: fields},
    )
