"""deploy/kubernetes: every manifest validates against the Kubernetes schemas
(``kubernetes-validate --strict``, the oldest and newest Kubernetes versions it knows of
that we support), the PodMonitor (a Prometheus Operator CRD, which kubernetes-validate has
no schema for) against the CRD's fields it uses, and the pieces fit together: hardened
security settings, probes, the config obs-sync accepts, the CronJob's deadline equal to
the configured run deadline, selectors, ports, the Secret's keys.

kubernetes-validate (22 MB of schemas) lives in its own virtualenv,
``.venv-kubernetes-validate`` (git-ignored), made on first use from
requirements/kubernetes-validate.txt (hash-pinned). Without the package index the
validation is skipped locally, but fails in CI (``CI`` set).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from obs_sync.config import parse_config
from tests.deploy_support import DEPLOY, REPO, in_ci

K8S = DEPLOY / "kubernetes"
REQUIREMENTS = REPO / "requirements" / "kubernetes-validate.txt"
VENV = REPO / ".venv-kubernetes-validate"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
# Kubernetes versions the manifests must be valid for: CronJob.spec.timeZone is GA since
# 1.27; 1.29 is the oldest still supported by the major providers when this was written.
KUBERNETES_VERSIONS = ("1.29", "1.37")
WORKLOADS = ("deployment.yaml", "cronjob.yaml")


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / name).read_text("utf-8"))
    return document


def pod_spec(name: str) -> dict[str, Any]:
    document = load(name)
    if document["kind"] == "CronJob":
        spec: dict[str, Any] = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = document["spec"]["template"]["spec"]
    return spec


def pod_labels(name: str) -> dict[str, str]:
    document = load(name)
    if document["kind"] == "CronJob":
        template = document["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = document["spec"]["template"]
    labels: dict[str, str] = template["metadata"]["labels"]
    return labels


def config_text() -> str:
    text: str = load("configmap.yaml")["data"]["config.yaml"]
    return text


def config_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(config_text())
    return values


# ------------------------------------------------------------------ schema validation


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"kubernetes-validate is required in CI: {reason}", pytrace=False)
    pytest.skip(f"kubernetes-validate not available: {reason}")


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    """The kubernetes-validate executable of its own venv, installed once per pin set."""
    stamp = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = VENV / "obs-sync-requirements.sha256"
    executable = VENV / "bin" / "kubernetes-validate"
    if executable.exists() and marker.exists() and marker.read_text().strip() == stamp:
        return executable
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "--require-hashes", "-r", str(REQUIREMENTS)],
    ]  # fmt: skip
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            _unavailable(f"{' '.join(step[:3])} took over 600 s")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            _unavailable(f"{' '.join(step[:4])} failed: {' | '.join(tail)}")
    marker.write_text(stamp)
    return executable


def manifests() -> list[Path]:
    """Every Kubernetes object in deploy/kubernetes (the kustomization is kustomize's)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(
    kubernetes_validate: Path, version: str
) -> None:
    core = [p for p in manifests() if p.name != "podmonitor.yaml"]
    done = subprocess.run(
        [str(kubernetes_validate), "--strict", "-k", version, *map(str, core)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Every file was really checked against a schema (none skipped as unknown).
    passed = re.findall(r"^INFO (\S+) passed", done.stdout, re.M)
    assert sorted(passed) == sorted(map(str, core)), done.stdout + done.stderr


def test_the_validation_catches_a_misspelt_field(kubernetes_validate: Path, tmp_path: Path) -> None:
    broken = load("deployment.yaml")
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = container["securityContext"].pop(
        "readOnlyRootFilesystem"
    )
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(broken), "utf-8")
    done = subprocess.run(
        [str(kubernetes_validate), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "readOnlyRootFileSystem" in done.stdout + done.stderr


# The fields of the Prometheus Operator's PodMonitor CRD (monitoring.coreos.com/v1) that
# podmonitor.yaml uses, with their types; anything else is refused so a typo cannot hide.
_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
PODMONITOR_FIELDS: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": str, "labels": dict},
    "spec": {
        "jobLabel": str,
        "selector": {"matchLabels": dict},
        "podMetricsEndpoints": [
            {"port": str, "path": str, "interval": _DURATION, "scrapeTimeout": _DURATION}
        ],
    },
}


def check_fields(value: Any, shape: Any, where: str) -> list[str]:
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        problems = [f"{where}.{key}: not a field of the CRD" for key in value if key not in shape]
        for key, sub in shape.items():
            if key in value:
                problems += check_fields(value[key], sub, f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return [f"{where}: expected a non-empty list"]
        return [
            p for i, item in enumerate(value) for p in check_fields(item, shape[0], f"{where}[{i}]")
        ]
    if isinstance(shape, type):
        return [] if isinstance(value, shape) else [f"{where}: expected {shape.__name__}"]
    if shape.startswith("^"):
        ok = isinstance(value, str) and re.fullmatch(shape, value)
        return [] if ok else [f"{where}: {value!r} is not a Prometheus duration"]
    return [] if value == shape else [f"{where}: expected {shape!r}"]


def test_podmonitor_uses_the_crd_fields_and_selects_the_daemon_port() -> None:
    monitor = load("podmonitor.yaml")
    assert check_fields(monitor, PODMONITOR_FIELDS, "podmonitor") == []
    # The check has teeth: a misspelt field is found.
    misspelt = {"spec": {"podMetricsEndpoint": []}}
    assert check_fields(misspelt, {"spec": PODMONITOR_FIELDS["spec"]}, "podmonitor")
    labels = pod_labels("deployment.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert not selector.items() <= pod_labels("cronjob.yaml").items()  # a Job has no /metrics
    ports = {p["name"] for p in pod_spec("deployment.yaml")["containers"][0]["ports"]}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"


# ------------------------------------------------------------------ how the pieces fit


def test_kustomization_lists_the_manifests() -> None:
    kustomization = load("kustomization.yaml")
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed), listed
    # The daemon by default; the CronJob is the documented alternative; the Secret is
    # never applied from the repository (its values are placeholders).
    everything = {p.name for p in manifests()}
    assert everything - listed == {"cronjob.yaml", "secret.example.yaml"}
    assert "- cronjob.yaml" in (K8S / "kustomization.yaml").read_text("utf-8")
    images = {image["name"] for image in kustomization["images"]}
    assert {c["image"] for w in WORKLOADS for c in pod_spec(w)["containers"]} <= images
    version = re.search(r"^ARG VERSION=(\S+)$", CONTAINERFILE.read_text(), re.M)
    assert version and kustomization["images"][0]["newTag"] == version.group(1)


def image_user() -> tuple[int, int]:
    match = re.search(r"^USER (\d+):(\d+)$", CONTAINERFILE.read_text(), re.M)
    assert match, "the Containerfile's USER must be numeric uid:gid"
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workloads_are_hardened(workload: str) -> None:
    spec = pod_spec(workload)
    uid, gid = image_user()
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context.get("privileged", False) is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) >= {"cpu", "memory"}
        # Writable only where an emptyDir is mounted; the config read-only.
        for mount in container["volumeMounts"]:
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume or mount.get("readOnly") is True, mount
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), "an emptyDir without a size limit"
        assert not any(v.get("hostPath") for v in volumes.values())


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workloads_read_the_configmap_and_the_secret(workload: str) -> None:
    spec = pod_spec(workload)
    config_env = re.search(r"OBS_SYNC_CONFIG=(\S+)", CONTAINERFILE.read_text())
    assert config_env
    config_path = Path(config_env.group(1))
    (container,) = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    assert config_path.name in load("configmap.yaml")["data"]
    secret = load("secret.example.yaml")
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    # Every ${VAR} the config refers to is a key of the Secret, and nothing secret is
    # in the ConfigMap.
    referenced = set(re.findall(r"\$\{(\w+)", config_text()))
    assert referenced == set(secret["stringData"])
    assert "env" not in container  # no secret or setting in the manifest itself


def test_configmap_config_is_accepted_by_obs_sync() -> None:
    env = {"ISALES_ACCESS_KEY": "ak", "ISALES_SECRET_KEY": "sk",
           "OBS_SYNC_DATABASE_URL": "postgresql+psycopg://u:p@db:5432/obs"}  # fmt: skip
    config = parse_config(yaml.safe_load(config_text()), env=env)
    assert config.metrics.host == "0.0.0.0"
    assert config.schedule.run_deadline_seconds is not None


def test_cronjob_deadline_equals_the_configured_run_deadline() -> None:
    cronjob = load("cronjob.yaml")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == config_values()["schedule"]["run_deadline_seconds"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    assert pod_spec("cronjob.yaml")["containers"][0]["args"] == ["sync"]


def test_deployment_runs_two_daemons_with_probes_on_healthz() -> None:
    deployment = load("deployment.yaml")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec("deployment.yaml")
    (container,) = spec["containers"]
    assert container["args"] == ["run"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config_values()["metrics"]["port"]
    for probe in ("livenessProbe", "readinessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz" and check["port"] == "metrics", probe
    shutdown = config_values()["schedule"]["shutdown_timeout_seconds"]
    for workload in WORKLOADS:
        assert pod_spec(workload)["terminationGracePeriodSeconds"] > shutdown
    service = load("service.yaml")
    assert service["spec"]["selector"].items() <= pod_labels("deployment.yaml").items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    # Both workloads select their own pods only.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels("deployment.yaml").items()
    assert not selector.items() <= pod_labels("cronjob.yaml").items()
