"""What a run costs when it cannot succeed: a wrong secret key, a server refusing connections.

    .venv/bin/python -m bench.failfast [--vdns 200 --vdns 9999] [--code-root DIR]
        [--scenario wrong_key|refused] [--database-url URL]

Each case runs the whole ``obs-sync sync`` command once (default retry settings,
``isales.max_concurrency`` 4) against the bundled simulator on loopback (one code per VDN)
or a closed loopback port, and reports the requests sent (the run's summary line) and the
wall-clock seconds. ``--code-root`` runs another checkout's obs-sync (e.g. the revision
before fail-fast) with this harness. A fresh schema per case, in the database
``obs_sync_bench_failfast``. Figures: docs/performance.md, "Fail fast".
"""

from __future__ import annotations

import argparse
import os
import re
import socket
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
DATABASE = "obs_sync_bench_failfast"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def run_case(
    sim: Simulator, url: str, vdns: int, scenario: str, code_root: Path | None, timeout: float
) -> dict[str, Any]:
    isales: dict[str, Any] = {
        "base_url": sim.url if scenario == "wrong_key" else f"http://127.0.0.1:{closed_port()}",
        "access_key": sim.access_key,
        "secret_key": "wrong-secret" if scenario == "wrong_key" else "test-sk",
        "vdn_ids": [f"1-{vdns}"],
        "max_requests_per_second": 0,
    }
    config = {"isales": isales, "database": {"url": url, "schema": f"ff_{scenario}_{vdns}"}}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config), "utf-8")
        env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
        if code_root is not None:
            env["PYTHONPATH"] = str(code_root)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "obs_sync", "--config", str(path), "sync"],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=code_root or None,
            )
        except subprocess.TimeoutExpired:
            return {"vdns": vdns, "scenario": scenario, "seconds": None, "requests": None}
        seconds = time.monotonic() - started
    found = re.search(r"(\d+) requests? in", done.stdout)
    return {
        "vdns": vdns,
        "scenario": scenario,
        "exit": done.returncode,
        "seconds": round(seconds, 2),
        "requests": int(found.group(1)) if found else None,
        "last_line": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vdns", type=int, action="append")
    parser.add_argument("--scenario", action="append", choices=["wrong_key", "refused"])
    parser.add_argument("--code-root", type=Path)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--database-name", default=DATABASE)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OBS_SYNC_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    args = parser.parse_args()
    sizes = args.vdns or [200, 9999]
    scenarios = args.scenario or ["wrong_key", "refused"]
    url = database(args.database_url, args.database_name)
    data = SimulatorData.generate(vdn_ids=range(1, max(sizes) + 1), codes_per_vdn=1, seed=1)
    sim = Simulator(data, access_key="bench-ak", secret_key="test-sk").start()
    try:
        for scenario in scenarios:
            for vdns in sizes:
                print(run_case(sim, url, vdns, scenario, args.code_root, args.timeout), flush=True)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
