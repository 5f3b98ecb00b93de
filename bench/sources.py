"""What several sources cost: one run over 2 sources x 100 VDNs against 1 source x 200 VDNs.

    .venv/bin/python -m bench.sources [--repeat 3] [--database-url URL]

Cases, each the whole ``obs-sync sync`` command (120 codes per VDN, ``max_concurrency`` 4,
no rate limit) against the bundled simulator on loopback (in this process, one per server):

* ``one_source``: one source, 200 VDNs, one server (today's ``isales:`` section);
* ``two_locales``: two sources of 100 VDNs each on ONE server (zh_CN and en_US): they
  share the server's 4 fetch slots, so this is the like-for-like comparison;
* ``two_servers``: two sources of 100 VDNs each on two servers (overlapping VDN ids,
  their own keys): each server has its own 4 fetch slots.

Steps per case: an initial sync into a fresh schema, then a re-sync with no change. The
repetitions are interleaved (case A, B, C, A, B, C, ...) so load drifts hit every case
alike; the medians of the wall-clock seconds are printed as a Markdown table, with the
requests of each run. Figures: docs/performance.md, "Sources".
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from obs_sync.simulator import Simulator, SimulatorData

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "obs_sync_bench_sources"
CODES = 120
CASES = ("one_source", "two_locales", "two_servers")


def database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def source(sim: Simulator, name: str, vdns: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "base_url": sim.url,
        "access_key": sim.access_key,
        "secret_key": "${BENCH_SECRET_KEY}",
        "vdn_ids": [vdns],
        "max_concurrency": 4,
        "max_requests_per_second": 0,
        "timeout_seconds": 30,
        **extra,
    }


def configuration(case: str, first: Simulator, second: Simulator, url: str, schema: str) -> Any:
    database = {"url": url, "schema": schema}
    if case == "one_source":
        isales = source(first, "default", "1-200")
        del isales["name"]
        return {"isales": isales, "database": database}
    if case == "two_locales":
        sources = [source(first, "zh", "1-100"), source(first, "en", "1-100", locale="en_US")]
    else:
        sources = [source(first, "north", "1-100"), source(second, "south", "1-100")]
    return {"sources": sources, "database": database}


def run(config: Any, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config), "utf-8")
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "obs_sync", "--config", str(path), "sync"],
            capture_output=True,
            text=True,
            timeout=1800,
            env=env,
        )
        seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"obs-sync sync exited {done.returncode}: {done.stderr[-2000:]}")
    found = re.search(r"(\d+) requests? in", done.stdout)
    return {"seconds": seconds, "requests": int(found.group(1)) if found else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OBS_SYNC_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    args = parser.parse_args()
    url = database(args.database_url, DATABASE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "ISALES_"))}
    env["BENCH_SECRET_KEY"] = "bench-sk"  # a throwaway key of the loopback simulators
    first = Simulator(
        SimulatorData.generate(vdn_ids=range(1, 201), codes_per_vdn=CODES, seed=1),
        access_key="bench-ak-1",
        secret_key="bench-sk",
    ).start()
    second = Simulator(
        SimulatorData.generate(vdn_ids=range(1, 101), codes_per_vdn=CODES, seed=2),
        access_key="bench-ak-2",
        secret_key="bench-sk",
    ).start()
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for repetition in range(args.repeat):
            for case in CASES:
                schema = f"bench_{case}_{repetition}"
                config = configuration(case, first, second, url, schema)
                for step in ("initial", "no_change"):
                    result = run(config, env)
                    samples.setdefault((case, step), []).append(result)
                    print(f"{case} {step}: {result}", file=sys.stderr, flush=True)
    finally:
        first.stop()
        second.stop()
    print("| case | step | median s | runs (s) | requests |")
    print("|---|---|--:|---|--:|")
    for (case, step), runs in samples.items():
        seconds = [r["seconds"] for r in runs]
        print(
            f"| {case} | {step} | {statistics.median(seconds):.2f} | "
            f"{', '.join(f'{s:.2f}' for s in seconds)} | {runs[0]['requests']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
