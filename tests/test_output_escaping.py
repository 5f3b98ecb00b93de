"""Text from the server never reaches a terminal raw: control characters in descriptions
and in a server's error text are escaped in logs, command output and stored error text,
while the descriptions themselves are stored exactly as sent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.simulator import Fault, Simulator, SimulatorData
from obs_sync.text import escape_controls, json_text
from tests.fixtures_db import TEST_SCHEMA, config_dict

# ESC[2J clears the screen, \r rewrites the line, \x07 rings the bell, \x9b is a C1 CSI,
# \x85 a C1 next-line, U+2028 a line separator.
HOSTILE = "clear\x1b[2J\rover\x07bell\x9b31mred\x85nel\u2028sep"
# What must never be written raw (newlines between lines are the output's own).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def test_escape_controls_shows_every_control_and_keeps_the_rest() -> None:
    assert escape_controls(HOSTILE) == (
        "clear\\x1b[2J\\rover\\x07bell\\x9b31mred\\x85nel\\u2028sep"
    )
    kept = "café 呼叫成功 emoji 😀 tab-free, back\\slash"
    assert escape_controls(kept) == kept
    assert escape_controls("a\nb\tc\x00d\x7f") == "a\\nb\\tc\\x00d\\x7f"


def test_json_text_is_the_same_data_and_safe_on_a_terminal() -> None:
    document = {"desc": HOSTILE, "nested": [HOSTILE]}
    for options in ({}, {"indent": 2}):
        line = json_text(document, **options)
        assert not RAW.search(line)
        assert json.loads(line) == document


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def obs_sync(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OBS_SYNC_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(config), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env={**env, "PYTHONIOENCODING": "utf-8"},
    )


def write(path: Path, sim: Simulator, database_url: str, log_format: str) -> Path:
    data = config_dict(sim, database_url, vdn_ids=["1-3"], max_retries=1)
    data["logging"] = {"format": log_format}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_server_text_is_escaped_on_every_output_and_stored_exactly(
    tmp_path: Path, make_simulator: Any, database_url: str, engine: Engine
) -> None:
    data = SimulatorData({1: {"A1": HOSTILE, "B2": "plain"}, 2: {"C3": "x"}, 3: {"D4": "y"}})
    sim: Simulator = make_simulator(data)
    # VDN 2: a vendor failure whose resultDesc carries controls (stored as the error);
    # VDN 3: an HTTP 503 quoting them (logged at each retry, then stored).
    sim.faults.add(Fault(kind="result_code", vdn_id=2, code="0200001", desc=HOSTILE, times=None))
    sim.faults.add(
        Fault(
            kind="http_status",
            status=503,
            vdn_id=3,
            vendor_body=True,
            code="0299999",
            desc=HOSTILE,
            times=None,
        )
    )
    text_config = write(tmp_path / "text.yaml", sim, database_url, "text")

    synced = obs_sync(text_config, "sync")
    assert synced.returncode == 1, synced.stderr  # VDNs 2 and 3 failed
    for output in (synced.stdout, synced.stderr):
        assert not RAW.search(output), output
    assert "\\x1b[2J" in synced.stderr  # the retry warning shows the server's text, escaped

    with engine.connect() as connection:
        stored = connection.execute(
            text(f"SELECT obs_code_desc FROM {TEST_SCHEMA}.result_code WHERE obs_code = 'A1'")
        ).scalar_one()
        errors = dict(
            connection.execute(
                text(f"SELECT vdn_id, error FROM {TEST_SCHEMA}.sync_run_vdn WHERE vdn_id IN (2, 3)")
            ).all()
        )
    assert stored == HOSTILE  # data: exactly as sent
    assert "\\x1b[2J\\rover\\x07bell\\x9b31mred" in errors[2]  # the whole text, escaped
    assert "\\x1b[2J" in errors[3] and "\\x07bell" in errors[3]  # (a snippet of the body)
    assert not RAW.search(errors[2] + errors[3])

    for args in (("status",), ("status", "--format", "json")):
        shown = obs_sync(text_config, *args)
        assert shown.returncode in (0, 1), shown.stderr
        assert not RAW.search(shown.stdout + shown.stderr)
    as_json = json.loads(obs_sync(text_config, "status", "--format", "json").stdout)
    assert any("\\x1b[2J" in (v.get("last_error") or "") for v in as_json["vdns"])

    table = obs_sync(text_config, "fetch", "--vdn", "1")
    assert table.returncode == 0, table.stderr
    assert not RAW.search(table.stdout + table.stderr)
    assert escape_controls(HOSTILE) in table.stdout
    lines = obs_sync(text_config, "fetch", "--vdn", "1", "--format", "json")
    assert not RAW.search(lines.stdout)
    decoded = {
        row["obs_code"]: row["obs_code_desc"]
        for row in map(json.loads, lines.stdout.split("\n")[:-1])
    }
    assert decoded["A1"] == HOSTILE  # JSON output is the exact data

    failed = obs_sync(text_config, "fetch", "--vdn", "2")
    assert failed.returncode == 1 and not RAW.search(failed.stderr)
    assert "\\x1b[2J" in failed.stderr

    json_config = write(tmp_path / "json.yaml", sim, database_url, "json")
    logged = obs_sync(json_config, "sync", "--vdn", "3")
    assert logged.returncode == 1
    assert not RAW.search(logged.stderr)
    messages = [json.loads(line)["message"] for line in logged.stderr.splitlines() if line]
    assert any("\\x1b[2J" in message for message in messages)  # escaped for a reader too
