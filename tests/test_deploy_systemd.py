"""deploy/systemd: the unit passes ``systemd-analyze verify``, is hardened to an exposure of
at most 2.5 (``systemd-analyze security --offline=true``), and still grants what the daemon
needs. Skipped only where systemd-analyze is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy_support import DEPLOY, OPERATIONS, REPO

UNIT = DEPLOY / "systemd" / "obs-sync.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "obs-sync.env.example"
MAX_EXPOSURE = 2.5


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine)")
    return found


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``{key: [values in order]}`` of a unit file (all sections; comments dropped)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exposure(unit: Path) -> float:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in result.stderr and "unrecognized option" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_unit_exposure_is_at_most_2_5() -> None:
    assert exposure(UNIT) <= MAX_EXPOSURE


def test_exposure_check_would_catch_a_regression(tmp_path: Path) -> None:
    """Without its hardening block the same unit scores far worse (the check has teeth)."""
    text = UNIT.read_text("utf-8")
    bare = text.split("# Hardening.")[0] + "\n[Install]\nWantedBy=multi-user.target\n"
    (tmp_path / UNIT.name).write_text(bare, "utf-8")
    assert exposure(tmp_path / UNIT.name) > MAX_EXPOSURE


def test_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on the unit as shipped, in a throwaway root that has the
    system's units and an executable at the unit's ExecStart path (verify requires one)."""
    analyze_path = analyze()
    system_units = next(
        (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
        None,
    )
    if system_units is None:
        pytest.skip("no systemd unit directory on this machine")
    root = tmp_path / "root"
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    binary = unit_settings()["ExecStart"][0].split()[0]
    executable = root / binary.lstrip("/")
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    result = subprocess.run(
        [analyze_path, "verify", f"--root={root}", UNIT.name],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify exits 0 on settings it ignores: any output at all is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_unit_keeps_what_the_daemon_needs() -> None:
    settings = unit_settings()
    families = set(" ".join(settings["RestrictAddressFamilies"]).split())
    # iSales and PostgreSQL over TCP; a local PostgreSQL (or the embedded one) over a socket.
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in settings and "IPAddressDeny" not in settings
    # It writes only its state directory, also the embedded PostgreSQL's data.
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["StateDirectory"] == ["obs-sync"]
    assert settings["WorkingDirectory"] == ["/var/lib/obs-sync"]
    assert "OBS_SYNC_DATA_DIR=/var/lib/obs-sync" in settings["Environment"]
    assert "ReadWritePaths" not in settings
    assert settings["UMask"] == ["0077"]
    # A configuration error (exit 2) is not retried in a loop; SIGTERM is a clean stop.
    assert settings["RestartPreventExitStatus"] == ["2"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert settings["User"] == ["obs-sync"]


def test_env_template_holds_every_variable_the_example_config_needs() -> None:
    example = (REPO / "config.example.yaml").read_text("utf-8")
    values = "\n".join(line.split("#")[0] for line in example.splitlines())  # not comments
    needed = set(re.findall(r"\$\{(\w+)", values))
    assert "ISALES_SECRET_KEY" in needed
    template = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert needed <= template, needed - template


def test_docs_install_the_paths_the_unit_uses() -> None:
    docs = OPERATIONS.read_text("utf-8")
    settings = unit_settings()
    assert "deploy/systemd/obs-sync.service" in docs
    for path in (
        settings["ExecStart"][0].split()[0],  # /opt/obs-sync/venv/bin/obs-sync
        settings["EnvironmentFile"][0],
        "/etc/obs-sync/config.yaml",
    ):
        assert path in docs, path
    assert "useradd --system" in docs
    assert "chmod 0600 /etc/obs-sync/env" in docs
