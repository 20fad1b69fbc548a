"""Read-only audit API: violations, decisions, the active policy, zone coverage, tries that ran
unchecked, tasks that ran blind (no known reads), and CSV/JSON export.

Authentication and authorization go through Airflow's auth manager (the dependencies of
``airflow.api_fastapi.core_api.security``), never through the worker token of ``POST /decisions``:
anonymous callers get 401, users who may not read DAGs get 403, and every list is restricted
to the DAGs the user may read. Pagination is keyset on ``(decided_at, id)``, newest first, so a
page costs the same at any depth and rows recorded meanwhile neither repeat nor go missing.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import InstrumentedAttribute, Session

from airflow_policyzones.api.read_schema import (
    AssetLabelsOut,
    BlindOut,
    BlindTaskOut,
    CoverageOut,
    CoverageSummary,
    DagCoverageOut,
    DecisionDetailOut,
    DecisionInputOut,
    DecisionOut,
    DecisionPage,
    LabelEventOut,
    LabelsOut,
    LastDecisionOut,
    PolicyOut,
    TaskCoverageOut,
    TaskInstanceRef,
    UncheckedOut,
    UncheckedTryOut,
    ViolationOut,
    ViolationPage,
    policy_out,
)
from airflow_policyzones.audit import BLIND_EXPLANATION, blind_tasks, parse_since, unchecked_tries
from airflow_policyzones.config import get_engine
from airflow_policyzones.db.chain import chain_head
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
    inputs_by_position,
)
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.engine import Rule
from airflow_policyzones.service import dag_task_context
from airflow_policyzones.zones import ZoneAnnotationError, dag_zone

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 100_000
_EXPORT_BATCH = 1_000
DEFAULT_UNCHECKED_LIMIT = 500
MAX_UNCHECKED_LIMIT = 10_000
DEFAULT_UNCHECKED_SINCE = "7d"
DEFAULT_BLIND_LIMIT = 500
MAX_BLIND_LIMIT = 10_000
_MAX_FILTER_LEN = 250
_UNPROCESSABLE = 422
"""Literal: Starlette renamed the constant (``..._CONTENT``) and deprecated the old name."""

ViolationOutcome = Literal["deny", "dry_run", "exempted"]
DecisionOutcome = Literal["allow", "deny", "dry_run", "exempted"]
ModeValue = Literal["enforce", "dry_run"]
Membership = Literal["member", "not_member", "unknown_zone"]
RuleValue = Literal[
    "unknown_zone",
    "unzoned_task",
    "zone_membership",
    "category_not_allowed",
    "unlabeled_input",
    "consent_missing",
    "not_aggregated",
    "unsanctioned_flow",
    "uncheckable_input",
    "undeclared_input",
    "connection_not_allowed",
    "variable_not_allowed",
    "undecided_run",
    "claims_differ_from_parsed_dag",
]

_AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "The user may not read DAGs"},
    422: {"description": "Invalid filter, limit or cursor"},
}


def _readable_dag_ids(user: GetUserDep) -> set[str]:
    """The DAG ids whose audit rows the user may read (Airflow's list endpoints filter the same way)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


ReadableDagIds = Annotated[set[str], Depends(_readable_dag_ids)]
_read_access = [Depends(requires_access_dag(method="GET"))]


# --- filters --------------------------------------------------------------------------------


def _unknown(kind: str, value: str, allowed: Sequence[str]) -> HTTPException:
    return HTTPException(
        _UNPROCESSABLE,
        {"msg": f"unknown {kind} {value!r}", "allowed": sorted(allowed)},
    )


def _check_policy_name(kind: Literal["zone", "category"], value: str | None) -> None:
    """Reject a zone or category the active policy does not define (a typo would list nothing).

    Without a loadable policy there is nothing to check against, so the value is accepted:
    the audit trail must stay readable while the policy is broken.
    """
    if value is None:
        return
    try:
        policy = get_engine().loaded.policy
    except PolicyError:
        return
    names = policy.zones if kind == "zone" else policy.categories
    if value not in names:
        raise _unknown(kind, value, list(names))


def _utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are taken as UTC, like Airflow's own API."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def encode_cursor(*, decided_at: datetime, row_id: int) -> str:
    """Opaque keyset cursor: the (decided_at, id) of the last row of a page."""
    raw = json.dumps([decided_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The cursor's position, or a 422 that says the cursor is not one of ours."""
    try:
        if len(cursor) > 200:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        if not isinstance(at, str) or not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("wrong types")
        decided_at = _utc(datetime.fromisoformat(at))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(
            _UNPROCESSABLE,
            {"msg": "malformed cursor: pass back the next_cursor of a previous page unchanged"},
        ) from None
    assert decided_at is not None  # fromisoformat never returns None
    return decided_at, row_id


_Text = Annotated[str | None, Query(min_length=1, max_length=_MAX_FILTER_LEN)]
_Since = Annotated[datetime | None, Query(description="Only rows decided at or after (ISO 8601)")]
_Until = Annotated[datetime | None, Query(description="Only rows decided before (ISO 8601)")]
_Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
_Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]


def _common_filters(
    model: type[PolicyZonesViolation] | type[PolicyZonesDecision],
    *,
    readable: set[str],
    dag_id: str | None,
    task_id: str | None,
    zone: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[sa.ColumnElement[bool]]:
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since > until:
        raise HTTPException(_UNPROCESSABLE, {"msg": "since is after until"})
    _check_policy_name("zone", zone)
    clauses: list[sa.ColumnElement[bool]] = [model.dag_id.in_(sorted(readable))]
    if dag_id is not None:
        clauses.append(model.dag_id == dag_id)
    if task_id is not None:
        clauses.append(model.task_id == task_id)
    if zone is not None:
        clauses.append(model.zone == zone)
    if since is not None:
        clauses.append(model.decided_at >= since)
    if until is not None:
        clauses.append(model.decided_at < until)
    return clauses


def _after(
    model: type[PolicyZonesViolation] | type[PolicyZonesDecision], position: tuple[datetime, int]
) -> sa.ColumnElement[bool]:
    """Rows after the cursor, as a row-value comparison: PostgreSQL uses it as an index condition
    (the equivalent ``a < x OR (a = x AND b < y)`` is only a filter, so deep pages got slower)."""
    at, row_id = position
    return sa.tuple_(model.decided_at, model.id) < sa.tuple_(sa.literal(at, model.decided_at.type), row_id)


def _violation_query(
    *,
    readable: set[str],
    dag_id: str | None,
    task_id: str | None,
    zone: str | None,
    rule: str | None,
    mode: str | None,
    outcome: str | None,
    category: str | None,
    since: datetime | None,
    until: datetime | None,
) -> sa.Select[PolicyZonesViolation]:
    model = PolicyZonesViolation
    clauses = _common_filters(
        model, readable=readable, dag_id=dag_id, task_id=task_id, zone=zone, since=since, until=until
    )
    if rule is not None:
        clauses.append(model.rule == rule)
    if mode is not None:
        clauses.append(model.mode == mode)
    if outcome is not None:
        clauses.append(model.outcome == outcome)
    if category is not None:
        _check_policy_name("category", category)
        inputs = PolicyZonesDecisionInput
        clauses.append(
            sa.exists().where(
                inputs.decision_id == model.decision_id,
                inputs.name == model.input,
                inputs.category == category,
            )
        )
    return sa.select(model).where(*clauses).order_by(model.decided_at.desc(), model.id.desc())


def _decision_query(
    *,
    readable: set[str],
    dag_id: str | None,
    task_id: str | None,
    zone: str | None,
    outcome: str | None,
    category: str | None,
    since: datetime | None,
    until: datetime | None,
) -> sa.Select[PolicyZonesDecision]:
    model = PolicyZonesDecision
    clauses = _common_filters(
        model, readable=readable, dag_id=dag_id, task_id=task_id, zone=zone, since=since, until=until
    )
    if outcome is not None:
        clauses.append(model.outcome == outcome)
    if category is not None:
        _check_policy_name("category", category)
        inputs = PolicyZonesDecisionInput
        clauses.append(sa.exists().where(inputs.decision_id == model.id, inputs.category == category))
    return sa.select(model).where(*clauses).order_by(model.decided_at.desc(), model.id.desc())


# --- rows to models -------------------------------------------------------------------------


class _Try(Protocol):
    """A row about one task-instance try: a decision, a violation or an unchecked try."""

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


def _ti_ref(row: _Try) -> TaskInstanceRef:
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


def _violation_out(row: PolicyZonesViolation) -> ViolationOut:
    return ViolationOut(
        id=row.id,
        decision_id=row.decision_id,
        task_instance=_ti_ref(row),
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


def _inputs_by_decision(session: Session, decision_ids: list[int]) -> dict[int, list[DecisionInputOut]]:
    """The inputs of many decisions in one query, one entry per input (its categories merged)."""
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


def _decision_fields(row: PolicyZonesDecision, inputs: list[DecisionInputOut]) -> dict[str, Any]:
    return {
        "id": row.id,
        "task_instance": _ti_ref(row),
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


RowT = TypeVar("RowT", PolicyZonesViolation, PolicyZonesDecision)


def _fetch_page(
    session: Session, query: sa.Select[RowT], model: type[RowT], *, cursor: str | None, limit: int
) -> tuple[list[RowT], str | None]:
    """One page of ``query`` after ``cursor``, and the cursor of the next page (None: last page)."""
    if cursor is not None:
        query = query.where(_after(model, decode_cursor(cursor)))
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(decided_at=last.decided_at, row_id=last.id)


# --- endpoints ------------------------------------------------------------------------------


def list_violations(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    dag_id: _Text = None,
    task_id: _Text = None,
    zone: _Text = None,
    rule: RuleValue | None = None,
    mode: ModeValue | None = None,
    outcome: ViolationOutcome | None = None,
    category: _Text = None,
    since: _Since = None,
    until: _Until = None,
    limit: _Limit = DEFAULT_LIMIT,
    cursor: _Cursor = None,
) -> ViolationPage:
    """Violations newest first, restricted to the DAGs the user may read."""
    query = _violation_query(
        readable=readable,
        dag_id=dag_id,
        task_id=task_id,
        zone=zone,
        rule=rule,
        mode=mode,
        outcome=outcome,
        category=category,
        since=since,
        until=until,
    )
    rows, next_cursor = _fetch_page(session, query, PolicyZonesViolation, cursor=cursor, limit=limit)
    return ViolationPage(items=[_violation_out(row) for row in rows], next_cursor=next_cursor)


def list_decisions(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    dag_id: _Text = None,
    task_id: _Text = None,
    zone: _Text = None,
    outcome: DecisionOutcome | None = None,
    category: _Text = None,
    since: _Since = None,
    until: _Until = None,
    limit: _Limit = DEFAULT_LIMIT,
    cursor: _Cursor = None,
) -> DecisionPage:
    """Decisions newest first with their inputs and labels, restricted to readable DAGs."""
    query = _decision_query(
        readable=readable,
        dag_id=dag_id,
        task_id=task_id,
        zone=zone,
        outcome=outcome,
        category=category,
        since=since,
        until=until,
    )
    page, next_cursor = _fetch_page(session, query, PolicyZonesDecision, cursor=cursor, limit=limit)
    inputs = _inputs_by_decision(session, [row.id for row in page])
    return DecisionPage(
        items=[DecisionOut(**_decision_fields(row, inputs.get(row.id, []))) for row in page],
        next_cursor=next_cursor,
    )


def get_decision(*, decision_id: int, session: SessionDep, readable: ReadableDagIds) -> DecisionDetailOut:
    """One decision with its inputs and findings; 404 also hides decisions of unreadable DAGs."""
    row = session.get(PolicyZonesDecision, decision_id)
    if row is None or row.dag_id not in readable:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision with id {decision_id}")
    inputs = _inputs_by_decision(session, [row.id]).get(row.id, [])
    findings = [_violation_out(violation) for violation in row.violations]
    return DecisionDetailOut(**_decision_fields(row, inputs), findings=findings)


def get_policy() -> PolicyOut:
    """The policy the decision service enforces now (503 with the reason when it does not load)."""
    try:
        engine = get_engine()
    except PolicyError as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"the policy does not load: {error}"
        ) from None
    return policy_out(engine)


# --- coverage -------------------------------------------------------------------------------

COVERAGE_DESCRIPTION = """\
For every active DAG the user may read: its file, tags and default zone (its `policyzone:<zone>`
tag, else the policy's `settings.default_zone`), whether the policy admits the DAG in that zone,
and its tasks (from the DAG's latest serialized version) with the zone each runs in.

Airflow does not serialize zones set on tasks (`ZoneGroup`, `set_zone`, `zoned`), so a task's
zone is the zone of its **most recent decision**; only a task never decided falls back to its
DAG's default zone. `null` zone: the task runs unzoned.

Filters: `zone` (tasks in that zone), `dag_id` (exact match), `unzoned_only` (tasks without a
zone). A filtered report lists the DAGs with a matching task, and the summary counts what is
listed. When the policy does not load the report is still served, with `membership` null and
`policy_error` set."""


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


def get_coverage(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    zone: _Text = None,
    dag_id: _Text = None,
    unzoned_only: Annotated[bool, Query(description="Only tasks that run in no zone")] = False,
) -> CoverageOut:
    """Which DAGs and tasks run in which zone, and which are unzoned (see COVERAGE_DESCRIPTION).

    Three queries whatever the number of DAGs: active DAGs with tags, their latest serialized
    versions, and the latest decision per task. A task's zone is its latest decision's, since
    Airflow does not serialize per-task zones (ZoneGroup, set_zone); else its DAG's default.
    """
    _check_policy_name("zone", zone)
    if zone is not None and unzoned_only:
        raise HTTPException(_UNPROCESSABLE, {"msg": "zone and unzoned_only exclude each other"})
    engine, policy_error = _engine_or_error()
    wanted = readable if dag_id is None else readable & {dag_id}
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


# --- unchecked tries ------------------------------------------------------------------------


_Window = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="ISO date or date-time (UTC if no offset), or a duration before now such as "
        f"7d, 12h or 30m; default {DEFAULT_UNCHECKED_SINCE}",
    ),
]


def _window_start(since: str | None) -> datetime:
    """The start of a report's window (``since`` or the default), or a 422 naming the forms."""
    start = parse_since(since if since is not None else DEFAULT_UNCHECKED_SINCE)
    if start is None:
        raise HTTPException(
            _UNPROCESSABLE,
            {"msg": f"since {since!r} is neither an ISO date/date-time nor a duration such as 7d or 12h"},
        )
    return start


def list_unchecked(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    since: _Window = None,
    limit: Annotated[int, Query(ge=1, le=MAX_UNCHECKED_LIMIT, description="At most this many tries")] = (
        DEFAULT_UNCHECKED_LIMIT
    ),
) -> UncheckedOut:
    """Task-instance tries of readable DAGs that started without a recorded decision, oldest first.

    Such a try skipped the check (enforcement off, or DAG code got around it): evidence to look at.
    """
    start = _window_start(since)
    tries = unchecked_tries(session=session, since=start, limit=limit + 1, dag_ids=readable)
    return UncheckedOut(
        since=start,
        limit=limit,
        truncated=len(tries) > limit,
        items=[
            UncheckedTryOut(
                task_instance=_ti_ref(item),
                state=item.state,
                start_date=item.start_date,
                operator=item.operator,
            )
            for item in tries[:limit]
        ],
    )


# --- blind tasks ----------------------------------------------------------------------------

BLIND_DESCRIPTION = f"""\
Tasks of readable DAGs whose tries decided since `since` finished successfully (Airflow state
`success`: the body ran to completion) **without a single known read**: no declared inlet, no
table or file in SQL the provider analyzes, nothing a hook or object-storage path reported while
the body ran, and no finding about a read (`undeclared_input`, `uncheckable_input`). In short,
{BLIND_EXPLANATION}. Such a task passed its zone check only because there was nothing to check.

Per task: the number of blind tries, for contrast the number of successful tries of the same task
in the window whose decision had reads, and the last blind try (its zone, decision and task
instance). Filters: `since` (as for `/unchecked`, default {DEFAULT_UNCHECKED_SINCE}), `until` (ISO
8601, exclusive), `dag_id` (exact), `zone` (tries decided in that zone) or `unzoned_only`. Sorted
by DAG and task id.

A separate endpoint rather than a part of `/coverage`: coverage describes DAGs and tasks as they
stand now (their zone, their latest decision) with no time window, while this, like
`/unchecked`, is a reconciliation of tries over a window and takes the same `since`."""


def list_blind(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    since: _Window = None,
    until: _Until = None,
    dag_id: _Text = None,
    zone: _Text = None,
    unzoned_only: Annotated[bool, Query(description="Only tries decided in no zone")] = False,
    limit: Annotated[int, Query(ge=1, le=MAX_BLIND_LIMIT, description="At most this many tasks")] = (
        DEFAULT_BLIND_LIMIT
    ),
) -> BlindOut:
    """Tasks whose successful tries had no known reads (see BLIND_DESCRIPTION).

    Its own endpoint, not a part of ``GET /coverage``: coverage is the state of DAGs and tasks now,
    without a window; this reconciles tries over a window (``since``), like ``GET /unchecked``.
    """
    start, end = _window_start(since), _utc(until)
    if end is not None and start > end:
        raise HTTPException(_UNPROCESSABLE, {"msg": "since is after until"})
    _check_policy_name("zone", zone)
    if zone is not None and unzoned_only:
        raise HTTPException(_UNPROCESSABLE, {"msg": "zone and unzoned_only exclude each other"})
    tasks = blind_tasks(
        session=session,
        since=start,
        until=end,
        limit=limit + 1,
        dag_ids=readable,
        dag_id=dag_id,
        zone=zone,
        unzoned_only=unzoned_only,
    )
    return BlindOut(
        since=start,
        limit=limit,
        truncated=len(tasks) > limit,
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
                last_try=_ti_ref(item),
            )
            for item in tasks[:limit]
        ],
    )


