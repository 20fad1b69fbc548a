"""The record chain and the policy history, against real metadata databases (SQLite and PostgreSQL).

Decisions are recorded through the application's code path (``decide_and_record``,
``decide_observed``); tampering is plain SQL, as someone with database access would do it. Each
test records in its own time window far in the future and verifies only that window, so the
tests' tampering never shows in each other's results.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.chain import (
    DECISION_FIELDS,
    VIOLATION_FIELDS,
    decision_digest,
    forget_process_state,
    violation_digest,
)
from airflow_policyzones.db.chain_verify import Verification, verify_records
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesPolicyVersion, PolicyZonesViolation
from airflow_policyzones.db.observed import decide_observed
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import ObservationRequest
from tests.support.airflow_db import Prepared
from tests.unit.db.test_service import CLICKS, MIXED, PURCHASES, decide, request_for

pytestmark = pytest.mark.integration


_START = datetime(2050, 1, 1, tzinfo=timezone.utc) + timedelta(days=random.randrange(10**3))
_windows = itertools.count()


@pytest.fixture
def since() -> datetime:
    """A window of one's own: each test records later than the previous ones of this module, so
    verification from ``since`` on sees only its rows."""
    return _START + timedelta(days=next(_windows))


def record(engine: PolicyEngine, at: datetime, *, dag_id: str, zone: str, inputs: list[str]) -> int:
    request = request_for(dag_id, f"chain__{uuid.uuid4().hex}", zone=zone, inputs=inputs)
    return decide(engine, request, source="in_process", now=at).decision_id


def verify(since: datetime, **kwargs: Any) -> Verification:
    from airflow.utils.session import create_session

    with create_session() as session:
        return verify_records(session=session, since=since, until=since + timedelta(days=1), **kwargs)


def run_sql(statement: str, **params: Any) -> Any:
    """Tampering: plain SQL, outside the application."""
    from airflow.utils.session import create_session

    with create_session() as session:
        result = session.execute(sa.text(statement), params)
        value = result.scalar() if result.returns_rows else None
        session.commit()
        return value


def found(report: Verification) -> list[tuple[str, str, int | None]]:
    return sorted((problem.kind, problem.table, problem.id) for problem in report.problems)


def rows(decision_id: int) -> tuple[PolicyZonesDecision, list[PolicyZonesViolation]]:
    from airflow.utils.session import create_session

    with create_session() as session:
        decision = session.get_one(PolicyZonesDecision, decision_id)
        violations = list(decision.violations)
        session.expunge_all()
        return decision, violations


def test_recorded_rows_are_sealed_and_a_clean_history_verifies(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    allowed = record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES, MIXED, CLICKS])
    decision, violations = rows(denied)
    assert decision.digest is not None and decision.chain_length == len(violations) == 3
    assert [v.chain_seq for v in sorted(violations, key=lambda v: v.id)] == [1, 2, 3]
    assert rows(allowed)[0].chain_length == 0
    assert decision.chain_prev == allowed  # the writer's previous decision

    report = verify(since)
    assert report.ok, report.problems
    assert (report.decisions, report.violations, report.unchained_decisions) == (2, 3, 0)
    assert set(report.heads) == {"ads_dag", "recs_dag"}
    assert report.heads["recs_dag"].last_id == denied
    assert verify(since).head == report.head  # the same rows, the same head


def test_observed_reads_extend_a_sealed_record(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    from airflow.utils.session import create_session

    request = request_for("mkt_dag", f"chain__{uuid.uuid4().hex}", zone="marketing", inputs=[PURCHASES])
    first = decide(engine, request, source="in_process", now=since)
    assert first.outcome == "dry_run"
    before = rows(first.decision_id)[0].digest
    observation = ObservationRequest.model_validate(
        {"task": request.task.model_dump(), "inputs": [{"namespace": "asset", "name": MIXED}]}
    )
    with create_session() as session:
        decide_observed(session=session, engine=engine, request=observation, source="in_process", now=since)
    decision, violations = rows(first.decision_id)
    assert decision.chain_length == 2 and decision.digest != before
    assert sorted(v.chain_seq or 0 for v in violations) == [1, 2]
    assert verify(since).ok


def test_an_updated_decision_is_reported_altered_by_id(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    other = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    run_sql("UPDATE policyzones_decision SET outcome = 'allow', allowed = true WHERE id = :id", id=denied)
    report = verify(since)
    assert found(report) == [("altered", "decision", denied)]
    assert "outcome allow" in report.problems[0].describe()
    assert other not in {problem.id for problem in report.problems}


def test_a_deleted_violation_is_reported_with_its_decision_and_position(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES, MIXED, CLICKS])
    _, violations = rows(denied)
    middle = sorted(violations, key=lambda v: v.chain_seq or 0)[1]
    run_sql("DELETE FROM policyzones_violation WHERE id = :id", id=middle.id)
    report = verify(since)
    assert found(report) == [("deleted", "violation", None)]
    problem = report.problems[0]
    assert problem.decision_id == denied
    assert f"violation 2 of 3 of decision {denied} is missing" in problem.detail
    assert problem.to_dict()["decision_id"] == denied


def test_an_altered_violation_is_reported_by_id(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES, MIXED])
    target = rows(denied)[1][0]
    run_sql("UPDATE policyzones_violation SET reason = 'nothing to see' WHERE id = :id", id=target.id)
    assert found(verify(since)) == [("altered", "violation", target.id)]


def test_inserted_rows_are_reported_by_id(backend: Prepared, engine: PolicyEngine, since: datetime) -> None:
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    decision, (violation,) = rows(denied)
    identity = ("dag_id", "task_id", "run_id", "map_index", "try_number")
    copy = {name: getattr(violation, name) for name in identity}
    inserted_violation = run_sql(
        "INSERT INTO policyzones_violation (decision_id, dag_id, task_id, run_id, map_index, try_number,"
        " zone, mode, outcome, rule, rules, reason, remediation, policy_version, decided_at)"
        " VALUES (:decision, :dag_id, :task_id, :run_id, :map_index, :try_number, 'recs', 'enforce',"
        " 'exempted', 'category_not_allowed', '[]', 'waived', 'none', 'sha256:x', :at) RETURNING id",
        decision=denied,
        at=since,
        **copy,
    )
    inserted_decision = run_sql(
        "INSERT INTO policyzones_decision (dag_id, task_id, run_id, map_index, try_number, zone, zone_source,"
        " mode, outcome, allowed, policy_version, claims_digest, source, decided_at, input_count,"
        " finding_count, violation_count) VALUES ('recs_dag', 'read', :run, -1, 1, 'recs', 'dag', 'enforce',"
        " 'allow', true, :version, 'c', 'api', :at, 0, 0, 0) RETURNING id",
        run=f"forged__{uuid.uuid4().hex}",
        version=decision.policy_version,
        at=since + timedelta(seconds=1),
    )
    assert found(verify(since)) == sorted(
        [("inserted", "violation", inserted_violation), ("inserted", "decision", inserted_decision)]
    )


def test_a_deleted_decision_is_named_by_the_next_one_its_writer_recorded(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    gone = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    after = record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    run_sql("DELETE FROM policyzones_violation WHERE decision_id = :id", id=gone)
    run_sql("DELETE FROM policyzones_decision WHERE id = :id", id=gone)
    report = verify(since)
    assert found(report) == [("deleted", "decision", gone)]
    assert f"decision {after} names it" in report.problems[0].detail


def test_kept_heads_catch_a_rewrite_that_recomputed_the_digests(
    backend: Prepared, engine: PolicyEngine, since: datetime
) -> None:
    denied = record(engine, since, dag_id="recs_dag", zone="recs", inputs=[PURCHASES])
    record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    kept = verify(since).heads
    assert verify(since, against=kept).ok

    # Someone who runs this code rewrites a violation and recomputes both digests: rows verify...
    decision, (violation,) = rows(denied)
    violation.reason = "rewritten"
    new_violation = violation_digest([getattr(violation, name) for name in VIOLATION_FIELDS])
    new_decision = decision_digest([getattr(decision, name) for name in DECISION_FIELDS], [new_violation])
    run_sql(
        "UPDATE policyzones_violation SET reason = 'rewritten', digest = :d WHERE id = :id",
        d=new_violation,
        id=violation.id,
    )
    run_sql("UPDATE policyzones_decision SET digest = :d WHERE id = :id", d=new_decision, id=denied)
    assert verify(since).problems == []
    # ...but not against the heads kept before.
    report = verify(since, against=kept)
    assert not report.ok and set(report.changed_heads) == {"recs_dag"}


@pytest.fixture
def statements() -> Iterator[list[str]]:
    from airflow import settings

    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(settings.engine, "before_cursor_execute", listen)
    yield seen
    sa.event.remove(settings.engine, "before_cursor_execute", listen)


def test_a_policy_versions_text_is_stored_once_on_first_use(
    backend: Prepared, engine: PolicyEngine, policy_path: Path, since: datetime, statements: list[str]
) -> None:
    from airflow.utils.session import create_session

    forget_process_state()
    record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    assert any("policyzones_policy_version" in statement for statement in statements)
    with create_session() as session:
        stored = session.scalars(
            sa.select(PolicyZonesPolicyVersion).where(PolicyZonesPolicyVersion.version == engine.version)
        ).one()
        assert stored.text == policy_path.read_text()
        assert stored.source is not None and stored.source.endswith("policy.yaml")  # the first loader's
        assert stored.first_used_at <= stored.last_used_at
    statements.clear()
    record(engine, since, dag_id="ads_dag", zone="ads", inputs=[CLICKS])
    assert statements and not any("policyzones_policy_version" in statement for statement in statements)


def test_a_record_begun_by_a_refused_connection_and_completed_by_the_check_verifies(
    backend: Prepared, since: datetime, tmp_path: Path
) -> None:
    """A connection refused before the try's pre-execute check starts the record; the check
    completes it later (both write the same decision row): the record verifies as one chain."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    from airflow_policyzones.db.credentials import check_credential
    from tests.support.airflow_db import TEST_POLICY, create_run, parsed_with

    path = tmp_path / "policy.yaml"
    path.write_text(TEST_POLICY + "connections:\n  warehouse_raw:\n    categories: [purchase_events]\n")
    engine = PolicyEngine.from_file(path)
    run_id = create_run("mkt_dag")
    parsed_with("mkt_dag", run_id, tags=["policyzone:marketing"])
    with create_session() as session:
        ti_id = session.scalar(
            sa.select(TaskInstance.id).where(TaskInstance.run_id == run_id, TaskInstance.task_id == "read")
        )
        verdict = check_credential(
            session=session,
            engine=engine,
            ti_id=str(ti_id),
            kind="connection",
            name="warehouse_raw",
            now=since,
        )
    assert verdict.allowed and verdict.decision is not None  # marketing is in dry_run: served, recorded
    request = request_for("mkt_dag", run_id, zone="marketing", inputs=[PURCHASES])
    completed = decide(engine, request, source="api", now=since)
    decision, violations = rows(completed.decision_id)
    assert decision.chain_length == len(violations) == 2
    assert sorted(v.chain_seq or 0 for v in violations) == [1, 2]
    report = verify(since)
    assert report.ok, report.problems
    assert report.decisions == 1 and report.violations == 2
