"""AI Training takes only aggregated, consented data: raw purchases are blocked, the output of
the sanctioned reclassifier (``purchases_reclassify.aggregate_consented``) is allowed.

The tasks use ``zoned(...)``, an operator class that always runs in ``ai_training``."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset
from evidence import leave_evidence

from airflow_policyzones import zoned

TrainingOperator = zoned(PythonOperator, zone="ai_training")

RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")
CONSENTED_DAILY = Asset("s3://lake/derived/purchases_consented_daily/latest")


def _train(task_id: str, source: str) -> str:
    leave_evidence(f"ai_training_recsys.{task_id}")
    return f"model trained on {source}"


with DAG(
    dag_id="ai_training_recsys",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=["example"],
    doc_md=__doc__,
):
    TrainingOperator(
        task_id="train_on_raw_purchases",
        python_callable=_train,
        op_args=["train_on_raw_purchases", "raw purchases"],
        inlets=[RAW_PURCHASES],
    )
    TrainingOperator(
        task_id="train_on_consented_aggregates",
        python_callable=_train,
        op_args=["train_on_consented_aggregates", "consented daily aggregates"],
        inlets=[CONSENTED_DAILY],
    )
