"""Effective-label lookup at the decision service, with a large label history (target: README, "Benchmarks").

In a fresh PostgreSQL database (``airflow db migrate``), 20 derived assets get 10,000 propagated
label rows in their history (500 writes each) and 200,000 more history rows belong to 10,000
other assets; every asset has its current-labels row. A task in the zone that wrote them reads
the 20 assets. Timed, in the same run:

* ``label_lookup`` — the lookup a decision makes: catalog labels united with the propagated ones
  for the 20 inputs (:func:`airflow_policyzones.db.propagation.with_propagated`, one query);
* ``decision`` — the whole decision service path (``decide_and_record``: membership, lookup,
  engine, recording, commit) for those 20 inputs, against the baseline of the same decision for
  20 inputs nothing was propagated to.

Run with ``python -m benchmarks.bench_lineage`` (part of ``make bench``). The last line is
``label_lookup_median_ms=<n>``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
INPUTS = 20
HISTORY_PER_INPUT = 500
OTHER_ASSETS = 10_000
OTHER_HISTORY = 200_000
ROUNDS = 200
TARGET_MS = 5.0
POLICY = """\
version: 1
name: bench-lineage
categories:
  purchase_events: {description: bench}
catalog:
  - uri: "s3://lake/raw/**"
    categories: [purchase_events]
    consented: [ads]
zones:
  ads:
    purpose: ads
    allowed_categories: [purchase_events]
    unlabeled: allow
    members: {dag_ids: ["bench_*"]}
"""


LABELS = """'["purchase_events"]'::json, '["ads"]'::json, false, '["ads"]'::json, '[]'::json"""
COLUMNS = "namespace, name, categories, consented, aggregated, origins, reclassified_by"
HISTORY = (
    f"INSERT INTO policyzones_asset_label_event ({COLUMNS}, dag_id, task_id, run_id, map_index, "
    "try_number, zone, decision_id, reclassifier, policy_version, recorded_at) "
    "SELECT 'asset', :prefix || (i % :assets), " + LABELS + ", 'bench_writer', 'write', "
    "'run_' || i, -1, 1, 'ads', :offset + i, NULL, 'sha256:bench', now() - i * interval '1 second' "
    "FROM generate_series(1, :rows) AS i"
)
CURRENT = (
    f"INSERT INTO policyzones_asset_labels ({COLUMNS}, event_count, updated_at) "
    "SELECT 'asset', :prefix || i, " + LABELS + ", :events, now() "
    "FROM generate_series(0, :assets - 1) AS i"
)
HOT, COLD = "s3://lake/derived/hot/", "s3://lake/derived/cold/"


def load(url: str) -> None:
    engine = sa.create_engine(url)
    hot_rows = INPUTS * HISTORY_PER_INPUT
    with engine.begin() as connection:
        for prefix, assets, rows, offset in (
            (HOT, INPUTS, hot_rows, 0),
            (COLD, OTHER_ASSETS, OTHER_HISTORY, hot_rows),
        ):
            connection.execute(
                sa.text(HISTORY), {"prefix": prefix, "assets": assets, "rows": rows, "offset": offset}
            )
            connection.execute(
                sa.text(CURRENT), {"prefix": prefix, "assets": assets, "events": rows // assets}
            )
        connection.execute(sa.text("ANALYZE"))
        counts = {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("policyzones_asset_label_event", "policyzones_asset_labels")
        }
    engine.dispose()
    print("  " + ", ".join(f"{table}: {count:,} rows" for table, count in counts.items()), flush=True)


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    sys.path.insert(0, str(REPO))
    from tests.e2e.deployment import postgres_database
    from tests.support.airflow_db import scoped_env

    with (
        tempfile.TemporaryDirectory(prefix="pz-bench-lineage-") as tmp,
        postgres_database("pz_bench_lin") as url,
    ):
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY)
        with scoped_env(
            AIRFLOW_HOME=tmp,
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__POLICYZONES__POLICY_FILE=str(policy),
        ):
            airflow = str(Path(sys.executable).parent / "airflow")
            subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True)
            print(
                f"loading {INPUTS * HISTORY_PER_INPUT:,} history rows for {INPUTS} assets and "
                f"{OTHER_HISTORY:,} for {OTHER_ASSETS:,} others",
                flush=True,
            )
            load(url)
            run(policy)


def run(policy: Path) -> None:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.propagation import with_propagated
    from airflow_policyzones.db.service import decide_and_record
    from airflow_policyzones.policy import PolicyEngine
    from airflow_policyzones.policy.engine import InputRef
    from airflow_policyzones.wire import DecisionRequest

    engine = PolicyEngine.from_file(policy)
    hot = [f"{HOT}{i}" for i in range(INPUTS)]
    fresh = [f"s3://lake/derived/never-written/{i}" for i in range(INPUTS)]
    labeled = engine.label([InputRef.asset(uri) for uri in hot])

    def request(inputs: list[str]) -> DecisionRequest:
        return DecisionRequest.model_validate(
            {
                "task": {
                    "dag_id": "bench_reader",
                    "task_id": "read",
                    "run_id": uuid.uuid4().hex,
                    "try_number": 1,
                },
                "zone": "ads",
                "zone_source": "dag",
                "inputs": [{"namespace": "asset", "name": uri} for uri in inputs],
            }
        )

    lookups: list[float] = []
    decisions: dict[str, list[float]] = {"propagated": [], "baseline": []}
    with create_session() as session:
        result = with_propagated(session, engine, labeled)
        assert all(item.labels is not None and item.labels.origins == {"ads"} for item in result)
        for _ in range(ROUNDS):
            started = time.perf_counter()
            with_propagated(session, engine, labeled)
            lookups.append(time.perf_counter() - started)
            session.rollback()
        for round_ in range(ROUNDS // 2):
            for kind, inputs in (("propagated", hot), ("baseline", fresh))[:: 1 if round_ % 2 else -1]:
                started = time.perf_counter()
                response = decide_and_record(
                    session=session, engine=engine, request=request(inputs), source="in_process"
                )
                decisions[kind].append(time.perf_counter() - started)
                assert response.outcome == "allow", response
    lookup = _median_ms(lookups)
    with_rows, baseline = _median_ms(decisions["propagated"]), _median_ms(decisions["baseline"])
    verdict = "meets" if lookup <= TARGET_MS else "MISSES"
    print(
        f"label lookup for {INPUTS} inputs: median {lookup:.2f} ms over {ROUNDS}, "
        f"{verdict} the target of {TARGET_MS:.0f} ms"
    )
    print(
        f"decision with propagated labels: median {with_rows:.2f} ms; baseline without: {baseline:.2f} ms "
        f"(ratio {with_rows / baseline:.2f})"
    )
    print(
        f"label_lookup_median_ms={lookup:.2f} decision_median_ms={with_rows:.2f} "
        f"baseline_decision_median_ms={baseline:.2f}"
    )


if __name__ == "__main__":
    main()
