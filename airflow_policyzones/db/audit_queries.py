"""The audit questions the read API and the pages ask: pages of violations and decisions, one
decision, the decisions of a task instance, the active policy, and the reconciliation reports
(tries that ran unchecked, tasks that ran blind).

Every answer is restricted to the DAGs in ``readable`` (the ids the user may read). Refusals are
domain errors (:mod:`airflow_policyzones.db.query_errors`): :class:`InvalidQuery` for a filter,
limit or cursor the data cannot answer, :class:`NotFound`, :class:`PolicyUnavailable`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_policyzones.config import get_engine
from airflow_policyzones.db.audit import BLIND_EXPLANATION, blind_tasks, parse_since, unchecked_tries
from airflow_policyzones.db.audit_filters import (
    DEFAULT_UNCHECKED_SINCE,
    BlindFilters,
    DecisionFilters,
    Paging,
    UncheckedQuery,
    ViolationFilters,
    check_zone_filter,
    decision_select,
    utc,
    violation_select,
)
from airflow_policyzones.db.audit_models import (
    BlindOut,
    BlindTaskOut,
    DecisionDetailOut,
    DecisionOut,
    DecisionPage,
    PolicyOut,
    UncheckedOut,
    UncheckedTryOut,
    ViolationPage,
    policy_out,
)
from airflow_policyzones.db.audit_rows import decision_fields, inputs_by_decision, ti_ref, violation_out
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation
from airflow_policyzones.db.paging import fetch_page
from airflow_policyzones.db.query_errors import InvalidQuery, NotFound, PolicyUnavailable
from airflow_policyzones.policy import PolicyError


def violation_page(
    *, session: Session, readable: set[str], filters: ViolationFilters, paging: Paging
) -> ViolationPage:
    """One page of the matching violations, newest first, and the cursor of the next one."""
    query = violation_select(readable=readable, filters=filters)
    rows, next_cursor = fetch_page(
        session, query, PolicyZonesViolation, cursor=paging.cursor, limit=paging.limit
    )
    return ViolationPage(items=[violation_out(row) for row in rows], next_cursor=next_cursor)


def decision_page(
    *, session: Session, readable: set[str], filters: DecisionFilters, paging: Paging
) -> DecisionPage:
    """One page of the matching decisions with their inputs and labels, newest first, and the
    cursor of the next one."""
    query = decision_select(readable=readable, filters=filters)
    page, next_cursor = fetch_page(
        session, query, PolicyZonesDecision, cursor=paging.cursor, limit=paging.limit
    )
    inputs = inputs_by_decision(session, [row.id for row in page])
    return DecisionPage(
        items=[DecisionOut(**decision_fields(row, inputs.get(row.id, []))) for row in page],
        next_cursor=next_cursor,
    )


def decision_detail(*, session: Session, readable: set[str], decision_id: int) -> DecisionDetailOut:
    """One decision with its inputs and findings; :class:`NotFound` also for a decision of a DAG
    not in ``readable`` (whether it exists is not revealed)."""
    row = session.get(PolicyZonesDecision, decision_id)
    if row is None or row.dag_id not in readable:
        raise NotFound(f"no decision with id {decision_id}")
    inputs = inputs_by_decision(session, [row.id]).get(row.id, [])
    findings = [violation_out(violation) for violation in row.violations]
    return DecisionDetailOut(**decision_fields(row, inputs), findings=findings)


def task_instance_decisions(
    *, session: Session, readable: set[str], dag_id: str, run_id: str, task_id: str, map_index: int
) -> list[DecisionDetailOut]:
    """The decisions of every try of one task instance, latest try first; empty when its DAG is
    not in ``readable``."""
    if dag_id not in readable:
        return []
    model = PolicyZonesDecision
    ids = session.scalars(
        sa.select(model.id)
        .where(
            model.dag_id == dag_id,
            model.run_id == run_id,
            model.task_id == task_id,
            model.map_index == map_index,
        )
        .order_by(model.try_number.desc())
    )
    return [
        decision_detail(session=session, readable=readable, decision_id=decision_id) for decision_id in ids
    ]


def active_policy() -> PolicyOut:
    """The policy the decision service enforces now; :class:`PolicyUnavailable` (with the reason)
    when it does not load."""
    try:
        engine = get_engine()
    except PolicyError as error:
        raise PolicyUnavailable(f"the policy does not load: {error}") from None
    return policy_out(engine)


def window_start(since: str | None) -> datetime:
    """The start of a reconciliation window: ``since`` (an ISO date or date-time, or a duration
    before now such as ``7d``), by default :data:`DEFAULT_UNCHECKED_SINCE` before now; raises
    :class:`InvalidQuery` naming the accepted forms."""
    start = parse_since(since if since is not None else DEFAULT_UNCHECKED_SINCE)
    if start is None:
        raise InvalidQuery(
            f"since {since!r} is neither an ISO date/date-time nor a duration such as 7d or 12h"
        )
    return start


def unchecked_report(*, session: Session, readable: set[str], query: UncheckedQuery) -> UncheckedOut:
    """Tries of readable DAGs that started in the window without a recorded decision, oldest
    first, at most ``query.limit`` (``truncated`` says whether more matched).

    Such a try skipped the check (enforcement off, or DAG code got around it): evidence to look at.
    """
    start = window_start(query.since)
    tries = unchecked_tries(session=session, since=start, limit=query.limit + 1, dag_ids=readable)
    return UncheckedOut(
        since=start,
        limit=query.limit,
        truncated=len(tries) > query.limit,
        items=[
            UncheckedTryOut(
                task_instance=ti_ref(item),
                state=item.state,
                start_date=item.start_date,
                operator=item.operator,
            )
            for item in tries[: query.limit]
        ],
    )


def blind_report(*, session: Session, readable: set[str], filters: BlindFilters) -> BlindOut:
    """Tasks whose successful tries decided in the window had no known reads, by DAG and task id,
    at most ``filters.limit`` (``truncated`` says whether more matched).

    Raises :class:`InvalidQuery` for a malformed window, ``since`` after ``until``, an unknown
    zone, or ``zone`` together with ``unzoned_only``.
    """
    start, end = window_start(filters.since), utc(filters.until)
    if end is not None and start > end:
        raise InvalidQuery("since is after until")
    check_zone_filter(zone=filters.zone, unzoned_only=filters.unzoned_only)
    tasks = blind_tasks(
        session=session,
        since=start,
        until=end,
        limit=filters.limit + 1,
        dag_ids=readable,
        dag_id=filters.dag_id,
        zone=filters.zone,
        unzoned_only=filters.unzoned_only,
    )
    return BlindOut(
        since=start,
        limit=filters.limit,
        truncated=len(tasks) > filters.limit,
        explanation=BLIND_EXPLANATION,
        items=[
            BlindTaskOut(
                dag_id=item.dag_id,
                task_id=item.task_id,
                zone=item.zone,
                blind_tries=item.blind_tries,
                tries_with_reads=item.tries_with_reads,
                last_decision_id=item.decision_id,
                last_decided_at=item.decided_at,
                last_try=ti_ref(item),
            )
            for item in tasks[: filters.limit]
        ],
    )
