"""Simulator fixtures (pytest plugin loaded by tests/conftest.py).

Fixtures:

- ``simulator``: a started :class:`obs_sync.simulator.Simulator` (function scope) on
  127.0.0.1 with generated data: VDNs 1..5 (``SIM_VDNS``), 120 codes each, seed 1,
  credentials ``SIM_ACCESS_KEY``/``SIM_SECRET_KEY`` ("test-ak"/"test-sk"). Faults, data
  changes and stats are per test (a fresh simulator every time).
- ``make_simulator``: a factory ``make_simulator(data=None, **simulator_kwargs)`` for other
  shapes (latency, signed_headers, credentials...); everything it starts is stopped at
  teardown. Defaults as for ``simulator``.
- ``tls_simulator``: a :class:`TlsSimulator` ``(sim, ca_bundle)``: the same simulator over
  HTTPS with a certificate for 127.0.0.1/localhost from a throwaway ``trustme`` CA, whose
  PEM is at ``ca_bundle`` (use it as ``isales.verify_tls``).
- ``tenant_simulator``: ONE server with several keys: the global test key plus
  ``TENANT_A`` (granted VDNs 1-2) and ``TENANT_B`` (granted VDNs 3-5), data as for
  ``simulator``. A key asking for a VDN it is not granted gets HTTP 403.
- ``second_simulator``: ANOTHER server beside ``simulator``: the same VDN ids 1..5 but other
  data (seed 2: other codes, other descriptions) and its own key ``SECOND_KEY``; each server
  rejects the other's key (401, unknown access key).

Every simulator serves zh_CN descriptions by default and en_US ones for ``locale: en_US``
(each code's two descriptions differ).

Helpers:

- ``isales_config_dict(sim, **overrides) -> dict``: an ``isales:`` section (as
  ``ISalesConfig.model_validate`` / ``parse_config({"isales": ...})`` accept) pointing at
  ``sim``, with test-friendly defaults: VDNs "1-5", page_size 50, no rate limit, short
  timeouts and backoff. ``overrides`` replace keys (e.g. ``vdn_ids=[1]``).
- ``isales_config(sim, **overrides) -> ISalesConfig``: the same, validated.
- ``source_config_dict(sim, name="default", key=None, **overrides) -> dict``: one entry of
  a ``sources:`` list: ``name`` plus the keys of ``isales_config_dict`` (``key``: an
  :class:`AccessKey` whose pair is used instead of the test key; ``locale="en_US"`` etc.
  as overrides).
- ``c2_session(sim, secret_key=SIM_SECRET_KEY, key=None, locale=None) -> requests.Session``:
  signed with C2Auth and sending the vendor's Content-Type (and ``locale`` if given), for
  raw requests (``session.get(sim.api_url(1), params=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import requests

from obs_sync.config import ISalesConfig
from obs_sync.signing import C2Auth
from obs_sync.simulator import AccessKey, Simulator, SimulatorData

SIM_ACCESS_KEY = "test-ak"
SIM_SECRET_KEY = "test-sk"
SIM_VDNS = range(1, 6)
SIM_CODES_PER_VDN = 120
CONTENT_TYPE = "application/json; charset=UTF-8"
TENANT_A = AccessKey("tenant-a-ak", "tenant-a-sk", frozenset({1, 2}))
TENANT_B = AccessKey("tenant-b-ak", "tenant-b-sk", frozenset({3, 4, 5}))
SECOND_KEY = AccessKey("second-ak", "second-sk")
SECOND_SEED = 2


class TlsSimulator(NamedTuple):
    sim: Simulator
    ca_bundle: str


def sim_data() -> SimulatorData:
    return SimulatorData.generate(vdn_ids=SIM_VDNS, codes_per_vdn=SIM_CODES_PER_VDN, seed=1)


def isales_config_dict(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "base_url": sim.url,
        "access_key": SIM_ACCESS_KEY,
        "secret_key": SIM_SECRET_KEY,
        "vdn_ids": [f"{SIM_VDNS.start}-{SIM_VDNS.stop - 1}"],
        "page_size": 50,
        "timeout_seconds": 5,
        "max_concurrency": 4,
        "max_requests_per_second": 0,
        "max_retries": 3,
        "backoff_initial_seconds": 0.01,
        "backoff_max_seconds": 0.05,
    }
    config.update(overrides)
    return config


def isales_config(sim: Simulator, **overrides: Any) -> ISalesConfig:
    return ISalesConfig.model_validate(isales_config_dict(sim, **overrides))


def source_config_dict(
    sim: Simulator, name: str = "default", key: AccessKey | None = None, **overrides: Any
) -> dict[str, Any]:
    if key is not None:
        overrides = {"access_key": key.access_key, "secret_key": key.secret_key, **overrides}
    return {"name": name, **isales_config_dict(sim, **overrides)}


def c2_session(
    sim: Simulator,
    secret_key: str = SIM_SECRET_KEY,
    key: AccessKey | None = None,
    locale: str | None = None,
) -> requests.Session:
    session = requests.Session()
    if key is not None:
        session.auth = C2Auth(key.access_key, key.secret_key)
    else:
        session.auth = C2Auth(SIM_ACCESS_KEY, secret_key)
    session.headers["Content-Type"] = CONTENT_TYPE
    if locale is not None:
        session.headers["locale"] = locale
    if sim.tls:
        session.verify = False
    return session


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def make(data: SimulatorData | None = None, **kwargs: Any) -> Simulator:
        kwargs.setdefault("access_key", SIM_ACCESS_KEY)
        kwargs.setdefault("secret_key", SIM_SECRET_KEY)
        sim = Simulator(data if data is not None else sim_data(), **kwargs).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    return make_simulator()


@pytest.fixture
def tenant_simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    return make_simulator(keys=[TENANT_A, TENANT_B])


@pytest.fixture
def second_simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    data = SimulatorData.generate(
        vdn_ids=SIM_VDNS, codes_per_vdn=SIM_CODES_PER_VDN, seed=SECOND_SEED
    )
    return make_simulator(data, access_key=SECOND_KEY.access_key, secret_key=SECOND_KEY.secret_key)


@pytest.fixture
def tls_simulator(make_simulator: Callable[..., Simulator], tmp_path: Path) -> TlsSimulator:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(cert_path), append=True)
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    sim = make_simulator(tls=(str(cert_path), str(key_path)))
    return TlsSimulator(sim, str(ca_path))
