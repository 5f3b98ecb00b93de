"""deploy/ against a real scrape: ``obs-sync run`` in a subprocess (tests/test_daemon_e2e.py)
against the bundled simulator and a test database; after its first run, GET /metrics.

Every metric the alert rules, the dashboard and docs/operations.md name must be in that
scrape, with the label values they match on; the exposition itself has build_info, a help
text on every metric and no ``_created`` series."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy.engine import make_url

import obs_sync
from obs_sync.simulator import Simulator, SimulatorData
from tests.deploy_support import (
    OPERATIONS,
    dashboard_expressions,
    load_alert_rules,
    load_dashboard,
    promql_label_matchers,
    promql_metric_names,
)
from tests.test_daemon_e2e import ACCESS, SECRET, daemon, wait_for

pytestmark = pytest.mark.slow

# Series Prometheus itself adds to every scrape, not exported by the daemon.
SYNTHETIC = {"up"}


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: list[Sample] = [s for f in self.families for s in f.samples]
        self.names = {sample.name for sample in self.samples}

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


@contextlib.contextmanager
def own_database(pg_admin_url: str) -> Iterator[str]:
    """A database of its own (like the ``database_url`` fixture, for any scope)."""
    name = f"obs_sync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def scrape(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    tmp: Path = tmp_path_factory.mktemp("scrape")
    data = SimulatorData.generate(vdn_ids=range(1, 4), codes_per_vdn=15, seed=13)
    with (
        own_database(pg_admin_url) as url,
        Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
        # Every code list, so every documented series is there (the lists' start at 0).
        daemon(
            tmp,
            sim,
            url,
            isales={"code_lists": ["obs_result_codes", "display_results", "business_results"]},
        ) as d,
    ):
        wait_for(lambda: d.get("/metrics")[0] == 200, "the metrics endpoint")
        wait_for(lambda: d.metric("obs_sync_runs_total", status="succeeded") >= 1, "a run")
        d.assert_alive()
        status, body = d.get("/metrics")
        assert status == 200
        yield Scrape(body.decode())
        assert d.terminate() == 0


def assert_exported(scrape: Scrape, exprs: list[str], where: str) -> None:
    used = set().union(*(promql_metric_names(e) for e in exprs))
    assert used, where
    missing = sorted(used - scrape.names - SYNTHETIC)
    assert missing == [], f"{where} uses metrics the daemon does not export: {missing}"
    for expr in exprs:
        for metric, label, value in promql_label_matchers(expr):
            if metric in SYNTHETIC:
                continue
            values = scrape.label_values(metric, label)
            assert value in values, f"{where}: {metric}{{{label}={value!r}}} not in {values}"


def test_every_metric_the_alerts_use_is_exported(scrape: Scrape) -> None:
    assert_exported(scrape, [rule["expr"] for rule in load_alert_rules()], "alerts.yml")


def test_every_metric_the_dashboard_uses_is_exported(scrape: Scrape) -> None:
    assert_exported(scrape, dashboard_expressions(load_dashboard()), "obs-sync.json")


def test_every_metric_in_the_docs_table_is_exported(scrape: Scrape) -> None:
    documented = set(re.findall(r"^\| `(obs_sync_\w+)` \|", OPERATIONS.read_text(), re.M))
    assert len(documented) >= 10
    families = {family.name for family in scrape.families}
    # The table lists counters with their _total sample name, as queries use them.
    exported = families | scrape.names
    assert sorted(documented - exported) == []
    assert sorted(families - {re.sub(r"_total$", "", n) for n in documented}) == []


def test_real_exposition_has_build_info_help_and_no_created_series(scrape: Scrape) -> None:
    import platform

    (build,) = [s for s in scrape.samples if s.name == "obs_sync_build_info"]
    assert build.value == 1
    assert build.labels["version"] == obs_sync.__version__
    assert build.labels["python"] == platform.python_version()
    assert [n for n in scrape.names if n.endswith("_created")] == []
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", scrape.text, re.M))
    types = re.findall(r"^# TYPE (\S+) ", scrape.text, re.M)
    assert len(types) >= 12
    assert sorted(set(types) - set(helps)) == []
    assert [name for name, text in helps.items() if not text.strip()] == []


def test_a_run_over_its_deadline_is_counted(pg_admin_url: str, tmp_path: Path) -> None:
    """The metric behind ObsSyncRunOverDeadline, end to end: a slow server and a short
    run deadline leave VDNs unstarted, and the daemon counts the run."""
    data = SimulatorData.generate(vdn_ids=range(1, 7), codes_per_vdn=15, seed=17)
    with (
        own_database(pg_admin_url) as url,
        Simulator(data, access_key=ACCESS, secret_key=SECRET) as sim,
    ):
        sim.latency_seconds = 0.8  # 2 pages per VDN: the first VDN outlasts the deadline
        with daemon(
            tmp_path,
            sim,
            url,
            isales={"max_concurrency": 1},
            schedule={"interval_minutes": 60, "run_deadline_seconds": 1},
        ) as d:
            wait_for(lambda: d.get("/metrics")[0] == 200, "the metrics endpoint")
            wait_for(lambda: d.metric("obs_sync_runs_total") >= 1, "a run")
            assert d.metric("obs_sync_run_deadline_exceeded_total") == 1
            assert d.metric("obs_sync_vdn_results_total", status="skipped") >= 4
            assert d.terminate() == 0
