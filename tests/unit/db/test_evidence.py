"""data_use_evidence against real metadata databases (SQLite and PostgreSQL): decisions recorded by
the decision service, outputs labeled by propagation (a reclassifier among them), task instances
created as the scheduler creates them. Each test asks about its own day, far in the future."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.evidence import EvidenceQueryError, data_use_evidence
from airflow_policyzones.db.evidence_models import SOURCE_ORIGIN, DataUseEvidence
from airflow_policyzones.db.propagation import record_outputs
from airflow_policyzones.db.service import decide_and_record
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.policy.loader import load_policy_bytes
from airflow_policyzones.wire import OutputsRequest
from tests.support.airflow_db import Prepared, create_run, parsed_as
from tests.unit.db.test_propagation import RECLASSIFYING_POLICY
from tests.unit.db.test_service import CLICKS, PURCHASES, request_for

pytestmark = pytest.mark.integration

_START = datetime(2080, 1, 1, tzinfo=timezone.utc) + timedelta(days=random.randrange(10**3))
_days = itertools.count()


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    return PolicyEngine(load_policy_bytes(RECLASSIFYING_POLICY.encode(), source="reclassifying.yaml"))


@pytest.fixture
def day() -> datetime:
    """A day no other test records in (before the test policy's exemption expires, 2099-12-31)."""
    return _START + timedelta(days=next(_days) * 3)


@pytest.fixture
def session() -> Iterator[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        yield session


def decide(
    policy: PolicyEngine,
    dag_id: str,
    *,
    zone: str,
    inputs: list[str],
    at: datetime,
    run_id: str | None = None,
    try_number: int = 1,
) -> tuple[str, int]:
    from airflow.utils.session import create_session

    run_id = run_id or f"ev__{uuid.uuid4().hex}"
    request = request_for(dag_id, run_id, zone=zone, inputs=inputs, try_number=try_number)
    with create_session() as session:
        response = decide_and_record(
            session=session, engine=policy, request=request, source="in_process", now=at
        )
    return run_id, response.decision_id


def write(policy: PolicyEngine, dag_id: str, run_id: str, outputs: list[str], at: datetime) -> None:
    from airflow.utils.session import create_session

    request = OutputsRequest.model_validate(
        {
            "task": {"dag_id": dag_id, "task_id": "read", "run_id": run_id, "try_number": 1},
            "outputs": [{"namespace": "asset", "name": name} for name in outputs],
        }
    )
    with create_session() as session:
        record_outputs(session=session, engine=policy, request=request, now=at)


def ask(policy: PolicyEngine, day: datetime, **kwargs: Any) -> DataUseEvidence:
    from airflow.utils.session import create_session

    kwargs.setdefault("since", day)
    kwargs.setdefault("until", day + timedelta(days=1))
    with create_session() as session:
        return data_use_evidence(session, policy=policy, **kwargs)


def consented(policy: PolicyEngine, day: datetime) -> str:
    """ads_dag.read (the reclassifier ads_consent_filter) writes consented aggregates of purchases."""
    output = f"s3://lake/consented/{uuid.uuid4().hex}/part-0"
    reclassify(policy, output, at=day + timedelta(hours=1))
    return output


def reclassify(policy: PolicyEngine, output: str, *, at: datetime) -> None:
    """A running try of ads_dag.read (declaring the purchases and ``output``) decided, then its write."""
    run_id = create_run("ads_dag")
    parsed_as("ads_dag", run_id, zone="ads", inlets=[PURCHASES], outlets=[output])
    decide(policy, "ads_dag", zone="ads", inputs=[PURCHASES], at=at, run_id=run_id)
    write(policy, "ads_dag", run_id, [output], at + timedelta(minutes=5))


def test_reclassified_use_and_blocked_raw_reads(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    output = consented(policy, day)
    runs = [
        decide(policy, "ai_dag", zone="ai", inputs=[output], at=day + timedelta(hours=2 + i))[0]
        for i in range(2)
    ]
    _, denied = decide(policy, "ai_dag", zone="ai", inputs=[PURCHASES], at=day + timedelta(hours=5))

    report = ask(policy, day, category="purchase_events", zone="ai")

    assert report.verdict == (
        "purchase_events reached ai only as aggregated data consented for ai, through reclassifier "
        "ads_consent_filter; 0 other uses; 1 attempt blocked."
    )
    [use] = report.uses
    assert (use.dag_id, use.task_id, use.zone, use.input) == ("ai_dag", "read", "ai", output)
    assert (use.runs, use.tries, use.last_run_id) == (2, 2, runs[-1])
    assert use.basis == "sanctioned_flow"
    assert use.basis_text == "sanctioned flow ads → ai through reclassifier ads_consent_filter"
    assert (use.origins, use.reclassifiers, use.aggregated) == (["ads"], ["ads_consent_filter"], True)
    assert [(step.asset, step.written_by, step.zone, step.reclassifier) for step in use.path] == [
        (output, "ads_dag.read", "ads", "ads_consent_filter"),
        (PURCHASES, None, None, None),
    ]
    assert use.path_text == f"{output} (written by ads_dag.read in ads) ← {PURCHASES}"
    [blocked] = report.blocked
    assert (blocked.decision_id, blocked.dag_id, blocked.input, blocked.rule) == (
        denied,
        "ai_dag",
        PURCHASES,
        "consent_missing",
    )
    assert blocked.rules == ["consent_missing", "not_aggregated"] and blocked.violation_id is not None
    assert (report.uses_total, report.blocked_total) == (2, 1)
    assert report.completeness.chain.decisions == 3 and report.completeness.chain.unchained_decisions == 0


def test_never_reached_blocked_attempts_and_the_matrix(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    for hour in (1, 2, 3):
        decide(policy, "recs_dag", zone="recs", inputs=[PURCHASES], at=day + timedelta(hours=hour))
    decide(policy, "ads_dag", zone="ads", inputs=[PURCHASES, CLICKS], at=day + timedelta(hours=4))
    decide(policy, "mkt_dag", zone="marketing", inputs=[PURCHASES], at=day + timedelta(hours=5))

    report = ask(policy, day, category="purchase_events", zone="recs")
    assert report.verdict == "purchase_events never reached recs: 3 attempts blocked."
    assert report.uses == [] and [item.rule for item in report.blocked] == ["category_not_allowed"] * 3
    assert [item.decided_at for item in report.blocked] == sorted(
        (item.decided_at for item in report.blocked), reverse=True
    )
    [recs] = report.matrix  # the zone asked about
    assert (recs.origin, recs.zone, recs.reads, recs.blocked, recs.forbidden) == (
        SOURCE_ORIGIN,
        "recs",
        0,
        3,
        True,
    )
    every_zone = ask(policy, day, category="purchase_events")
    cells = {(cell.origin, cell.zone, cell.category): cell for cell in every_zone.matrix}
    assert set(cells) == {
        (SOURCE_ORIGIN, "recs", "purchase_events"),
        (SOURCE_ORIGIN, "ads", "purchase_events"),
        (SOURCE_ORIGIN, "marketing", "purchase_events"),
    }
    recs = cells[SOURCE_ORIGIN, "recs", "purchase_events"]
    assert (recs.reads, recs.blocked, recs.forbidden) == (0, 3, True)
    ads = cells[SOURCE_ORIGIN, "ads", "purchase_events"]
    assert (ads.reads, ads.blocked, ads.forbidden) == (1, 0, False)
    marketing = cells[SOURCE_ORIGIN, "marketing", "purchase_events"]
    assert (marketing.reads, marketing.blocked, marketing.forbidden) == (1, 0, True)

    dry = ask(policy, day, category="purchase_events", purpose="marketing")
    [use] = dry.uses
    assert use.basis == "dry_run" and dry.verdict.startswith(
        "purchase_events reached marketing only as user-level"
    )


def test_exempted_use_names_ticket_and_expiry(backend: Prepared, policy: PolicyEngine, day: datetime) -> None:
    decide(policy, "recs_dag", zone="recs", inputs=[CLICKS], at=day + timedelta(hours=1))
    report = ask(policy, day, category="ad_clicks", zone="recs")
    [use] = report.uses
    assert use.basis == "exemption" and use.exemption is not None
    assert use.exemption.ticket == "PRIV-1"
    assert use.exemption.expires_at == datetime(2100, 1, 1, tzinfo=timezone.utc)
    assert "exemption PRIV-1, expires 2100-01-01" in report.verdict


def test_an_asset_pattern_and_any_zone(backend: Prepared, policy: PolicyEngine, day: datetime) -> None:
    output = consented(policy, day)
    decide(policy, "ai_dag", zone="ai", inputs=[output], at=day + timedelta(hours=2))
    report = ask(policy, day, asset="s3://lake/consented/*")
    assert [(use.zone, use.input) for use in report.uses] == [("ai", output)]
    assert report.query.zones == []
    assert "in ai: aggregated data consented for ai" in report.verdict


def test_no_decisions_in_the_range_is_said_not_an_all_clear(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    report = ask(policy, day, category="purchase_events", zone="ai")
    assert report.verdict.startswith("No decision was recorded between ")
    assert "the records cannot show whether purchase_events reached ai" in report.verdict
    assert report.completeness.decisions_in_period == 0


def test_decisions_but_none_of_the_data(backend: Prepared, policy: PolicyEngine, day: datetime) -> None:
    decide(policy, "ai_dag", zone="ai", inputs=[], at=day + timedelta(hours=1))
    report = ask(policy, day, category="purchase_events", zone="ai")
    assert report.verdict.startswith("purchase_events never reached ai between ")
    assert report.verdict.endswith(
        "none of the 1 decisions recorded in ai read it, and no attempt was blocked."
    )


def test_period_before_the_first_decision(backend: Prepared, policy: PolicyEngine) -> None:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.models import PolicyZonesDecision

    with create_session() as session:
        first = session.scalar(sa.select(sa.func.min(PolicyZonesDecision.decided_at)))
    if first is None:  # this module recorded nothing yet
        decide(policy, "ai_dag", zone="ai", inputs=[], at=_START)
    report = ask(policy, datetime(1990, 1, 1, tzinfo=timezone.utc), category="purchase_events", zone="ai")
    [caveat] = [item for item in report.completeness.caveats if "first recorded decision" in item]
    assert caveat.startswith("The whole period lies before the provider's first recorded decision")
    assert not report.completeness.complete
    assert "the records start at" in report.verdict


def test_unchecked_tries_and_blind_tasks_are_gaps(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    blind_run = create_run("ai_dag")
    unchecked_run = create_run("ai_dag")
    decide(policy, "ai_dag", zone="ai", inputs=[], at=day + timedelta(hours=1), run_id=blind_run)
    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.run_id == blind_run, TaskInstance.task_id == "read")
            .values(state="success")
        )
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.run_id == unchecked_run, TaskInstance.task_id == "read")
            .values(start_date=day + timedelta(hours=2))
        )
    try:
        report = ask(policy, day, category="purchase_events", zone="ai")
    finally:
        # The unchecked try is dated decades ahead: left behind, it would be an unchecked try in
        # every later audit of this database (other modules audit open-ended periods).
        with create_session() as session:
            session.execute(sa.delete(TaskInstance).where(TaskInstance.run_id == unchecked_run))
    completeness = report.completeness
    assert [(t.dag_id, t.task_id, t.blind_tries) for t in completeness.blind_tasks] == [("ai_dag", "read", 1)]
    assert completeness.unchecked_tries == 1
    assert [(t.run_id, t.task_id) for t in completeness.unchecked] == [(unchecked_run, "read")]
    assert not completeness.complete
    assert any("without a decision" in caveat for caveat in completeness.caveats)
    assert any("without a known read" in caveat for caveat in completeness.caveats)


def test_pre_chain_rows_and_deleted_dags_are_reported(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.models import PolicyZonesDecision

    _, old = decide(policy, "recs_dag", zone="recs", inputs=[PURCHASES], at=day + timedelta(hours=1))
    # A DAG deleted since (no dag row, no task instances), its rows recorded before the chain.
    _, gone = decide(policy, "recs_dag", zone="recs", inputs=[PURCHASES], at=day + timedelta(hours=2))
    with create_session() as session:
        session.execute(
            sa.update(PolicyZonesDecision)
            .where(PolicyZonesDecision.id == gone)
            .values(dag_id="recs_deleted_dag", digest=None)
        )
        session.execute(
            sa.text("UPDATE policyzones_violation SET dag_id = 'recs_deleted_dag' WHERE decision_id = :id"),
            {"id": gone},
        )
    report = ask(policy, day, category="purchase_events", zone="recs")
    assert {item.dag_id for item in report.blocked} == {"recs_dag", "recs_deleted_dag"}
    chain = report.completeness.chain
    assert (chain.decisions, chain.unchained_decisions, chain.last_id) == (1, 1, max(old, gone))
    assert any("before the hash chain started" in caveat for caveat in report.completeness.caveats)

    readable = ask(policy, day, category="purchase_events", zone="recs", readable_dag_ids={"recs_dag"})
    assert [item.decision_id for item in readable.blocked] == [old]


def test_policy_versions_and_chain_head(backend: Prepared, policy: PolicyEngine, day: datetime) -> None:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.chain_verify import verify_records

    decide(policy, "recs_dag", zone="recs", inputs=[PURCHASES], at=day + timedelta(hours=1))
    report = ask(policy, day, category="purchase_events", zone="recs")
    [version] = report.completeness.policy_versions
    assert version.version == policy.version and version.decisions == 1
    with create_session() as session:
        verified = verify_records(session=session, since=day, until=day + timedelta(days=1))
    assert report.completeness.chain.head == verified.head  # one decision: the same fold
    assert report.completeness.chain.verify_command.startswith("policyzones verify-records --since ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"category": "purchases"}, "unknown category 'purchases': the policy"),
        ({"category": "purchase_events", "zone": "training"}, "unknown zone 'training'"),
        ({"category": "purchase_events", "purpose": "nothing"}, "unknown purpose 'nothing'"),
        ({}, "say which data"),
        ({"category": "purchase_events", "zone": "ai", "purpose": "ai"}, "not both"),
    ],
)
def test_bad_questions(
    backend: Prepared, policy: PolicyEngine, day: datetime, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(EvidenceQueryError, match=message) as raised:
        ask(policy, day, **kwargs)
    if "category" in message:
        assert "ad_clicks, purchase_events, watch_history" in str(raised.value)
    if "zone" in message:
        assert "ads, ai, marketing, recs" in str(raised.value)


def test_an_empty_period(backend: Prepared, policy: PolicyEngine, day: datetime) -> None:
    with pytest.raises(EvidenceQueryError, match="empty period"):
        ask(policy, day, category="purchase_events", until=day)


def test_a_path_written_after_the_use_is_shown_as_such(
    backend: Prepared, policy: PolicyEngine, day: datetime
) -> None:
    """The reader ran before the reclassifier wrote (the catalog labels the output already)."""
    output = "s3://lake/derived/consented_daily/" + uuid.uuid4().hex
    decide(policy, "ai_dag", zone="ai", inputs=[output], at=day + timedelta(hours=1))
    reclassify(policy, output, at=day + timedelta(hours=2))
    report = ask(policy, day, category="purchase_events", zone="ai")
    [use] = report.uses
    assert (use.basis, use.reclassifiers, use.path_as_of_use) == ("zone", [], False)
    assert use.path_text == f"{output} (written by ads_dag.read in ads) ← {PURCHASES}"
    assert report.verdict.startswith(
        "purchase_events reached ai only as aggregated data consented for ai, through reclassifier "
        "ads_consent_filter; 0 other uses"
    )
