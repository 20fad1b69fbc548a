"""Label propagation at run time, against real metadata databases (SQLite and PostgreSQL).

Each scenario writes to assets named uniquely for the test, so rows other tests leave in the
shared database never interfere.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.models import (
    PolicyZonesAssetLabelEvent,
    PolicyZonesAssetLabels,
    PolicyZonesReclassification,
)
from airflow_policyzones.db.propagation import OutputsRefused, record_outputs
from airflow_policyzones.db.service import decide_and_record
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.policy.loader import load_policy_bytes
from airflow_policyzones.wire import DecisionResponse, OutputsRequest, OutputsResponse
from tests.support.airflow_db import TEST_POLICY, Prepared, create_run, parsed_as
from tests.unit.db.test_service import PURCHASES, request_for

pytestmark = pytest.mark.integration

RECLASSIFYING_POLICY = TEST_POLICY.replace(
    "exemptions:",
    """reclassifiers:
  ads_consent_filter:
    zone: ads
    dag_id: ads_dag
    task_id: read
    outputs: {consented: [ai], aggregated: true}
flows:
  - {from: ads, to: ai, via: [ads_consent_filter]}
exemptions:""",
)


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def decide(
    engine: PolicyEngine,
    dag_id: str,
    *,
    zone: str,
    inputs: list[str],
    outlets: list[str] = (),  # type: ignore[assignment]
) -> tuple[str, DecisionResponse]:
    """A running try of ``dag_id``'s ``read`` task, parsed with these inlets and outlets, decided."""
    run_id = create_run(dag_id)
    parsed_as(dag_id, run_id, zone=zone, inlets=inputs, outlets=outlets)
    with _session() as session:
        response = decide_and_record(
            session=session,
            engine=engine,
            request=request_for(dag_id, run_id, zone=zone, inputs=inputs),
            source="api",
        )
    return run_id, response


def write(engine: PolicyEngine, dag_id: str, run_id: str, outputs: list[str]) -> OutputsResponse:
    request = OutputsRequest.model_validate(
        {
            "task": {"dag_id": dag_id, "task_id": "read", "run_id": run_id, "try_number": 1},
            "outputs": [{"namespace": "asset", "name": name} for name in outputs],
        }
    )
    with _session() as session:
        return record_outputs(session=session, engine=engine, request=request)


def rules(response: DecisionResponse) -> set[str]:
    return {rule for finding in response.findings for rule in finding.rules}


def fresh(kind: str) -> str:
    return f"s3://lake/{kind}/{uuid.uuid4().hex}/part-0"


def test_restrictions_travel_with_the_data_two_hops(backend: Prepared, engine: PolicyEngine) -> None:
    features, segments = fresh("features"), fresh("segments")
    run_id, allowed = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[features])
    assert allowed.outcome == "allow"
    written = write(engine, "ads_dag", run_id, [features])
    [labels] = written.outputs
    assert (labels.categories, labels.consented, labels.aggregated, labels.origins) == (
        ["purchase_events"],
        ["ads"],
        False,
        ["ads"],
    )
    assert written.reclassifier is None

    # recs accepts unlabeled data: without propagation it would read purchase-derived data.
    _, recs = decide(engine, "recs_dag", zone="recs", inputs=[features])
    assert recs.outcome == "deny"
    assert rules(recs) == {"category_not_allowed", "unsanctioned_flow"}

    _, ai = decide(engine, "ai_dag", zone="ai", inputs=[features])
    assert rules(ai) == {"consent_missing", "not_aggregated", "unsanctioned_flow"}

    hop_run, hop = decide(engine, "ads_dag", zone="ads", inputs=[features], outlets=[segments])
    assert hop.outcome == "allow"
    write(engine, "ads_dag", hop_run, [segments])
    _, two_hops = decide(engine, "recs_dag", zone="recs", inputs=[segments])
    assert rules(two_hops) == {"category_not_allowed", "unsanctioned_flow"}
    [finding] = two_hops.findings
    assert finding.reason.endswith(
        f"; derived: {segments} (written by ads_dag.read in ads) "
        f"← {features} (written by ads_dag.read in ads) ← {PURCHASES}"
    )

    with _session() as session:
        history = session.scalars(
            sa.select(PolicyZonesAssetLabelEvent).where(
                PolicyZonesAssetLabelEvent.name.in_([features, segments])
            )
        ).all()
        assert sorted((row.name, row.dag_id, row.run_id) for row in history) == sorted(
            [(features, "ads_dag", run_id), (segments, "ads_dag", hop_run)]
        )


