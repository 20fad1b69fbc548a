"""Reconciliation: task-instance tries that ran without a recorded decision, and tasks whose
successful tries had no known reads.

Enforcement runs inside the worker process, next to DAG code; code written to get around it
(monkeypatching this provider or the task runner) can skip the check, but it cannot leave a
decision row behind. Every try that started after enforcement was switched on and has no row in
``policyzones_decision`` is therefore evidence to look at.

Blind tasks are the other gap: tries that were checked but finished successfully without a
single known read (nothing declared, no SQL the provider analyzes, nothing a hook reported), so
their decision had nothing to decide on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_policyzones.db.models import (
    CREDENTIALS_ONLY,
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
)
from airflow_policyzones.policy.vocabulary import Rule

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SUCCESS = "success"
"""Airflow's state of a try whose body ran to completion."""


def completed_without_running(tries: Any) -> sa.ColumnElement[bool]:
    """Whether a try (a ``task_instance`` or ``task_instance_history`` row, ``tries`` its
    columns) was completed by the scheduler without ever running: there was nothing to check.

    Judged by what the row records, never by the operator's class name (a DAG file can name any
    class ``EmptyOperator``). Airflow 3.3's scheduler marks a try it need not run (an
    ``EmptyOperator`` or subclass, e.g. ``ExternalTaskMarker``, without callbacks, inlets or
    outlets) ``success`` with ``duration`` 0 in one update, and nothing else; a try that runs is
    started through the execution API, which records the worker's ``hostname`` and ``pid``. A
    try that started in the triggerer (``start_from_trigger``) has no worker either, but ran
    trigger code and has a duration: it is not excluded.
    """
    # Never NULL (a NULL would drop the row from ``NOT (...)``): NULL state or duration is not it.
    return sa.and_(
        sa.func.coalesce(tries.state, "") == SUCCESS,
        sa.func.coalesce(tries.duration, -1) == 0,
        tries.pid.is_(None),
        sa.func.coalesce(tries.hostname, "") == "",
    )


@dataclass(frozen=True, slots=True)
class UncheckedTry:
    """One task-instance try that started and has no recorded decision."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    state: str | None
    start_date: datetime | None
    operator: str | None

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["start_date"] = self.start_date.isoformat() if self.start_date else None
        return row


def unchecked_tries(
    *,
    session: Session,
    since: datetime,
    limit: int = 10_000,
    dag_ids: Collection[str] | None = None,
) -> Sequence[UncheckedTry]:
    """Tries started at or after ``since`` (current and earlier tries) without a decision from
    their pre-execute check (no decision row, or one only the api-server recorded: a credential
    refused, a success refused), except those the scheduler completed without running them
    (:func:`completed_without_running`), whatever their operator class.

    ``dag_ids`` (None: every DAG) lets the database drop the tries of DAGs a user may not read.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    found: list[UncheckedTry] = []
    decision = PolicyZonesDecision.__table__.c
    for table in (TaskInstance.__table__, TaskInstanceHistory.__table__):
        tries = table.c
        query = (
            sa.select(
                tries.dag_id,
                tries.task_id,
                tries.run_id,
                tries.map_index,
                tries.try_number,
                tries.state,
                tries.start_date,
                tries.operator,
            )
            .outerjoin(
                PolicyZonesDecision.__table__,
                sa.and_(
                    decision.dag_id == tries.dag_id,
                    decision.task_id == tries.task_id,
                    decision.run_id == tries.run_id,
                    decision.map_index == tries.map_index,
                    decision.try_number == tries.try_number,
                ),
            )
            .where(
                tries.start_date.is_not(None),
                tries.start_date >= since,
                tries.try_number > 0,
                sa.or_(decision.id.is_(None), decision.claims_digest == CREDENTIALS_ONLY),
                sa.not_(completed_without_running(tries)),
            )
            .order_by(tries.start_date)
            .limit(limit)
        )
        if dag_ids is not None:
            query = query.where(tries.dag_id.in_(sorted(dag_ids)))
        found.extend(UncheckedTry(**row) for row in session.execute(query).mappings())
    return sorted(found, key=lambda item: (item.start_date is None, item.start_date))


