"""``obs-sync simulator``: serve the bundled iSales simulator with credentials from the
environment (the demo pair when unset), more keys from a file, and generated or given
data."""

from __future__ import annotations

import os

import click

from obs_sync.errors import ObsSyncError, UsageError
from obs_sync.simulator import (
    DEMO_ACCESS_KEY,
    DEMO_SECRET_KEY,
    AccessKey,
    SimulatorData,
    SimulatorDataError,
    load_keys,
)
from obs_sync.simulator.run import serve


def run_simulator(
    *,
    host: str,
    port: int,
    vdns: int,
    codes: int,
    seed: int,
    data_path: str | None,
    keys_path: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    latency_ms: float,
    max_clock_skew: float,
    signed_headers: str,
    log_requests: bool,
) -> None:
    """Serve until SIGINT/SIGTERM (the options of ``obs-sync simulator``)."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    access_key = os.environ.get("ISALES_ACCESS_KEY", "")
    secret_key = os.environ.get("ISALES_SECRET_KEY", "")
    if not access_key or not secret_key:
        click.echo(
            "obs-sync: warning: ISALES_ACCESS_KEY/ISALES_SECRET_KEY not both set; "
            f"using the demo pair (access key {DEMO_ACCESS_KEY!r})",
            err=True,
        )
        access_key, secret_key = DEMO_ACCESS_KEY, DEMO_SECRET_KEY
    try:
        data = (
            SimulatorData.from_file(data_path)
            if data_path
            else SimulatorData.generate(range(1, vdns + 1), codes, seed)
        )
    except SimulatorDataError as error:
        raise UsageError(f"--data: {error}") from error
    keys: list[AccessKey] = []
    if keys_path:
        try:
            keys = load_keys(keys_path)
        except SimulatorDataError as error:
            raise UsageError(f"--keys: {error}") from error
    try:
        serve(
            data,
            access_key=access_key,
            secret_key=secret_key,
            keys=keys,
            host=host,
            port=port,
            tls=(tls_cert, tls_key) if tls_cert and tls_key else None,
            latency_seconds=latency_ms / 1000,
            max_clock_skew_seconds=max_clock_skew or None,
            signed_headers=[h for h in signed_headers.replace(";", ",").split(",") if h.strip()],
            log_requests=log_requests,
        )
    except OSError as error:
        raise ObsSyncError(f"cannot serve on {host}:{port}: {error.strerror or error}") from error
