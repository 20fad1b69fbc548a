"""Ads Optimization reads purchase events: the policy allows it. What it writes (bid features)
carries the purchases' labels onwards: purchase events, consented for ads only, from this zone."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")
RAW_AD_CLICKS = Asset("s3://lake/raw/ad_clicks/daily")
BID_FEATURES = Asset("s3://lake/ads/bid_features/daily")

with DAG(
    dag_id="ads_optimization_daily",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("ads_optimization"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[RAW_PURCHASES, RAW_AD_CLICKS], outlets=[BID_FEATURES])
    def build_bid_features() -> str:
        leave_evidence("ads_optimization_daily.build_bid_features")
        return "bid features built from purchases and ad clicks"

    build_bid_features()