BLIND_EXPLANATION = (
    "the check had nothing to decide on: the task declared nothing, ran no SQL the provider sees "
    "and no hook reported a read"
)
"""What a blind try is, in the words every report (UI, CLI) uses."""


@dataclass(frozen=True, slots=True)
class BlindTask:
    """A task whose successful tries in the window had no known reads, with its last such try."""

    dag_id: str
    task_id: str
    blind_tries: int
    """Successful tries decided in the window without a single known read."""
    tries_with_reads: int
    """Successful tries of the same task in the window whose decision did have reads."""
    zone: str | None
    """The zone of the last blind try."""
    run_id: str
    map_index: int
    try_number: int
    decision_id: int
    decided_at: datetime

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["decided_at"] = self.decided_at.isoformat()
        return row


def known_reads(decision: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """Whether the decision ``decision`` (its id) knew of any read, however it became known.

    An input row (declared, sql or observed), or a finding about an input that has none: an
    undeclared table or file (``undeclared_input``, named but unlabeled) or a read that cannot be
    named (``uncheckable_input``, whose ``input`` is NULL).
    """
    inputs = PolicyZonesDecisionInput.__table__.c
    violations = PolicyZonesViolation.__table__.c
    return sa.or_(
        sa.exists().where(inputs.decision_id == decision),
        sa.exists().where(
            violations.decision_id == decision,
            sa.or_(violations.input.is_not(None), violations.rule == Rule.UNCHECKABLE_INPUT.value),
        ),
    )


def _succeeded(decision: Any) -> sa.ColumnElement[bool]:
    """The decided try finished successfully: its task instance (current try) or its history
    row (an earlier try) is in state ``success``. EXISTS, so a try is never counted twice."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory

    def in_success(table: sa.Table) -> sa.ColumnElement[bool]:
        tries = table.c
        return sa.exists().where(
            tries.dag_id == decision.dag_id,
            tries.task_id == decision.task_id,
            tries.run_id == decision.run_id,
            tries.map_index == decision.map_index,
            tries.try_number == decision.try_number,
            tries.state == SUCCESS,
        )

    return sa.or_(in_success(TaskInstance.__table__), in_success(TaskInstanceHistory.__table__))


def blind_decisions(*, session: Session, decision_ids: Collection[int]) -> set[int]:
    """Which of these decisions are of blind tries: successful, without a single known read."""
    if not decision_ids:
        return set()
    model = PolicyZonesDecision.__table__.c
    query = sa.select(model.id).where(
        model.id.in_(sorted(decision_ids)), _succeeded(model), sa.not_(known_reads(model.id))
    )
    return set(session.scalars(query))


def blind_tasks(
    *,
    session: Session,
    since: datetime,
    until: datetime | None = None,
    limit: int = 10_000,
    dag_ids: Collection[str] | None = None,
    dag_id: str | None = None,
    zone: str | None = None,
    unzoned_only: bool = False,
) -> Sequence[BlindTask]:
    """Tasks with tries decided at or after ``since`` (and before ``until``, if given) that finished
    successfully without a single
    known read: no declared inlet, no SQL read, nothing a hook or object storage reported.

    Such a try passed the check because there was nothing to check. Only successful tries count
    (the body ran to completion; a denied try never ran, a failed one may have been stopped
    before its reads). ``tries_with_reads`` counts the successful tries of the same task in the
    window that did have reads, for contrast: a task blind in some tries only reads data on
    some paths. ``dag_ids`` (None: every DAG) drops the tasks of DAGs a user may not read;
    ``zone`` / ``unzoned_only`` keep the tries decided in that zone / in none. At most ``limit``
    tasks, ordered by DAG and task id.
    """
    model = PolicyZonesDecision.__table__.c
    clauses: list[sa.ColumnElement[bool]] = [model.decided_at >= since, _succeeded(model)]
    if until is not None:
        clauses.append(model.decided_at < until)
    if dag_ids is not None:
        clauses.append(model.dag_id.in_(sorted(dag_ids)))
    if dag_id is not None:
        clauses.append(model.dag_id == dag_id)
    if zone is not None:
        clauses.append(model.zone == zone)
    if unzoned_only:
        clauses.append(model.zone.is_(None))
    tries = (
        sa.select(
            model.id,
            model.dag_id,
            model.task_id,
            model.run_id,
            model.map_index,
            model.try_number,
            model.zone,
            model.decided_at,
            sa.case((known_reads(model.id), 1), else_=0).label("reads"),
        )
        .where(*clauses)
        .subquery()
    )
    blind = sa.func.sum(1 - tries.c.reads)
    per_task = session.execute(
        sa.select(
            tries.c.dag_id,
            tries.c.task_id,
            blind.label("blind_tries"),
            sa.func.sum(tries.c.reads).label("tries_with_reads"),
            sa.func.max(sa.case((tries.c.reads == 0, tries.c.decided_at))).label("last_blind"),
        )
        .group_by(tries.c.dag_id, tries.c.task_id)
        .having(blind > 0)
        .order_by(tries.c.dag_id, tries.c.task_id)
        .limit(limit)
    ).all()
    if not per_task:
        return []
    counts = {
        (row.dag_id, row.task_id): (int(row.blind_tries), int(row.tries_with_reads)) for row in per_task
    }
    # The last blind try of each listed task: joined back on its newest instant (highest id wins a tie).
    newest = (
        sa.select(tries.c.dag_id, tries.c.task_id, sa.func.max(tries.c.decided_at).label("decided_at"))
        .where(tries.c.reads == 0)
        .group_by(tries.c.dag_id, tries.c.task_id)
        .subquery()
    )
    last: dict[tuple[str, str], Any] = {}
    for row in session.execute(
        sa.select(tries)
        .join(
            newest,
            sa.and_(
                tries.c.dag_id == newest.c.dag_id,
                tries.c.task_id == newest.c.task_id,
                tries.c.decided_at == newest.c.decided_at,
            ),
        )
        .where(tries.c.reads == 0)
    ):
        key = (row.dag_id, row.task_id)
        if key in counts and (key not in last or row.id > last[key].id):
            last[key] = row
    return [
        BlindTask(
            dag_id=dag,
            task_id=task,
            blind_tries=blind_count,
            tries_with_reads=with_reads,
            zone=last[dag, task].zone,
            run_id=last[dag, task].run_id,
            map_index=last[dag, task].map_index,
            try_number=last[dag, task].try_number,
            decision_id=last[dag, task].id,
            decided_at=_aware(last[dag, task].decided_at),
        )
        for (dag, task), (blind_count, with_reads) in counts.items()
    ]


def _aware(moment: datetime) -> datetime:
    """Columns read through a subquery lose UtcDateTime's conversion on SQLite: UTC, as stored."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def moment_option(option: str, text: str) -> datetime:
    """The moment a command-line option (``--since``, ``--until``) names, as :func:`parse_since`
    reads it; raises ``ValueError`` with the message a command prints (the option, the value, the
    forms it takes)."""
    moment = parse_since(text)
    if moment is None:
        raise ValueError(
            f"{option} {text!r} is neither an ISO date/date-time nor a duration such as 7d or 12h"
        )
    return moment


def moment_options(**given: str | None) -> dict[str, datetime]:
    """``{name: moment}`` for each option ``--name`` that was given (``None``: not given); raises
    ``ValueError`` as :func:`moment_option` does."""
    return {name: moment_option(f"--{name}", text) for name, text in given.items() if text is not None}


def parse_since(text: str, *, now: datetime | None = None) -> datetime | None:
    """``7d``/``12h``/``30m`` before now, or an ISO date / date-time (UTC when no offset is given).

    ``None`` for anything else, including durations too long to subtract from now.
    """
    value = text.strip()
    moment = now or datetime.now(timezone.utc)
    if value[:-1].isascii() and value[:-1].isdigit() and value[-1:] in _DURATION_UNITS:
        try:
            return moment - timedelta(**{_DURATION_UNITS[value[-1]]: int(value[:-1])})
        except OverflowError:
            return None
    if value.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read the UTC suffix
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
