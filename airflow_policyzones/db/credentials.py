"""Decide whether a running try may obtain an Airflow connection or variable, and record refusals.

Called by the api-server (:mod:`airflow_policyzones.api.credentials`) when a task's supervisor
fetches a connection or variable from the execution API. The try is the one Airflow's validated
execution token names (``sub`` = task instance id); its zone is the zone of its recorded decision,
or, before its pre-execute check has recorded one, the DAG's zone tag (else the policy's default
zone). A refusal is a violation on the try's decision; a try refused before it has a decision gets
a decision row holding only that refusal, which its pre-execute check later completes
(:func:`airflow_policyzones.db.service.decide_and_record`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from airflow_policyzones.db.models import CREDENTIALS_ONLY, INPUT_LEN, PolicyZonesDecision, decision_of_try
from airflow_policyzones.db.service import (
    _violation_row,
    is_worse,
    new_decision_row,
)
from airflow_policyzones.db.tries import FoundTry, dag_task_context, dag_zone, describe, lookup_try, try_zone
from airflow_policyzones.policy.engine import Decision, PolicyEngine, TaskContext
from airflow_policyzones.policy.models import CredentialKind
from airflow_policyzones.policy.vocabulary import Outcome
from airflow_policyzones.wire import TaskInstanceIdentity

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class CredentialVerdict:
    """What to answer the supervisor: serve (``allowed``) or refuse, and why."""

    allowed: bool
    kind: CredentialKind
    name: str
    zone: str | None = None
    decision: Decision | None = None
    problem: str | None = None
    """Why nothing could be decided (no such task instance): always a refusal."""
    remedy: str | None = None
    """What to do about ``problem``."""

    @classmethod
    def of(cls, decision: Decision, *, kind: CredentialKind, name: str) -> CredentialVerdict:
        """The verdict a decision of the engine gives."""
        return cls(allowed=decision.allowed, kind=kind, name=name, zone=decision.zone, decision=decision)

    @property
    def message(self) -> str:
        if self.problem is not None:
            return self.problem
        if self.decision is None or not self.decision.findings:
            return f"{self.kind} {self.name!r} may be used in zone {self.zone!r}"
        finding = self.decision.findings[0]
        head = {
            Outcome.DENY: "refused by the zone policy",
            Outcome.DRY_RUN: "served (zone in dry_run), violation recorded",
            Outcome.EXEMPTED: f"served under exemption {finding.exemption!r}",
            Outcome.ALLOW: "served",
        }[self.decision.outcome]
        return f"{self.kind} {self.name!r} {head}: {finding.reason}"

    @property
    def to_record(self) -> bool:
        """A decision with something to record (any outcome but a plain allow)."""
        return self.decision is not None and self.decision.outcome is not Outcome.ALLOW

    @property
    def fix(self) -> str:
        if self.decision is not None and self.decision.findings:
            return self.decision.findings[0].remediation
        return self.remedy or "run the request from a task whose try is running in this deployment"


def check_credential(
    *,
    session: Session,
    engine: PolicyEngine,
    ti_id: str,
    kind: CredentialKind,
    name: str,
    now: datetime | None = None,
) -> CredentialVerdict:
    """Decide one connection/variable request of the try ``ti_id`` and record a refusal.

    Unrestricted ids (unlisted, and the policy serves unlisted ids) are allowed without a database
    query. Commits the session when it records something.
    """
    if not engine.restricts(kind=kind, name=name):
        return CredentialVerdict(allowed=True, kind=kind, name=name)
    found = lookup_try(session, ti_id)
    moment = now or datetime.now(timezone.utc)
    zone, zone_source = try_zone(found, session=session) if found is not None else (None, "none")
    # Reading needs no lock: a decision recorded meanwhile is found again when recording below.
    verdict = verdict_on_read(engine, found, zone=zone, ti_id=ti_id, kind=kind, name=name, now=moment)
    if found is None or verdict.decision is None:
        return verdict
    if not verdict.to_record:
        session.rollback()
        return verdict
    identity, task = found.identity, found.task
    decision = verdict.decision
    for attempt in range(2):
        row = session.scalar(decision_of_try(**identity.model_dump()).with_for_update())
        if row is not None and row.claims_digest != CREDENTIALS_ONLY and row.allowed and row.zone != zone:
            # The try's check recorded a decision that let it run since the read (its claims were
            # verified): decide in that decision's zone, as try_zone would have.
            zone = row.zone
            decision = engine.decide_credential(kind=kind, name=name, task=task, zone=zone, now=moment)
            if decision.outcome is Outcome.ALLOW:
                session.rollback()
                return CredentialVerdict.of(decision, kind=kind, name=name)
        try:
            record_server_decision(
                session,
                row,
                identity,
                decision,
                zone_source=zone_source if zone is not None else "default",
                decided_at=moment,
            )
            session.commit()
        except IntegrityError:
            # The try's pre-execute check created its decision meanwhile: record on that one.
            session.rollback()
            if attempt:
                raise
            continue
        return CredentialVerdict.of(decision, kind=kind, name=name)
    raise AssertionError("unreachable")  # pragma: no cover


def verdict_on_read(
    engine: PolicyEngine,
    found: FoundTry | None,
    *,
    zone: str | None,
    ti_id: str,
    kind: CredentialKind,
    name: str,
    now: datetime,
) -> CredentialVerdict:
    """The verdict on what :func:`lookup_try` (or :func:`read_try`) found for the try ``ti_id``,
    in ``zone`` (:func:`try_zone`), before anything is recorded: final unless
    :attr:`CredentialVerdict.to_record` (findings that :func:`check_credential` records, deciding
    again on what it reads under lock)."""
    if found is None:
        return CredentialVerdict(
            allowed=False,
            kind=kind,
            name=name,
            problem=f"{kind} {name!r} is restricted by the zone policy and the token names no current "
            f"task instance ({ti_id}), so no zone can be established",
        )
    decision = engine.decide_credential(kind=kind, name=name, task=found.task, zone=zone, now=now)
    return CredentialVerdict.of(decision, kind=kind, name=name)


DAG_FILE_CODE = "(dag file)"
"""The task id a DAG file's own code is decided as (top-level code and DAG callbacks run by the
dag-processor belong to no task)."""


def check_dag_file_credential(
    *,
    session: Session,
    engine: PolicyEngine,
    bundle: str,
    relative_fileloc: str,
    kind: CredentialKind,
    name: str,
    now: datetime | None = None,
) -> CredentialVerdict:
    """Decide a connection/variable request of a DAG file's own code while the dag-processor runs
    it (parsing, DAG callbacks): that code builds every task of every DAG the file defines (and
    can hand them what it read), so each zone those DAGs and tasks run in must be allowed it.
    Read-only.

    The DAGs are the file's entries in Airflow's ``dag`` table (bundle ``bundle``, path
    ``relative_fileloc`` in it), from the previous parse; a file with none yet (never parsed
    without error) establishes no zone and obtains nothing the policy restricts.
    """
    from airflow.models.dag import DagModel, DagTag

    if not engine.restricts(kind=kind, name=name):
        return CredentialVerdict(allowed=True, kind=kind, name=name)
    rows = session.execute(
        select(DagModel.dag_id, DagModel.owners, DagModel.is_stale, DagTag.name)
        .outerjoin(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagModel.bundle_name == bundle, DagModel.relative_fileloc == relative_fileloc)
    ).all()
    dags: dict[str, tuple[str | None, bool, set[str]]] = {}
    for dag_id, owners, stale, tag in rows:
        entry = dags.setdefault(dag_id, (owners, bool(stale), set()))
        if tag is not None:
            entry[2].add(tag)
    current = {dag_id: entry for dag_id, entry in dags.items() if not entry[1]} or dags
    if not current:
        return CredentialVerdict(
            allowed=False,
            kind=kind,
            name=name,
            problem=f"{kind} {name!r} is restricted by the zone policy, and DAG file "
            f"{relative_fileloc!r} (bundle {bundle!r}) has no DAG Airflow knows yet, so no zone "
            "can be established for its code",
            remedy=INSIDE_A_TASK,
        )
    from airflow_policyzones.db.verification import parsed_dags

    moment = now or datetime.now(timezone.utc)
    verdicts = []
    for dag_id, (owners, _, tags) in sorted(current.items()):
        task = dag_task_context(
            dag_id=dag_id, task_id=DAG_FILE_CODE, relative_fileloc=relative_fileloc, owners=owners, tags=tags
        )
        # The zone of every task of its last parse (a task-level zone, else the DAG's); the DAG's
        # zone tag when Airflow holds no serialized DAG for it.
        zones = {
            parsed_task.zone
            for parsed in parsed_dags(session, dag_id=dag_id, dag_version_id=None)
            for parsed_task in parsed.tasks.values()
        } or {dag_zone(task.tags)}
        verdicts += verdicts_in_zones(engine, task=task, zones=zones, kind=kind, name=name, now=moment)
    return _strictest(verdicts)


def verdicts_in_zones(
    engine: PolicyEngine,
    *,
    task: TaskContext,
    zones: Iterable[str | None],
    kind: CredentialKind,
    name: str,
    now: datetime | None = None,
) -> list[CredentialVerdict]:
    """The verdict on ``name`` for DAG file code building ``task``'s DAG in each of ``zones``
    (sorted, so the first refusal reported is stable)."""
    return [
        CredentialVerdict.of(
            engine.decide_credential(kind=kind, name=name, task=task, zone=zone, now=now),
            kind=kind,
            name=name,
        )
        for zone in sorted(set(zones), key=str)
    ]


def check_trigger_credential(
    *,
    session: Session,
    engine: PolicyEngine,
    trigger_ids: Collection[int],
    kind: CredentialKind,
    name: str,
    now: datetime | None = None,
) -> CredentialVerdict:
    """Decide a connection/variable request of a triggerer's trigger runner, which runs the
    triggers ``trigger_ids`` (ids of Airflow's ``trigger`` table) in one process and does not say
    which trigger asks: each try whose trigger runs there must be allowed it, in its zone
    (:func:`try_zone`). A trigger of no task instance (an asset watcher) establishes no zone, and
    then nothing the policy restricts is served. Read-only."""
    from airflow.models.taskinstance import TaskInstance

    if not engine.restricts(kind=kind, name=name):
        return CredentialVerdict(allowed=True, kind=kind, name=name)
    tries = session.execute(
        select(TaskInstance.id, TaskInstance.trigger_id).where(TaskInstance.trigger_id.in_(list(trigger_ids)))
    ).all()
    without_try = sorted(set(trigger_ids) - {trigger_id for _, trigger_id in tries})
    if not trigger_ids or without_try:
        return CredentialVerdict(
            allowed=False,
            kind=kind,
            name=name,
            problem=f"{kind} {name!r} is restricted by the zone policy, and the triggerer's runner "
            f"that asks for it runs triggers of no task instance ({without_try or 'none known'}: "
            "asset watchers), for which no zone can be established",
            remedy=f"give triggers that need {kind} {name!r} a triggerer of their own "
            "(airflow triggerer --queues), or list it for every zone that may use it",
        )
    moment = now or datetime.now(timezone.utc)
    verdicts = []
    for ti_id, trigger_id in tries:
        found = lookup_try(session, str(ti_id))
        if found is None:  # gone since the query above: nothing to establish a zone on
            return CredentialVerdict(
                allowed=False,
                kind=kind,
                name=name,
                problem=f"{kind} {name!r} is restricted by the zone policy, and the task instance of "
                f"trigger {trigger_id} could not be read, so no zone can be established",
                remedy="the triggerer asks again when the trigger runs again",
            )
        zone = try_zone(found, session=session)[0]
        decision = engine.decide_credential(kind=kind, name=name, task=found.task, zone=zone, now=moment)
        verdict = CredentialVerdict.of(decision, kind=kind, name=name)
        if not verdict.allowed:
            problem = (
                f"it runs the trigger of {describe(found.identity)} try {found.identity.try_number}, "
                f"and {verdict.message}"
            )
            return dataclasses.replace(verdict, problem=problem)
        verdicts.append(verdict)
    return _strictest(verdicts)


INSIDE_A_TASK = (
    "read it inside a task (a hook in an operator or a @task function), where the zone of the task decides"
)
"""The fix for code outside any task (a DAG file's) that asks for what the policy restricts."""


def _strictest(verdicts: Sequence[CredentialVerdict]) -> CredentialVerdict:
    """A refusal first; else one with findings to report (dry run, exemption); else any."""
    return min(verdicts, key=lambda verdict: (verdict.allowed, not verdict.to_record))


def record_server_decision(
    session: Session,
    row: PolicyZonesDecision | None,
    identity: TaskInstanceIdentity,
    decision: Decision,
    *,
    zone_source: str,
    decided_at: datetime,
) -> None:
    """Add what the api-server decided on its own (a refused credential, a success refused) to the
    try's decision row ``row``, or to a new row that the try's pre-execute check completes if it
    still runs. The caller commits."""
    if row is None:
        row = new_decision_row(
            identity,
            decision,
            zone_source=zone_source if decision.zone is not None else "none",
            source="api",
            decided_at=decided_at,
        )
        row.claims_digest = CREDENTIALS_ONLY
        row.inputs = []
        row.violations = []
        session.add(row)
    recorded = {(item.input or "", item.rule) for item in row.violations}
    findings = [
        finding
        for finding in decision.findings
        if ((finding.input or "")[:INPUT_LEN], finding.rule.value) not in recorded
    ]
    row.violations.extend(_violation_row(row, decision, finding, input_source=None) for finding in findings)
    row.finding_count += len(findings)
    row.violation_count += sum(1 for finding in findings if not finding.exempted)
    if is_worse(decision.outcome.value, than=row.outcome):
        row.outcome = decision.outcome.value
    row.allowed = row.allowed and decision.allowed