def test_outputs_are_recorded_once_per_try_and_never_for_a_denied_try(
    backend: Prepared, engine: PolicyEngine
) -> None:
    features = fresh("features")
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[features])
    first = write(engine, "ads_dag", run_id, [features])
    again = write(engine, "ads_dag", run_id, [features])
    with pytest.raises(OutputsRefused, match="already reported"):
        write(engine, "ads_dag", run_id, [features, fresh("other")])
    assert again.already_recorded is True
    assert again.outputs == first.outputs
    with _session() as session:
        current = session.scalars(
            sa.select(PolicyZonesAssetLabels).where(PolicyZonesAssetLabels.name == features)
        ).one()
        assert current.event_count == 1

    denied_run, denied = decide(engine, "recs_dag", zone="recs", inputs=[PURCHASES])
    assert denied.outcome == "deny"
    with pytest.raises(OutputsRefused, match="denied"):
        write(engine, "recs_dag", denied_run, [fresh("sneaky")])
    with pytest.raises(OutputsRefused, match="no task instance"):
        write(engine, "ads_dag", "no_such_run", [fresh("sneaky")])


def test_several_writers_union_their_restrictions(backend: Prepared, engine: PolicyEngine) -> None:
    shared = fresh("shared")
    clicks_run, _ = decide(
        engine, "ads_dag", zone="ads", inputs=["s3://lake/raw/ad_clicks/2026"], outlets=[shared]
    )
    write(engine, "ads_dag", clicks_run, [shared])
    purchases_run, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[shared])
    write(engine, "ads_dag", purchases_run, [shared])
    with _session() as session:
        current = session.scalars(
            sa.select(PolicyZonesAssetLabels).where(PolicyZonesAssetLabels.name == shared)
        ).one()
        assert (sorted(current.categories), current.event_count) == (["ad_clicks", "purchase_events"], 2)


def test_a_reclassifier_sanctions_the_flow_and_is_recorded(backend: Prepared) -> None:
    engine = PolicyEngine(load_policy_bytes(RECLASSIFYING_POLICY.encode(), source="reclassifying.yaml"))
    filtered = fresh("consented")
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[filtered])
    written = write(engine, "ads_dag", run_id, [filtered])
    assert written.reclassifier == "ads_consent_filter"
    [labels] = written.outputs
    assert (labels.consented, labels.aggregated, labels.reclassified_by) == (
        ["ai"],
        True,
        ["ads_consent_filter"],
    )

    _, ai = decide(engine, "ai_dag", zone="ai", inputs=[filtered])
    assert ai.outcome == "allow", ai.findings

    with _session() as session:
        record = session.scalars(
            sa.select(PolicyZonesReclassification).where(PolicyZonesReclassification.run_id == run_id)
        ).one()
        assert record.reclassifier == "ads_consent_filter"
        assert record.outputs == [{"namespace": "asset", "name": filtered}]
        assert record.labels_before["consented"] == ["ads"]
        assert record.labels_after["consented"] == ["ai"]
        assert record.inputs[0]["name"] == PURCHASES


def report(engine: PolicyEngine, dag_id: str, run_id: str, outputs: dict[str, str]) -> OutputsResponse:
    """An outputs report naming each output with how it became known (``declared``, ``sql``, ...)."""
    request = OutputsRequest.model_validate(
        {
            "task": {"dag_id": dag_id, "task_id": "read", "run_id": run_id, "try_number": 1},
            "outputs": [{"namespace": "asset", "name": name, "source": src} for name, src in outputs.items()],
        }
    )
    with _session() as session:
        return record_outputs(session=session, engine=engine, request=request)


def test_outputs_the_server_cannot_account_for_refuse_the_whole_report(
    backend: Prepared, engine: PolicyEngine
) -> None:
    declared, forged = fresh("declared"), fresh("forged")
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[declared])
    for source in ("declared", "sql", "alias"):
        with pytest.raises(OutputsRefused, match=f"{forged} \\({source}\\)"):
            report(engine, "ads_dag", run_id, {declared: "declared", forged: source})
    with _session() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count())
                .select_from(PolicyZonesAssetLabelEvent)
                .where(PolicyZonesAssetLabelEvent.run_id == run_id)
            )
            == 0
        )
    # What its hooks wrote while it ran is the try's own report; its outlets are checked.
    written = report(engine, "ads_dag", run_id, {declared: "declared", fresh("observed"): "observed"})
    assert len(written.outputs) == 2


def test_outputs_only_for_a_running_try(backend: Prepared, engine: PolicyEngine) -> None:
    from airflow.models.taskinstance import TaskInstance

    declared = fresh("declared")
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[declared])
    with _session() as session:
        session.execute(sa.update(TaskInstance).where(TaskInstance.run_id == run_id).values(state="success"))
    with pytest.raises(OutputsRefused, match="not running"):
        write(engine, "ads_dag", run_id, [declared])
