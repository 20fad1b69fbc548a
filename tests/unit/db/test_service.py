"""decide_and_record against real Airflow metadata databases (SQLite and PostgreSQL).

DAG runs and task instances are real (DAG files parsed, runs created from the serialized DAG);
membership facts (file, tags, owners) come from the database, never from the request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
    as_dict,
)
from airflow_policyzones.db.service import (
    ClaimsMismatch,
    TaskInstanceNotFound,
    TryNotRunning,
    TryNotStarted,
    TryNumberMismatch,
    claims_digest,
    decide_and_record,
)
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import DecisionRequest, DecisionResponse, InputSpec
from tests.support.airflow_db import Prepared, create_run, parsed_as

pytestmark = pytest.mark.integration

NOW = datetime(2026, 5, 4, 3, 2, 1, 123000, tzinfo=timezone.utc)
PURCHASES = "s3://lake/raw/purchases/daily"
CLICKS = "s3://lake/raw/ad_clicks/2026"
MIXED = "s3://lake/raw/mixed/part-0"
CONSENTED = "s3://lake/derived/consented_daily/2026-05-04"


def request_for(
    dag_id: str,
    run_id: str,
    *,
    zone: str | None,
    inputs: list[str] = (),  # type: ignore[assignment]
    tables: list[str] = (),  # type: ignore[assignment]
    uncheckable: list[str] = (),  # type: ignore[assignment]
    task_id: str = "read",
    map_index: int = -1,
    try_number: int = 1,
    zone_source: str = "dag",
) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "task": {
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id,
                "map_index": map_index,
                "try_number": try_number,
            },
            "zone": zone,
            "zone_source": zone_source if zone is not None else "none",
            "inputs": [{"namespace": "asset", "name": name} for name in inputs]
            + [{"namespace": "table", "name": name} for name in tables],
            "uncheckable": list(uncheckable),
        }
    )


def decide(
    engine: PolicyEngine,
    request: DecisionRequest,
    *,
    source: str = "api",
    now: datetime = NOW,
    parse: bool = True,
) -> DecisionResponse:
    """Decide ``request``; for ``source="api"`` (and ``parse``), first make the dag-processor's copy
    of the DAG declare what the request claims, as a worker that tells the truth would."""
    from airflow.utils.session import create_session

    if source == "api" and parse:
        claim_as_parsed(request)
    with create_session() as session:
        return decide_and_record(
            session=session,
            engine=engine,
            request=request,
            source=source,  # type: ignore[arg-type]
            now=now,
        )


def claim_as_parsed(request: DecisionRequest) -> None:
    """The request's DAG re-parsed so that its task declares the request's zone and Asset inlets."""
    task = request.task
    parsed_as(
        task.dag_id,
        task.run_id,
        task_id=task.task_id,
        zone=request.zone,
        inlets=[item.name for item in request.inputs if item.namespace == "asset"],
    )


def _strip(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Without surrogate keys, the claims digest (a hash, checked in its own test) and the record
    chain's columns (tests/unit/db/test_chain.py)."""
    skipped = {"id", "decision_id", "claims_digest", "chain_prev", "chain_length", "chain_seq", "digest"}
    return {key: value for key, value in row.items() if key not in {*skipped, *keys}}


def stored(decision_id: int) -> dict[str, Any]:
    """Every row recorded for one decision, without surrogate keys."""
    from airflow.utils.session import create_session

    with create_session() as session:
        decision = session.get(PolicyZonesDecision, decision_id)
        assert decision is not None
        inputs = session.scalars(
            sa.select(PolicyZonesDecisionInput)
            .where(PolicyZonesDecisionInput.decision_id == decision_id)
            .order_by(PolicyZonesDecisionInput.id)
        ).all()
        violations = session.scalars(
            sa.select(PolicyZonesViolation)
            .where(PolicyZonesViolation.decision_id == decision_id)
            .order_by(PolicyZonesViolation.id)
        ).all()
        return {
            "decision": _strip(as_dict(decision)),
            "inputs": [_strip(as_dict(row)) for row in inputs],
            "violations": [_strip(as_dict(row)) for row in violations],
        }


def count(model: type[Any], **where: Any) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        statement = sa.select(sa.func.count()).select_from(model)
        for key, value in where.items():
            statement = statement.where(getattr(model, key) == value)
        return int(session.scalar(statement) or 0)


