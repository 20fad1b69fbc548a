"""Decide one task-instance try and record it: the one code path of the api-server and ``dag.test()``.

The worker states *which try* asks and *what it claims* (zone, inputs). Everything that decides
membership — the DAG's tags, file and owners — is read here from the metadata database, never
taken from the request: the worker runs DAG code and must not choose its own identity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from airflow_policyzones.db.models import (
    CREDENTIALS_ONLY,
    INPUT_LEN,
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
    decision_of_try,
)
from airflow_policyzones.db.propagation import explain_derivation, with_propagated
from airflow_policyzones.db.tries import (
    FoundTry,
    TryProblem,
    TryRecord,
    dag_task_context,
    find_try,
    try_problem,
)
from airflow_policyzones.db.verification import claims_difference, parsed_dag_of_try, parsed_dags
from airflow_policyzones.policy.engine import (
    Decision,
    Finding,
    InputRef,
    LabeledInput,
    PolicyEngine,
    TaskContext,
)
from airflow_policyzones.policy.vocabulary import Outcome, Rule
from airflow_policyzones.wire import (
    DecisionRequest,
    DecisionResponse,
    FindingModel,
    InputSource,
    InputSpec,
    TaskInstanceIdentity,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

Source = Literal["api", "in_process"]


class DecisionRefused(Exception):
    """The request cannot be decided for the task-instance try it names (nothing is recorded)."""


class TaskInstanceNotFound(DecisionRefused):
    """No such task instance: a token holder must not write decisions for arbitrary tasks."""


class TryNumberMismatch(DecisionRefused):
    """The task instance exists but is at another try: a stale or forged request."""


class ClaimsMismatch(DecisionRefused):
    """A repeated request for a try claims another zone or other inputs than the recorded one."""


class TryNotStarted(DecisionRefused):
    """The task instance is at try 0 (never queued to run, e.g. a run created for the future)."""


class TryNotRunning(DecisionRefused):
    """The try exists but is not running (queued, scheduled, deferred or finished)."""


def decide_and_record(
    *,
    session: Session,
    engine: PolicyEngine,
    request: DecisionRequest,
    source: Source,
    now: datetime | None = None,
    verify: bool = True,
    found: FoundTry | None = None,
) -> DecisionResponse:
    """Decide ``request`` with ``engine`` and record the decision, once per task-instance try.

    Idempotent: a try decided before gets the stored decision back with ``already_recorded``
    set, even when two requests race (the unique key on the try settles it). Commits the
    session: the record must be durable before a worker acts on the answer, so pass a session
    without pending work of your own.

    For ``source="api"`` the server verifies before it records (:mod:`airflow_policyzones.db.verification`):

    * the try must exist in ``task_instance`` at that try number, 1 or higher, and be ``running``
      (the state Airflow's execution API gives a try its supervisor started), otherwise
      :class:`TaskInstanceNotFound` (no such task instance), :class:`TryNotStarted` (try 0),
      :class:`TryNumberMismatch` (another try) or :class:`TryNotRunning` is raised and nothing
      is written;
    * the zone and declared inlets claimed must equal the task the dag-processor serialized
      (the task instance's DAG version, or the DAG's latest): a difference is recorded as a
      ``deny`` with the rule ``claims_differ_from_parsed_dag``, its message showing both sides.

    ``source="in_process"`` (``dag.test()``) decides on the DAG object that was parsed in the same
    process, so neither is checked. ``verify=False`` skips both (the benchmark measures their
    cost side by side; nothing else passes it). ``found`` is the try as the caller read it in
    this session (:func:`~airflow_policyzones.db.tries.lookup_try`, the relay's lookup of
    the execution token's task instance): it is not read again.
    """
    identity = request.task
    _same_try(identity, found)
    checked = _verify_task_instance(session, identity, found) if source == "api" and verify else None
    digest = claims_digest(request)
    # A try that had no decision row when it was found has nothing to load (a row recorded since
    # then makes the insert below fail, and the stored decision is loaded there).
    stored = _load(session, identity, digest=digest) if found is None or found.recorded is not None else None
    if isinstance(stored, DecisionResponse):
        return stored
    pending_seen = stored is not None

    moment = _aware(now)
    labeled, undeclared = _labeled_inputs(session, engine, request)
    declared_refs = _refs(request.inputs)
    declared = set(declared_refs)
    refs = [*(item.ref for item in labeled), *undeclared]
    sources: dict[InputRef, InputSource] = {ref: "declared" if ref in declared else "sql" for ref in refs}
    decision = engine.decide(
        task=_task_context(session, identity, found),
        zone=request.zone,
        inputs=labeled,
        uncheckable=request.uncheckable,
        undeclared=undeclared,
        now=moment,
    )
    if checked is not None:
        # The try's own DAG version (cached) settles the common case; otherwise compare with it and
        # the DAG's latest version, which also names both in the message.
        own = (
            parsed_dag_of_try(session, dag_version_id=checked.dag_version_id)
            if checked.dag_version_id is not None
            else None
        )
        if own is None or claims_difference(request, parsed=[own], inputs=declared_refs) is not None:
            difference = claims_difference(
                request,
                parsed=parsed_dags(session, dag_id=identity.dag_id, dag_version_id=checked.dag_version_id),
                inputs=declared_refs,
            )
            if difference is not None:
                decision = _denied_for_claims(decision, difference)
    decision = _with_derivations(session, decision, refs={item.ref.name: item.ref for item in labeled})
    row = _decision_row(request, decision, labeled, sources=sources, source=source, decided_at=moment)
    row.claims_digest = digest
    if pending_seen:
        # Created when the try was refused a connection or variable before this check: complete it.
        pending = session.scalar(decision_of_try(**identity.model_dump()).with_for_update())
        if pending is not None and pending.claims_digest == CREDENTIALS_ONLY:
            row = _complete(pending, row)
    try:
        session.add(row)
        session.commit()
    except IntegrityError:
        # Another request for the same try won the race: its decision is the record.
        session.rollback()
        stored = _load(session, identity, digest=digest)
        if stored is None:
            raise
        if not isinstance(stored, DecisionResponse):  # a refused connection's record: complete it
            return decide_and_record(session=session, engine=engine, request=request, source=source, now=now)
        return stored
    return _response(row, decision.findings, already_recorded=False)


_OUTCOME_SEVERITY = {"allow": 0, "exempted": 1, "dry_run": 2, "deny": 3}


def is_worse(outcome: str, than: str) -> bool:
    """Whether decision outcome ``outcome`` is worse than ``than`` (allow < exempted < dry_run < deny):
    a try's record keeps the worst outcome any of its checks reached."""
    return _OUTCOME_SEVERITY[outcome] > _OUTCOME_SEVERITY[than]


def _aware(now: datetime | None) -> datetime:
    moment = now or datetime.now(timezone.utc)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _same_try(identity: TaskInstanceIdentity, found: FoundTry | None) -> None:
    """Refuse a try the caller found (``found``) that is not the one a request names."""
    if found is not None and found.identity != identity:
        raise ValueError(f"the request is about {_describe(identity)}, the try found is another one")


def _verify_task_instance(
    session: Session, identity: TaskInstanceIdentity, found: FoundTry | None = None
) -> TryRecord:
    """The task instance of ``identity`` (read unless the caller ``found`` it), which must be
    running at that try (1 or higher)."""
    record = find_try(session, identity) if found is None else found.record
    problem = try_problem(identity, record, what="a decision")
    if problem is not None:
        kind, message = problem
        raise _TRY_ERRORS[kind](message)
    assert record is not None
    return record


_TRY_ERRORS: dict[TryProblem, type[DecisionRefused]] = {
    "missing": TaskInstanceNotFound,
    "not_started": TryNotStarted,
    "other_try": TryNumberMismatch,
    "not_running": TryNotRunning,
}


def _denied_for_claims(decision: Decision, difference: str) -> Decision:
    """``decision`` made a deny, led by the finding that the claims are not what was parsed (in
    every mode: it says nothing about the data, only that the worker cannot be believed)."""
    finding = Finding(
        (Rule.CLAIMS_DIFFER_FROM_PARSED_DAG,),
        None,
        difference,
        "declare zones and inlets so that they are the same whenever the DAG file is parsed (not "
        "computed from the time, the environment or run-time values, and not changed by code that "
        "runs only in the task process); if the file was just changed, let the dag-processor "
        "parse it and clear the task",
    )
    return dataclasses.replace(decision, outcome=Outcome.DENY, findings=(finding, *decision.findings))


def _describe(identity: TaskInstanceIdentity) -> str:
    return (
        f"dag_id={identity.dag_id!r} task_id={identity.task_id!r} run_id={identity.run_id!r} "
        f"map_index={identity.map_index}"
    )


def _task_context(
    session: Session, identity: TaskInstanceIdentity, found: FoundTry | None = None
) -> TaskContext:
    """Membership identity from the metadata DB: tags, file relative to its bundle, owners (as the
    caller ``found`` them with the try, else read here).

    A DAG the database does not know gets only its dag_id: fewer selectors can match, so a
    missing row can deny but never admit.
    """
    if found is not None:
        return found.task
    from airflow.models.dag import DagModel, DagTag

    dag_row = session.execute(
        select(DagModel.relative_fileloc, DagModel.owners).where(DagModel.dag_id == identity.dag_id)
    ).first()
    if dag_row is None:
        return TaskContext(dag_id=identity.dag_id, task_id=identity.task_id)
    relative_fileloc, owners = dag_row
    tags = session.scalars(select(DagTag.name).where(DagTag.dag_id == identity.dag_id)).all()
    return dag_task_context(
        dag_id=identity.dag_id,
        task_id=identity.task_id,
        relative_fileloc=relative_fileloc,
        owners=owners,
        tags=tags,
    )


def _with_derivations(session: Session, decision: Decision, *, refs: Mapping[str, InputRef]) -> Decision:
    """Findings on derived data say how the data got its labels (the path back to its source)."""
    if not decision.findings:
        return decision
    findings = []
    for finding in decision.findings:
        ref = refs.get(finding.input) if finding.input is not None else None
        path = explain_derivation(session, ref) if ref is not None else None
        findings.append(
            finding
            if path is None
            else dataclasses.replace(finding, reason=f"{finding.reason}; derived: {path}")
        )
    return dataclasses.replace(decision, findings=tuple(findings))


def _labeled_inputs(
    session: Session, engine: PolicyEngine, request: DecisionRequest
) -> tuple[list[LabeledInput], list[InputRef]]:
    """Declared inputs and the tables the SQL reads, with effective labels; and the SQL reads
    that are neither declared nor labeled by anything (``undeclared_input``)."""
    declared = _refs(request.inputs)
    known = set(declared)
    extra = [ref for ref in _refs(request.sql_reads) if ref not in known]
    labeled = with_propagated(session, engine, engine.label([*declared, *extra]))
    undeclared = [item.ref for item in labeled[len(declared) :] if item.labels is None]
    missing = set(undeclared)
    return [item for item in labeled if item.ref not in missing], undeclared


def _refs(inputs: Sequence[InputSpec]) -> list[InputRef]:
    """Normalized inputs, each once (a repeated inlet is one input), in request order."""
    refs: dict[InputRef, None] = {}
    for spec in inputs:
        ref = InputRef.asset(spec.name) if spec.namespace == "asset" else InputRef.table(spec.name)
        refs.setdefault(ref, None)
    return list(refs)


def _decision_row(
    request: DecisionRequest,
    decision: Decision,
    labeled: Sequence[LabeledInput],
    *,
    sources: Mapping[InputRef, InputSource],
    source: Source,
    decided_at: datetime,
) -> PolicyZonesDecision:
    zone_source: str = request.zone_source
    if request.zone is None:
        zone_source = "default" if decision.zone is not None else "none"
    row = new_decision_row(
        request.task, decision, zone_source=zone_source, source=source, decided_at=decided_at
    )
    row.input_count = len(labeled)
    row.finding_count = len(decision.findings)
    row.violation_count = len(decision.violations)
    row.inputs = [
        input_row
        for position, item in enumerate(labeled)
        for input_row in _input_rows(position, item, source=sources[item.ref])
    ]
    if decision.outcome is not Outcome.ALLOW:
        by_name = {ref.name: value for ref, value in sources.items()}
        row.violations = [
            _violation_row(row, decision, finding, input_source=by_name.get(finding.input or ""))
            for finding in decision.findings
        ]
    return row


def new_decision_row(
    identity: TaskInstanceIdentity, decision: Decision, *, zone_source: str, source: str, decided_at: datetime
) -> PolicyZonesDecision:
    """A decision row for one try, with no inputs, findings or violations counted yet."""
    return PolicyZonesDecision(
        dag_id=identity.dag_id,
        task_id=identity.task_id,
        run_id=identity.run_id,
        map_index=identity.map_index,
        try_number=identity.try_number,
        zone=decision.zone,
        zone_source=zone_source,
        mode=decision.mode,
        outcome=decision.outcome.value,
        allowed=decision.allowed,
        policy_version=decision.policy_version,
        source=source,
        decided_at=decided_at,
        input_count=0,
        finding_count=0,
        violation_count=0,
    )


def _input_rows(position: int, item: LabeledInput, *, source: InputSource) -> list[PolicyZonesDecisionInput]:
    name = item.ref.name[:INPUT_LEN]
    labels = item.labels
    if labels is None:
        return [
            PolicyZonesDecisionInput(
                position=position,
                namespace=item.ref.namespace,
                name=name,
                labeled=False,
                category=None,
                source=source,
            )
        ]
    return [
        PolicyZonesDecisionInput(
            position=position,
            namespace=item.ref.namespace,
            name=name,
            labeled=True,
            category=category,
            consented=sorted(labels.consented),
            aggregated=labels.aggregated,
            origins=sorted(labels.origins),
            reclassified_by=sorted(labels.reclassified_by),
            source=source,
        )
        for category in _categories(labels.categories)
    ]


def _categories(categories: frozenset[str]) -> list[str | None]:
    """One row per category; a labeled input without categories still gets one row (NULL)."""
    return [*sorted(categories)] or [None]


def _violation_row(
    row: PolicyZonesDecision, decision: Decision, finding: Finding, *, input_source: str | None
) -> PolicyZonesViolation:
    return PolicyZonesViolation(
        dag_id=row.dag_id,
        task_id=row.task_id,
        run_id=row.run_id,
        map_index=row.map_index,
        try_number=row.try_number,
        zone=row.zone,
        mode=row.mode,
        outcome="exempted" if finding.exempted else decision.outcome.value,
        rule=finding.rule.value,
        rules=[rule.value for rule in finding.rules],
        input=finding.input[:INPUT_LEN] if finding.input is not None else None,
        reason=finding.reason,
        remediation=finding.remediation,
        exemption=finding.exemption,
        policy_version=decision.policy_version,
        decided_at=row.decided_at,
        input_source=input_source,
    )


def _complete(pending: PolicyZonesDecision, row: PolicyZonesDecision) -> PolicyZonesDecision:
    """``pending`` (refusals only) completed with the pre-execute decision ``row``: the check's
    zone, claims and inputs, both sets of violations, the worse outcome."""
    for name in ("zone", "zone_source", "mode", "policy_version", "claims_digest", "source", "decided_at"):
        setattr(pending, name, getattr(row, name))
    if is_worse(row.outcome, than=pending.outcome):
        pending.outcome = row.outcome
    pending.allowed = pending.allowed and row.allowed
    inputs, violations = list(row.inputs), list(row.violations)
    row.inputs, row.violations = [], []
    pending.inputs.extend(inputs)
    pending.violations.extend(violations)
    pending.input_count += row.input_count
    pending.finding_count += row.finding_count
    pending.violation_count += row.violation_count
    return pending


_DIGEST_SINCE_FIRST_RELEASE = frozenset({"zone", "zone_source", "inputs", "uncheckable"})
"""Request fields every recorded digest covers; fields added later are left out while empty, so a
decision recorded before they existed keeps its digest (a resumed deferral still finds it)."""


def claims_digest(request: DecisionRequest) -> str:
    """A SHA-256 hex digest of everything a try claimed, so a repeat can be compared to it.

    Every field of the request but the try's identity feeds the engine (zone and its source,
    declared inputs, uncheckable inlets, the tables the SQL reads), so every one is covered: a
    decision recorded for some claims is never handed to a request that claims anything else.
    """
    claims = request.model_dump(mode="json", exclude={"task"})
    for name in set(claims) - _DIGEST_SINCE_FIRST_RELEASE:
        if not claims[name]:
            del claims[name]
    return hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).hexdigest()


def _load(
    session: Session, identity: TaskInstanceIdentity, *, digest: str
) -> DecisionResponse | PolicyZonesDecision | None:
    """The decision recorded for this try, if any (as a response with ``already_recorded``); the
    row itself when it records only refused connections or variables (to be completed).

    A repeat that claims something else than the recorded request is refused: otherwise the try's
    own code could ask first with claims of its choice (an 'allow' with no inputs) and have the
    task's real check handed that answer.
    """
    row = session.scalar(decision_of_try(**identity.model_dump()))
    if row is None or row.claims_digest == CREDENTIALS_ONLY:
        return row
    if row.claims_digest != digest:
        raise ClaimsMismatch(
            f"{_describe(identity)} was already decided for different claims (zone, inputs, uncheckable "
            "inlets or the tables its SQL reads); "
            "a try is decided once, for what it declared when it first asked"
        )
    findings = [_finding_model(violation) for violation in row.violations]
    return _response(row, findings, already_recorded=True)


def _finding_model(violation: PolicyZonesViolation) -> FindingModel:
    return FindingModel(
        rule=violation.rule,
        rules=list(violation.rules),
        input=violation.input,
        reason=violation.reason,
        remediation=violation.remediation,
        exemption=violation.exemption,
    )


def _response(
    row: PolicyZonesDecision,
    findings: Sequence[Finding] | Sequence[FindingModel],
    *,
    already_recorded: bool,
    outcome: Decision | None = None,
) -> DecisionResponse:
    """The answer for a decision row; with ``outcome``, for that (observed) decision only."""
    return DecisionResponse.model_validate(
        {
            "decision_id": row.id,
            "outcome": outcome.outcome.value if outcome is not None else row.outcome,
            "allowed": outcome.allowed if outcome is not None else row.allowed,
            "zone": row.zone,
            "mode": row.mode,
            "policy_version": outcome.policy_version if outcome is not None else row.policy_version,
            "findings": [
                finding.to_dict() if isinstance(finding, Finding) else finding.model_dump()
                for finding in findings
            ],
            "already_recorded": already_recorded,
        }
    )
