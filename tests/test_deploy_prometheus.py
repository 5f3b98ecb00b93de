"""deploy/prometheus: the alert rules load in promtool, their unit tests pass, every alert is
tested firing and not firing, and each one links to a runbook section that exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.deploy_support import (
    ALERT_TESTS,
    ALERTS,
    OPERATIONS,
    REPO,
    RUNBOOK_BASE,
    doc_anchors,
    load_alert_rules,
    require_tool,
)

# What the issue asks to alert on, by alert name.
EXPECTED_ALERTS = {
    "ObsSyncDown",  # up == 0
    "ObsSyncAbsent",  # no target at all
    "ObsSyncUnhealthy",
    "ObsSyncDataStale",
    "ObsSyncVdnsFailing",
    "ObsSyncCodeListsFailing",
    "ObsSyncAuthErrors",
    "ObsSyncDeletionsGuarded",
    "ObsSyncRunOverDeadline",
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool", "prometheus"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The rule tests have teeth: a staleness threshold of 2 intervals instead of 3 fails."""
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    text = ALERTS.read_text("utf-8")
    assert "> 3 * 3600" in text
    (tmp_path / ALERTS.name).write_text(text.replace("> 3 * 3600", "> 2 * 3600"), "utf-8")
    result = promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "ObsSyncDataStale" in result.stdout + result.stderr


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    rules = load_alert_rules()
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    anchors = doc_anchors()
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), (name, url)
        anchor = url.removeprefix(RUNBOOK_BASE)
        assert anchor == name.lower(), (name, url)
        assert anchor in anchors, f"{name}: docs/operations.md has no heading for #{anchor}"


def alert_test_cases() -> dict[str, dict[str, int]]:
    """Per alert: how many evaluations expect it firing and how many expect it silent."""
    document = yaml.safe_load(ALERT_TESTS.read_text("utf-8"))
    cases: dict[str, dict[str, int]] = {}
    for test in document["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
            counts["firing" if case.get("exp_alerts") else "silent"] += 1
    return cases


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = alert_test_cases()
    assert set(cases) == EXPECTED_ALERTS
    for name, counts in sorted(cases.items()):
        assert counts["firing"] >= 1 and counts["silent"] >= 1, (name, counts)


# The alerts on per-VDN series: each fires per source and names it (docs/operations.md).
PER_SOURCE_ALERTS = {
    "ObsSyncDataStale",
    "ObsSyncVdnsFailing",
    "ObsSyncCodeListsFailing",
    "ObsSyncAuthErrors",
    "ObsSyncDeletionsGuarded",
}


def test_the_sync_alerts_fire_per_source_and_name_it() -> None:
    rules = {rule["alert"]: rule for rule in load_alert_rules()}
    for name in PER_SOURCE_ALERTS:
        annotations = rules[name]["annotations"]
        assert "{{ $labels.source }}" in annotations["summary"], name
        assert "{{ $labels.source }}" in annotations["description"], name
        assert " by " not in rules[name]["expr"] or "source" in rules[name]["expr"], name
    # The unit tests show each of them firing with its source label.
    document = yaml.safe_load(ALERT_TESTS.read_text("utf-8"))
    labelled = {
        case["alertname"]
        for test in document["tests"]
        for case in test.get("alert_rule_test", [])
        for alert in case.get("exp_alerts") or []
        if "source" in alert["exp_labels"]
    }
    assert labelled == PER_SOURCE_ALERTS


def test_missing_promtool_fails_in_ci_and_skips_elsewhere(tmp_path: Path) -> None:
    """CI must not pass by skipping: without promtool on PATH the test fails when CI=true."""
    import os
    import sys

    target = f"{Path(__file__).relative_to(REPO)}::test_alert_rules_pass_promtool_check"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = str(tmp_path)  # an empty directory: no promtool
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target]

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=REPO, env={**env, **extra}, capture_output=True, text=True, timeout=120
        )

    local = run({})
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    ci = run({"CI": "true"})
    assert ci.returncode == 1 and "1 failed" in ci.stdout, ci.stdout
    assert "promtool is not installed" in ci.stdout and "scripts/ensure-tools" in ci.stdout


def test_the_documented_prometheus_config_loads_the_rules(tmp_path: Path) -> None:
    """The prometheus.yml snippet in docs/operations.md passes ``promtool check config``
    (its rule file path pointed at the shipped alerts.yml)."""
    import re

    docs = OPERATIONS.read_text("utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.S)
    (snippet,) = [b for b in blocks if "scrape_configs:" in b]
    config = yaml.safe_load(snippet)
    assert config["scrape_configs"][0]["job_name"] == "obs-sync"  # what the rules expect
    assert len(config["rule_files"]) == 1
    config["rule_files"] = [str(ALERTS)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), "utf-8")
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout
