"""Decide what a running try reads while it runs (its hooks and object storage), within the decision
its pre-execute check recorded: the observed-read path of the api-server and ``dag.test()``.

The try's identity is verified as for :func:`airflow_policyzones.db.service.decide_and_record`,
and the new inputs are labeled, decided and recorded by the same helpers.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from airflow_policyzones.db.models import INPUT_LEN, PolicyZonesDecision, decision_of_try
from airflow_policyzones.db.propagation import label_observed_writes, with_propagated
from airflow_policyzones.db.service import (
    _OUTCOME_SEVERITY,
    DecisionRefused,
    Source,
    _aware,
    _describe,
    _finding_model,
    _input_rows,
    _refs,
    _response,
    _same_try,
    _task_context,
    _verify_task_instance,
    _violation_row,
    _with_derivations,
    is_worse,
)
from airflow_policyzones.policy.engine import PolicyEngine
from airflow_policyzones.policy.vocabulary import Outcome
from airflow_policyzones.wire import DecisionResponse, ObservationRequest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_policyzones.db.tries import FoundTry


def decide_observed(
    *,
    session: Session,
    engine: PolicyEngine,
    request: ObservationRequest,
    source: Source,
    now: datetime | None = None,
    found: FoundTry | None = None,
) -> DecisionResponse:
    """Decide what a running try's hooks read, as part of the try's recorded decision.

    The zone is the recorded decision's, never the request's. Inputs the decision holds already
    are not decided again (their stored findings are returned); new ones are labeled, decided with
    the same engine and appended to the decision (``source`` ``observed``), their findings recorded
    as violations, and the decision's outcome becomes the worst of the two (an observed deny makes
    the try denied: its outputs are then refused). Once the try is denied, what its statements
    wrote (``outputs``; they already ran, possibly committed) is labeled at once from everything
    it read, since the try will never report outputs; an allowed try's outputs are labeled when it
    succeeds, from all it read. The answer is about this request's inputs only.

    Raises :class:`DecisionRefused` when the try has no decision yet or was denied (409), and, for
    ``source="api"``, when the try does not exist at that number or is not running (as for
    :func:`decide_and_record`, which also says what ``found`` saves).
    """
    identity = request.task
    _same_try(identity, found)
    if source == "api":
        _verify_task_instance(session, identity, found)
    row = session.scalars(decision_of_try(**identity.model_dump()).with_for_update()).one_or_none()
    if row is None:
        raise DecisionRefused(
            f"no decision was recorded for {_describe(identity)}: what a try reads while it runs is "
            "decided within the decision its pre-execute check recorded"
        )
    moment = _aware(now)
    if not row.allowed:
        # What it wrote meanwhile (the statement already ran) still gets the labels of what it read.
        label_observed_writes(
            session=session, engine=engine, decision=row, outputs=request.outputs, now=moment
        )
        session.commit()
        raise DecisionRefused(f"{_describe(identity)} was denied: it may not read anything")
    known = {(item.namespace, item.name) for item in row.inputs}
    flagged = {item.input for item in row.violations}  # undeclared inputs have no input row
    refs = _refs(request.inputs)
    new = [
        ref
        for ref in refs
        if (ref.namespace, ref.name[:INPUT_LEN]) not in known and ref.name[:INPUT_LEN] not in flagged
    ]
    described = {item.reason for item in row.violations if item.input is None}
    uncheckable = [reason for reason in dict.fromkeys(request.uncheckable) if reason not in described]
    if not new and not uncheckable:
        session.rollback()  # release the row lock
        names = {ref.name[:INPUT_LEN] for ref in refs}
        return _stored_observation(row, names=names, reasons=set(request.uncheckable))
    labeled = with_propagated(session, engine, engine.label(new))
    undeclared = [item.ref for item in labeled if item.labels is None]
    labeled = [item for item in labeled if item.labels is not None]
    decision = engine.decide(
        task=_task_context(session, identity, found),
        zone=row.zone,
        inputs=labeled,
        uncheckable=uncheckable,
        undeclared=undeclared,
        now=moment,
    )
    decision = _with_derivations(session, decision, refs={item.ref.name: item.ref for item in labeled})
    first = max((item.position for item in row.inputs), default=-1) + 1
    row.inputs.extend(
        input_row
        for position, item in enumerate(labeled, first)
        for input_row in _input_rows(position, item, source="observed")
    )
    if decision.outcome is not Outcome.ALLOW:
        row.violations.extend(
            _violation_row(row, decision, finding, input_source="observed" if finding.input else None)
            for finding in decision.findings
        )
    if is_worse(decision.outcome.value, than=row.outcome):
        row.outcome = decision.outcome.value
        row.allowed = row.allowed and decision.allowed
    row.input_count += len(labeled)
    row.finding_count += len(decision.findings)
    row.violation_count += len(decision.violations)
    if not row.allowed:  # refused now: the try never reports outputs, so label what already ran
        label_observed_writes(
            session=session, engine=engine, decision=row, outputs=request.outputs, now=moment
        )
    session.commit()
    return _response(row, decision.findings, already_recorded=False, outcome=decision)


def _stored_observation(row: PolicyZonesDecision, *, names: set[str], reasons: set[str]) -> DecisionResponse:
    """A repeated observation: the findings recorded for those inputs, and the outcome they made."""
    violations = [
        item
        for item in row.violations
        if (item.input in names if item.input is not None else item.reason in reasons)
    ]
    worst = max((item.outcome for item in violations), key=_OUTCOME_SEVERITY.__getitem__, default="allow")
    return DecisionResponse.model_validate(
        {
            "decision_id": row.id,
            "outcome": worst,
            "allowed": worst != "deny",
            "zone": row.zone,
            "mode": row.mode,
            "policy_version": row.policy_version,
            "findings": [_finding_model(item).model_dump() for item in violations],
            "already_recorded": True,
        }
    )
