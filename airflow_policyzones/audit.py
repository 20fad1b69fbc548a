"""Reconciliation: task-instance tries that ran without a recorded decision.

Enforcement runs inside the worker process, next to DAG code; code written to get around it
(monkeypatching this provider or the task runner) can skip the check, but it cannot leave a
decision row behind. Every try that started after enforcement was switched on and has no row in
``policyzones_decision`` is therefore evidence to look at.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_policyzones.db.models import PolicyZonesDecision

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SKIPPED_OPERATORS = ("EmptyOperator",)
"""Completed by the scheduler without ever running on a worker: there is nothing to check."""


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
    """Tries started at or after ``since`` (current and earlier tries) without a decision row.

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
                decision.id.is_(None),
                sa.or_(tries.operator.is_(None), tries.operator.not_in(SKIPPED_OPERATORS)),
            )
            .order_by(tries.start_date)
            .limit(limit)
        )
        if dag_ids is not None:
            query = query.where(tries.dag_id.in_(sorted(dag_ids)))
        found.extend(UncheckedTry(**row) for row in session.execute(query).mappings())
    return sorted(found, key=lambda item: (item.start_date is None, item.start_date))


_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


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
