"""``obs-sync demo``: the whole flow on one machine, with no configuration.

Starts the bundled simulator (in this process) and the embedded PostgreSQL, runs a real
signed sync of two sources, one server asked in two languages (``default`` in en_US,
``zh`` in zh_CN), changes codes upstream (a new code, a changed description, a removed
code), syncs again, then shows what changed (from ``result_code_history``) and runs the BI
"description at call time" query, each call labelled in English and Chinese. Everything
lives in its own schema, ``obs_sync_demo``, reset at each demo run. It never uses a
configured database (``database.url``, ``$OBS_SYNC_DATABASE_URL``): a demo must not create
or drop anything in a real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from obs_sync.commands.table import table_lines
from obs_sync.config import Config, parse_config
from obs_sync.db.embedded import display_url, embedded_url
from obs_sync.db.engine import make_engine
from obs_sync.engine.run import run_sync
from obs_sync.engine.sizing import connections_per_run
from obs_sync.results import RunResult
from obs_sync.simulator import Simulator, SimulatorData
from obs_sync.store import demo as demo_sql

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

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

# The same server asked in two languages: two sources (their names are in the demo's BI
# query, obs_sync.store.demo.CALL_TIME_QUERY). "default" keeps the English data above.
SOURCES = (("default", "en_US"), ("zh", "zh_CN"))
# The zh_CN descriptions of the codes above (the simulator serves each in both locales).
CHINESE = {
    "The switch is busy.": "交换机忙",
    "No resource available on the ACD.": "ACD无可用资源",
    "The called party does not answer the call.": "被叫无应答",
    "The call is rejected.": "呼叫被拒绝",
    "The ACD times out.": "ACD超时",
    "The customer declined the offer.": "客户拒绝营销",
    "Transferred to an agent.": "转人工成功",
    "Voicemail reached.": "语音信箱",
    "The number does not exist.": "号码不存在",
    "The phone is switched off.": "用户关机",
    "Fax tone detected.": "传真音",
    NEW_CODE[2]: "客户要求稍后回电",
    CHANGED_CODE[2]: "振铃30秒后无应答",
}


def bilingual(desc: str) -> dict[str, str]:
    """A description as the simulator serves it: English for en_US, Chinese for zh_CN."""
    return {"en_US": desc, "zh_CN": CHINESE[desc]}


def demo_data() -> SimulatorData:
    return SimulatorData(
        {
            vdn: {code: bilingual(desc) for code, desc in codes.items()}
            for vdn, codes in DEMO_CODES.items()
        }
    )


def demo_config(base_url: str, database_url: str) -> Config:
    return parse_config(
        {
            "sources": [
                {
                    "name": name,
                    "base_url": base_url,
                    "access_key": DEMO_ACCESS_KEY,
                    "secret_key": DEMO_SECRET_KEY,
                    "vdn_ids": sorted(DEMO_CODES),
                    "locale": locale,
                    "max_retries": 1,
                }
                for name, locale in SOURCES
            ],
            "database": {"url": database_url, "schema": DEMO_SCHEMA},
            "logging": {"level": "WARNING"},
        },
        env={},
    )


def _summary(result: RunResult) -> list[str]:
    lines = []
    width = max(len(name) for name, _ in SOURCES)
    for vdn in sorted(result.vdns, key=lambda v: (v.source, v.vdn_id)):
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
            f"     {vdn.source:<{width}}  VDN {vdn.vdn_id}  {vdn.status:<9}  {detail}  "
            f"[{vdn.pages} page(s), {vdn.requests} signed request(s)]{error}"
        )
    return lines


def _report(step: str, run: RunResult, echo: Callable[[str], None]) -> None:
    seconds = (run.finished_at - run.started_at).total_seconds()
    echo(f"{step} run {run.run_id}: {run.status} in {seconds:.2f} s")
    for line in _summary(run):
        echo(line)


def _changes(connection: Connection, run: RunResult) -> list[str]:
    """What ``run`` changed, read back from result_code / result_code_history."""
    lines = []
    width = max(len(name) for name, _ in SOURCES)
    for source, vdn_id, code, new_desc, old_desc in demo_sql.versions_opened(
        connection, DEMO_SCHEMA, run.run_id
    ):
        where = f"     {source:<{width}}  VDN {vdn_id}  {code}"
        if old_desc is None:
            lines.append(f"{where}  new          {new_desc!r}")
        else:
            lines.append(f"{where}  description  {old_desc!r} -> {new_desc!r}")
    for source, vdn_id, code, desc in demo_sql.deleted_since(
        connection, DEMO_SCHEMA, run.started_at
    ):
        lines.append(f"     {source:<{width}}  VDN {vdn_id}  {code}  removed      (was {desc!r})")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return "NULL" if value is None else str(value)


def _bi_query(connection: Connection, before: datetime, after: datetime) -> list[str]:
    vdn, code, _ = CHANGED_CODE
    removed_vdn, removed_code = REMOVED_CODE
    calls = [
        {"id": 1, "at": before, "vdn": vdn, "code": code},
        {"id": 2, "at": after, "vdn": vdn, "code": code},
        {"id": 3, "at": before, "vdn": removed_vdn, "code": removed_code},
        {"id": 4, "at": after, "vdn": NEW_CODE[0], "code": NEW_CODE[1]},
    ]
    query, rows = demo_sql.call_time_rows(connection, DEMO_SCHEMA, calls)
    lines = [f"     {line}" for line in query.splitlines()]
    lines.append("")
    header = ["call_id", "vdn_id", "obs_code", "called_at", "desc_zh", "desc_en"]
    cells = [[_cell(value) for value in row] for row in rows]
    lines += [f"     {line}" for line in table_lines(header, cells, rule=True)]
    return lines


def run_demo(echo: Callable[[str], None] = print) -> int:
    started = time.monotonic()
    echo("obs-sync demo: bundled iSales simulator -> PostgreSQL, two real signed syncs\n")
    data = demo_data()
    with Simulator(data, access_key=DEMO_ACCESS_KEY, secret_key=DEMO_SECRET_KEY) as sim:
        total = sum(len(c) for c in DEMO_CODES.values())
        echo(
            f"1. Simulator   {sim.url}  ({len(DEMO_CODES)} VDNs: "
            f"{', '.join(map(str, DEMO_CODES))}; {total} codes in English and Chinese; "
            "verifies every C2 signature)"
        )
        sources = ", ".join(f"{name} ({locale})" for name, locale in SOURCES)
        echo(f"   Sources     {sources}: the same server and VDNs, one locale each")
        echo("   Starting the embedded PostgreSQL (the first time takes a few seconds)...")
        url = embedded_url()
        config = demo_config(sim.url, url)
        echo(f"2. Database    embedded PostgreSQL: {display_url(url)}")
        echo(f"              schema {DEMO_SCHEMA} (reset at each demo run)")
        engine = make_engine(config, connections=connections_per_run(config))
        try:
            demo_sql.reset_schema(engine, DEMO_SCHEMA)
            first = run_sync(config, engine=engine, trigger="demo")
            _report("3. First sync ", first, echo)
            if first.exit_code != 0:
                echo("\nThe first sync did not succeed; see the errors above.")
                return 1

            vdn, code, desc = NEW_CODE
            data.set_code(vdn, code, bilingual(desc))
            vdn_c, code_c, desc_c = CHANGED_CODE
            old_desc = DEMO_CODES[vdn_c][code_c]
            data.set_code(vdn_c, code_c, bilingual(desc_c))
            vdn_r, code_r = REMOVED_CODE
            data.remove_code(vdn_r, code_r)
            echo("4. Upstream changes on the simulator:")
            echo(f"     VDN {vdn}: new code {code} {desc!r} ({CHINESE[desc]})")
            echo(
                f"     VDN {vdn_c}: code {code_c} {old_desc!r} -> {desc_c!r} "
                f"({CHINESE[old_desc]} -> {CHINESE[desc_c]})"
            )
            echo(f"     VDN {vdn_r}: code {code_r} removed")

            between = datetime.now().astimezone()
            time.sleep(0.01)  # distinct timestamps for the calls before/after the change
            second = run_sync(config, engine=engine, trigger="demo")
            _report("5. Second sync", second, echo)
            after = datetime.now().astimezone() + timedelta(milliseconds=10)
            with engine.begin() as connection:
                echo(f"6. What run {second.run_id} changed (from result_code_history):")
                for line in _changes(connection, second) or ["     (nothing)"]:
                    echo(line)
                echo(
                    "7. BI query from docs/bi.md: each call's description at call time, "
                    "in English and Chinese"
                )
                for line in _bi_query(connection, between, after):
                    echo(line)
                count = demo_sql.history_rows(connection, DEMO_SCHEMA)
        finally:
            engine.dispose()
    echo(
        f"\n{count} history rows in {DEMO_SCHEMA}. Explore them yourself:\n"
        f"  psql '{display_url(url)}' -c '{demo_sql.explore_query(DEMO_SCHEMA)}'\n"
        f"Next: copy config.example.yaml to config.yaml, point isales.base_url at your "
        f"server (or list several under sources:), then run `obs-sync check` and "
        f"`obs-sync run`. "
        f"(demo took {time.monotonic() - started:.1f} s)"
    )
    return 0 if second.exit_code == 0 else 1
