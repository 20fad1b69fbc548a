"""Observed reads: what deciding every statement a task runs through a hook adds to its body.

A task body runs 1,000 statements through ``PostgresHook`` (``get_records`` / ``get_first``, as
``@task`` code calls them; each call opens its connection, as the hook does) against a local
PostgreSQL database holding 10 tables ``t0`` … ``t9`` of 1,000 rows: 800 parameterized point
lookups (``SELECT … FROM t{i % 10} WHERE id = %s``, 10 distinct SQL texts), 100 parameterized
joins of two tables (10 distinct texts) and 100 aggregates whose SQL text differs every time (a
literal in the ``WHERE``), so the analysis parses 120 distinct statements per try.

Timed in the same run, interleaved (the order alternates every repetition), medians over
``REPETITIONS`` tries each:

* ``on`` — the body as it runs after a try's pre-execute check let it run: the real
  :class:`~airflow_policyzones.enforcement.observation.Observer` is installed on Airflow's real
  hook lineage collector (:func:`observe_try`), so every statement ``DbApiHook`` reports is
  analyzed in the PostgreSQL dialect and every table not yet decided in the try is decided by the
  real decision service in process (:func:`airflow_policyzones.db.observed.decide_observed` through
  :func:`~airflow_policyzones.enforcement.hook.obtain_observation`, as under ``dag.test()``) on a
  PostgreSQL metadata database migrated with ``airflow db migrate``, each decision recorded and
  committed; then :func:`reconcile`. Each try is a new try with its own recorded pre-execute
  decision (made before the clock starts: that check runs with or without observation).
* ``off`` — the same body with the collector as Airflow leaves it (nothing wrapped).

What is not in it: on a worker the decisions go over HTTP to the api-server (one request per try
and newly seen set of tables: here 10 to 20 per try; ``bench_airflow`` times a decision request)
instead of in process.

The process's CPU time is printed too: on a busy machine the wall times of a body that waits on
1,000 connections scatter, while the CPU the observation adds to the task process does not.

Run with ``python -m benchmarks.bench_observed`` (part of ``make bench``). The last line is
``observed_read_overhead_pct=<n> on_median_ms=<n> off_median_ms=<n> cpu_on_median_ms=<n>
cpu_off_median_ms=<n> paired_overhead_pct=<n>``; the target is ``observed_read_overhead_pct`` <= 10
(wall time; ``paired_overhead_pct`` is the median of each repetition's on/off ratio).
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
TABLES = 10
ROWS = 1_000
STATEMENTS = 1_000
REPETITIONS = 11
TARGET_PCT = 10.0
POLICY = """\
version: 1
name: bench-observed
categories:
  events: {description: bench}
catalog:
  - table: "t*"
    categories: [events]
    consented: [ads]
zones:
  ads:
    purpose: ads
    allowed_categories: [events]
    members: {dag_ids: ["bench_*"]}
