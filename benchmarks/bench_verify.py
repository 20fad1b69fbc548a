"""What the server's verification adds to a decision, at 1,000,000 recorded decisions (PostgreSQL).

Before it records a decision from a worker (``source="api"``), the decision service reads from
Airflow's own tables that the try exists and is running, and compares the zone and inlets the
worker claims with the task the dag-processor serialized (:mod:`airflow_policyzones.db.verification`).
This benchmark measures that cost side by side in one run:

* a fresh PostgreSQL metadata database (``airflow db migrate``: Airflow's tables and ours) with
  the test DAGs parsed and synced as the dag-processor does, and one DAG reparsed so that its task
  ``read`` declares the zone and inlet the requests claim (a serialized DAG of a second version);
* ``DECISIONS`` (1,000,000) recorded decisions, sealed, with their violations, inputs and label
  events (the loader of :mod:`benchmarks.bench_evidence`), and ``HISTORY_TASK_INSTANCES``
  (1,000,000) finished task instances in ``HISTORY_RUNS`` DAG runs of the verified DAG, copied in
  SQL from a run created the way the scheduler creates one;
* the policy of :func:`benchmarks.generate.generate_policy` (200 zones, 2,000 catalog patterns);
  the request claims the owner zone of one catalog entry and one input matching it;
* then :func:`~airflow_policyzones.db.service.decide_and_record` as the api-server calls it
  (``source="api"``, a session per request) for a fresh running try each time, with
  ``verify=True`` and ``verify=False`` alternating (which goes first alternates too),
  ``SAMPLES`` decisions each after ``WARMUP`` pairs. Fresh tries are made beforehand (copies of
  the template run, running at try 1), so only the decision is timed.

Both medians and the median of the per-pair differences are printed; the overhead is the
difference of the medians. ``EXPLAIN ANALYZE`` of the two verification queries (the try; the
serialized DAG rows) is printed for the record.

Run with ``python -m benchmarks.bench_verify`` (``make bench``). The last line is
``verify_overhead_ms=<n> decide_verify_median_ms=<n> decide_noverify_median_ms=<n>
paired_overhead_ms=<n>`` (milliseconds); target: ``verify_overhead_ms`` <= 2.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
DECISIONS = int(os.environ.get("PZ_BENCH_VERIFY_DECISIONS", "1000000"))
"""Recorded decisions loaded before timing (the loader of :mod:`benchmarks.bench_evidence` reads
its count from the environment when it is imported)."""
os.environ["PZ_BENCH_EVIDENCE_DECISIONS"] = str(DECISIONS)
HISTORY_MAP_INDEXES = 40
HISTORY_RUNS = DECISIONS // HISTORY_MAP_INDEXES
HISTORY_TASK_INSTANCES = HISTORY_RUNS * HISTORY_MAP_INDEXES
SAMPLES = int(os.environ.get("PZ_BENCH_VERIFY_SAMPLES", "400"))
"""Decisions timed per condition."""
WARMUP = 20
"""Pairs decided before timing (connection pool, statement caches, the serialized-DAG cache)."""
TARGET_MS = 2.0
DAG_ID = "ads_dag"
TASK_ID = "read"


def clone_runs(connection: sa.Connection, *, template: str, prefix: str, count: int, state: str) -> None:
    """``count`` copies of DAG run ``template`` of ``DAG_ID`` (run ids ``<prefix><n>``), each with
    ``HISTORY_MAP_INDEXES`` task instances of task ``mapped`` (history) or one of task ``read``
    (fresh tries), all in ``state`` at try 1 and on the template's DAG version."""
    run_columns = _columns(connection, "dag_run", skip={"id", "run_id"})
    connection.execute(
        sa.text(
            f"INSERT INTO dag_run (run_id, {', '.join(run_columns)}) "
            f"SELECT :prefix || n, {', '.join(run_columns)} FROM dag_run, generate_series(1, :count) AS n "
            "WHERE dag_id = :dag_id AND run_id = :template"
        ),
        {"prefix": prefix, "count": count, "dag_id": DAG_ID, "template": template},
    )
    fixed = {"id", "run_id", "map_index", "state", "try_number"}
    ti_columns = _columns(connection, "task_instance", skip=fixed)
    history = state != "running"
    connection.execute(
        sa.text(
            f"INSERT INTO task_instance (id, run_id, map_index, state, try_number, {', '.join(ti_columns)}) "
            "SELECT gen_random_uuid(), :prefix || n, m, :state, 1, "
            f"{', '.join(ti_columns)} FROM task_instance, generate_series(1, :count) AS n, "
            "generate_series(:first, :last) AS m "
            "WHERE dag_id = :dag_id AND run_id = :template AND task_id = :task_id AND map_index = ("
            "SELECT min(map_index) FROM task_instance "
            "WHERE dag_id = :dag_id AND run_id = :template AND task_id = :task_id)"
        ),
        {
            "prefix": prefix,
            "count": count,
            "state": state,
            "dag_id": DAG_ID,
            "template": template,
            "task_id": "mapped" if history else TASK_ID,
            "first": 0 if history else -1,
            "last": HISTORY_MAP_INDEXES - 1 if history else -1,
        },
    )


