"""Fail fast: rejected credentials and an unreachable server stop a run from asking.

The rule (obs_sync/failfast.py) as a pure function, then whole runs against the simulator
(a wrong secret key) and a port that refuses connections, on real PostgreSQL.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from obs_sync.config import ConfigError, parse_config
from obs_sync.engine.run import run_sync
from obs_sync.failfast import AUTH_FIX, FailFast
from obs_sync.simulator import Simulator, SimulatorData
from tests.fixtures_db import TEST_SCHEMA, config_dict, make_config

S = TEST_SCHEMA
VDNS = range(1, 21)


def test_auth_rejections_trip_at_the_threshold() -> None:
    rule = FailFast(max_auth_failures=3, max_unreachable_vdns=3)
    assert rule.observe("auth") is None
    assert rule.observe(None) is None  # a success in between does not forgive a rejection
    assert rule.observe("http_status", 403) is None  # "no permission": counted too
    trip = rule.observe("auth")
    assert trip is not None and trip.reason == "auth_rejected"
    assert "sync.max_auth_failures = 3" in trip.error and AUTH_FIX in trip.error
    assert rule.observe("auth") is None  # reported once


def test_unreachable_needs_consecutive_vdns() -> None:
    rule = FailFast(max_auth_failures=3, max_unreachable_vdns=2)
    assert rule.observe("transport") is None
    assert rule.observe("vendor") is None  # an answer: the server is there, streak reset
    assert rule.observe("transport") is None
    assert rule.observe("http_status", 404) is None
    assert rule.observe("transport") is None
    trip = rule.observe("transport")
    assert trip is not None and trip.reason == "unreachable"
    assert "2 VDNs in a row" in trip.error and "next run probes it again" in trip.error


def test_threshold_one_trips_on_the_first() -> None:
    assert FailFast(1, 1).observe("auth") is not None
    assert FailFast(1, 1).observe("transport") is not None


@pytest.mark.parametrize("key", ["max_auth_failures", "max_unreachable_vdns", "heartbeat_seconds"])
def test_thresholds_are_bounded(key: str, simulator: Simulator) -> None:
    sim = simulator
    with pytest.raises(ConfigError, match=f"sync.{key}"):
        parse_config(config_dict(sim, "postgresql://x@h/db", sync={key: 0}), env={})
    top = {"max_auth_failures": 1000, "max_unreachable_vdns": 10_000, "heartbeat_seconds": 3600}
    parse_config(config_dict(sim, "postgresql://x@h/db", sync={key: top[key]}), env={})
    with pytest.raises(ConfigError, match=f"sync.{key}"):
        parse_config(config_dict(sim, "postgresql://x@h/db", sync={key: top[key] * 2}), env={})


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def twenty(make_simulator: object) -> Simulator:
    sim: Simulator = make_simulator(  # type: ignore[operator]
        SimulatorData.generate(vdn_ids=VDNS, codes_per_vdn=10, seed=2)
    )
    return sim


def skip_records(engine: Engine) -> list[tuple[int, str, str, str]]:
    with engine.connect() as connection:
        return [
            tuple(row)  # type: ignore[misc]
            for row in connection.execute(
                text(
                    f"SELECT vdn_id, status, coalesce(skip_reason, ''), error "
                    f"FROM {S}.sync_run_vdn ORDER BY vdn_id"
                )
            )
        ]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_wrong_key_stops_asking_after_the_threshold(
    twenty: Simulator, database_url: str, engine: Engine, concurrency: int
) -> None:
    config = make_config(
        twenty,
        database_url,
        secret_key="wrong",
        vdn_ids=["1-20"],
        max_concurrency=concurrency,
        sync={"max_auth_failures": 3},
    )
    result = run_sync(config)
    assert result.exit_code == 1 and result.status == "failed"
    failed = [v for v in result.vdns if v.status == "failed"]
    # The fetches in flight when the third rejection came back still end: at most one
    # more per other fetch slot.
    assert 3 <= len(failed) <= 3 + concurrency - 1
    assert all(v.error_kind == "auth" for v in failed)
    assert result.total("requests") == len(failed)  # a 401 is never retried
    records = skip_records(engine)
    assert [r[0] for r in records] == list(VDNS)  # every VDN has its record
    skipped = [r for r in records if r[1] == "skipped"]
    assert len(skipped) == 20 - len(failed)
    assert all(r[2] == "auth_rejected" and AUTH_FIX in r[3] for r in skipped)
    assert all("rejected this run's credentials 3 times" in r[3] for r in skipped)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: connections are refused


def test_a_refusing_server_opens_the_breaker_and_the_next_run_probes_again(
    twenty: Simulator, database_url: str, engine: Engine
) -> None:
    config = make_config(
        twenty,
        database_url,
        base_url=f"http://127.0.0.1:{closed_port()}",
        vdn_ids=["1-20"],
        max_concurrency=1,
        max_retries=2,
        sync={"max_unreachable_vdns": 3},
    )
    result = run_sync(config)
    assert result.exit_code == 1
    failed = [v for v in result.vdns if v.status == "failed"]
    assert [v.vdn_id for v in failed] == [1, 2, 3]
    assert all(v.error_kind == "transport" for v in failed)
    assert result.total("requests") == 3 * 3  # 3 VDNs x (1 + 2 retries)
    skipped = [r for r in skip_records(engine) if r[1] == "skipped"]
    assert [r[0] for r in skipped] == list(range(4, 21))
    assert all(r[2] == "unreachable" and "isales.base_url" in r[3] for r in skipped)
    # The next run asks again (per run), and with the server back syncs everything.
    working = make_config(twenty, database_url, vdn_ids=["1-20"], max_concurrency=1)
    assert run_sync(working).exit_code == 0
