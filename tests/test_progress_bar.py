"""The progress bar on a terminal and log records (issue 17, item 7): a record never
continues the bar's line; the bar is redrawn below it; records keep their format."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from obs_sync.config import LoggingConfig
from obs_sync.observability import setup_logging
from obs_sync.progress_bar import ProgressBar, bar_line
from obs_sync.simulator import Fault, Simulator, SimulatorData
from tests.fixtures_db import write_config


def screen(raw: str) -> list[str]:
    """What a terminal shows for ``raw``: ``\\r``, ``\\n`` and erase-to-end (ESC [ K)."""
    lines, col, i = [""], 0, 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            lines[-1] = lines[-1][:col]
            i += 3
            continue
        char = raw[i]
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append("")
            col = 0
        else:
            line = lines[-1].ljust(col)
            lines[-1] = line[:col] + char + line[col + 1 :]
            col += 1
        i += 1
    return lines


def drop_handler() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "obs-sync"]:
        root.removeHandler(handler)


def test_bar_line() -> None:
    assert bar_line(0, 3) == f"syncing [{'-' * 30}]   0%  0 of 3 VDNs"
    assert bar_line(1, 3).startswith(f"syncing [{'#' * 10}{'-' * 20}]  33%")
    assert bar_line(1, 1) == f"syncing [{'#' * 30}] 100%  1 of 1 VDN"
    assert bar_line(0, 0).endswith("100%  0 of 0 VDNs")


def records_and_bar(fmt: str) -> list[str]:
    terminal = io.StringIO()
    setup_logging(LoggingConfig(format=fmt), stream=terminal)
    log = logging.getLogger("obs_sync.test")
    with ProgressBar(4, terminal) as bar:
        log.info("database: PostgreSQL at somewhere")
        bar.advance()
        threads = [
            threading.Thread(target=lambda i=i: (log.warning("VDN %d failed", i), bar.advance()))
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    terminal.write("run 1: failed\n")
    drop_handler()
    return screen(terminal.getvalue())


def test_log_records_never_share_the_bars_line() -> None:
    shown = records_and_bar("text")
    assert shown[-1] == ""  # the summary's line ended
    assert shown[-2] == "run 1: failed"
    assert shown[-3] == bar_line(4, 4)  # the finished bar stays above the summary
    logs = [line for line in shown if "INFO" in line or "WARNING" in line]
    assert len(logs) == 4
    for line in shown:
        assert not ("syncing [" in line and ("INFO" in line or "WARNING" in line)), line
    bars = [line for line in shown if line.startswith("syncing [")]
    assert bars == [bar_line(4, 4)]  # every earlier drawing was cleared by a record


def test_json_records_stay_one_object_per_line_around_the_bar() -> None:
    shown = records_and_bar("json")
    records = [json.loads(line) for line in shown if line.startswith("{")]
    assert len(records) == 4
    assert {r["level"] for r in records} == {"INFO", "WARNING"}


def test_the_handler_writes_to_its_own_stream_again_after_the_bar() -> None:
    terminal = io.StringIO()
    handler = setup_logging(LoggingConfig(), stream=terminal)
    assert isinstance(handler, logging.StreamHandler)
    with ProgressBar(1, terminal):
        pass
    assert handler.stream is terminal
    drop_handler()


@pytest.mark.slow
def test_a_real_sync_on_a_terminal_keeps_log_lines_off_the_bar(
    tmp_path: Path, make_simulator: Callable[..., Simulator], database_url: str
) -> None:
    """``obs-sync sync`` with its stderr on a pseudo-terminal: failing VDNs log WARNING
    lines while the bar is drawn; the screen shows each on its own line."""
    vdns = range(1, 13)
    sim = make_simulator(SimulatorData.generate(vdn_ids=vdns, codes_per_vdn=5, seed=4))
    sim.latency_seconds = 0.05  # the bar is drawn between the records
    for vdn in (3, 7, 11):
        sim.faults.add(Fault(kind="http_status", status=403, vdn_id=vdn, times=None))
    path = write_config(tmp_path / "c.yaml", sim, database_url, vdn_ids=["1-12"], max_concurrency=2)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "obs_sync", "--config", str(path), "sync"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    stdout, _ = process.communicate(timeout=120)
    os.close(leader)
    assert process.returncode == 1, stdout  # three VDNs failed
    shown = screen(b"".join(chunks).decode().replace("\r\n", "\n"))
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
    warnings = [line for line in shown if "WARNING" in line]
    assert len(warnings) == 3, shown
    for line in shown:
        assert not ("syncing [" in line and stamp.search(line)), line
        if stamp.search(line):
            assert stamp.match(line), line  # a record starts its own line
    assert [line for line in shown if line.startswith("syncing [")] == [bar_line(12, 12)]
