"""Second hop inside Ads Optimization: spend segments derived from the bid features.

Runs whenever the bid features are updated (an Asset schedule). Nothing in the policy's catalog
mentions these assets: their labels are propagated from what the tasks read, so the segments
are still purchase data, consented for ads only, two hops away from the raw events."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

BID_FEATURES = Asset("s3://lake/ads/bid_features/daily")
SPEND_SEGMENTS = Asset("s3://lake/ads/spend_segments/daily")

with DAG(
    dag_id="ads_spend_segments",
    schedule=[BID_FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("ads_optimization"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[BID_FEATURES], outlets=[SPEND_SEGMENTS])
    def segment_spenders() -> str:
        leave_evidence("ads_spend_segments.segment_spenders")
        return "spend segments written"

    segment_spenders()
