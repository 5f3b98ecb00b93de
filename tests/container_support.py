"""Building and running deploy/container/Containerfile with buildah, for the image tests.

buildah (Debian's package, installed by scripts/ensure-tools as root) runs as root with
``--isolation chroot`` and the ``vfs`` storage driver, which work inside an unprivileged
container such as CI's. Its storage is private to the tests, under the cache directory
(``$OBS_SYNC_TEST_CACHE``, default ``~/.cache/obs-sync-test``), so nothing touches the
machine's own container storage and the base image survives between runs.

No registry image can be pulled on these machines, so the base is built from Debian's
packages: ``mmdebstrap`` of bookworm with python3, python3-venv and ca-certificates, like
the default ``python:3.12-slim-bookworm`` (Debian slim, documentation left out), tagged
with a hash of its inputs and reused while they are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.deploy_support import REPO, in_ci

CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
IMAGE = "localhost/obs-sync:test"
BASE_REPOSITORY = "localhost/obs-sync-test-base"
# The base's inputs: change any of them and the hash (so the cached base) changes.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
BASE_OPTIONS = (
    "--variant=minbase",
    # What Debian's slim images leave out: documentation, manual pages, translations.
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
)


def unavailable(reason: str) -> None:
    """Skips the image test with the reason; in CI (``CI`` set) fails it instead."""
    if in_ci():
        pytest.fail(f"the image test must run in CI: {reason}", pytrace=False)
    pytest.skip(f"image test not run: {reason}")


def cache_dir() -> Path:
    configured = os.environ.get("OBS_SYNC_TEST_CACHE", "").strip()
    return Path(configured) if configured else Path.home() / ".cache" / "obs-sync-test"


def base_tag() -> str:
    inputs = json.dumps([BASE_SUITE, BASE_PACKAGES, BASE_OPTIONS]).encode()
    return f"{BASE_REPOSITORY}:{hashlib.sha256(inputs).hexdigest()[:16]}"


class Buildah:
    """buildah with the tests' private storage, chroot isolation and the vfs driver."""

    def __init__(self, executable: str, storage: Path) -> None:
        self.executable = executable
        self.storage = storage
        self.globals = [
            "--root",
            str(storage / "storage"),
            "--runroot",
            str(storage / "run"),
            "--storage-driver",
            "vfs",
        ]

    def command(self, *args: str) -> list[str]:
        return [self.executable, *self.globals, *args]

    def run(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"buildah {' '.join(args[:2])} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def has_image(self, name: str) -> bool:
        return self.run("inspect", "--type", "image", name, check=False).returncode == 0

    def inspect(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("inspect", "--type", "image", name).stdout)
        return data

    def from_image(self, image: str) -> str:
        return self.run("from", "--pull=never", "--quiet", image).stdout.strip()

    def exec(
        self,
        container: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside ``container`` as the image's user, on the host's network."""
        return self.run(
            *self.exec_args(container, argv, env=env, volumes=volumes), timeout=timeout, check=False
        )

    def exec_args(
        self,
        container: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
    ) -> list[str]:
        args = ["run", "--isolation", "chroot", "--network", "host"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        for volume in volumes:
            args += ["--volume", volume]
        return [*args, container, "--", *argv]


def buildah_or_skip() -> Buildah:
    """A usable buildah, or a skip (a failure in CI) naming what is missing."""
    if os.geteuid() != 0:
        unavailable("buildah with --isolation chroot needs root (run the suite as root)")
    executable = shutil.which("buildah")
    if executable is None:
        unavailable(
            "buildah is not installed (Debian: apt-get install buildah mmdebstrap; "
            "or run scripts/ensure-tools as root)"
        )
    assert executable is not None
    return Buildah(executable, cache_dir() / "containers")


def ensure_base(buildah: Buildah) -> str:
    """The Debian-built base image (python3 at /usr/bin), built once per set of inputs."""
    tag = base_tag()
    if buildah.has_image(tag):
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        unavailable(
            "mmdebstrap is not installed (Debian: apt-get install mmdebstrap; "
            "or run scripts/ensure-tools as root)"
        )
    assert mmdebstrap is not None
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="base-") as work:
        rootfs = Path(work) / "rootfs.tar"
        done = subprocess.run(
            [
                mmdebstrap,
                *BASE_OPTIONS,
                f"--include={','.join(BASE_PACKAGES)}",
                "--format=tar",
                BASE_SUITE,
                str(rootfs),
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if done.returncode != 0:
            unavailable(
                f"mmdebstrap of {BASE_SUITE} failed (no Debian mirror?): "
                f"{done.stderr.strip()[-500:]}"
            )
        container = buildah.run("from", "scratch").stdout.strip()
        try:
            buildah.run("add", container, str(rootfs), "/")
            buildah.run(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                "/bin/sh",
                container,
            )
            buildah.run("commit", "--quiet", container, tag)
        finally:
            buildah.run("rm", container, check=False)
    # Older bases (other inputs) only take space now.
    for line in buildah.run("images", "--format", "{{.Name}}:{{.Tag}}").stdout.split():
        if line.startswith(f"{BASE_REPOSITORY}:") and line != tag:
            buildah.run("rmi", line, check=False)
    return tag


def package_index_or_skip() -> None:
    """The build's pip needs the package index (through the host's CA bundle)."""
    import requests

    try:
        requests.head("https://pypi.org/simple/pip/", timeout=15).raise_for_status()
    except requests.RequestException as error:
        unavailable(f"the package index is not reachable from this machine: {error}")


def build_image(buildah: Buildah, base: str, version: str) -> None:
    """deploy/container/Containerfile on ``base``, tagged IMAGE, built from scratch each
    time as from a fresh clone (no --layers: with vfs, caching every step costs more than
    it saves)."""
    done = buildah.run(
        "bud",
        "--isolation",
        "chroot",
        "--format",
        "docker",
        "--pull=never",
        # pip inside the build reaches the index only with this machine's CA bundle.
        "--volume",
        "/etc/ssl/certs:/etc/ssl/certs:ro",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"VERSION={version}",
        "-f",
        str(CONTAINERFILE),
        "-t",
        IMAGE,
        str(REPO),
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, (
        f"image build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    # The previous build's image, untagged now.
    buildah.run("rmi", "--prune", check=False)