EXPORT_COLUMNS = (
    "id",
    "decided_at",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "zone",
    "mode",
    "outcome",
    "rule",
    "rules",
    "input",
    "reason",
    "remediation",
    "exemption",
    "policy_version",
    "decision_id",
)
"""Columns of the violations export."""
DECISION_EXPORT_COLUMNS = (
    "id",
    "decided_at",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "zone",
    "zone_source",
    "mode",
    "outcome",
    "allowed",
    "input_count",
    "violation_count",
    "policy_version",
    "source",
)
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: DAG ids and labels are user input (CSV injection).

    Numbers are never formulas: a map index of -1 stays a number.
    """
    if isinstance(value, (int, float)):
        return str(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _violation_record(row: PolicyZonesViolation) -> dict[str, Any]:
    record: dict[str, Any] = {column: getattr(row, column) for column in EXPORT_COLUMNS}
    record["decided_at"] = row.decided_at.isoformat()
    record["rules"] = list(row.rules)
    return record


def _decision_record(row: PolicyZonesDecision) -> dict[str, Any]:
    record: dict[str, Any] = {column: getattr(row, column) for column in DECISION_EXPORT_COLUMNS}
    record["decided_at"] = row.decided_at.isoformat()
    return record


CHAIN_HEAD_HEADER = "X-Policyzones-Chain-Head"
"""sha256 over the digests of the exported rows' decisions, in id order (as ``verify-records``)."""
CHAIN_DECISIONS_HEADER = "X-Policyzones-Chain-Decisions"
"""How many chained decisions the head covers."""
CHAIN_LAST_ID_HEADER = "X-Policyzones-Chain-Last-Id"
"""The highest decision id among the exported rows' decisions (absent when nothing was exported)."""
UNCHAINED_HEADER = "X-Policyzones-Unchained-Decisions"
"""Exported rows' decisions recorded before the chain started (no digest: not in the head)."""
POLICY_VERSIONS_HEADER = "X-Policyzones-Policy-Versions"
"""The policy versions that decided the exported rows, sorted, comma-separated."""