def decision_row(run_id: str, dag_id: str, engine: PolicyEngine, **values: Any) -> dict[str, Any]:
    return {
        "dag_id": dag_id,
        "task_id": "read",
        "run_id": run_id,
        "map_index": -1,
        "try_number": 1,
        "zone_source": "dag",
        "mode": "enforce",
        "policy_version": engine.version,
        "source": "api",
        "decided_at": NOW,
        **values,
    }


def input_row(position: int, name: str, category: str | None, **values: Any) -> dict[str, Any]:
    return {
        "position": position,
        "namespace": "asset",
        "name": name,
        "labeled": True,
        "category": category,
        "aggregated": False,
        "origins": [],
        "reclassified_by": [],
        "source": "declared",
        **values,
    }


def violation_row(run_id: str, dag_id: str, engine: PolicyEngine, **values: Any) -> dict[str, Any]:
    return {
        "dag_id": dag_id,
        "task_id": "read",
        "run_id": run_id,
        "map_index": -1,
        "try_number": 1,
        "mode": "enforce",
        "exemption": None,
        "policy_version": engine.version,
        "decided_at": NOW,
        "input_source": "declared",
        **values,
    }


def test_allow_records_the_decision_and_each_input_category(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("ads_dag")
    response = decide(engine, request_for("ads_dag", run_id, zone="ads", inputs=[PURCHASES, CLICKS]))

    assert response.outcome == "allow"
    assert response.allowed is True
    assert response.findings == []
    assert response.already_recorded is False
    assert (response.zone, response.mode, response.policy_version) == ("ads", "enforce", engine.version)
    assert stored(response.decision_id) == {
        "decision": decision_row(
            run_id,
            "ads_dag",
            engine,
            zone="ads",
            outcome="allow",
            allowed=True,
            input_count=2,
            finding_count=0,
            violation_count=0,
        ),
        "inputs": [
            input_row(0, PURCHASES, "purchase_events", consented=["ads"]),
            input_row(1, CLICKS, "ad_clicks", consented=["ads"]),
        ],
        "violations": [],
    }


def test_deny_records_one_violation_per_offending_input(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("recs_dag")
    response = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES]))

    assert (response.outcome, response.allowed) == ("deny", False)
    [finding] = response.findings
    assert (finding.rule, finding.rules, finding.input) == (
        "category_not_allowed",
        ["category_not_allowed"],
        PURCHASES,
    )
    rows = stored(response.decision_id)
    assert rows["decision"] == decision_row(
        run_id,
        "recs_dag",
        engine,
        zone="recs",
        outcome="deny",
        allowed=False,
        input_count=1,
        finding_count=1,
        violation_count=1,
    )
    assert rows["inputs"] == [input_row(0, PURCHASES, "purchase_events", consented=["ads"])]
    assert rows["violations"] == [
        violation_row(
            run_id,
            "recs_dag",
            engine,
            zone="recs",
            outcome="deny",
            rule="category_not_allowed",
            rules=["category_not_allowed"],
            input=PURCHASES,
            reason=finding.reason,
            remediation=finding.remediation,
        )
    ]
    assert "purchase_events" in finding.reason


def test_dry_run_zone_lets_the_task_run_and_records_the_violation(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("mkt_dag")
    response = decide(engine, request_for("mkt_dag", run_id, zone="marketing", inputs=[PURCHASES]))

    assert (response.outcome, response.allowed, response.mode) == ("dry_run", True, "dry_run")
    rows = stored(response.decision_id)
    assert rows["decision"] == decision_row(
        run_id,
        "mkt_dag",
        engine,
        zone="marketing",
        mode="dry_run",
        outcome="dry_run",
        allowed=True,
        input_count=1,
        finding_count=1,
        violation_count=1,
    )
    [finding] = response.findings
    assert rows["violations"] == [
        violation_row(
            run_id,
            "mkt_dag",
            engine,
            zone="marketing",
            mode="dry_run",
            outcome="dry_run",
            rule="category_not_allowed",
            rules=["category_not_allowed"],
            input=PURCHASES,
            reason=finding.reason,
            remediation=finding.remediation,
        )
    ]


def test_exempted_finding_is_recorded_with_its_ticket(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("recs_dag")
    response = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[CLICKS]))

    assert (response.outcome, response.allowed) == ("exempted", True)
    [finding] = response.findings
    assert finding.exemption == "PRIV-1"
    rows = stored(response.decision_id)
    assert rows["decision"] == decision_row(
        run_id,
        "recs_dag",
        engine,
        zone="recs",
        outcome="exempted",
        allowed=True,
        input_count=1,
        finding_count=1,
        violation_count=0,
    )
    assert rows["violations"] == [
        violation_row(
            run_id,
            "recs_dag",
            engine,
            zone="recs",
            outcome="exempted",
            rule="category_not_allowed",
            rules=["category_not_allowed"],
            input=CLICKS,
            reason=finding.reason,
            remediation=finding.remediation,
            exemption="PRIV-1",
        )
    ]


