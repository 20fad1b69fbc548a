"""Content Recommendations tries to rank by spend segments — purchase data two hops away.

Blocked: the segments carry the purchases' labels (propagated through bid features), and no flow
from Ads Optimization to Content Recommendations is sanctioned. The violation shows the path:
spend_segments <- bid_features <- raw purchases."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

SPEND_SEGMENTS = Asset("s3://lake/ads/spend_segments/daily")

with DAG(
    dag_id="recs_spend_ranking",
    schedule=[SPEND_SEGMENTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("content_recommendations"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[SPEND_SEGMENTS])
    def rank_by_spend_segments() -> str:
        leave_evidence("recs_spend_ranking.rank_by_spend_segments")
        return "ranked by spend (must never happen)"

    rank_by_spend_segments()
