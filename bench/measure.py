"""Measurement utilities for the benchmark: child processes, the simulator, PostgreSQL.

Every measured client runs as its own process (never in the harness), so the harness,
the simulator and the client never share a GIL, and each child's peak RSS is its own
(measured through GNU time, see :func:`run_command`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

BENCH_DATABASE = "obs_sync_bench"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")  # for exact peak RSS (see run_command)


def log(message: str) -> None:
    """Progress on stderr, timestamped, so a long S2 run shows it is alive."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    wall_seconds: float  # spawn to exit, interpreter start included
    max_rss_kb: int  # peak RSS of this child (Linux ru_maxrss is in KiB)
    user_seconds: float
    system_seconds: float
    stdout: str
    stderr: str
    started_monotonic: float

    def json_line(self) -> dict[str, Any]:
        """The last stdout line that is a JSON object (the floors and inproc print one)."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        raise RuntimeError(f"{self.argv[:3]}: no JSON line on stdout; stderr: {self.tail()}")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = 3600,
    while_running: Callable[[], None] | None = None,
    poll_seconds: float = 5.0,
    cwd: str | None = None,
) -> CommandResult:
    """Run ``argv`` to completion; wall time, exit code, output, and its own peak RSS.

    ``while_running`` is called every ``poll_seconds`` (progress reports for long runs).
    """
    # Peak RSS: Linux carries a process's ru_maxrss across fork and exec, so a child
    # forked from this (large) harness would report at least the harness's RSS. GNU time,
    # itself tiny, forks the command and reports that grandchild's own peak.
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as out,
        tempfile.TemporaryFile("w+", encoding="utf-8") as err,
        tempfile.NamedTemporaryFile("r", encoding="utf-8", suffix=".time") as usage_file,
    ):
        wrapped = list(argv)
        if GNU_TIME is not None:
            wrapped = [GNU_TIME, "-q", "-f", "%M %U %S", "-o", usage_file.name, *wrapped]
        started = time.monotonic()
        process = subprocess.Popen(wrapped, env=dict(env), stdout=out, stderr=err, cwd=cwd)
        done = threading.Event()
        reporter: threading.Thread | None = None
        if while_running is not None:
            callback = while_running

            def report() -> None:
                while not done.wait(poll_seconds):
                    try:
                        callback()
                    except Exception as error:  # progress must never break a measurement
                        log(f"progress report failed: {error}")

            reporter = threading.Thread(target=report, daemon=True)
            reporter.start()
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            done.set()
        wall = time.monotonic() - started
        if reporter is not None:
            reporter.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        max_rss_kb, user, system = usage.ru_maxrss, usage.ru_utime, usage.ru_stime
        if GNU_TIME is not None:
            fields = usage_file.read().split()
            if len(fields) == 3:
                max_rss_kb, user, system = int(fields[0]), float(fields[1]), float(fields[2])
        out.seek(0)
        err.seek(0)
        return CommandResult(
            argv=list(argv),
            returncode=process.returncode,
            wall_seconds=wall,
            max_rss_kb=max_rss_kb,
            user_seconds=user,
            system_seconds=system,
            stdout=out.read(),
            stderr=err.read(),
            started_monotonic=started,
        )


def console_script(name: str) -> str:
    """The venv's console script next to this interpreter (what a user types)."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        raise RuntimeError(f"{candidate} not found: install obs-sync into this interpreter")
    return str(candidate)


# --------------------------------------------------------------------------- simulator


class SimulatorProcess:
    """``obs-sync simulator`` in its own process, driven over its ``/_sim/`` control API."""

    def __init__(
        self, *, vdns: int, codes: int, latency_ms: float, env: Mapping[str, str], seed: int = 1
    ) -> None:
        argv = [
            console_script("obs-sync"),
            "simulator",
            "--port",
            "0",
            "--vdns",
            str(vdns),
            "--codes",
            str(codes),
            "--seed",
            str(seed),
            "--latency-ms",
            f"{latency_ms:g}",
        ]
        self._stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            argv, env=dict(env), stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the one "listening on URL" line
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            self._stderr.seek(0)
            raise RuntimeError(f"simulator did not start: {line!r} {self._stderr.read()[-2000:]}")
        self.url = match.group(1)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_sim/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def stats(self, recent: int = 0) -> dict[str, Any]:
        stats: dict[str, Any] = self.control("GET", f"stats?recent={recent}")
        return stats

    def reset_stats(self) -> None:
        self.control("DELETE", "stats")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- database


