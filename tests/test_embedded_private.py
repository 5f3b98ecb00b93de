"""The embedded PostgreSQL is private to its user (issue 11, item 5): a 0700 socket
directory (also for a data path too long for a socket), no other local user can connect,
nothing outside the data directory is changed, a symbolic link as data directory is
refused. Real servers, real processes; as root, a real unprivileged user (``nobody``)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from obs_sync.db import embedded, embedded_locations

pytestmark = pytest.mark.slow

CONFIG = (
    "isales: {base_url: 'http://127.0.0.1:9', access_key: a, secret_key: s, vdn_ids: [1]}\n"
    "database: {url: embedded}\n"
)


def obs_sync(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env[embedded.DATA_DIR_ENV] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def upgrade(root: Path, data_dir: Path) -> subprocess.CompletedProcess[str]:
    config = root / "c.yaml"
    config.write_text(CONFIG)
    return obs_sync(data_dir, "--config", str(config), "db", "upgrade")


def socket_dir(pgdata: Path) -> Path:
    return Path((pgdata / "postmaster.pid").read_text().splitlines()[4].strip())


def modes(path: Path) -> dict[Path, tuple[int, int]]:
    """Mode and owner of ``path`` and of every directory above it."""
    return {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid) for p in [path, *path.parents]}


def psql_as_nobody(socket: Path) -> subprocess.CompletedProcess[str]:
    psql = Path(embedded.find_bin_dir(Path("/nonexistent")) / "psql")
    return subprocess.run(
        [str(psql), "-h", str(socket), "-U", "postgres", "-d", "postgres", "-Atc", "SELECT 1"],
        user="nobody",
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


def python_for_nobody(env: dict[str, str]) -> str | None:
    """This Python, or the same version elsewhere, that ``nobody`` can run with ``env``."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(version, path="/usr/bin:/usr/local/bin")):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import obs_sync, psycopg, pydantic"],
                env=env,
                user="nobody",
                capture_output=True,
                cwd="/",
                timeout=60,
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    return None


def assert_private(pgdata: Path) -> Path:
    sockets = socket_dir(pgdata)
    info = sockets.lstat()
    assert stat.S_ISDIR(info.st_mode) and not sockets.is_symlink()
    assert stat.S_IMODE(info.st_mode) == 0o700, oct(info.st_mode)
    assert info.st_uid == pgdata.stat().st_uid  # the server's own account
    assert (sockets / embedded.SOCKET_NAME).is_socket()
    if os.geteuid() == 0:
        assert info.st_uid != 0  # PostgreSQL runs unprivileged
        denied = psql_as_nobody(sockets)
        assert denied.returncode != 0, denied.stdout
        assert "Permission denied" in denied.stderr
    return sockets


def test_socket_directory_is_private_and_no_tcp(embedded_data_dir: Path) -> None:
    root = embedded_data_dir
    started = upgrade(root, root)
    assert started.returncode == 0, started.stderr
    pgdata = root / "pg"
    assert assert_private(pgdata) == pgdata  # a short path: the socket in the data directory
    import psycopg

    url = f"postgresql://postgres:@/postgres?host={pgdata}"
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT current_setting('listen_addresses')").fetchone()
    assert row == ("",)  # no TCP at all


def test_a_long_data_path_gets_a_private_socket_directory(embedded_data_dir: Path) -> None:
    root = embedded_data_dir
    deep = root / ("d" * 60) / ("e" * 60)  # .../pg/.s.PGSQL.5432 is over 107 bytes
    deep.mkdir(parents=True)
    for directory in (deep, deep.parent):
        directory.chmod(0o711)
    pgdata = deep / "pg"
    try:
        started = upgrade(root, deep)
        assert started.returncode == 0, started.stderr
        sockets = assert_private(pgdata)
        assert sockets != pgdata
        assert f"host={sockets}" in started.stderr  # the announced URL works
        again = upgrade(root, deep)  # the next process reuses the server and its socket
        assert again.returncode == 0, again.stderr
        assert f"host={sockets}" in again.stderr
    finally:
        if embedded.server_pid(pgdata) is not None:
            stopped = obs_sync(deep, "db", "stop-embedded")
            assert stopped.returncode == 0, stopped.stderr
    assert not sockets.exists()  # the stop removes the directory it made for the socket


