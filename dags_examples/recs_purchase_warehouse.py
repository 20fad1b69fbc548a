"""Content Recommendations asks Airflow for the purchases warehouse's connection.

The task declares nothing and never gets as far as reading: since Airflow 3 a task obtains a
connection from the api-server (its supervisor asks the execution API for it), and there the
zone policy's ``connections:`` section says the ``purchases_warehouse`` connection reaches raw
purchase events, which Content Recommendations may not use. The api-server refuses the
connection, the task gets no credentials, and it fails on its first try although it has retries;
the refusal is a ``connection_not_allowed`` violation of the try.

``make demo`` stores the connection in the metadata database (``airflow connections add``).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, BaseHook, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

with DAG(
    dag_id="recs_purchase_warehouse",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("content_recommendations"), "example"],
    doc_md=__doc__,
):

    @task
    def rank_from_purchase_warehouse() -> str:
        connection = BaseHook.get_connection("purchases_warehouse")
        leave_evidence("recs_purchase_warehouse.rank_from_purchase_warehouse")
        return str(connection.host)

    rank_from_purchase_warehouse()
