"""Hostile configuration files and arguments (issue 11, items 8 and 11).

Each is one error line naming the key, option or file to fix, exit 2, no traceback, and is
rejected before anything happens: no request reaches the (real, in-process) simulator and
no run record is written to the (real) database. Every case runs the real command line.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from obs_sync.cli import main
from obs_sync.config import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_VALUES,
    ConfigError,
)
from obs_sync.config.shape import check_shape
from obs_sync.simulator import Simulator
from tests.fixtures_db import config_dict
from tests.fixtures_sim import SIM_ACCESS_KEY, SIM_SECRET_KEY, sim_data

HOSTILE = "__HOSTILE__"

# Every numeric key; whether a tiny positive value (1e-9) is absurd for it (for keys where
# 0 is meaningful, such as a backoff or a fraction, a tiny value is just nearly 0).
NUMERIC_KEYS = {
    "isales.page_size": True,
    "isales.timeout_seconds": True,
    "isales.max_concurrency": True,
    "isales.max_requests_per_second": True,
    "isales.max_retries": True,
    "isales.backoff_initial_seconds": False,
    "isales.backoff_max_seconds": False,
    "isales.max_pages": True,
    "schedule.interval_minutes": True,
    "schedule.jitter_seconds": True,
    "schedule.misfire_grace_seconds": True,
    "schedule.run_deadline_seconds": True,
    "schedule.shutdown_timeout_seconds": True,
    "sync.max_delete_fraction": False,
    "sync.keep_run_records_days": False,
    "metrics.port": True,
    "metrics.max_failing_minutes": True,
}
ABSURD = [".nan", "nan", ".inf", "-.inf", "inf", "1.0e+12", "1e12", "1.0e+308", "-1.0e+308"]


def _cases() -> list[Any]:
    cases: list[Any] = []
    for key, tiny_is_absurd in NUMERIC_KEYS.items():
        for value in ABSURD + (["1.0e-9"] if tiny_is_absurd else []):
            cases.append(pytest.param({key: value}, key, id=f"{key}={value}"))
    for schema in ("information_schema", "pg_catalog", "pg_toast", "pg_temp_1", "pg_mine"):
        cases.append(pytest.param({"database.schema": schema}, "database.schema", id=schema))
    for text in (r'"http://127.0.0.1:1\e[31m"', r'"http://127.0.0.1:1/\0"', '"http://h\\x7f:1"'):
        cases.append(pytest.param({"isales.base_url": text}, "isales.base_url", id=text))
    for text in (r'"postgresql://u@127.0.0.1/db\e[2J"', r'"postgresql://u@127.0.0.1/d\nb"'):
        cases.append(pytest.param({"database.url": text}, "database.url", id=text))
    cases += [
        pytest.param(
            {"schedule.interval_minutes": "0.001"}, "schedule.interval_minutes", id="interval"
        ),
        pytest.param(
            {"isales.signing.signed_headers": "[x-custom]"},
            "isales.signing.signed_headers",
            id="signed-x-custom",
        ),
        pytest.param(
            {"isales.signing.signed_headers": "[locale, host]"},
            "isales.signing.signed_headers",
            id="signed-locale-unset",
        ),
    ]
    return cases


class World(NamedTuple):
    """One simulator and one database for the module (creating them per case is slow);
    each case checks that it changed neither, relative to where it started."""

    sim: Simulator
    database_url: str

    def counts(self) -> tuple[int, int]:
        return self.sim.stats.requests, run_rows(self.database_url)


@pytest.fixture(scope="module")
def shared_world(pg_admin_url: str) -> Iterator[World]:
    from sqlalchemy.engine import make_url

    name = f"obs_sync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(drivername="postgresql+psycopg", database=name)
    sim = Simulator(sim_data(), access_key=SIM_ACCESS_KEY, secret_key=SIM_SECRET_KEY).start()
    try:
        yield World(sim, url.render_as_string(hide_password=False))
    finally:
        sim.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def render(sim: Simulator, database_url: str, overrides: dict[str, str]) -> str:
    """A valid configuration with the raw YAML text of ``overrides`` at dotted keys."""
    data = config_dict(sim, database_url, vdn_ids=[1])
    raw = {}
    for n, (dotted, text) in enumerate(overrides.items()):
        *sections, last = dotted.split(".")
        node = data
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = f"{HOSTILE}{n}"
        raw[f"{HOSTILE}{n}"] = text
    out = yaml.safe_dump(data)
    for marker, text in raw.items():
        out = out.replace(marker, text)
    return out


def obs_sync(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBS_SYNC_", "ISALES_"))}
    return subprocess.run(
        [sys.executable, "-m", "obs_sync", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_rows(database_url: str) -> int:
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as connection:
        schemas = connection.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'sync_run'"
        ).fetchall()
        return sum(
            connection.execute(f'SELECT count(*) FROM "{schema}".sync_run').fetchone()[0]  # type: ignore[index]
            for (schema,) in schemas
        )


def assert_rejected(
    result: subprocess.CompletedProcess[str], *names: str, one_line: bool = True
) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    for name in names:
        assert name in result.stderr, result.stderr
    if one_line:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.fixture
def world(shared_world: World) -> Iterator[World]:
    """The shared world, checked untouched (no request, no run record) after the case."""
    before = shared_world.counts()
    yield shared_world
    assert shared_world.counts() == before, "a request was made or a run was recorded"


@pytest.mark.parametrize(("overrides", "key"), _cases())
def test_a_hostile_value_is_rejected_before_anything(
    tmp_path: Path, world: World, overrides: dict[str, str], key: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(render(world.sim, world.database_url, overrides), "utf-8")
    # The real command line, in this process (a fresh interpreter per case is slow; the
    # file and argument cases below run real processes).
    result = CliRunner().invoke(main, ["sync", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    assert "configuration error" in result.stderr and key in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "overrides",
    [{"isales.signing.signed_headers": "[x-custom]"}, {"isales.timeout_seconds": ".nan"}],
    ids=["signed-x-custom", "timeout-nan"],
)
def test_a_hostile_value_is_rejected_by_a_real_process(
    tmp_path: Path, world: World, overrides: dict[str, str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(render(world.sim, world.database_url, overrides), "utf-8")
    result = obs_sync(tmp_path, "sync", "--config", str(config))
    assert_rejected(result, "configuration error", next(iter(overrides)))


def test_the_same_checks_stop_the_daemon_and_check(tmp_path: Path, world: World) -> None:
    config = tmp_path / "c.yaml"
    overrides = {"schedule.interval_minutes": "1.0e-9", "metrics.port": "0"}
    config.write_text(render(world.sim, world.database_url, overrides), "utf-8")
    run = obs_sync(tmp_path, "run", "--config", str(config))
    assert_rejected(run, "schedule.interval_minutes", "0.01")
    check = obs_sync(tmp_path, "check", "--config", str(config))
    assert check.returncode == 2 and "Traceback" not in check.stdout + check.stderr
    assert "schedule.interval_minutes" in check.stdout


def test_a_valid_configuration_at_the_bounds_runs(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    """The bounds themselves are accepted (the rejections above are not a broken baseline)."""
    config = tmp_path / "c.yaml"
    overrides = {
        "isales.timeout_seconds": "600",
        "isales.max_pages": "100000",
        "isales.max_requests_per_second": "10000",
        # every header the configuration accepts is really sent (the simulator verifies)
        "isales.signing.signed_headers": (
            "[accept, accept-encoding, content-length, content-type, host, user-agent]"
        ),
        "schedule.interval_minutes": "0.01",
        "sync.keep_run_records_days": "36500",
        "sync.max_delete_fraction": "1",
        "metrics.max_failing_minutes": "0.001",
    }
    config.write_text(render(simulator, database_url, overrides), "utf-8")
    result = obs_sync(tmp_path, "sync", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert run_rows(database_url) == 1 and simulator.stats.requests > 0


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _files(tmp_path: Path, sim: Simulator, database_url: str) -> dict[str, tuple[str, str]]:
    """name -> (path, what the message must say)."""
    valid = render(sim, database_url, {})
    files: dict[str, tuple[str, str]] = {}

    def write(name: str, content: bytes, says: str) -> None:
        path = tmp_path / name
        path.write_bytes(content)
        files[name] = (str(path), says)

    # 9^10 strings once expanded; as `isales.locale` too, so expansion would reach validation.
    write("bomb.yaml", (valid + _bomb() + "").encode(), f"more than {MAX_CONFIG_VALUES} values")
    write(
        "bomb-in-key.yaml",
        (_bomb() + valid.replace("isales:", "isales:\n  vdn_ids_extra: *a9", 1)).encode(),
        f"more than {MAX_CONFIG_VALUES} values",
    )
    write("cycle.yaml", (valid + "x: &x [1, *x]\n").encode(), "refers to itself")
    write("deep.yaml", (valid + "x: " + "[" * 50 + "]" * 50 + "\n").encode(), "nested")
    write("deeper.yaml", ("x: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(), "nested")
    write("binary.yaml", bytes(range(256)) * 4, "not a text file")
    write("latin1.yaml", valid.encode() + "# café\n".encode("latin-1"), "not UTF-8")
    write(
        "huge.yaml",
        valid.encode() + b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1),
        f"larger than {MAX_CONFIG_BYTES // 1024} KiB",
    )
    write("bigint.yaml", (valid + "x: " + "9" * 5000 + "\n").encode(), "invalid YAML value")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # no writer: reading it would block forever
    files["fifo"] = (str(fifo), "not a regular file")
    files["dev-zero"] = ("/dev/zero", "not a regular file")
    files["dev-urandom"] = ("/dev/urandom", "not a regular file")
    return files


FILE_CASES = [
    "bomb.yaml",
    "bomb-in-key.yaml",
    "cycle.yaml",
    "deep.yaml",
    "deeper.yaml",
    "binary.yaml",
    "latin1.yaml",
    "huge.yaml",
    "bigint.yaml",
    "fifo",
    "dev-zero",
    "dev-urandom",
]


@pytest.mark.parametrize("name", FILE_CASES)
def test_a_hostile_file_is_rejected_before_anything(
    tmp_path: Path, world: World, name: str
) -> None:
    path, says = _files(tmp_path, world.sim, world.database_url)[name]
    result = obs_sync(tmp_path, "sync", "--config", path)
    assert_rejected(result, "configuration error", path, says)
    if name == "fifo":
        assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_a_file_of_exactly_the_size_limit_loads(
    tmp_path: Path, simulator: Simulator, database_url: str
) -> None:
    valid = render(simulator, database_url, {}).encode()
    config = tmp_path / "c.yaml"
    config.write_bytes(valid + b"#" * (MAX_CONFIG_BYTES - len(valid) - 1) + b"\n")
    assert config.stat().st_size == MAX_CONFIG_BYTES
    result = obs_sync(tmp_path, "db", "upgrade", "--config", str(config))
    assert result.returncode == 0, result.stderr


def test_the_shape_limits_are_inclusive() -> None:
    deepest: Any = []
    for _ in range(MAX_CONFIG_DEPTH):
        deepest = [deepest]
    check_shape(deepest)  # MAX_CONFIG_DEPTH levels below the top: accepted
    with pytest.raises(ConfigError, match="nested more than"):
        check_shape([deepest])
    shared = ["x"] * 99  # one list of 100 values (itself included)...
    check_shape([shared] * ((MAX_CONFIG_VALUES - 1) // 100))  # ...referenced 99 times
    with pytest.raises(ConfigError, match="alias bomb"):
        check_shape([shared] * ((MAX_CONFIG_VALUES - 1) // 100 + 1))


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("sync", "--max-delete-fraction", "nan"), "--max-delete-fraction"),
        (("sync", "--max-delete-fraction", "inf"), "--max-delete-fraction"),
        (("sync", "--max-delete-fraction", "-inf"), "--max-delete-fraction"),
        (("sync", "--max-delete-fraction", "1e308"), "--max-delete-fraction"),
        (("sync", "--max-delete-fraction", "1e-400x"), "--max-delete-fraction"),
        (("sync", "--vdn", "1e12"), "--vdn"),
        (("sync", "--vdn", "99999999999999999999"), "--vdn"),
        (("fetch", "--vdn", "nan"), "--vdn"),
        (("simulator", "--latency-ms", "nan"), "--latency-ms"),
        (("simulator", "--latency-ms", "inf"), "--latency-ms"),
        (("simulator", "--max-clock-skew", "nan"), "--max-clock-skew"),
        (("simulator", "--max-clock-skew", "1e308"), "--max-clock-skew"),
        (("simulator", "--port", "1e12"), "--port"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_a_hostile_argument_is_a_usage_error(
    tmp_path: Path, world: World, args: tuple[str, ...], option: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(render(world.sim, world.database_url, {}), "utf-8")
    result = obs_sync(tmp_path, "--config", str(config), *args)
    # click's usage error: the usage line, a hint, then the error naming the option.
    assert_rejected(result, f"Invalid value for '{option}'", one_line=False)
