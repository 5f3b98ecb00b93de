"""``obs-sync demo``: the whole flow on one machine, with no configuration.

Starts the bundled simulator (in this process) and the embedded PostgreSQL, runs a real
signed sync, changes codes upstream (a new code, a changed description, a removed code),
syncs again, then shows what changed (from ``result_code_history``) and runs the BI
"description at call time" query. Everything lives in its own schema, ``obs_sync_demo``,
reset at each demo run. It never uses a configured database (``database.url``,
``$OBS_SYNC_DATABASE_URL``): a demo must not create or drop anything in a real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from obs_sync.config import Config, parse_config
from obs_sync.db.embedded import display_url, embedded_url
from obs_sync.db.engine import make_engine
from obs_sync.results import RunResult
from obs_sync.simulator import Simulator, SimulatorData
from obs_sync.sync import connections_per_run, run_sync

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

DEMO_SCHEMA = "obs_sync_demo"
DEMO_ACCESS_KEY = "demo-access-key"
DEMO_SECRET_KEY = "demo-secret-key"  # the simulator's public demo pair, not a real secret

# Three VDNs of a small call center, in the vendor's style (codes are strings).
DEMO_CODES: dict[int, dict[str, str]] = {
    101: {
        "00601": "The switch is busy.",
        "00602": "No resource available on the ACD.",
        "00603": "The called party does not answer the call.",
        "00604": "The call is rejected.",
        "00605": "The switch is busy.",
        "00606": "The ACD times out.",
    },
    102: {
        "00603": "The called party does not answer the call.",
        "00610": "The customer declined the offer.",
        "00611": "Transferred to an agent.",
        "00612": "Voicemail reached.",
    },
    103: {
        "00603": "The called party does not answer the call.",
        "00620": "The number does not exist.",
        "00621": "The phone is switched off.",
        "00622": "Fax tone detected.",
    },
}
NEW_CODE = (101, "00699", "The customer asked to be called back later.")
CHANGED_CODE = (102, "00603", "No answer after 30 seconds of ringing.")
REMOVED_CODE = (103, "00622")

# docs/bi.md, "description at call time", with the replacements that page gives for the
# demo's database (a test checks they stay the same), over the demo's call-records table:
# the columns and index of that page's example table.
CALLS_TABLE = "demo_call_record"
CALL_TIME_QUERY = """\
SELECT c.call_id, c.vdn_id, c.obs_code, c.called_at, h.obs_code_desc
FROM {schema}.{calls} AS c
LEFT JOIN {schema}.result_code_history AS h
       ON h.vdn_id = c.vdn_id
      AND h.obs_code = c.obs_code
      AND h.valid_from <= c.called_at
      AND c.called_at < coalesce(h.valid_to, 'infinity')
