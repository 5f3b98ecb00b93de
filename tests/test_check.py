"""``obs-sync check``: each check passes or names the fix, against the real simulator."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obs_sync.commands.check import CheckResult, check_config, check_isales, format_result
from obs_sync.config import Config, parse_config
from obs_sync.simulator import Simulator, SimulatorData

ACCESS, SECRET = "check-ak", "check-secret-value"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    data = SimulatorData.generate(vdn_ids=range(3, 5), codes_per_vdn=5, seed=3)
    with Simulator(data, access_key=ACCESS, secret_key=SECRET) as server:
        yield server


def config_for(
    base_url: str = "http://127.0.0.1:1", *, sections: dict[str, Any] | None = None, **isales: Any
) -> Config:
    """A configuration for ``base_url``; ``sections`` replaces whole top-level sections."""
    return parse_config(
        {
            "isales": {
                "base_url": base_url,
                "access_key": ACCESS,
                "secret_key": SECRET,
                "vdn_ids": ["3-4"],
                "max_retries": 0,
                "timeout_seconds": 5,
                **isales,
            },
            "database": {"url": "postgresql://u:dbpass@127.0.0.1:5432/x"},
            **(sections or {}),
        },
        env={},
    )


def test_config_check_summarises() -> None:
    result = check_config(config_for("http://127.0.0.1:1"), None)
    assert result.ok
    assert "2 VDNs (3..4)" in result.detail
    assert "database at database.url," in result.detail
    assert "dbpass" not in result.detail


def test_config_check_fails_a_bad_cron_like_run_would(tmp_path: Path) -> None:
    config = config_for(sections={"schedule": {"cron": "0 25 * * *"}})
    result = check_config(config, tmp_path / "config.yaml")
    assert not result.ok
    assert result.detail.startswith(f"{tmp_path / 'config.yaml'}: schedule.cron '0 25 * * *'")
    assert result.fix and "*/30 * * * *" in result.fix


def test_isales_passes(sim: Simulator) -> None:
    before = sim.stats.by_vdn[3]
    result = check_isales(config_for(sim.url))
    assert result.ok, result
    assert "VDN 3" in result.detail and "totalCount 5" in result.detail
    assert sim.stats.by_vdn[3] == before + 1  # exactly one signed request


def test_wrong_secret_points_at_keys_and_clock(sim: Simulator) -> None:
    before = sim.stats.auth_failures
    result = check_isales(config_for(sim.url, secret_key="not-the-secret"))
    assert sim.stats.auth_failures == before + 1
    assert not result.ok
    assert "401" in result.detail
    assert result.fix is not None
    assert "secret_key" in result.fix and "clock" in result.fix
    assert "not-the-secret" not in result.detail + result.fix
    # The advice is printed once: as the fix, not again in the detail line.
    printed = format_result(result)
    assert printed.count("secret_key") == 1 and printed.count("clock") == 1, printed
    assert "rejected the signature" in result.detail


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_points_at_base_url() -> None:
    result = check_isales(config_for(f"http://127.0.0.1:{_closed_port()}"))
    assert not result.ok
    assert result.fix is not None and "isales.base_url" in result.fix
    assert "firewall" in result.fix


def test_unresolvable_host_points_at_dns() -> None:
    result = check_isales(config_for("http://nohost.invalid:8080"))  # .invalid never resolves
    assert not result.ok
    assert "DNS lookup failed for host 'nohost.invalid'" in result.detail
    assert result.fix is not None and "does not resolve" in result.fix


def test_tls_against_plain_http_points_at_tls(sim: Simulator) -> None:
    result = check_isales(config_for(sim.url.replace("http://", "https://")))
    assert not result.ok
    assert result.fix is not None and "TLS" in result.fix
    # The real cause (a plain-HTTP port) and its fix, not CA bundles (issue 17).
    assert "http://" in result.fix and "verify_tls" not in result.fix


def test_format_result() -> None:
    passed = format_result(CheckResult("database", True, "PostgreSQL 16"))
    assert passed.startswith("PASS  database")
    failed = format_result(CheckResult("isales", False, "HTTP 401", "check the keys"))
    lines = failed.splitlines()
    assert lines[0].startswith("FAIL  isales") and "HTTP 401" in lines[0]
    assert lines[1].strip() == "fix: check the keys"


def test_certificate_for_another_name_points_at_base_url(tmp_path: Any) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("isales.example")  # not 127.0.0.1, the host we connect to
    cert_path, key_path, ca_path = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    data = SimulatorData.generate(vdn_ids=range(3, 5), codes_per_vdn=5, seed=3)
    with Simulator(
        data, access_key=ACCESS, secret_key=SECRET, tls=(str(cert_path), str(key_path))
    ) as server:
        result = check_isales(config_for(server.url, verify_tls=str(ca_path)))
    assert not result.ok
    assert result.fix is not None and "isales.base_url" in result.fix
    assert "verify_tls" not in result.fix  # the CA is right; the name is not


def test_database_check_reports_the_schema_state(database_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from obs_sync.commands.check import check_database
    from obs_sync.db import migrate

    config = config_for(sections={"database": {"url": database_url, "schema": "chk"}})
    fresh = check_database(config)
    assert fresh.ok and "schema chk not created yet" in fresh.detail
    # Which database: where, its name, the schema and the user, never the password.
    name = make_url(database_url).database
    assert ":5432, database " in fresh.detail or "Unix socket" in fresh.detail
    assert f"database {name}, schema chk, user " in fresh.detail
    password = make_url(database_url).password
    assert not password or str(password) not in fresh.detail
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, "chk")
        current = check_database(config)
        assert current.ok
        assert f"schema chk at migration {migrate.head_revision()} (current)" in current.detail
        with engine.begin() as connection:  # as left by a newer obs-sync
            connection.execute(text("UPDATE chk.alembic_version SET version_num = '0099'"))
        newer = check_database(config)
    finally:
        engine.dispose()
    assert not newer.ok  # a sync would refuse this schema, so check must not pass it
    assert "at migration 0099, which this obs-sync version does not know" in newer.detail
    assert newer.fix and "upgrade obs-sync" in newer.fix


def metrics_config(host: str, port: int) -> Config:
    return config_for(sections={"metrics": {"host": host, "port": port}})


def test_metrics_check() -> None:
    from obs_sync.commands.check import check_metrics
    from obs_sync.daemon.metrics import Metrics, MetricsServer
    from obs_sync.health import Health

    assert check_metrics(metrics_config("127.0.0.1", 0)).ok
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    free = check_metrics(metrics_config("127.0.0.1", port))
    assert free.ok and "is free" in free.detail

    with socket.socket() as holder:  # another program holds the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = check_metrics(metrics_config("127.0.0.1", holder.getsockname()[1]))
    assert not busy.ok and "Address already in use" in busy.detail
    assert busy.fix and "metrics.port" in busy.fix

    # The daemon itself already serving there is fine (check run next to a running daemon).
    server = MetricsServer(
        "127.0.0.1", 0, metrics=Metrics(), health=lambda: Health("unhealthy", "x")
    ).start()
    try:
        ours = check_metrics(metrics_config("0.0.0.0", server.port))
    finally:
        server.stop()
    assert ours.ok and "running obs-sync daemon" in ours.detail

    elsewhere = check_metrics(metrics_config("192.0.2.1", 9464))  # TEST-NET-1: not ours
    assert not elsewhere.ok and elsewhere.fix and "metrics.host" in elsewhere.fix


def test_check_command_with_a_bad_config_prints_a_fail_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from obs_sync.cli import main

    path = tmp_path / "config.yaml"
    path.write_text("isales: {base_url: 'http://127.0.0.1:1', access_key: a}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "check"])
    assert result.exit_code == 2
    assert result.output.startswith(f"FAIL  config    {path}: isales.secret_key")


def test_a_role_without_privileges_is_told_about_grants_not_the_url(database_url: str) -> None:
    """Connected, but not allowed: the fix is about roles and grants (check, and the one-line
    error of the other commands), not about reaching the server."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from obs_sync.commands.check import check_database
    from obs_sync.db import migrate
    from obs_sync.db.errors import database_error

    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    engine = create_engine(database_url)
    try:
        migrate.upgrade(engine, "chk")
        with engine.begin() as connection:
            connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        url = make_url(database_url).set(username=role, password=None)
        config = config_for(sections={"database": {"url": url.render_as_string(), "schema": "chk"}})
        result = check_database(config)
        assert not result.ok
        assert result.fix and "grant-reader" in result.fix and "database.url" in result.fix
        assert "accepts connections" not in result.fix
        role_engine = create_engine(url)
        try:
            with role_engine.connect() as connection:
                connection.execute(text("SELECT * FROM chk.result_code"))
        except Exception as error:
            assert "grant-reader" in database_error(error)
        else:
            raise AssertionError("a role without privileges read the table")
        finally:
            role_engine.dispose()
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        engine.dispose()
