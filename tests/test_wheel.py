"""The built wheel, installed (not editable) into a clean virtualenv, works: its
``obs-sync db upgrade`` creates the schema and its ``obs-sync demo`` runs, so the
migrations ship as package data (``obs_sync/_migrations`` is a symlink in the checkout).

The wheel is installed without dependencies; the clean venv sees the test venv's packages
(the tested versions) through a ``.pth`` line. That line only appends a path: the test
venv's own ``.pth`` files (among them the editable install of this checkout) are not
processed, and the venv's own site-packages come first, so ``obs_sync`` is the wheel's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.fixtures_db import TEST_SCHEMA, _plain

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = sorted(
    str(p.relative_to(ROOT)).replace("migrations/", "obs_sync/_migrations/", 1)
    for p in [
        ROOT / "migrations" / "alembic.ini",
        ROOT / "migrations" / "env.py",
        ROOT / "migrations" / "script.py.mako",
        *(ROOT / "migrations" / "versions").glob("*.py"),
    ]
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the wheel built from this checkout installed; returns its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("obs_sync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(MIGRATIONS) <= names, sorted(set(MIGRATIONS) - names)
    assert "obs_sync/py.typed" in names

    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(purelib, "test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    where = subprocess.run(
        [str(python), "-c", "import obs_sync; print(obs_sync.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=root,
    ).stdout.strip()
    assert Path(where).is_relative_to(env_dir), where  # the wheel's copy, not the checkout
    return env_dir / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


def test_wheel_db_upgrade_creates_the_schema(
    installed: Path, database_url: str, tmp_path: Path
) -> None:
    # As a user would: the example config, the database URL from the environment.
    (tmp_path / "config.yaml").write_text((ROOT / "config.example.yaml").read_text("utf-8"))
    result = subprocess.run(
        [str(installed / "obs-sync"), "db", "upgrade"],
        cwd=tmp_path,  # outside the checkout: only the installed package
        env=clean_env(OBS_SYNC_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(_plain(database_url)) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (TEST_SCHEMA,),
            )
        }
    assert {"result_code", "result_code_history", "alembic_version"} <= tables


def test_wheel_demo_runs(installed: Path, embedded_data_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(installed / "obs-sync"), "demo"],
        cwd=tmp_path,
        env=clean_env(OBS_SYNC_DATA_DIR=str(embedded_data_dir)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5. Second sync run" in result.stdout
    assert "00699  new" in result.stdout
