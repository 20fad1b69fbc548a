"""Marketing Analytics is a new zone in ``dry_run`` mode: reading purchases is a violation, but
while the zone is rolled out in logging mode the task runs and the violation is recorded."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task

from airflow_policyzones import zone_tag

RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")
RAW_AD_CLICKS = Asset("s3://lake/raw/ad_clicks/daily")

with DAG(
    dag_id="marketing_attribution",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=[zone_tag("marketing_analytics"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[RAW_AD_CLICKS, RAW_PURCHASES])
    def attribute_campaigns() -> str:
        return "campaign attribution computed"

    attribute_campaigns()
