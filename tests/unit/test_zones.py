"""The zone annotation API DAG authors use, on real Airflow operators."""

from __future__ import annotations

import pendulum
import pytest
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, AssetAlias, TaskGroup, task

from airflow_policyzones import ZoneAnnotationError, ZoneGroup, set_zone, zone_tag, zoned
from airflow_policyzones.policy import InputRef
from airflow_policyzones.zones import declared_inputs, task_context, zone_of

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _dag(dag_id: str = "ads_example", **kwargs: object) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, **kwargs)  # type: ignore[arg-type]


def test_dag_tag_sets_the_default_zone_and_nearest_annotation_wins() -> None:
    training = zoned(PythonOperator, zone="ai_training")
    with _dag(tags=[zone_tag("ads_optimization"), "team-ads"]) as dag:
        plain = PythonOperator(task_id="plain", python_callable=print)
        with ZoneGroup("content_recommendations"):
            grouped = PythonOperator(task_id="grouped", python_callable=print)
            with TaskGroup("inner"):
                nested = PythonOperator(task_id="nested", python_callable=print)
            overridden = PythonOperator(task_id="overridden", python_callable=print)
            set_zone(overridden, zone="marketing_analytics")
        wrapped = training(task_id="wrapped", python_callable=print)

    assert dag.tags >= {"policyzone:ads_optimization"}
    assert zone_of(plain) == zone_of(plain).__class__("ads_optimization", "dag")
    assert (zone_of(grouped).zone, zone_of(grouped).source) == ("content_recommendations", "group")
    assert zone_of(nested).zone == "content_recommendations"
    assert (zone_of(overridden).zone, zone_of(overridden).source) == ("marketing_analytics", "task")
    assert (zone_of(wrapped).zone, zone_of(wrapped).source) == ("ai_training", "task")
    assert isinstance(wrapped, PythonOperator)
    assert type(wrapped).__name__ == "ZonedPythonOperator"


def test_task_decorator_results_and_mapped_tasks_take_a_zone() -> None:
    with _dag():

        @task(inlets=[Asset("s3://lake/raw/purchases/x")])
        def read(value: int) -> int:
            return value

        single = read(1)
        mapped = read.expand(value=[1, 2, 3])
        set_zone(single, mapped, zone="ai_training")

    assert zone_of(single.operator).zone == "ai_training"
    assert zone_of(mapped.operator).zone == "ai_training"
    assert declared_inputs(mapped.operator).inputs == (InputRef.asset("s3://lake/raw/purchases/x"),)


def test_unzoned_task_reports_no_zone() -> None:
    with _dag():
        alone = PythonOperator(task_id="alone", python_callable=print)
    assert (zone_of(alone).zone, zone_of(alone).source) == (None, "none")


def test_two_zone_tags_are_an_error() -> None:
    with _dag(tags=[zone_tag("a"), zone_tag("b")]):
        clash = PythonOperator(task_id="clash", python_callable=print)
    with pytest.raises(ZoneAnnotationError, match="several zone tags"):
        zone_of(clash)


@pytest.mark.parametrize("bad", ["", "1zone", "zone with space", "x/y"])
def test_invalid_zone_names_are_rejected_where_they_are_written(bad: str) -> None:
    with pytest.raises(ZoneAnnotationError, match="invalid zone name"):
        zone_tag(bad)
    with pytest.raises(ZoneAnnotationError):
        zoned(PythonOperator, zone=bad)


def test_set_zone_rejects_non_tasks() -> None:
    with pytest.raises(ZoneAnnotationError, match="expects tasks"):
        set_zone("not a task", zone="ai_training")


def test_declared_inputs_keeps_assets_and_reports_everything_else() -> None:
    with _dag():
        reader = PythonOperator(
            task_id="reader",
            python_callable=print,
            inlets=[Asset("S3://Lake/raw/purchases/x/"), "s3://a/string", AssetAlias("later")],
        )
    declared = declared_inputs(reader)
    assert declared.inputs == (InputRef("asset", "s3://lake/raw/purchases/x"),)
    assert len(declared.problems) == 2
    assert "is not an Asset" in declared.problems[0]
    assert "AssetAlias('later')" in declared.problems[1]


def test_task_context_carries_identity_for_membership() -> None:
    with _dag("ads_ctx", tags=["team-ads"]):
        owned = PythonOperator(task_id="owned", python_callable=print, owner="ads-team, ml")
    context = task_context(owned)
    assert context.dag_id == "ads_ctx"
    assert context.task_id == "owned"
    assert context.tags == frozenset({"team-ads"})
    assert context.owners == frozenset({"ads-team", "ml"})
