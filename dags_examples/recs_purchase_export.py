"""Content Recommendations reads a purchases export through object storage and declares nothing.

No inlet says what the task reads, so nothing can be checked before it runs. The read is seen
while the task runs: ``ObjectStoragePath.open()`` reports the file to Airflow's hook lineage, the
policy's catalog says it holds purchase events, and the read is stopped inside the ``open()``
call, before a byte reaches the task. The task fails on its first try although it has retries.

``make demo`` writes the export under ``$POLICYZONES_DEMO_DATA_DIR``.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, ObjectStoragePath, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

DATA_DIR = os.environ.get("POLICYZONES_DEMO_DATA_DIR") or os.path.join(
    tempfile.gettempdir(), "policyzones-demo-data"
)
PURCHASES_EXPORT = f"file://{DATA_DIR}/exports/purchases/daily.csv"

with DAG(
    dag_id="recs_purchase_export",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("content_recommendations"), "example"],
    doc_md=__doc__,
):

    @task
    def rank_from_purchase_export() -> int:
        with ObjectStoragePath(PURCHASES_EXPORT).open("r") as export:
            rows = export.read().splitlines()
        leave_evidence("recs_purchase_export.rank_from_purchase_export")
        return len(rows)

    rank_from_purchase_export()