@dataclass(frozen=True, slots=True)
class ExportSeal:
    """What an export covers, computed before its first byte: the ids of its rows in export order,
    the policy versions that decided them and the chain head over their decisions (a decision
    export: the rows themselves; a violation export: the decisions the violations belong to)."""

    ids: list[int]
    policy_versions: list[str]
    """Sorted full versions (``sha256:<64 hex>``)."""
    head: str
    """:func:`airflow_policyzones.db.chain.chain_head` over the chained decisions' digests, id order."""
    decisions: int
    """Chained decisions the head covers."""
    unchained_decisions: int
    last_id: int | None
    """The highest id of the decisions covered, chained or not (``None``: no row exported)."""

    def chain(self) -> dict[str, Any]:
        """``{"head": str, "decisions": int, "unchained_decisions": int, "last_id": int | None}``."""
        return {
            "head": self.head,
            "decisions": self.decisions,
            "unchained_decisions": self.unchained_decisions,
            "last_id": self.last_id,
        }

    def headers(self) -> dict[str, str]:
        headers = {
            CHAIN_HEAD_HEADER: self.head,
            CHAIN_DECISIONS_HEADER: str(self.decisions),
            UNCHAINED_HEADER: str(self.unchained_decisions),
            POLICY_VERSIONS_HEADER: ",".join(self.policy_versions),
        }
        if self.last_id is not None:
            headers[CHAIN_LAST_ID_HEADER] = str(self.last_id)
        return headers