def test_exemption_expiry_follows_now(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("recs_dag")
    later = datetime(2100, 1, 1, tzinfo=timezone.utc)
    response = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[CLICKS]), now=later)

    assert response.outcome == "deny"
    assert stored(response.decision_id)["violations"][0]["decided_at"] == later


def test_a_deny_with_an_exempted_input_records_both_outcomes(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("recs_dag")
    response = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[CLICKS, PURCHASES]))

    assert response.outcome == "deny"
    rows = stored(response.decision_id)
    assert [(v["input"], v["outcome"], v["exemption"]) for v in rows["violations"]] == [
        (CLICKS, "exempted", "PRIV-1"),
        (PURCHASES, "deny", None),
    ]
    assert (rows["decision"]["finding_count"], rows["decision"]["violation_count"]) == (2, 1)


def test_multi_category_unlabeled_uncheckable_and_table_inputs(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("ads_dag")
    problem = "inlet 'raw' (str) is not an Asset: declare inputs as airflow.sdk.Asset(uri)"
    response = decide(
        engine,
        request_for(
            "ads_dag",
            run_id,
            zone="ads",
            inputs=[MIXED, "S3://LAKE/unknown/../unknown/x", MIXED],  # the repeat is one input
            tables=['"Warehouse".raw.other'],
            uncheckable=[problem],
        ),
        source="in_process",  # a table is no Asset inlet: no parsed DAG declares one
    )

    assert response.outcome == "deny"
    assert [(f.rule, f.input) for f in response.findings] == [
        ("uncheckable_input", None),
        ("unlabeled_input", "s3://lake/unknown/x"),
        ("unlabeled_input", "warehouse.raw.other"),
    ]
    rows = stored(response.decision_id)
    unlabeled = {"labeled": False, "category": None, "consented": None, "aggregated": None}
    unlabeled |= {"origins": None, "reclassified_by": None}
    assert rows["inputs"] == [
        input_row(0, MIXED, "ad_clicks", consented=["ads", "ai"], origins=["ads"]),
        input_row(0, MIXED, "purchase_events", consented=["ads", "ai"], origins=["ads"]),
        input_row(1, "s3://lake/unknown/x", None) | unlabeled,
        input_row(2, "warehouse.raw.other", None, namespace="table") | unlabeled,
    ]
    assert rows["decision"]["input_count"] == 3
    assert rows["violations"][0]["input"] is None
    assert rows["violations"][0]["reason"] == problem


def test_membership_is_read_from_the_database_not_the_request(
    backend: Prepared, engine: PolicyEngine
) -> None:
    # ads: by file (ads/ads_dag.py relative to the bundle); recs: by tag; ai: by owner.
    impostor = create_run("impostor")
    denied = decide(engine, request_for("impostor", impostor, zone="ads", inputs=[PURCHASES]))
    assert denied.outcome == "deny"
    assert [(f.rule, f.input) for f in denied.findings] == [("zone_membership", None)]

    ai_run = create_run("ai_dag")
    allowed = decide(engine, request_for("ai_dag", ai_run, zone="ai", inputs=[CONSENTED]))
    assert allowed.outcome == "allow"
    raw = decide(
        engine, request_for("ai_dag", ai_run, zone="ai", inputs=[PURCHASES], task_id="mapped", map_index=2)
    )
    assert raw.outcome == "deny"
    assert raw.findings[0].rules == ["consent_missing", "not_aggregated"]


def test_unknown_zone_and_no_zone(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("ads_dag")
    unknown = decide(engine, request_for("ads_dag", run_id, zone="nowhere", inputs=[PURCHASES]))
    assert (unknown.outcome, unknown.zone, unknown.mode) == ("deny", "nowhere", None)
    violation = stored(unknown.decision_id)["violations"][0]
    assert (violation["rule"], violation["mode"], violation["zone"]) == ("unknown_zone", None, "nowhere")

    unzoned = decide(engine, request_for("ads_dag", run_id, zone=None, task_id="mapped", map_index=0))
    assert (unzoned.outcome, unzoned.zone, unzoned.mode) == ("allow", None, None)
    decision = stored(unzoned.decision_id)["decision"]
    assert (decision["zone"], decision["zone_source"], decision["mode"]) == (None, "none", None)


def test_recording_is_idempotent_per_try(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("recs_dag")
    first = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES]))
    again = decide(engine, request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES]))
    # A different claim for the same try can neither rewrite the record nor reuse it.
    with pytest.raises(ClaimsMismatch, match="different claims"):
        decide(
            engine, request_for("recs_dag", run_id, zone="recs", inputs=[]), now=datetime.now(timezone.utc)
        )

    assert first.already_recorded is False
    assert again.already_recorded is True
    assert again.model_dump(exclude={"already_recorded"}) == first.model_dump(exclude={"already_recorded"})
    assert count(PolicyZonesDecision, run_id=run_id) == 1
    assert count(PolicyZonesViolation, run_id=run_id) == 1
    assert count(PolicyZonesDecisionInput, decision_id=first.decision_id) == 1
    from airflow.utils.session import create_session

    with create_session() as session:
        stored = session.scalar(sa.select(PolicyZonesDecision).where(PolicyZonesDecision.run_id == run_id))
        assert stored is not None
        assert stored.claims_digest == claims_digest(
            request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES])
        )


