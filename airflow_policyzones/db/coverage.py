"""Coverage: which DAGs and tasks run in which zone, and which run in none.

Three queries whatever the number of DAGs: active DAGs with their tags, their latest serialized
versions, and the latest decision per task. Airflow does not serialize zones set on tasks
(``ZoneGroup``, ``set_zone``, ``zoned``), so a task's zone is the zone of its most recent
decision; only a task never decided falls back to its DAG's default zone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_policyzones.config import get_engine
from airflow_policyzones.db.audit_filters import CoverageFilters, check_zone_filter
from airflow_policyzones.db.audit_models import (
    CoverageOut,
    CoverageSummary,
    DagCoverageOut,
    LastDecisionOut,
    Membership,
    TaskCoverageOut,
)
from airflow_policyzones.db.models import PolicyZonesDecision
from airflow_policyzones.db.tries import dag_task_context
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.vocabulary import Rule
from airflow_policyzones.zones import ZoneAnnotationError, dag_zone


@dataclass(frozen=True, slots=True)
class _DagRow:
    dag_id: str
    relative_fileloc: str | None
    owners: str | None
    tags: list[str]


def _engine_or_error() -> tuple[PolicyEngine | None, str | None]:
    """The active engine, or why there is none: reports about the policy must not fail with it."""
    try:
        return get_engine(), None
    except PolicyError as error:
        return None, str(error)


def _active_dags(session: Session, dag_ids: Collection[str]) -> list[_DagRow]:
    """Active (non-stale) DAGs with their tags, in one query, ordered by dag_id."""
    from airflow.models.dag import DagModel, DagTag

    rows = session.execute(
        sa.select(DagModel.dag_id, DagModel.relative_fileloc, DagModel.owners, DagTag.name)
        .outerjoin(DagTag, DagTag.dag_id == DagModel.dag_id)
        .where(DagModel.dag_id.in_(sorted(dag_ids)), DagModel.is_stale.is_(False))
        .order_by(DagModel.dag_id, DagTag.name)
    )
    dags: dict[str, _DagRow] = {}
    for dag_id, relative_fileloc, owners, tag in rows:
        dag = dags.setdefault(dag_id, _DagRow(dag_id, relative_fileloc, owners, []))
        if tag is not None:
            dag.tags.append(tag)
    return list(dags.values())


def _serialized_task_ids(session: Session, dag_ids: Collection[str]) -> dict[str, list[str]]:
    """Task ids of each DAG's latest serialized version (one query), sorted."""
    from airflow.models.serialized_dag import SerializedDagModel

    found: dict[str, list[str]] = {}
    for row in SerializedDagModel.get_latest_serialized_dags(dag_ids=sorted(dag_ids), session=session):
        task_ids: list[str] = []
        # Read from the JSON, not deserialized: building operators for every DAG would be costly.
        for task in ((row.data or {}).get("dag") or {}).get("tasks") or []:
            fields = task.get("__var", task)  # {"__type": "operator", "__var": {"task_id": ...}}
            if isinstance(fields.get("task_id"), str):
                task_ids.append(fields["task_id"])
        found[row.dag_id] = sorted(task_ids)
    return found


def _latest_decisions(session: Session, dag_ids: Collection[str]) -> dict[tuple[str, str], LastDecisionOut]:
    """The most recent decision per (dag_id, task_id) in one query: newest decided_at, then id.

    A GROUP BY joined back on its maximum, not ``row_number() OVER``: the window sorts every row
    and took about twice as long on PostgreSQL (1M decisions of 500 DAGs: 1.2-2 s against 2.3-5.5 s
    on a busy two-core machine). Rows decided at the same instant all come back; the highest id wins.
    """
    model = PolicyZonesDecision
    newest = (
        sa.select(model.dag_id, model.task_id, sa.func.max(model.decided_at).label("decided_at"))
        .where(model.dag_id.in_(sorted(dag_ids)))
        .group_by(model.dag_id, model.task_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            model.id,
            model.dag_id,
            model.task_id,
            model.zone,
            model.zone_source,
            model.outcome,
            model.decided_at,
            model.policy_version,
        ).join(
            newest,
            sa.and_(
                model.dag_id == newest.c.dag_id,
                model.task_id == newest.c.task_id,
                model.decided_at == newest.c.decided_at,
            ),
        )
    )
    found: dict[tuple[str, str], LastDecisionOut] = {}
    for row in rows:
        key = (row.dag_id, row.task_id)
        if key not in found or row.id > found[key].decision_id:
            found[key] = LastDecisionOut(
                decision_id=row.id,
                zone=row.zone,
                zone_source=row.zone_source,
                outcome=row.outcome,
                decided_at=row.decided_at,
                policy_version=row.policy_version,
            )
    return found


