"""Read-only audit API: violations, decisions, the active policy and CSV/JSON export.

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
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from airflow_policyzones.api.read_schema import (
    CategoryOut,
    DecisionDetailOut,
    DecisionInputOut,
    DecisionOut,
    DecisionPage,
    FlowOut,
    PolicyOut,
    ReclassifierOut,
    TaskInstanceRef,
    ViolationOut,
    ViolationPage,
    ZoneOut,
)
from airflow_policyzones.config import get_engine
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesViolation,
)
from airflow_policyzones.policy import PolicyError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 100_000
_EXPORT_BATCH = 1_000
_MAX_FILTER_LEN = 250
_UNPROCESSABLE = 422
"""Literal: Starlette renamed the constant (``..._CONTENT``) and deprecated the old name."""

ViolationOutcome = Literal["deny", "dry_run", "exempted"]
DecisionOutcome = Literal["allow", "deny", "dry_run", "exempted"]
ModeValue = Literal["enforce", "dry_run"]
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


def _ti_ref(row: PolicyZonesViolation | PolicyZonesDecision) -> TaskInstanceRef:
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
    grouped: dict[int, dict[int, tuple[PolicyZonesDecisionInput, list[str]]]] = {}
    if decision_ids:
        rows = session.scalars(
            sa.select(PolicyZonesDecisionInput)
            .where(PolicyZonesDecisionInput.decision_id.in_(decision_ids))
            .order_by(PolicyZonesDecisionInput.decision_id, PolicyZonesDecisionInput.id)
        )
        for row in rows:
            _first, categories = grouped.setdefault(row.decision_id, {}).setdefault(row.position, (row, []))
            if row.category is not None:
                categories.append(row.category)
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
            )
            for row, categories in by_position.values()
        ]
        for decision_id, by_position in grouped.items()
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
    policy = engine.loaded.policy
    return PolicyOut(
        version=engine.version,
        name=policy.name,
        require_zone=policy.settings.require_zone,
        default_zone=policy.settings.default_zone,
        zones=[
            ZoneOut(
                name=name,
                purpose=zone.purpose,
                description=zone.description,
                allowed_categories=list(zone.allowed_categories),
                unlabeled=zone.unlabeled,
                requires_consent=zone.requires_consent,
                aggregated_only=zone.aggregated_only,
                mode=zone.mode,
                inflows=list(zone.inflows),
            )
            for name, zone in policy.zones.items()
        ],
        categories=[
            CategoryOut(name=name, description=category.description)
            for name, category in policy.categories.items()
        ],
        flows=[
            FlowOut(source=flow.source, target=flow.target, via=list(flow.via), description=flow.description)
            for flow in policy.flows
        ],
        reclassifiers=[
            ReclassifierOut(
                name=name,
                zone=item.zone,
                dag_id=item.dag_id,
                task_id=item.task_id,
                categories=None if item.outputs.categories is None else list(item.outputs.categories),
                consented=list(item.outputs.consented),
                aggregated=item.outputs.aggregated,
                description=item.description,
            )
            for name, item in policy.reclassifiers.items()
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
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: DAG ids and labels are user input (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def _export_record(row: PolicyZonesViolation) -> dict[str, Any]:
    record: dict[str, Any] = {column: getattr(row, column) for column in EXPORT_COLUMNS}
    record["decided_at"] = row.decided_at.isoformat()
    record["rules"] = list(row.rules)
    return record


def _export_rows(query: sa.Select[PolicyZonesViolation], max_rows: int) -> Iterator[dict[str, Any]]:
    """Rows in keyset batches, each in its own short session: a long export holds no transaction."""
    from airflow.utils.session import create_session

    position: tuple[datetime, int] | None = None
    remaining = max_rows
    while remaining > 0:
        batch_query = query if position is None else query.where(_after(PolicyZonesViolation, position))
        with create_session() as session:
            rows = list(session.scalars(batch_query.limit(min(_EXPORT_BATCH, remaining))))
            records = [_export_record(row) for row in rows]
        if not rows:
            return
        yield from records
        remaining -= len(rows)
        position = (rows[-1].decided_at, rows[-1].id)


def _csv_stream(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        values = dict(row, rules=" ".join(row["rules"]))
        writer.writerow([_csv_cell(values[column]) for column in EXPORT_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _json_stream(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    yield "["
    for index, row in enumerate(rows):
        yield ("," if index else "") + json.dumps(row)
    yield "]"


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
    max_rows: Annotated[
        int, Query(ge=1, le=MAX_EXPORT_ROWS, description="At most this many rows, newest first")
    ] = DEFAULT_EXPORT_ROWS,
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
    rows = _export_rows(query, max_rows)
    if format == "csv":
        return StreamingResponse(
            _csv_stream(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="policyzones-violations.csv"'},
        )
    return StreamingResponse(
        _json_stream(rows),
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="policyzones-violations.json"'},
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
    return router