def test_a_decision_is_not_handed_to_a_request_whose_sql_reads_differ(
    backend: Prepared, engine: PolicyEngine
) -> None:
    """An allow recorded for a try without SQL reads (pre-recorded by someone holding a token)
    must not be the answer for that try's SQL task whose SQL reads a table."""
    run_id = create_run("recs_dag")
    plain = request_for("recs_dag", run_id, zone="recs", inputs=[])
    recorded = decide(engine, plain)
    assert recorded.outcome == "allow"
    reading = plain.model_copy(update={"sql_reads": [InputSpec(namespace="table", name="raw.purchases")]})
    with pytest.raises(ClaimsMismatch, match="the tables its SQL reads"):
        decide(engine, reading)
    assert count(PolicyZonesDecision, run_id=run_id) == 1
    assert count(PolicyZonesViolation, run_id=run_id) == 0
    # and the other way round: a decision made with SQL reads is not handed to a request without
    other_run = create_run("recs_dag")
    denied = decide(
        engine, reading.model_copy(update={"task": plain.task.model_copy(update={"run_id": other_run})})
    )
    assert denied.outcome == "deny"
    with pytest.raises(ClaimsMismatch):
        decide(engine, plain.model_copy(update={"task": plain.task.model_copy(update={"run_id": other_run})}))


def test_the_claims_digest_covers_every_claim_of_the_request() -> None:
    """Every request field but the try's identity feeds the engine, so each one changes the digest;
    a request without SQL reads keeps the digest decisions were recorded with before SQL reads."""
    base = request_for("d", "r", zone="recs", inputs=[PURCHASES])
    changed = {
        "zone": "ads",
        "zone_source": "task",
        "inputs": [InputSpec(namespace="asset", name=CLICKS)],
        "uncheckable": ["an inlet that names no data"],
        "sql_reads": [InputSpec(namespace="table", name="raw.purchases")],
    }
    assert set(changed) == set(DecisionRequest.model_fields) - {"task"}
    digests = {claims_digest(base.model_copy(update={name: value})) for name, value in changed.items()}
    assert len(digests | {claims_digest(base)}) == len(changed) + 1
    same_try_elsewhere = base.model_copy(update={"task": base.task.model_copy(update={"try_number": 2})})
    assert claims_digest(same_try_elsewhere) == claims_digest(base)
    legacy = base.model_dump(mode="json", include={"zone", "zone_source", "inputs", "uncheckable"})
    assert claims_digest(base) == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()


