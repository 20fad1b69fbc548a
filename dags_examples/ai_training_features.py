"""AI Training reads the raw output of Ads Optimization (bid features) directly: blocked.

The features are user-level purchase data consented for ads only, and the only sanctioned way
from Ads Optimization to AI Training is the consent-filtering aggregation reclassifier
(purchases_reclassify.aggregate_consented), which ai_training_recsys reads instead."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

BID_FEATURES = Asset("s3://lake/ads/bid_features/daily")

with DAG(
    dag_id="ai_training_features",
    schedule=[BID_FEATURES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("ai_training"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[BID_FEATURES])
    def train_on_bid_features() -> str:
        leave_evidence("ai_training_features.train_on_bid_features")
        return "trained on ads features (must never happen)"

    train_on_bid_features()
