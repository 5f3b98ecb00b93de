"""The bundled CC-iSales simulator: the real URL, C2 verification, faults on demand.

>>> data = SimulatorData.generate(vdn_ids=range(1, 11), codes_per_vdn=120, seed=1)
>>> with Simulator(data, access_key="ak", secret_key="sk") as sim:  # doctest: +SKIP
...     sim.faults.add(Fault(kind="http_status", status=503, times=2))

See docs/simulator.md.
"""

from obs_sync.simulator.data import SimulatorData, SimulatorDataError
from obs_sync.simulator.faults import FAULT_KINDS, Fault, FaultError, FaultSet
from obs_sync.simulator.server import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, Simulator
from obs_sync.simulator.stats import RequestRecord, SimulatorStats

__all__ = [
    "DEMO_ACCESS_KEY",
    "DEMO_SECRET_KEY",
    "FAULT_KINDS",
    "Fault",
    "FaultError",
    "FaultSet",
    "RequestRecord",
    "Simulator",
    "SimulatorData",
    "SimulatorDataError",
    "SimulatorStats",
]