"""


def load(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in range(TABLES):
            connection.execute(sa.text(f"CREATE TABLE t{table} (id int PRIMARY KEY, v int, payload text)"))
            connection.execute(
                sa.text(
                    f"INSERT INTO t{table} SELECT i, (i * 7919) % 1000, md5(i::text) "
                    f"FROM generate_series(0, {ROWS - 1}) AS i"
                )
            )
    engine.dispose()


def body(hook: Any) -> int:
    """The task body: 1,000 statements through the hook; returns the rows it got."""
    rows = 0
    for i in range(STATEMENTS):
        table, other = i % TABLES, (i + 1) % TABLES
        if i % 10 == 9:
            first = hook.get_first(f"SELECT count(*), max(v) FROM t{table} WHERE v > {i}")
            rows += 1 if first is not None else 0
        elif i % 10 == 4:
            rows += len(
                hook.get_records(
                    f"SELECT a.id, a.v, b.v FROM t{table} a JOIN t{other} b ON b.id = a.id WHERE a.id = %s",
                    parameters=(i,),
                )
            )
        else:
            rows += len(
                hook.get_records(f"SELECT id, v, payload FROM t{table} WHERE id = %s", parameters=(i,))
            )
    return rows


def main() -> None:
    sys.path.insert(0, str(REPO))
    from tests.e2e.deployment import postgres_database
    from tests.support.airflow_db import scoped_env

    with (
        tempfile.TemporaryDirectory(prefix="pz-bench-observed-") as tmp,
        postgres_database("pz_bench_obs") as url,
        postgres_database("pz_bench_obs_wh") as warehouse,
    ):
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        load(warehouse)
        connection = sa.make_url(warehouse).set(drivername="postgresql")
        with scoped_env(
            AIRFLOW_HOME=tmp,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__POLICYZONES__POLICY_FILE=str(policy),
            AIRFLOW_CONN_BENCH_WAREHOUSE=connection.render_as_string(hide_password=False),
        ):
            airflow = str(Path(sys.executable).parent / "airflow")
            subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
            run(policy)


def run(policy: Path) -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk.lineage import get_hook_lineage_collector

    from airflow_policyzones.enforcement import observation
    from airflow_policyzones.enforcement.hook import decide_in_process, obtain_observation, orm_available
    from airflow_policyzones.enforcement.settings import EnforcementSettings
    from airflow_policyzones.wire import (
        DecisionRequest,
        DecisionResponse,
        ObservationRequest,
        TaskInstanceIdentity,
    )

    assert orm_available(), "the decision service runs in process on the metadata database"
    settings = EnforcementSettings(
        enabled=True,
        policy_file=str(policy),
    )
    collector = get_hook_lineage_collector()
    hook = PostgresHook(postgres_conn_id="bench_warehouse", log_sql=False)
    # Not 1,000 "Rows affected" lines per try on the terminal (the same in both modes).
    quiet = logging.getLogger("benchmarks.bench_observed.hook")
    quiet.setLevel(logging.WARNING)
    hook._log = quiet
    rounds: list[float] = []

    def decide(request: ObservationRequest) -> DecisionResponse:
        started = time.perf_counter()
        try:
            return obtain_observation(request, settings=settings)
        finally:
            rounds.append(time.perf_counter() - started)

    def unwrapped() -> None:
        """The collector as Airflow made it: what observation wraps is taken off again."""
        for name in ("add_input_asset", "add_output_asset", "add_extra", "_policyzones_observed"):
            collector.__dict__.pop(name, None)

    def observed() -> tuple[float, float]:
        request = DecisionRequest(
            task=TaskInstanceIdentity(
                dag_id="bench_observed", task_id="body", run_id=uuid.uuid4().hex, map_index=-1, try_number=1
            ),
            zone="ads",
            zone_source="dag",
        )
        assert decide_in_process(request, settings=settings).allowed  # the pre-execute check
        started, cpu = time.perf_counter(), time.process_time()
        observer = observation.Observer(request=request, decide=decide)
        observation.observe_try(observer)
        body(hook)
        observation.reconcile(observer)
        elapsed = time.perf_counter() - started, time.process_time() - cpu
        unwrapped()
        assert observer.observed == STATEMENTS, observer.observed
        assert len(observer.allowed) == TABLES and not observer.denied, (observer.allowed, observer.denied)
        return elapsed

    def plain() -> tuple[float, float]:
        unwrapped()
        started, cpu = time.perf_counter(), time.process_time()
        body(hook)
        return time.perf_counter() - started, time.process_time() - cpu

    modes: dict[str, Callable[[], tuple[float, float]]] = {"on": observed, "off": plain}
    times: dict[str, list[float]] = {"on": [], "off": []}
    cpu_times: dict[str, list[float]] = {"on": [], "off": []}
    for mode in modes.values():  # warm-up: imports, the connection lookup, sqlglot's first parse
        mode()
    rounds.clear()
    for repetition in range(REPETITIONS):
        order = ("on", "off") if repetition % 2 == 0 else ("off", "on")
        for name in order:
            wall, cpu = modes[name]()
            times[name].append(wall)
            cpu_times[name].append(cpu)
    on, off = (statistics.median(times[name]) * 1000 for name in ("on", "off"))
    cpu_on, cpu_off = (statistics.median(cpu_times[name]) * 1000 for name in ("on", "off"))
    overhead = (on - off) / off * 100
    # Each repetition's pair ran back to back: the median of their ratios follows the machine's load less.
    paired = statistics.median(a / b - 1 for a, b in zip(times["on"], times["off"], strict=True)) * 100
    per_try = len(rounds) / REPETITIONS
    deciding = sum(rounds) / REPETITIONS * 1000
    verdict = "meets" if overhead <= TARGET_PCT else "MISSES"
    print(
        f"{STATEMENTS} statements through PostgresHook over {TABLES} tables, {REPETITIONS} tries each, "
        "interleaved"
    )
    print(
        f"body with observation: median {on:.0f} ms; without: {off:.0f} ms; "
        f"{per_try:.0f} decision round trips per try ({deciding:.0f} ms of it)"
    )
    print(
        f"CPU time of this process (the task's side; less sensitive to a busy machine): median "
        f"{cpu_on:.0f} ms with, {cpu_off:.0f} ms without (+{cpu_on - cpu_off:.0f} ms, "
        f"{(cpu_on - cpu_off) / STATEMENTS * 1000:.0f} µs a statement)"
    )
    print(
        f"overhead {overhead:.1f} % of the body's wall time ({verdict} the target of {TARGET_PCT:.0f} %); "
        f"median of the paired ratios {paired:.1f} %"
    )
    print(
        f"observed_read_overhead_pct={overhead:.1f} on_median_ms={on:.0f} off_median_ms={off:.0f} "
        f"cpu_on_median_ms={cpu_on:.0f} cpu_off_median_ms={cpu_off:.0f} paired_overhead_pct={paired:.1f}"
    )


if __name__ == "__main__":
    main()