def libpq_url(sqlalchemy_url: str, database: str | None = None) -> str:
    """A psycopg conninfo URL from a SQLAlchemy one (optionally for another database)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def sqlalchemy_url(url: str, database: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.set(database=database).render_as_string(hide_password=False)


class BenchDatabase:
    """The dedicated ``obs_sync_bench`` database, recreated from nothing on demand."""

    def __init__(self, admin_url: str, name: str = BENCH_DATABASE) -> None:
        self.admin_url = admin_url
        self.name = name
        self.url = sqlalchemy_url(admin_url, name)  # for obs-sync (may carry a password)
        self._conn: psycopg.Connection[Any] | None = None
        self._guard: psycopg.Connection[Any] | None = None

    def claim(self) -> None:
        """Hold a server-wide advisory lock for the whole run: two harnesses at once would
        drop each other's database (and skew each other's timings)."""
        self._guard = psycopg.connect(libpq_url(self.admin_url), autocommit=True)
        row = self._guard.execute(
            "SELECT pg_try_advisory_lock(hashtext('obs-sync bench'), hashtext(%s))", [self.name]
        ).fetchone()
        if not (row and row[0]):
            self._guard.close()
            raise SystemExit(
                f"another benchmark is using database {self.name} on this server right now; "
                "wait for it to finish"
            )

    def release(self) -> None:
        if self._guard is not None:
            self._guard.close()  # ends the session, and the lock with it
            self._guard = None

    def recreate(self) -> None:
        self.close()
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self.close()
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(libpq_url(self.admin_url, self.name), autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def server_version(self) -> str:
        row = self.conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def wait_idle(self, timeout: float = 30) -> None:
        """Until no other backend is connected to the bench database.

        Backends flush their table statistics when they exit, so this must come before
        reading ``pg_stat_user_tables`` after a child ran.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
        log("warning: other backends still connected to the bench database")

    def table_stats(self) -> dict[str, dict[str, int]]:
        """``schema.table`` -> cumulative inserted/updated/deleted rows, fresh (not cached)."""
        conn = self.conn
        # PostgreSQL 15+ keeps stats in shared memory, flushed by each backend when idle or
        # at exit (asynchronously); our own pending counts are forced out, and the
        # snapshot cache is cleared so we read the current values.
        if int(conn.info.server_version) >= 150000:
            conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        ).fetchall()
        return {
            f"{schema}.{table}": {"ins": int(ins), "upd": int(upd), "del": int(dele)}
            for schema, table, ins, upd, dele in rows
        }

    def settled_stats(self, previous: Mapping[str, Mapping[str, int]] | None = None) -> Any:
        """Table stats once the children's backends are gone and two reads agree."""
        self.wait_idle()
        last = self.table_stats()
        for _ in range(20):
            time.sleep(0.1)
            now = self.table_stats()
            if now == last:
                return now
            last = now
        return last


def stats_delta(
    before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Per-table rows written between two ``table_stats`` reads (tables without writes left out)."""
    delta: dict[str, dict[str, int]] = {}
    for table, counts in after.items():
        base = before.get(table, {})
        diff = {k: v - base.get(k, 0) for k, v in counts.items()}
        if any(diff.values()):
            delta[table] = diff
    return delta


# --------------------------------------------------------------------------- machine


def machine_info(database: BenchDatabase) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb: float | None = None
    try:
        meminfo = Path("/proc/meminfo").read_text()
        match = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
        if match:
            ram_gb = round(int(match.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    versions: dict[str, str] = {}
    from importlib import metadata

    for package in ("obs-sync", "requests", "urllib3", "sqlalchemy", "psycopg", "pydantic"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "-"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": database.server_version(),
        "packages": versions,
        "load_average_at_start": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------- statistics


@dataclass
class Samples:
    """Repeated measurements of one number; the median is what the tables quote."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "median": round(self.median, 4),
            "min": round(min(self.values), 4) if self.values else None,
            "max": round(max(self.values), 4) if self.values else None,
            "values": [round(v, 4) for v in self.values],
        }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator > 0 else float("nan")


def importtime_summary(stderr: str, top: int = 12) -> dict[str, Any]:
    """From ``-X importtime`` output: total, the heaviest top-level imports, what was loaded."""
    cumulative: list[tuple[int, str]] = []
    total = 0
    modules: list[str] = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        cum, indent, name = int(match.group(2)), len(match.group(3)), match.group(4)
        modules.append(name)
        if indent == 1:  # a top-level import (one space after the bar)
            total += cum
            cumulative.append((cum, name))
    cumulative.sort(reverse=True)
    return {
        "total_ms": round(total / 1000, 1),
        "top": [{"module": name, "ms": round(us / 1000, 1)} for us, name in cumulative[:top]],
        "modules": modules,
    }


def loaded(modules: Iterable[str], prefixes: Iterable[str]) -> list[str]:
    """Which of ``prefixes`` (top-level packages) appear among imported modules."""
    found = set()
    for name in modules:
        root = name.split(".")[0]
        if root in prefixes:
            found.add(root)
    return sorted(found)
