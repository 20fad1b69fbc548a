"""Content Recommendations may use watch history, never purchases: the second task is blocked
before its body runs, and the violation is logged."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

WATCH_HISTORY = Asset("s3://lake/raw/watch_history/daily")
RAW_PURCHASES = Asset("s3://lake/raw/purchases/daily")

with DAG(
    dag_id="recs_content_ranking",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
    tags=[zone_tag("content_recommendations"), "example"],
    doc_md=__doc__,
):

    @task(inlets=[WATCH_HISTORY])
    def rank_from_watch_history() -> str:
        leave_evidence("recs_content_ranking.rank_from_watch_history")
        return "ranked from watch history"

    @task(inlets=[WATCH_HISTORY, RAW_PURCHASES])
    def rank_from_purchases() -> str:
        leave_evidence("recs_content_ranking.rank_from_purchases")
        return "this must never run: purchases may not shape recommendations"

    rank_from_watch_history()
    rank_from_purchases()