ORDER BY c.call_id;
"""


def demo_config(base_url: str, database_url: str) -> Config:
    return parse_config(
        {
            "isales": {
                "base_url": base_url,
                "access_key": DEMO_ACCESS_KEY,
                "secret_key": DEMO_SECRET_KEY,
                "vdn_ids": sorted(DEMO_CODES),
                "locale": "en_US",
                "max_retries": 1,
            },
            "database": {"url": database_url, "schema": DEMO_SCHEMA},
            "logging": {"level": "WARNING"},
        },
        env={},
    )


def _summary(result: RunResult) -> list[str]:
    lines = []
    for vdn in sorted(result.vdns, key=lambda v: v.vdn_id):
        counts = [
            f"{label} {n}"
            for label, n in (
                ("inserted", vdn.inserted),
                ("updated", vdn.updated),
                ("deleted", vdn.deleted),
                ("restored", vdn.restored),
                ("unchanged", vdn.unchanged),
            )
            if n
        ]
        detail = ", ".join(counts) or "no codes"
        error = f"  ({vdn.error})" if vdn.error else ""
        lines.append(
            f"     VDN {vdn.vdn_id}  {vdn.status:<9}  {detail}  "
            f"[{vdn.pages} page(s), {vdn.requests} signed request(s)]{error}"
        )
    return lines


def _changes(connection: Connection, run: RunResult) -> list[str]:
    """What ``run`` changed, read back from result_code / result_code_history."""
    schema = DEMO_SCHEMA
    rows = connection.execute(
        text(
            f"""
            SELECT h.vdn_id, h.obs_code, h.obs_code_desc AS new_desc,
                   prev.obs_code_desc AS old_desc
            FROM {schema}.result_code_history AS h
            LEFT JOIN {schema}.result_code_history AS prev
              ON prev.vdn_id = h.vdn_id AND prev.obs_code = h.obs_code
             AND prev.valid_to = h.valid_from
            WHERE h.sync_run_id = :run
            ORDER BY h.vdn_id, h.obs_code
            """
        ),
        {"run": run.run_id},
    ).all()
    lines = []
    for vdn_id, code, new_desc, old_desc in rows:
        if old_desc is None:
            lines.append(f"     VDN {vdn_id}  {code}  new          {new_desc!r}")
        else:
            lines.append(f"     VDN {vdn_id}  {code}  description  {old_desc!r} -> {new_desc!r}")
    deleted = connection.execute(
        text(
            f"""
            SELECT vdn_id, obs_code, obs_code_desc FROM {schema}.result_code
            WHERE deleted_at IS NOT NULL AND deleted_at >= :since
            ORDER BY vdn_id, obs_code
            """
        ),
        {"since": run.started_at},
    ).all()
    for vdn_id, code, desc in deleted:
        lines.append(f"     VDN {vdn_id}  {code}  removed      (was {desc!r})")
    return lines


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    def cell(value: Any) -> str:
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return "NULL" if value is None else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return [f"     {line.rstrip()}" for line in out]


def _bi_query(connection: Connection, before: datetime, after: datetime) -> list[str]:
    calls = f"{DEMO_SCHEMA}.{CALLS_TABLE}"
    connection.execute(
        text(
            f"CREATE TABLE {calls} (call_id bigint PRIMARY KEY, vdn_id integer NOT NULL, "
            "obs_code text NOT NULL, called_at timestamptz NOT NULL)"
        )
    )
    connection.execute(
        text(
            f"CREATE INDEX {CALLS_TABLE}_code_idx ON {calls} (vdn_id, obs_code, called_at) "
            "INCLUDE (call_id)"
        )
    )
    vdn, code, _ = CHANGED_CODE
    removed_vdn, removed_code = REMOVED_CODE
    calls_rows = [
        {"id": 1, "at": before, "vdn": vdn, "code": code},
        {"id": 2, "at": after, "vdn": vdn, "code": code},
        {"id": 3, "at": before, "vdn": removed_vdn, "code": removed_code},
        {"id": 4, "at": after, "vdn": NEW_CODE[0], "code": NEW_CODE[1]},
    ]
    connection.execute(
        text(
            f"INSERT INTO {calls} (call_id, vdn_id, obs_code, called_at) "
            "VALUES (:id, :vdn, :code, :at)"
        ),
        calls_rows,
    )
    query = CALL_TIME_QUERY.format(calls=CALLS_TABLE, schema=DEMO_SCHEMA)
    result = connection.execute(text(query))
    header = list(result.keys())
    rows = [tuple(r) for r in result.all()]
    lines = [f"     {line}" for line in query.splitlines()]
    lines.append("")
    lines += _table(header, rows)
    return lines


def _reset_schema(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA IF EXISTS {DEMO_SCHEMA} CASCADE"))


def run_demo(echo: Callable[[str], None] = print) -> int:
    started = time.monotonic()
    echo("obs-sync demo: bundled iSales simulator -> PostgreSQL, two real signed syncs\n")
    data = SimulatorData({vdn: dict(codes) for vdn, codes in DEMO_CODES.items()})
    with Simulator(data, access_key=DEMO_ACCESS_KEY, secret_key=DEMO_SECRET_KEY) as sim:
        total = sum(len(c) for c in DEMO_CODES.values())
        echo(
            f"1. Simulator   {sim.url}  ({len(DEMO_CODES)} VDNs: "
            f"{', '.join(map(str, DEMO_CODES))}; {total} codes; verifies every C2 signature)"
        )
        echo("   Starting the embedded PostgreSQL (the first time takes a few seconds)...")
        url = embedded_url()
        config = demo_config(sim.url, url)
        echo(f"2. Database    embedded PostgreSQL: {display_url(url)}")
        echo(f"              schema {DEMO_SCHEMA} (reset at each demo run)")
        engine = make_engine(config, connections=connections_per_run(config))
        try:
            _reset_schema(engine)
            first = run_sync(config, engine=engine, trigger="demo")
            echo(
                f"3. First sync  run {first.run_id}: {first.status} in "
                f"{(first.finished_at - first.started_at).total_seconds():.2f} s"
            )
            for line in _summary(first):
                echo(line)
            if first.exit_code != 0:
                echo("\nThe first sync did not succeed; see the errors above.")
                return 1

            vdn, code, desc = NEW_CODE
            data.set_code(vdn, code, desc)
            vdn_c, code_c, desc_c = CHANGED_CODE
            old_desc = DEMO_CODES[vdn_c][code_c]
            data.set_code(vdn_c, code_c, desc_c)
            vdn_r, code_r = REMOVED_CODE
            data.remove_code(vdn_r, code_r)
            echo("4. Upstream changes on the simulator:")
            echo(f"     VDN {vdn}: new code {code} {desc!r}")
            echo(f"     VDN {vdn_c}: code {code_c} {old_desc!r} -> {desc_c!r}")
            echo(f"     VDN {vdn_r}: code {code_r} removed")

            between = datetime.now().astimezone()
            time.sleep(0.01)  # distinct timestamps for the calls before/after the change
            second = run_sync(config, engine=engine, trigger="demo")
            echo(
                f"5. Second sync run {second.run_id}: {second.status} in "
                f"{(second.finished_at - second.started_at).total_seconds():.2f} s"
            )
            for line in _summary(second):
                echo(line)
            after = datetime.now().astimezone() + timedelta(milliseconds=10)
            with engine.begin() as connection:
                echo(f"6. What run {second.run_id} changed (from result_code_history):")
                for line in _changes(connection, second) or ["     (nothing)"]:
                    echo(line)
                echo("7. BI query from docs/bi.md: each call's description at call time")
                for line in _bi_query(connection, between, after):
                    echo(line)
                count = connection.execute(
                    text(f"SELECT count(*) FROM {DEMO_SCHEMA}.result_code_history")
                ).scalar_one()
        finally:
            engine.dispose()
    echo(
        f"\n{count} history rows in {DEMO_SCHEMA}. Explore them yourself:\n"
        f"  psql '{display_url(url)}' -c 'SELECT * FROM {DEMO_SCHEMA}.result_code'\n"
        f"Next: copy config.example.yaml to config.yaml, point isales.base_url at your "
        f"server, then run `obs-sync check` and `obs-sync run`. "
        f"(demo took {time.monotonic() - started:.1f} s)"
    )
    return 0 if second.exit_code == 0 else 1
