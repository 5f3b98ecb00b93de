"""Time one ``run_sync`` call inside a process (the "in-process" number of the benchmark).

``python -m bench.inproc --config FILE`` loads the configuration and sets up logging the
way ``obs-sync sync`` does, then times only the ``run_sync(config)`` call, and prints one
JSON line: ``import_seconds`` (modules and config), ``run_sync_seconds``, the run's
status and per-VDN totals. The harness measures the whole process around it.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Any


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", required=True)
    parser.add_argument("--no-migrate", action="store_true")
    args = parser.parse_args(argv)

    from obs_sync.config import load_config
    from obs_sync.engine.run import run_sync
    from obs_sync.observability import setup_logging_for

    config = load_config(args.config)
    setup_logging_for(config)
    ready = time.perf_counter()
    result = run_sync(config, migrate=not args.no_migrate)
    finished = time.perf_counter()

    totals: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for vdn in result.vdns:
        statuses[vdn.status] += 1
        for key in ("inserted", "updated", "deleted", "restored", "unchanged", "requests"):
            totals[key] += int(getattr(vdn, key) or 0)
    errors = [f"VDN {v.vdn_id}: {v.error}" for v in result.vdns if v.error][:5]
    report: dict[str, Any] = {
        "import_seconds": round(ready - started, 4),
        "run_sync_seconds": round(finished - ready, 4),
        "status": result.status,
        "exit_code": result.exit_code,
        "vdn_statuses": dict(statuses),
        **totals,
        "errors": errors,
    }
    print(json.dumps(report), flush=True)
    raise SystemExit(result.exit_code)


if __name__ == "__main__":
    main()
