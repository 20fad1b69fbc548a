"""Marketing Analytics is a new zone in ``dry_run`` mode: reading purchases is a violation, but
while the zone is rolled out in logging mode the task runs and the violation is recorded."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")
RAW_AD_CLICKS = Asset("s3://lake/raw/ad_clicks/daily")

with DAG(
    dag_id="marketing_attribution",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("marketing_analytics"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[RAW_AD_CLICKS, RAW_PURCHASES])
    def attribute_campaigns() -> str:
        leave_evidence("marketing_attribution.attribute_campaigns")
        return "campaign attribution computed"

    attribute_campaigns()