def _seal_export(
    query: sa.Select[RowT], model: type[RowT], *, decision_of: InstrumentedAttribute[int], max_rows: int
) -> ExportSeal:
    """The rows an export will stream (at most ``max_rows``, in the query's order), their policy
    versions and the chain head of their decisions (``decision_of``: the column naming a row's
    decision), read in one short session."""
    from airflow.utils.session import create_session

    decision = PolicyZonesDecision
    listed = query.with_only_columns(model.id, model.policy_version, decision_of.label("of")).limit(max_rows)
    with create_session() as session:
        rows = session.execute(listed).all()
        covered = sorted({row.of for row in rows})
        digests: dict[int, str | None] = {}
        for start in range(0, len(covered), _EXPORT_BATCH):
            chunk = covered[start : start + _EXPORT_BATCH]
            digests.update(
                session.execute(sa.select(decision.id, decision.digest).where(decision.id.in_(chunk)))
                .tuples()
                .all()
            )
    chained = [digest for key in covered if (digest := digests.get(key)) is not None]
    return ExportSeal(
        ids=[row.id for row in rows],
        policy_versions=sorted({row.policy_version for row in rows}),
        head=chain_head(chained),
        decisions=len(chained),
        unchained_decisions=len(covered) - len(chained),
        last_id=covered[-1] if covered else None,
    )


