"""Reconciliation: task-instance tries that ran without a recorded decision.

Enforcement runs inside the worker process, next to DAG code; code written to get around it
(monkeypatching this provider or the task runner) can skip the check, but it cannot leave a
decision row behind. Every try that started after enforcement was switched on and has no row in
``policyzones_decision`` is therefore evidence to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
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


def unchecked_tries(*, session: Session, since: datetime, limit: int = 10_000) -> Sequence[UncheckedTry]:
    """Tries started at or after ``since`` (current and earlier tries) without a decision row."""
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
        found.extend(UncheckedTry(**row) for row in session.execute(query).mappings())
    return sorted(found, key=lambda item: (item.start_date is None, item.start_date))