def test_each_try_and_map_index_is_its_own_record(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("ads_dag", try_number=2)
    ids = {
        decide(
            engine,
            request_for(
                "ads_dag", run_id, zone="ads", inputs=[PURCHASES], task_id="mapped", map_index=i, try_number=2
            ),
        ).decision_id
        for i in range(3)
    }
    ids.add(decide(engine, request_for("ads_dag", run_id, zone="ads", try_number=2)).decision_id)
    assert len(ids) == 4
    assert count(PolicyZonesDecision, run_id=run_id) == 4


def test_api_source_requires_the_task_instance_at_its_current_try(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("ads_dag", try_number=2)
    with pytest.raises(TaskInstanceNotFound, match="no task instance"):
        decide(engine, request_for("ads_dag", "no_such_run", zone="ads", try_number=2), parse=False)
    with pytest.raises(TaskInstanceNotFound):
        decide(
            engine,
            request_for("ads_dag", run_id, zone="ads", task_id="mapped", map_index=7, try_number=2),
            parse=False,
        )
    with pytest.raises(TaskInstanceNotFound):
        decide(engine, request_for("other_dag", run_id, zone="ads", try_number=2), parse=False)
    with pytest.raises(TryNumberMismatch, match="is at try 2, not 1"):
        decide(engine, request_for("ads_dag", run_id, zone="ads", try_number=1), parse=False)
    with pytest.raises(TryNumberMismatch):
        decide(engine, request_for("ads_dag", run_id, zone="ads", try_number=3), parse=False)
    assert count(PolicyZonesDecision, run_id=run_id) == 0
    assert count(PolicyZonesDecision, run_id="no_such_run") == 0


def test_in_process_source_records_without_the_task_instance_check(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("ads_dag")
    response = decide(
        engine,
        request_for("ads_dag", run_id, zone="ads", inputs=[PURCHASES], try_number=5),
        source="in_process",
    )
    assert response.outcome == "allow"
    assert stored(response.decision_id)["decision"]["source"] == "in_process"


def test_a_naive_now_is_utc(backend: Prepared, engine: PolicyEngine) -> None:
    run_id = create_run("ads_dag")
    response = decide(engine, request_for("ads_dag", run_id, zone="ads"), now=NOW.replace(tzinfo=None))
    assert stored(response.decision_id)["decision"]["decided_at"] == NOW


def test_concurrent_requests_for_one_try_record_exactly_one_decision(
    backend: Prepared, engine: PolicyEngine
) -> None:
    from airflow import settings

    run_id = create_run("recs_dag")
    request = request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES, CLICKS])
    claim_as_parsed(request)
    threads = 12
    barrier = threading.Barrier(threads)
    responses: list[DecisionResponse] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        assert settings.NonScopedSession is not None
        session = settings.NonScopedSession()
        try:
            barrier.wait(timeout=30)
            response = decide_and_record(
                session=session, engine=engine, request=request, source="api", now=NOW
            )
            with lock:
                responses.append(response)
        except BaseException as error:
            with lock:
                errors.append(error)
        finally:
            session.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)

    assert errors == []
    assert len(responses) == threads
    assert len({response.decision_id for response in responses}) == 1
    assert sum(not response.already_recorded for response in responses) == 1
    assert len({response.model_dump_json(exclude={"already_recorded"}) for response in responses}) == 1
    assert count(PolicyZonesDecision, run_id=run_id) == 1
    assert count(PolicyZonesViolation, run_id=run_id) == 2
    assert count(PolicyZonesDecisionInput, decision_id=responses[0].decision_id) == 2


def test_losing_the_race_returns_the_winners_decision(backend: Prepared, engine: PolicyEngine) -> None:
    """Deterministic version of the race: another request records the try right after our read."""
    from airflow import settings

    run_id = create_run("recs_dag")
    request = request_for("recs_dag", run_id, zone="recs", inputs=[PURCHASES])
    assert settings.NonScopedSession is not None
    session = settings.NonScopedSession()
    winner: list[DecisionResponse] = []

    @sa.event.listens_for(session, "do_orm_execute")
    def other_request_wins(state: Any) -> Any:
        entities = {getattr(d.get("entity"), "__name__", None) for d in state.statement.column_descriptions}
        if winner or not state.is_select or "PolicyZonesDecision" not in entities:
            return None
        result = state.invoke_statement()  # our read: nothing recorded yet
        winner.append(decide(engine, request, now=datetime.now(timezone.utc)))
        return result

    try:
        loser = decide_and_record(session=session, engine=engine, request=request, source="api", now=NOW)
    finally:
        session.close()

    [first] = winner
    assert first.already_recorded is False
    assert loser.already_recorded is True
    assert loser.decision_id == first.decision_id
    assert stored(first.decision_id)["decision"]["decided_at"] != NOW  # the winner's record stands
    assert count(PolicyZonesDecision, run_id=run_id) == 1
    assert count(PolicyZonesViolation, run_id=run_id) == 1


