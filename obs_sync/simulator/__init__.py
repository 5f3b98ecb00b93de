"""The bundled CC-iSales simulator: the real URL, C2 verification, faults on demand.

>>> data = SimulatorData.generate(vdn_ids=range(1, 11), codes_per_vdn=120, seed=1)
>>> with Simulator(data, access_key="ak", secret_key="sk") as sim:  # doctest: +SKIP
...     sim.faults.add(Fault(kind="http_status", status=503, times=2))
...     sim.keys.add(AccessKey("tenant-ak", "tenant-sk", frozenset({1, 2})))  # 2 VDNs only

See docs/simulator.md.
"""

from obs_sync.simulator.data import SimulatorData, SimulatorDataError
from obs_sync.simulator.faults import FAULT_KINDS, Fault, FaultError, FaultSet
from obs_sync.simulator.keys import AccessKey, AccessKeyError, KeyRing, load_keys
from obs_sync.simulator.server import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Simulator
from obs_sync.simulator.stats import RequestRecord, SimulatorStats

__all__ = [
    "DEMO_ACCESS_KEY",
    "DEMO_SECRET_KEY",
    "FAULT_KINDS",
    "AccessKey",
    "AccessKeyError",
    "Fault",
    "FaultError",
    "FaultSet",
    "KeyRing",
    "RequestRecord",
    "Simulator",
    "SimulatorData",
    "SimulatorDataError",
    "SimulatorStats",
    "load_keys",
]