def _export_rows(
    query: sa.Select[RowT],
    model: type[RowT],
    record: Callable[[RowT], dict[str, Any]],
    ids: Sequence[int],
) -> Iterator[dict[str, Any]]:
    """The sealed rows (``ids``, in export order) in batches, each in its own short session: a
    long export holds no transaction, and streams exactly the rows its seal names (a row deleted
    meanwhile is left out)."""
    from airflow.utils.session import create_session

    for start in range(0, len(ids), _EXPORT_BATCH):
        with create_session() as session:
            batch = query.where(model.id.in_(ids[start : start + _EXPORT_BATCH]))
            records = [record(row) for row in session.scalars(batch)]
        yield from records


def _csv_stream(rows: Iterator[dict[str, Any]], columns: Sequence[str]) -> Iterator[str]:
    """One CSV line per row; a list becomes one cell of space-separated values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        cells = (row[column] for column in columns)
        writer.writerow([_csv_cell(" ".join(cell) if isinstance(cell, list) else cell) for cell in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


_MaxRows = Annotated[int, Query(ge=1, le=MAX_EXPORT_ROWS, description="At most this many rows, newest first")]


def _json_stream(rows: Iterator[dict[str, Any]], seal: ExportSeal) -> Iterator[str]:
    """``{"policy_versions": [str], "chain": {...}, "rows": [row, ...]}`` (see :class:`ExportSeal`)."""
    yield json.dumps({"policy_versions": seal.policy_versions, "chain": seal.chain()})[:-1] + ', "rows": ['
    for index, row in enumerate(rows):
        yield ("," if index else "") + json.dumps(row)
    yield "]}"


def export_violations(
    *,
    readable: ReadableDagIds,
    format: Literal["csv", "json"] = "csv",
    dag_id: _Text = None,
    task_id: _Text = None,
    zone: _Text = None,
    rule: RuleValue | None = None,
    mode: ModeValue | None = None,
    outcome: ViolationOutcome | None = None,
    category: _Text = None,
    since: _Since = None,
    until: _Until = None,
    max_rows: _MaxRows = DEFAULT_EXPORT_ROWS,
) -> StreamingResponse:
    """Filtered violations for auditors, streamed newest first (filters as for the list)."""
    query = _violation_query(
        readable=readable,
        dag_id=dag_id,
        task_id=task_id,
        zone=zone,
        rule=rule,
        mode=mode,
        outcome=outcome,
        category=category,
        since=since,
        until=until,
    )
    seal = _seal_export(
        query, PolicyZonesViolation, decision_of=PolicyZonesViolation.decision_id, max_rows=max_rows
    )
    rows = _export_rows(query, PolicyZonesViolation, _violation_record, seal.ids)
    return _export_response(rows, seal=seal, columns=EXPORT_COLUMNS, format=format, name="violations")


def export_decisions(
    *,
    readable: ReadableDagIds,
    format: Literal["csv", "json"] = "csv",
    dag_id: _Text = None,
    task_id: _Text = None,
    zone: _Text = None,
    outcome: DecisionOutcome | None = None,
    category: _Text = None,
    since: _Since = None,
    until: _Until = None,
    max_rows: _MaxRows = DEFAULT_EXPORT_ROWS,
) -> StreamingResponse:
    """Filtered decisions for auditors, streamed newest first (filters as for the list)."""
    query = _decision_query(
        readable=readable,
        dag_id=dag_id,
        task_id=task_id,
        zone=zone,
        outcome=outcome,
        category=category,
        since=since,
        until=until,
    )
    seal = _seal_export(query, PolicyZonesDecision, decision_of=PolicyZonesDecision.id, max_rows=max_rows)
    rows = _export_rows(query, PolicyZonesDecision, _decision_record, seal.ids)
    return _export_response(rows, seal=seal, columns=DECISION_EXPORT_COLUMNS, format=format, name="decisions")


def _export_response(
    rows: Iterator[dict[str, Any]],
    *,
    seal: ExportSeal,
    columns: Sequence[str],
    format: Literal["csv", "json"],
    name: str,
) -> StreamingResponse:
    """CSV (plain rows) or JSON (rows in an object with the seal); both name the policy versions
    and the chain head in response headers (:data:`CHAIN_HEAD_HEADER` and the others)."""
    if format == "csv":
        return StreamingResponse(
            _csv_stream(rows, columns),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="policyzones-{name}.csv"',
                **seal.headers(),
            },
        )
    return StreamingResponse(
        _json_stream(rows, seal),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="policyzones-{name}.json"', **seal.headers()},
    )


MAX_HISTORY = 500


def get_asset_labels(
    *,
    session: SessionDep,
    readable: ReadableDagIds,
    name: Annotated[str, Query(min_length=1, max_length=3000, description="Asset URI or table name")],
    namespace: Literal["asset", "table"] = "asset",
    at: Annotated[
        datetime | None, Query(description="Labels as of this moment (ISO 8601); default now")
    ] = None,
) -> AssetLabelsOut:
    """The propagated labels of an asset at any moment, explained by the writes that made them.

    The history is append-only, so the labels at ``at`` are the union of every write recorded
    up to then (the same union later decisions used). The name is normalized like an inlet.
    """
    from airflow_policyzones.config import get_engine
    from airflow_policyzones.db.models import PolicyZonesAssetLabelEvent as Event
    from airflow_policyzones.policy.engine import InputRef
    from airflow_policyzones.policy.lineage import union_labels
    from airflow_policyzones.propagation import labels_of

    try:
        ref = InputRef.asset(name) if namespace == "asset" else InputRef.table(name)
    except ValueError as error:
        raise HTTPException(_UNPROCESSABLE, {"msg": f"invalid {namespace} name: {error}"}) from None
    moment = _utc(at)
    clauses = [Event.namespace == ref.namespace, Event.name == ref.name]
    if moment is not None:
        clauses.append(Event.recorded_at <= moment)
    events = list(
        session.scalars(sa.select(Event).where(*clauses).order_by(Event.recorded_at.desc(), Event.id.desc()))
    )
    try:
        zones = get_engine().reclassifier_zones
    except PolicyError:
        zones = {}
    labels = [labels_of(event) for event in events]
    joined = union_labels(*labels, reclassifier_zones=zones) if labels else None
    visible = [(event, item) for event, item in zip(events, labels, strict=True) if event.dag_id in readable]
    return AssetLabelsOut(
        namespace=ref.namespace,
        name=ref.name,
        at=moment,
        labels=None if joined is None else LabelsOut(**joined.to_dict()),
        write_count=len(events),
        history=[
            LabelEventOut(
                id=event.id,
                recorded_at=event.recorded_at,
                task_instance=_ti_ref(event),
                zone=event.zone,
                reclassifier=event.reclassifier,
                decision_id=event.decision_id,
                policy_version=event.policy_version,
                labels=LabelsOut(**item.to_dict()),
            )
            for event, item in visible[:MAX_HISTORY]
        ],
        truncated=len(visible) > MAX_HISTORY,
    )


def read_router(*, prefix: str) -> APIRouter:
    """The read-only routes, each behind Airflow's DAG read permission."""
    router = APIRouter(prefix=prefix, tags=["audit"], dependencies=_read_access, responses=_AUTH_RESPONSES)
    router.add_api_route(
        "/violations",
        list_violations,
        methods=["GET"],
        response_model=ViolationPage,
        summary="List violations, newest first (keyset pagination)",
    )
    router.add_api_route(
        "/decisions",
        list_decisions,
        methods=["GET"],
        response_model=DecisionPage,
        summary="List decisions with their inputs and labels, newest first (keyset pagination)",
    )
    router.add_api_route(
        "/decisions/{decision_id}",
        get_decision,
        methods=["GET"],
        response_model=DecisionDetailOut,
        summary="One decision with its inputs and findings",
        responses={404: {"description": "No such decision, or its DAG is not readable"}},
    )
    router.add_api_route(
        "/policy",
        get_policy,
        methods=["GET"],
        response_model=PolicyOut,
        response_model_by_alias=True,
        summary="The active policy: zones, categories, flows and reclassifiers",
        responses={503: {"description": "The policy is missing or invalid"}},
    )
    router.add_api_route(
        "/coverage",
        get_coverage,
        methods=["GET"],
        response_model=CoverageOut,
        summary="Which DAGs and tasks run in which zone, and which are unzoned",
        description=COVERAGE_DESCRIPTION,
    )
    router.add_api_route(
        "/unchecked",
        list_unchecked,
        methods=["GET"],
        response_model=UncheckedOut,
        summary="Task-instance tries that started without a recorded decision (evidence of a bypass)",
    )
    router.add_api_route(
        "/blind",
        list_blind,
        methods=["GET"],
        response_model=BlindOut,
        summary="Tasks whose successful tries had no known reads: the check had nothing to decide on",
        description=BLIND_DESCRIPTION,
    )
    router.add_api_route(
        "/assets/labels",
        get_asset_labels,
        methods=["GET"],
        response_model=AssetLabelsOut,
        summary="An asset's propagated labels at a moment, and the writes that made them",
    )
    router.add_api_route(
        "/export/violations",
        export_violations,
        methods=["GET"],
        summary="Export filtered violations as CSV or JSON (streamed, bounded by max_rows)",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The violations, newest first",
                "content": {"text/csv": {}, "application/json": {}},
            }
        },
    )
    router.add_api_route(
        "/export/decisions",
        export_decisions,
        methods=["GET"],
        summary="Export filtered decisions as CSV or JSON (streamed, bounded by max_rows)",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "The decisions, newest first",
                "content": {"text/csv": {}, "application/json": {}},
            }
        },
    )
    return router
