"""docs/operations.md "Installing under systemd", steps 1 to 5, run as written by root
(issue 17, item 11), in a scratch prefix (``/opt/obs-sync``, ``/etc/obs-sync`` and
``/var/lib/obs-sync`` moved under it; ``editor`` lines skipped), on a host where obs-sync's
embedded PostgreSQL already ran as root (so the account exists, and its state directory
too). Then, as the service user with the unit's environment, the installed program runs
with the installed configuration. Steps 6 and 7 need systemd as PID 1 (not in a
container): their commands are checked only against the unit file (test_deploy_systemd).
Real ``useradd``/``install``/``pip``/``runuser``; the wheel is built from this checkout."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from obs_sync.db import embedded, embedded_accounts
from tests.deploy_support import OPERATIONS, REPO
from tests.socket_relay import reachable_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the install steps are run as root"),
]

PATHS = ("/opt/obs-sync", "/etc/obs-sync", "/var/lib/obs-sync")


def install_block() -> str:
    section = OPERATIONS.read_text("utf-8").split("### Installing under systemd", 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "docs/operations.md: no sh block under 'Installing under systemd'"
    return match.group(1)


def steps_1_to_5(prefix: Path) -> str:
    block = install_block()
    assert "\n# 6." in block
    script = block.split("\n# 6.", 1)[0]
    lines = []
    for line in script.splitlines():
        if line.startswith("editor "):
            continue  # an operator edits the files here
        for path in PATHS:
            line = line.replace(path, f"{prefix}{path}")
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def prefix() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="obs-ops-"))
    root.chmod(0o711)  # like /: the service user may pass through
    for path in PATHS:
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        pgdata = root / "var/lib/obs-sync/pg"
        if embedded.server_pid(pgdata) is not None:
            embedded.stop_server(pgdata)
        shutil.rmtree(root, ignore_errors=True)


def checkout(target: Path) -> Path:
    """This checkout's files (as git sees them), where building the wheel may write."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():  # obs_sync/_migrations
            (target / name).symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target / name)
    return target


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_install_steps_run_as_written_after_the_embedded_server_ran_as_root(
    prefix: Path, tmp_path: Path, database_url: str
) -> None:
    state = prefix / "var/lib/obs-sync"
    # The embedded PostgreSQL ran as root here before (the README's demo does): it made
    # the account and the state directory, the data directory owned by that account.
    config = tmp_path / "embedded.yaml"
    config.write_text(
        "isales: {base_url: 'http://127.0.0.1:9', access_key: a, secret_key: s, vdn_ids: [1]}\n"
        "database: {url: embedded}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "PYTHON"))}
    ran = subprocess.run(
        [sys.executable, "-m", "obs_sync", "--config", str(config), "db", "upgrade"],
        env={**env, embedded.DATA_DIR_ENV: str(state)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stderr
    account = pwd.getpwnam(embedded_accounts.SERVER_ACCOUNT)
    assert (state / "pg").stat().st_uid == account.pw_uid
    assert (state / ".pg.lock").stat().st_uid == account.pw_uid  # the service may start it
    embedded.stop_server(state / "pg")

    source = checkout(tmp_path / "checkout")
    script = steps_1_to_5(prefix)
    installed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.strip().splitlines()[-1] == "installed"  # step 3's check

    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    assert state.stat().st_uid == account.pw_uid
    secrets = prefix / "etc/obs-sync/env"
    assert (stat.S_IMODE(secrets.stat().st_mode), secrets.stat().st_uid) == (0o600, 0)

    # As the service runs it: its user, the environment file systemd reads for it, the
    # unit's Environment= and WorkingDirectory= (the placeholder database replaced).
    service_env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env_file(secrets)}
    service_env[embedded.DATA_DIR_ENV] = str(state)
    program = prefix / "opt/obs-sync/venv/bin/obs-sync"
    # The test server over TCP as is; the embedded one through a relay (its socket is
    # private to its own account, as PostgreSQL keeps it).
    with reachable_url(database_url, prefix / "run") as service_database_url:
        service_env["OBS_SYNC_DATABASE_URL"] = service_database_url
        for args in (["--help"], ["db", "upgrade"]):
            as_service = subprocess.run(
                [str(program), "--config", str(prefix / "etc/obs-sync/config.yaml"), *args],
                env=service_env,
                user=account.pw_uid,
                group=account.pw_gid,
                extra_groups=[],
                cwd=state,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert as_service.returncode == 0, as_service.stdout + as_service.stderr
    # The same steps again (an upgrade, or a second reading of the docs) still succeed.
    again = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stdout + again.stderr
