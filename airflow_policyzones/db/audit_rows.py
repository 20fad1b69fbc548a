"""Audit rows as the read models the API returns and the pages render
(:mod:`airflow_policyzones.db.audit_models`)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_policyzones.db.audit_models import DecisionInputOut, TaskInstanceRef, ViolationOut
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
    inputs_by_position,
)


class TryRow(Protocol):
    """A row about one task-instance try: a decision, a violation, a label event or an unchecked try."""

    @property
    def dag_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def map_index(self) -> int: ...
    @property
    def try_number(self) -> int: ...


def ti_ref(row: TryRow) -> TaskInstanceRef:
    """The try ``row`` is about, with the path of its task instance below the Airflow UI's base
    (``dags/<dag>/runs/<run>/tasks/<task>[/mapped/<index>]``, each part URL-quoted)."""
    dag_id, run_id, task_id = (quote(value, safe="") for value in (row.dag_id, row.run_id, row.task_id))
    path = f"dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
    if row.map_index >= 0:
        path += f"/mapped/{row.map_index}"
    return TaskInstanceRef(
        dag_id=row.dag_id,
        run_id=row.run_id,
        task_id=row.task_id,
        map_index=row.map_index,
        try_number=row.try_number,
        ui_path=path,
    )


def violation_out(row: PolicyZonesViolation) -> ViolationOut:
    """One violation row as the API returns it."""
    return ViolationOut(
        id=row.id,
        decision_id=row.decision_id,
        task_instance=ti_ref(row),
        zone=row.zone,
        mode=row.mode,
        outcome=row.outcome,
        rule=row.rule,
        rules=list(row.rules),
        input=row.input,
        reason=row.reason,
        remediation=row.remediation,
        exemption=row.exemption,
        policy_version=row.policy_version,
        decided_at=row.decided_at,
    )


def inputs_by_decision(session: Session, decision_ids: list[int]) -> dict[int, list[DecisionInputOut]]:
    """The inputs of many decisions in one query, per decision id, one entry per input (its
    categories merged) in recorded order; a decision without inputs is absent."""
    by_decision: dict[int, list[PolicyZonesDecisionInput]] = {}
    if decision_ids:
        rows = session.scalars(
            sa.select(PolicyZonesDecisionInput)
            .where(PolicyZonesDecisionInput.decision_id.in_(decision_ids))
            .order_by(PolicyZonesDecisionInput.decision_id, PolicyZonesDecisionInput.id)
        )
        for row in rows:
            by_decision.setdefault(row.decision_id, []).append(row)
    return {
        decision_id: [
            DecisionInputOut(
                namespace=row.namespace,
                name=row.name,
                labeled=row.labeled,
                categories=categories,
                consented=row.consented,
                aggregated=row.aggregated,
                origins=row.origins,
                reclassified_by=row.reclassified_by,
                source=row.source,
            )
            for row, categories in inputs_by_position(rows)
        ]
        for decision_id, rows in by_decision.items()
    }


def decision_fields(row: PolicyZonesDecision, inputs: list[DecisionInputOut]) -> dict[str, Any]:
    """The fields of :class:`~airflow_policyzones.db.audit_models.DecisionOut` for ``row``."""
    return {
        "id": row.id,
        "task_instance": ti_ref(row),
        "zone": row.zone,
        "zone_source": row.zone_source,
        "mode": row.mode,
        "outcome": row.outcome,
        "allowed": row.allowed,
        "policy_version": row.policy_version,
        "source": row.source,
        "decided_at": row.decided_at,
        "input_count": row.input_count,
        "finding_count": row.finding_count,
        "violation_count": row.violation_count,
        "inputs": inputs,
    }
