"""The sanctioned way out of Ads Optimization: a reclassifier that aggregates purchases per day
over users who consented to AI training. The policy names this task; its output is labelled
aggregated and consented for ``ai_training``."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")
CONSENTED_DAILY = Asset("s3://lake/derived/purchases_consented_daily/latest")

with DAG(
    dag_id="purchases_reclassify",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("ads_optimization"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[RAW_PURCHASES], outlets=[CONSENTED_DAILY])
    def aggregate_consented() -> str:
        leave_evidence("purchases_reclassify.aggregate_consented")
        return "daily aggregates over consented users written"

    aggregate_consented()
