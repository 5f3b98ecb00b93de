"""``obs-sync demo`` in a subprocess, in an empty directory (no config), to completion."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytest.importorskip("obs_sync.sync")
pytestmark = pytest.mark.slow


def _admin_url() -> str:
    """The server for throwaway test databases: $OBS_SYNC_TEST_DATABASE_URL or local trust."""
    return os.environ.get(
        "OBS_SYNC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, uniquely named database, dropped afterwards (SQLAlchemy psycopg URL)."""
    from sqlalchemy.engine import make_url

    base = make_url(_admin_url()).set(drivername="postgresql")
    name = f"obs_sync_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(base.render_as_string(hide_password=False), autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL for tests: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_demo_runs_to_completion(tmp_path: Path, database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env["OBS_SYNC_DATABASE_URL"] = database_url
    result = subprocess.run(
        [sys.executable, "-m", "obs_sync", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Both syncs ran against the simulator and succeeded.
    assert "3. First sync  run" in out and "5. Second sync run" in out
    assert out.count("succeeded") >= 6
    # What changed, read back from result_code_history / result_code.
    changes = out.split("6. What run")[1].split("7. BI query")[0]
    assert "00699  new          'The customer asked to be called back later.'" in changes
    assert (
        "00603  description  'The called party does not answer the call.' -> "
        "'No answer after 30 seconds of ringing.'" in changes
    )
    assert "00622  removed      (was 'Fax tone detected.')" in changes
    # The BI query: the same code resolves to the description valid at each call's time.
    query = out.split("7. BI query")[1]
    rows = [line.split() for line in query.splitlines() if line.strip()[:1].isdigit()]
    by_call = {row[0]: " ".join(row[5:]) for row in rows}  # call_id, date, time, vdn, code
    assert by_call["1"] == "The called party does not answer the call."
    assert by_call["2"] == "No answer after 30 seconds of ringing."
    assert by_call["3"] == "Fax tone detected."
    assert by_call["4"] == "The customer asked to be called back later."
    assert "demo-secret-key" not in out + result.stderr
