"""What the zone check adds to ``GET /execution/connections/{id}``, against the same request with
the check off, measured side by side in one run.

Airflow's own api-server app (execution API and plugins) in process, on PostgreSQL, with execution
tokens from Airflow's own generator. The measured connection is restricted by the policy and
allowed for the try's zone: the check validates the token, finds the try and its recorded decision
and decides (the path every permitted fetch of a restricted connection takes). Requests alternate
check on / check off so that drift affects both alike.

Run with ``python -m benchmarks.bench_connections`` (``make bench``). The last line is
``connection_check_overhead_ms=<n> unrestricted_overhead_ms=<n> baseline_ms=<n>``; target <= 2 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REQUESTS = 400
WARMUP = 30
TARGET_MS = 2.0


def main() -> int:
    home = tempfile.mkdtemp(prefix="policyzones-bench-connections-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from tests.support.airflow_db import (
        JWT_SECRET,
        TEST_POLICY,
        create_run,
        parsed_as,
        prepared_database,
        use_database,
    )

    policy = Path(home) / "policy.yaml"
    policy.write_text(TEST_POLICY + "connections:\n  warehouse_raw:\n    categories: [purchase_events]\n")
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET
    os.environ["AIRFLOW__POLICYZONES__POLICY_FILE"] = str(policy)
    conn = json.dumps({"conn_type": "postgres", "host": "warehouse", "login": "reader", "password": "x"})
    os.environ["AIRFLOW_CONN_WAREHOUSE_RAW"] = conn
    os.environ["AIRFLOW_CONN_OPEN_DATA"] = conn

    prepared = prepared_database("postgres")
    with use_database(prepared.url):
        import sqlalchemy as sa
        from airflow.api_fastapi.app import create_app
        from airflow.api_fastapi.execution_api.app import _jwt_generator
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from fastapi.testclient import TestClient

        from airflow_policyzones.config import get_engine
        from airflow_policyzones.db.service import decide_and_record
        from airflow_policyzones.wire import DecisionRequest

        run_id = create_run("ads_dag")
        parsed_as("ads_dag", run_id, zone="ads")  # the dag-processor's copy: task read in zone ads
        with create_session() as session:
            ti_id = session.scalar(
                sa.select(TaskInstance.id).where(
                    TaskInstance.run_id == run_id, TaskInstance.task_id == "read"
                )
            )
            request = DecisionRequest.model_validate(
                {
                    "task": {
                        "dag_id": "ads_dag",
                        "task_id": "read",
                        "run_id": run_id,
                        "map_index": -1,
                        "try_number": 1,
                    },
                    "zone": "ads",
                    "zone_source": "dag",
                    "inputs": [],
                }
            )
            decide_and_record(session=session, engine=get_engine(), request=request, source="api")
        headers = {"Authorization": f"Bearer {_jwt_generator().generate({'sub': str(ti_id)})}"}

        with TestClient(create_app(apps="all")) as client:

            def timed(path: str, *, enabled: bool) -> float:
                os.environ["AIRFLOW__POLICYZONES__ENABLED"] = "True" if enabled else "False"
                start = time.perf_counter()
                response = client.get(path, headers=headers)
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                return elapsed * 1000

            samples: dict[tuple[str, bool], list[float]] = {}
            for index in range(WARMUP + REQUESTS):
                for path in ("/execution/connections/warehouse_raw", "/execution/connections/open_data"):
                    for enabled in (True, False) if index % 2 else (False, True):
                        value = timed(path, enabled=enabled)
                        if index >= WARMUP:
                            samples.setdefault((path, enabled), []).append(value)

    def median(path: str, enabled: bool) -> float:
        return statistics.median(samples[(f"/execution/connections/{path}", enabled)])

    overhead = median("warehouse_raw", True) - median("warehouse_raw", False)
    unrestricted = median("open_data", True) - median("open_data", False)
    baseline = median("warehouse_raw", False)
    print(
        f"GET /execution/connections/{{id}}, {REQUESTS} requests per condition, PostgreSQL, in process: "
        f"restricted+allowed {median('warehouse_raw', True):.2f} ms vs {baseline:.2f} ms off; "
        f"unrestricted {median('open_data', True):.2f} ms vs {median('open_data', False):.2f} ms off "
        f"(target: <= {TARGET_MS} ms added)"
    )
    print(
        f"connection_check_overhead_ms={overhead:.2f} unrestricted_overhead_ms={unrestricted:.2f} "
        f"baseline_ms={baseline:.2f}"
    )
    return 0 if overhead <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
