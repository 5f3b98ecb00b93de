"""What the other code lists cost: a run with every list against a floor client.

    .venv/bin/python -m bench.code_lists [--vdns 200] [--latency-ms 20] [--repeat 3]
        [--concurrency 4] [--database-url URL]

The bundled simulator (in this process, on loopback) serves 200 VDNs with 120 OBS codes,
20 display results grouping 6 OBS codes each and 10 business results with 3 sub-statuses
each (its generated data), every request delayed by ``--latency-ms``. Each repetition runs,
one after the other:

1. the floor: ``python -m bench.code_lists floor``, a standard-library client making the
   same C2-signed requests as obs-sync (per VDN: the OBS code pages, the display result
   pages, one detail call per display result, the business result pages) over keep-alive
   ``http.client`` connections, ``--concurrency`` threads, one VDN at a time per thread;
   it only parses the JSON;
2. ``obs-sync sync`` (the whole command) with ``code_lists`` all three, on a fresh schema:
   the initial sync;
3. ``obs-sync sync`` again: the no-op re-sync. Every data row (current and history
   tables of the three lists) is read with its ``xmin`` before and after: the harness
   fails when any row was written.

Reports medians, the ratio to the floor (target <= 1.15 at 20 ms) and the requests each
made (the simulator's count). Figures: docs/performance.md, "Code lists".
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import yaml

from bench.floor_httpclient import CONTENT_TYPE, SIGNED, _hex, sign
from obs_sync.simulator import Simulator, SimulatorData

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "obs_sync_bench_code_lists"
SCHEMA = "obs_sync"
PREFIX = "/rest/isales/v1/openapi/campaigns/{vdn}"
AK, SK = "bench-ak", "bench-sk"
DATA_TABLES = (
    "result_code",
    "display_result",
    "display_result_obs_code",
    "business_result",
)


# ------------------------------------------------------------------------------ the floor


def sign_bare(stamp: str, path: str, host: str) -> str:
    """C2 for a GET without a query (the detail call): no query line at all."""
    prefix = f"auth-v2/{AK}/{stamp}/{SIGNED}"
    canonical = (
        f"GET\n{path}\n{SIGNED}\n"
        f"content-type:{quote(CONTENT_TYPE, safe='-._~')}\nhost:{quote(host, safe='-._~')}\n"
    )
    return f"{prefix}/{_hex(_hex(SK, prefix), canonical)}"


def floor(url: str, vdns: int, concurrency: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}"
    pending = iter(range(1, vdns + 1))
    lock = threading.Lock()
    made = [0]  # VDNs done
    errors: list[str] = []

    def get(conn: http.client.HTTPConnection, path: str, query: str = "") -> Any:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Authorization": (
                sign(AK, SK, stamp, path, query, host) if query else sign_bare(stamp, path, host)
            ),
        }
        conn.request("GET", f"{path}?{query}" if query else path, headers=headers)
        response = conn.getresponse()
        body = json.loads(response.read())
        if response.status != 200 or body.get("resultCode") != "0200000":
            raise RuntimeError(f"{path}: HTTP {response.status}")
        return body

    def paged(conn: http.client.HTTPConnection, path: str, field: str) -> list[Any]:
        items: list[Any] = []
        page = 0
        while True:
            page += 1
            body = get(conn, path, f"pageNum={page}&pageSize=50")
            items += body[field] or []
            got = len(body[field] or [])
            # As obs-sync's paging: a full last page is followed by one past the end.
            if not got or (len(items) >= int(body["totalCount"]) and got < 50):
                return items

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=60)
        count = 0
        try:
            while True:
                with lock:
                    vdn = next(pending, None)
                if vdn is None:
                    break
                prefix = PREFIX.format(vdn=vdn)
                paged(conn, f"{prefix}/queryOBSResultCode", "obsCodes")
                results = paged(conn, f"{prefix}/queryOBSResults", "data")
                for result in results:
                    get(conn, f"{prefix}/{result['defId']}/queryObsResultDetail")
                paged(conn, f"{prefix}/queryBusinessResults", "data")
                count += 1
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
        finally:
            conn.close()
            with lock:
                made[0] += count

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "vdns": made[0], "errors": errors[:3]}


# ------------------------------------------------------------------------------ harness


def data_rows(url: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(url) as connection:
        for table in DATA_TABLES:
            for suffix in ("", "_history"):
                rows += connection.execute(
                    f"SELECT '{table}{suffix}', xmin::text FROM {SCHEMA}.{table}{suffix}"
                ).fetchall()
    return sorted(rows)


def timed(command: list[str], *, floor_run: bool = False) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    if floor_run:
        errors = json.loads(done.stdout.splitlines()[-1])["errors"]
        if errors:
            raise SystemExit(f"the floor failed: {errors}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "floor"])
    parser.add_argument("--url", help="floor mode: the simulator's URL")
    parser.add_argument("--vdns", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OBS_SYNC_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
    )
    args = parser.parse_args(argv)
    if args.mode == "floor":
        print(json.dumps(floor(args.url, args.vdns, args.concurrency)), flush=True)
        return

    admin = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DATABASE}")
    base, _, _ = admin.rpartition("/")
    url = f"{base}/{DATABASE}"
    data = SimulatorData.generate(vdn_ids=range(1, args.vdns + 1), codes_per_vdn=120, seed=1)
    sim = Simulator(data, access_key=AK, secret_key=SK, latency_seconds=args.latency_ms / 1000)
    figures: dict[str, list[float]] = {"floor": [], "initial": [], "no-op": []}
    requests: dict[str, int] = {}
    with sim, tempfile.TemporaryDirectory() as tmp:
        config = {
            "isales": {
                "base_url": sim.url,
                "access_key": AK,
                "secret_key": SK,
                "vdn_ids": [f"1-{args.vdns}"],
                "max_concurrency": args.concurrency,
                "max_requests_per_second": 0,
                "code_lists": ["obs_result_codes", "display_results", "business_results"],
            },
            "database": {"url": url.replace("postgresql://", "postgresql+psycopg://")},
            "logging": {"level": "WARNING"},
        }
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config), "utf-8")
        sync = [sys.executable, "-m", "obs_sync", "--config", str(path), "sync"]
        floor_cmd = [
            sys.executable, "-m", "bench.code_lists", "floor", "--url", sim.url,
            "--vdns", str(args.vdns), "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        for _ in range(args.repeat):
            before = sim.stats.requests
            figures["floor"].append(timed(floor_cmd, floor_run=True))
            requests["floor"] = sim.stats.requests - before
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            subprocess.run([*sync[:-1], "db", "upgrade"], check=True, capture_output=True)
            before = sim.stats.requests
            figures["initial"].append(timed(sync))
            requests["initial"] = sim.stats.requests - before
            rows = data_rows(url)
            before = sim.stats.requests
            figures["no-op"].append(timed(sync))
            requests["no-op"] = sim.stats.requests - before
            if data_rows(url) != rows:
                raise SystemExit("the no-op re-sync wrote data rows")
    floor_s = statistics.median(figures["floor"])
    print(f"{args.vdns} VDNs, latency {args.latency_ms} ms, concurrency {args.concurrency}")
    print(f"{'step':<10} {'median s':>9} {'x floor':>8} {'requests':>9}  runs")
    for step, values in figures.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{step:<10} {median:9.2f} {median / floor_s:8.3f} {requests[step]:9d}  {runs}")
    print(f"no-op re-sync: {len(rows)} data rows, none written")


if __name__ == "__main__":
    main()
