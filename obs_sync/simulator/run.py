"""Foreground runner for ``obs-sync simulator``: serve until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import TextIO

from obs_sync.simulator.data import SimulatorData
from obs_sync.simulator.keys import AccessKey
from obs_sync.simulator.server import Simulator


def serve(
    data: SimulatorData,
    *,
    access_key: str,
    secret_key: str,
    keys: Iterable[AccessKey] = (),
    host: str,
    port: int,
    tls: tuple[str, str] | None,
    latency_seconds: float,
    max_clock_skew_seconds: float | None,
    signed_headers: Iterable[str] | None,
    log_requests: bool,
    out: TextIO = sys.stdout,
) -> None:
    """Start, print the one ``listening on URL`` line (flushed), block until a signal."""
    if log_requests:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sim = Simulator(
        data,
        access_key=access_key,
        secret_key=secret_key,
        keys=keys,
        host=host,
        port=port,
        tls=tls,
        latency_seconds=latency_seconds,
        signed_headers=signed_headers,
        max_clock_skew_seconds=max_clock_skew_seconds,
        log_requests=log_requests,
    )
    try:
        sim.start()
        print(f"iSales simulator listening on {sim.url}", file=out, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