def _default_zone(
    dag: _DagRow, engine: PolicyEngine | None
) -> tuple[str | None, Literal["tag", "policy", "none"], str | None]:
    """The DAG's default zone, where it comes from, and why its zone tags were ignored (if so)."""
    try:
        tagged = dag_zone(SimpleNamespace(dag_id=dag.dag_id, tags=dag.tags))
    except ZoneAnnotationError as error:
        return None, "none", str(error)
    if tagged is not None:
        return tagged, "tag", None
    fallback = engine.policy.settings.default_zone if engine is not None else None
    return fallback, "policy" if fallback is not None else "none", None


def _membership(engine: PolicyEngine | None, dag: _DagRow, zone: str | None) -> Membership | None:
    """The engine's own verdict on the DAG in ``zone``: a decision without inputs fails only on
    the zone itself (unknown) or on membership. Membership is per DAG, so no task is named."""
    if engine is None or zone is None:
        return None
    context = dag_task_context(
        dag_id=dag.dag_id, task_id="", relative_fileloc=dag.relative_fileloc, owners=dag.owners, tags=dag.tags
    )
    rules = {
        rule
        for finding in engine.decide(task=context, zone=zone, inputs=()).findings
        for rule in finding.rules
    }
    if Rule.UNKNOWN_ZONE in rules:
        return "unknown_zone"
    return "not_member" if Rule.ZONE_MEMBERSHIP in rules else "member"


def coverage_report(*, session: Session, readable: set[str], filters: CoverageFilters) -> CoverageOut:
    """Every active DAG in ``readable`` (only ``filters.dag_id`` if given) with its default zone,
    its membership and its tasks' zones; a filtered report lists the DAGs with a matching task,
    and the summary counts what is listed. When the policy does not load the report is still
    made, with ``membership`` null and ``policy_error`` set.

    Raises :class:`~airflow_policyzones.db.query_errors.InvalidQuery` for an unknown zone, or
    ``zone`` together with ``unzoned_only``.
    """
    zone, unzoned_only = filters.zone, filters.unzoned_only
    check_zone_filter(zone=zone, unzoned_only=unzoned_only)
    engine, policy_error = _engine_or_error()
    wanted = readable if filters.dag_id is None else readable & {filters.dag_id}
    dags = _active_dags(session, wanted) if wanted else []
    dag_ids = [dag.dag_id for dag in dags]
    task_ids = _serialized_task_ids(session, dag_ids) if dag_ids else {}
    latest = _latest_decisions(session, dag_ids) if dag_ids else {}

    def listed(task_zone: str | None) -> bool:
        if unzoned_only:
            return task_zone is None
        return zone is None or task_zone == zone

    report: list[DagCoverageOut] = []
    for dag in dags:
        default_zone, default_source, problem = _default_zone(dag, engine)
        tasks = []
        for task_id in task_ids.get(dag.dag_id, []):
            last = latest.get((dag.dag_id, task_id))
            task_zone = last.zone if last is not None else default_zone
            if listed(task_zone):
                tasks.append(
                    TaskCoverageOut(
                        task_id=task_id,
                        zone=task_zone,
                        zone_basis="decision" if last is not None else "dag_default",
                        last_decision=last,
                    )
                )
        # A filter keeps a DAG with a matching task, or one with no known tasks whose default matches.
        if not tasks and (task_ids.get(dag.dag_id) or not listed(default_zone)):
            continue
        report.append(
            DagCoverageOut(
                dag_id=dag.dag_id,
                relative_fileloc=dag.relative_fileloc,
                tags=dag.tags,
                default_zone=default_zone,
                default_zone_source=default_source,
                zone_tag_problem=problem,
                membership=_membership(engine, dag, default_zone),
                tasks=tasks,
            )
        )
    listed_tasks = [task for dag_out in report for task in dag_out.tasks]
    per_zone = Counter(task.zone for task in listed_tasks if task.zone is not None)
    return CoverageOut(
        policy_version=engine.version if engine is not None else None,
        policy_error=policy_error,
        summary=CoverageSummary(
            dags=len(report),
            tasks=len(listed_tasks),
            tasks_per_zone=dict(sorted(per_zone.items())),
            unzoned_tasks=sum(task.zone is None for task in listed_tasks),
            never_decided_tasks=sum(task.last_decision is None for task in listed_tasks),
        ),
        dags=report,
    )