def test_nothing_outside_the_data_directory_changes(embedded_data_dir: Path) -> None:
    root = embedded_data_dir
    parent = root / "home"
    parent.mkdir()
    if os.geteuid() == 0:
        # A private home of root: the server's unprivileged account cannot reach it, and
        # obs-sync must not open it (it used to chmod it 0755). A clear error instead.
        parent.chmod(0o700)
        before = modes(parent)
        refused = upgrade(root, parent / "obs")
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"cannot enter {parent}" in refused.stderr
        assert embedded.DATA_DIR_ENV in refused.stderr  # the fix
        assert modes(parent) == before
        assert not (parent / "obs" / "pg").exists()
        parent.chmod(0o711)  # now reachable (not readable): the server starts
    else:
        parent.chmod(0o700)
    before = modes(parent)
    started = upgrade(root, parent / "obs")
    assert started.returncode == 0, started.stderr
    assert modes(parent) == before
    pgdata = parent / "obs" / "pg"
    assert stat.S_IMODE(pgdata.stat().st_mode) == 0o700
    try:
        assert_private(pgdata)
    finally:
        obs_sync(parent / "obs", "db", "stop-embedded")


def test_a_symlinked_data_directory_is_refused_and_its_target_untouched(
    embedded_data_dir: Path,
) -> None:
    root = embedded_data_dir
    target = root / "elsewhere"
    target.mkdir(mode=0o700)
    (target / "keep.txt").write_text("mine")
    (root / "pg").symlink_to(target)
    before = modes(target)
    for args in (("status",), ("db", "upgrade"), ("sync",)):
        config = root / "c.yaml"
        config.write_text(CONFIG)
        refused = obs_sync(root, "--config", str(config), *args)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr
        assert "symbolic link" in refused.stderr and embedded.DATA_DIR_ENV in refused.stderr
        assert modes(target) == before
        assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another user")
def test_an_unprivileged_user_runs_its_own_private_server(embedded_data_dir: Path) -> None:
    """Without root, obs-sync runs the server as the user itself (no account switch)."""
    root = embedded_data_dir
    user = pwd.getpwnam("nobody")
    home = root / "nobody"
    home.mkdir(mode=0o700)
    os.chown(home, user.pw_uid, user.pw_gid)
    config = home / "c.yaml"
    config.write_text(CONFIG)
    os.chown(config, user.pw_uid, user.pw_gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "XDG_"))}
    env.update({embedded.DATA_DIR_ENV: str(home), "HOME": str(home)})
    # This interpreter may live under root's private home: the same Python version
    # elsewhere, with this environment's packages on its path, runs the same code.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
    python = python_for_nobody(env)
    if python is None:
        pytest.skip("no Python of this version that nobody can run")
    command = [python, "-m", "obs_sync", "--config", str(config), "db", "upgrade"]
    try:
        started = subprocess.run(
            command, env=env, user="nobody", capture_output=True, text=True, timeout=180, cwd="/"
        )
        assert started.returncode == 0, started.stderr
        pgdata = home / "pg"
        assert pgdata.stat().st_uid == user.pw_uid
        assert stat.S_IMODE(home.stat().st_mode) == 0o700  # its home stays private
        sockets = socket_dir(pgdata)
        assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
    finally:
        subprocess.run(
            [python, "-m", "obs_sync", "db", "stop-embedded"],
            env=env,
            user="nobody",
            capture_output=True,
            timeout=120,
            cwd="/",
        )
        shutil.rmtree(home, ignore_errors=True)


def test_concurrent_first_starts_share_one_server(embedded_data_dir: Path) -> None:
    """The start lock (beside the data directory) lets one process initialize and start the
    server while the others wait, then reuse it."""
    root = embedded_data_dir
    config = root / "c.yaml"
    config.write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBS_SYNC_")}
    env[embedded.DATA_DIR_ENV] = str(root)
    command = [sys.executable, "-m", "obs_sync", "--config", str(config), "db", "upgrade"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    results = [(*p.communicate(timeout=180), p.returncode) for p in processes]
    for _, stderr, code in results:
        assert code == 0, stderr.decode()
    assert len({stderr.decode().split("host=")[1].split()[0] for _, stderr, _ in results}) == 1
    assert (root / "pg" / "PG_VERSION").is_file()


def test_root_data_left_in_roots_home_is_named_not_silently_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An older obs-sync run as root kept its data in ~/.local/share: the new default for
    root is elsewhere, so the user is told where the data is, not given an empty database."""
    old = tmp_path / "home" / ".local" / "share" / "obs-sync" / "pg"
    old.mkdir(parents=True)
    (old / "PG_VERSION").write_text("18\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in (embedded.DATA_DIR_ENV, "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(embedded_locations, "ROOT_DATA_HOME", tmp_path / "var-lib")
    monkeypatch.setattr(embedded, "_url", None)
    with pytest.raises(embedded.EmbeddedError) as error:
        embedded.embedded_url()
    assert error.value.usage  # exit 2
    assert str(old) in str(error.value) and "mv " in str(error.value)
    assert not (tmp_path / "var-lib").exists()  # nothing started or created elsewhere