def _columns(connection: sa.Connection, table: str, *, skip: set[str]) -> list[str]:
    names = connection.execute(
        sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :table "
            "ORDER BY ordinal_position"
        ),
        {"table": table},
    ).scalars()
    return [f'"{name}"' for name in names if name not in skip]


def explain(url: str, run_id: str, version_id: object) -> None:
    """``EXPLAIN ANALYZE`` of the verification's two queries for one fresh try."""
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.taskinstance import TaskInstance

    latest = (
        sa.select(SerializedDagModel.id)
        .where(SerializedDagModel.dag_id == DAG_ID)
        .order_by(SerializedDagModel.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    queries = {
        "the try": sa.select(TaskInstance.try_number, TaskInstance.state, TaskInstance.dag_version_id).where(
            TaskInstance.dag_id == DAG_ID,
            TaskInstance.task_id == TASK_ID,
            TaskInstance.run_id == run_id,
            TaskInstance.map_index == -1,
        ),
        "the serialized DAGs": sa.select(
            SerializedDagModel.id,
            SerializedDagModel.dag_hash,
            SerializedDagModel.dag_version_id,
            DagVersion.version_number,
        )
        .join(DagVersion, DagVersion.id == SerializedDagModel.dag_version_id)
        .where((SerializedDagModel.id == latest) | (SerializedDagModel.dag_version_id == version_id)),
    }
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            for name, query in queries.items():
                compiled = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
                plan = connection.execute(sa.text(f"EXPLAIN ANALYZE {compiled}")).scalars()
                print(f"  EXPLAIN ANALYZE, {name}:")
                for line in plan:
                    print(f"    {line}")
    finally:
        engine.dispose()


def main() -> int:
    home = tempfile.mkdtemp(prefix="policyzones-bench-verify-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    sys.path.insert(0, str(REPO))
    from benchmarks import bench_evidence
    from benchmarks.generate import generate_policy, witness
    from tests.support.airflow_db import create_run, parsed_as, prepared_database, use_database

    generated = generate_policy()
    entry = next(item for item in generated.catalog if item.namespace == "asset")
    zone, uri = entry.owner, witness(entry, "bench")
    policy = Path(home) / "policy.yaml"
    policy.write_text(generated.yaml_text)
    prepared = prepared_database("postgres")
    with use_database(prepared.url):
        from airflow_policyzones.policy import PolicyEngine

        engine = PolicyEngine.from_file(policy)
        template = create_run(DAG_ID)
        parsed_as(DAG_ID, template, task_id=TASK_ID, zone=zone, inlets=[uri])
        print(
            f"loading {bench_evidence.DECISIONS:,} sealed decisions (with violations, inputs, label events)"
        )
        print(f"  loaded in {bench_evidence.load(prepared.url):.1f} s", flush=True)
        fresh = 2 * (SAMPLES + WARMUP) + 1
        started = time.perf_counter()
        db = sa.create_engine(prepared.url)
        with db.begin() as connection:
            clone_runs(connection, template=template, prefix="history__", count=HISTORY_RUNS, state="success")
            clone_runs(connection, template=template, prefix="fresh__", count=fresh, state="running")
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in ("dag_run", "task_instance"):
                connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
            counts = {
                table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("policyzones_decision", "task_instance", "dag_run", "serialized_dag")
            }
            version_id = connection.execute(
                sa.text("SELECT dag_version_id FROM task_instance WHERE run_id = :run AND task_id = :task"),
                {"run": template, "task": TASK_ID},
            ).scalar_one()
        db.dispose()
        print(
            f"  {HISTORY_TASK_INSTANCES:,} finished and {fresh} running task instances in "
            f"{time.perf_counter() - started:.1f} s; "
            + ", ".join(f"{table}: {count:,} rows" for table, count in counts.items()),
            flush=True,
        )
        if counts["policyzones_decision"] < DECISIONS:
            raise SystemExit(
                f"expected {DECISIONS:,} recorded decisions, found {counts['policyzones_decision']:,}"
            )
        explain(prepared.url, f"fresh__{fresh}", version_id)
        samples = measure(engine, zone=zone, uri=uri, fresh=fresh)
    with_verify, without = statistics.median(samples[True]), statistics.median(samples[False])
    paired = statistics.median(on - off for on, off in zip(samples[True], samples[False], strict=True))
    overhead = with_verify - without
    verdict = "meets" if overhead <= TARGET_MS else "MISSES"
    print(
        f"decide_and_record (source=api) at {counts['policyzones_decision']:,} decisions: median "
        f"{with_verify:.2f} ms with verification, {without:.2f} ms without, {SAMPLES} each; "
        f"verification adds {overhead:.2f} ms (median of the pairs' differences {paired:.2f} ms), "
        f"{verdict} the target of {TARGET_MS:.0f} ms"
    )
    print(
        f"verify_overhead_ms={overhead:.2f} decide_verify_median_ms={with_verify:.2f} "
        f"decide_noverify_median_ms={without:.2f} paired_overhead_ms={paired:.2f}"
    )
    return 0 if overhead <= TARGET_MS else 1


def measure(engine: Any, *, zone: str, uri: str, fresh: int) -> dict[bool, list[float]]:
    """Milliseconds per decision with (``True``) and without (``False``) verification, in pairs."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from airflow_policyzones.db.service import TryNotRunning, decide_and_record
    from airflow_policyzones.wire import DecisionRequest

    def request(run_id: str) -> DecisionRequest:
        return DecisionRequest.model_validate(
            {
                "task": {
                    "dag_id": DAG_ID,
                    "task_id": TASK_ID,
                    "run_id": run_id,
                    "map_index": -1,
                    "try_number": 1,
                },
                "zone": zone,
                "zone_source": "task",
                "inputs": [{"namespace": "asset", "name": uri}],
            }
        )

    runs = iter(f"fresh__{n}" for n in range(1, fresh))

    def timed(verify: bool) -> float:
        item = request(next(runs))
        with create_session() as session:
            started = time.perf_counter()
            response = decide_and_record(
                session=session, engine=engine, request=item, source="api", verify=verify
            )
            elapsed = (time.perf_counter() - started) * 1000
        if response.already_recorded or any(
            "claims_differ_from_parsed_dag" in finding.rules for finding in response.findings
        ):
            raise SystemExit(
                f"the benchmark's request is not a fresh try the parsed DAG declares: {response}"
            )
        return elapsed

    # Verification runs: a finished try is refused (the last fresh try, made finished).
    finished = f"fresh__{fresh}"
    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == finished)
            .values(state=TaskInstanceState.SUCCESS)
        )
    with create_session() as session:
        try:
            decide_and_record(session=session, engine=engine, request=request(finished), source="api")
        except TryNotRunning:
            pass
        else:
            raise SystemExit("verification accepted a decision for a finished try")

    samples: dict[bool, list[float]] = {True: [], False: []}
    for index in range(WARMUP + SAMPLES):
        order = (True, False) if index % 2 == 0 else (False, True)
        pair = {verify: timed(verify) for verify in order}
        if index >= WARMUP:
            for verify, value in pair.items():
                samples[verify].append(value)
    return samples


if __name__ == "__main__":
    sys.exit(main())
