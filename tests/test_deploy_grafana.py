"""deploy/grafana: the dashboard is provisionable (uid, templated data source) and every
PromQL expression in it parses (promtool). That every metric it names exists in a real
scrape of the daemon is checked in tests/test_deploy_scrape.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy_support import (
    DEPLOY,
    dashboard_expressions,
    load_dashboard,
    promql_metric_names,
    require_tool,
)

DS = "${DS_PROMETHEUS}"


def check_expressions(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on a rules file with each expression as a recording rule."""
    rules = [{"record": f"obs_sync_dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run(
        [require_tool("promtool", "prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = dashboard_expressions(load_dashboard())
    assert len(exprs) >= 15
    result = check_expressions(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_the_parse_check_rejects_a_broken_expression(tmp_path: Path) -> None:
    result = check_expressions(["sum by (status (obs_sync_runs_total)"], tmp_path)
    assert result.returncode != 0


def walk_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(walk_panels(panel.get("panels", [])))
    return found


def test_dashboard_is_provisionable_with_a_templated_data_source() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "obs-sync" and dashboard["title"]
    assert dashboard.get("id") is None  # Grafana assigns it; a fixed id clashes on import
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = walk_panels(dashboard["panels"])
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DS}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DS, panel["title"]
    for name in ("instance", "source", "vdn"):
        assert variables[name]["datasource"]["uid"] == DS


def test_dashboard_covers_runs_freshness_failures_requests_and_rows() -> None:
    exprs = dashboard_expressions(load_dashboard())
    used = set().union(*(promql_metric_names(e) for e in exprs))
    assert {
        "obs_sync_runs_total",
        "obs_sync_vdn_last_success_timestamp_seconds",
        "obs_sync_vdn_results_total",
        "obs_sync_http_request_duration_seconds_count",
        "obs_sync_http_request_duration_seconds_bucket",
        "obs_sync_codes_changed_total",
    } <= used
    assert any("histogram_quantile" in e and "request_duration_seconds_bucket" in e for e in exprs)


# The daemon's series with a `source` label (docs/operations.md): every per-VDN one.
PER_SOURCE_METRICS = (
    "obs_sync_vdn_last_success_timestamp_seconds",
    "obs_sync_vdns_failing",
    "obs_sync_vdns_empty",
    "obs_sync_vdn_results_total",
    "obs_sync_http_request_duration_seconds",
    "obs_sync_codes_changed_total",
)


def test_a_source_variable_filters_every_per_source_series() -> None:
    dashboard = load_dashboard()
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables.index("instance") < variables.index("source") < variables.index("vdn")
    source = dashboard["templating"]["list"][variables.index("source")]
    assert source["query"]["query"].endswith(", source)")
    assert source["includeAll"] and source["multi"] and source["allValue"] == ".*"
    vdn = dashboard["templating"]["list"][variables.index("vdn")]
    assert 'source=~"$source"' in vdn["query"]["query"]  # the VDNs of the chosen sources
    per_source = [
        target
        for panel in walk_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if any(m in target["expr"] for m in PER_SOURCE_METRICS)
    ]
    assert len(per_source) >= 10
    for target in per_source:
        expr = target["expr"]
        for metric in PER_SOURCE_METRICS:
            for selector in re.findall(rf"{metric}\w*\{{[^}}]*\}}", expr):
                assert 'source=~"$source"' in selector, expr
        if " by (" in expr and "by (le)" not in expr:
            assert "source" in expr.split(" by (", 1)[1].split(")")[0], expr  # kept apart
            assert "{{source}}" in target["legendFormat"], expr


def test_provisioning_points_at_the_dashboard_folder() -> None:
    provisioning = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards.yml").read_text())
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_metric_names_are_found_in_expressions() -> None:
    """The extraction that the scrape test relies on: metrics in, functions and labels out."""
    expr = (
        'histogram_quantile(0.9, sum by (le, outcome) (rate(obs_sync_x_bucket{outcome="ok",'
        ' le!="1"}[5m]))) > on(instance) group_left obs_sync_y or vector(0) and time() - up'
    )
    assert promql_metric_names(expr) == {"obs_sync_x_bucket", "obs_sync_y", "up"}