def test_the_policys_default_zone_is_recorded_as_such(backend: Prepared, tmp_path: Any) -> None:
    from tests.support.airflow_db import TEST_POLICY

    path = tmp_path / "policy.yaml"
    path.write_text(
        TEST_POLICY.replace("  require_zone: false\n", "  require_zone: false\n  default_zone: ads\n")
    )
    with_default = PolicyEngine.from_file(path)
    run_id = create_run("ads_dag")
    response = decide(with_default, request_for("ads_dag", run_id, zone=None, inputs=[PURCHASES]))

    assert (response.outcome, response.zone) == ("allow", "ads")
    decision = stored(response.decision_id)["decision"]
    assert (decision["zone"], decision["zone_source"], decision["policy_version"]) == (
        "ads",
        "default",
        with_default.version,
    )


# --- the server verifies before it records -------------------------------------------------------


def _set_try(run_id: str, dag_id: str, **values: Any) -> None:
    """What Airflow's scheduler or execution API leaves in the task_instance row."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .values(**values)
        )


@pytest.mark.parametrize("state", ["queued", "scheduled", "success", "failed", "deferred", None])
def test_a_try_that_is_not_running_is_refused(backend: Prepared, engine: PolicyEngine, state: Any) -> None:
    run_id = create_run("ads_dag")
    _set_try(run_id, "ads_dag", state=state)
    with pytest.raises(TryNotRunning, match="not running"):
        decide(engine, request_for("ads_dag", run_id, zone="ads"))
    with pytest.raises(TryNotRunning):
        observe(engine, run_id)
    assert count(PolicyZonesDecision, run_id=run_id) == 0


def test_a_try_zero_is_refused_whatever_its_state(backend: Prepared, engine: PolicyEngine) -> None:
    # A run created for the future: its task instances sit at try 0 and never ran.
    run_id = create_run("ads_dag", try_number=0)
    for state in ("running", None):
        _set_try(run_id, "ads_dag", state=state)
        with pytest.raises(TryNotStarted, match="never been started"):
            decide(engine, request_for("ads_dag", run_id, zone="ads", try_number=0))
    assert count(PolicyZonesDecision, run_id=run_id) == 0


def test_claims_that_differ_from_the_parsed_dag_are_denied_with_both_shown(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("ads_dag")
    parsed_as("ads_dag", run_id, zone="ads", inlets=[PURCHASES])
    # The worker drops the input the dag-processor saw.
    response = decide(engine, request_for("ads_dag", run_id, zone="ads", inputs=[]), parse=False)
    assert response.outcome == "deny"
    [finding] = response.findings
    assert finding.rule == "claims_differ_from_parsed_dag"
    assert f"inputs [], parsed inlets [{PURCHASES}]" in finding.reason
    assert stored(response.decision_id)["violations"][0]["rule"] == "claims_differ_from_parsed_dag"

    other = create_run("ads_dag")
    parsed_as("ads_dag", other, zone="ads", inlets=[PURCHASES])
    moved = decide(engine, request_for("ads_dag", other, zone="recs", inputs=[PURCHASES]), parse=False)
    assert moved.outcome == "deny"
    assert "zone 'recs', parsed zone 'ads'" in moved.findings[0].reason


def test_claims_equal_to_the_parsed_dag_are_decided_on_their_merits(
    backend: Prepared, engine: PolicyEngine
) -> None:
    run_id = create_run("ads_dag")
    parsed_as("ads_dag", run_id, task_id="mapped", zone="ads", inlets=[PURCHASES])
    for map_index in (0, 2):  # mapped task instances: inlets from the mapped operator's partial
        response = decide(
            engine,
            request_for(
                "ads_dag", run_id, zone="ads", inputs=[PURCHASES], task_id="mapped", map_index=map_index
            ),
            parse=False,
        )
        assert response.outcome == "allow", response.findings
    # dag.test() decides on the DAG object it parsed itself: not compared.
    in_process = decide(
        engine, request_for("ads_dag", run_id, zone="ads", inputs=[CLICKS]), source="in_process"
    )
    assert in_process.outcome == "allow"


def observe(engine: PolicyEngine, run_id: str) -> DecisionResponse:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.observed import decide_observed
    from airflow_policyzones.wire import ObservationRequest

    request = ObservationRequest.model_validate(
        {"task": {"dag_id": "ads_dag", "task_id": "read", "run_id": run_id, "try_number": 1}, "inputs": []}
    )
    with create_session() as session:
        return decide_observed(session=session, engine=engine, request=request, source="api")
