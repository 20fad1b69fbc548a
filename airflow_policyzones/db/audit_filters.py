"""The filters of the audit lists, and the SQL they become.

One pydantic model per list, shared by the read API (as its query-parameter model), the export
and the page (from the page's form): :class:`ViolationFilters`, :class:`DecisionFilters`,
:class:`CoverageFilters`, :class:`BlindFilters`, :class:`UncheckedQuery` and :class:`AssetQuery`.
A value the models accept but the data cannot answer (a zone or category the active policy does
not define, ``since`` after ``until``) raises :class:`~airflow_policyzones.db.query_errors.InvalidQuery`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal
from urllib.parse import urlencode

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from airflow_policyzones.config import get_engine
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesDecisionInput, PolicyZonesViolation
from airflow_policyzones.db.query_errors import InvalidQuery
from airflow_policyzones.policy import PolicyError
from airflow_policyzones.policy.vocabulary import Mode, Namespace, Outcome, Rule, ViolationOutcome

DEFAULT_LIMIT = 50
"""Rows per page of the violation and decision lists."""
MAX_LIMIT = 500
MAX_CURSOR_LEN = 200
"""Characters of a page cursor (ours are far shorter)."""
DEFAULT_UNCHECKED_LIMIT = 500
MAX_UNCHECKED_LIMIT = 10_000
DEFAULT_UNCHECKED_SINCE = "7d"
"""The window of the unchecked-tries and blind-tasks reports when none is given."""
DEFAULT_BLIND_LIMIT = 500
MAX_BLIND_LIMIT = 10_000
MAX_FILTER_LEN = 250
"""Characters of a DAG id, task id, zone or category filter (Airflow's id length)."""
MAX_NAME_LEN = 3000
"""Characters of an asset URI or table name (the wire schema's limit)."""

FilterText = Annotated[str | None, Field(min_length=1, max_length=MAX_FILTER_LEN)]
"""An exact-match text filter; absent: no filter."""
Window = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=64,
        description="ISO date or date-time (UTC if no offset), or a duration before now such as "
        f"7d, 12h or 30m; default {DEFAULT_UNCHECKED_SINCE}",
    ),
]
"""The start of a reconciliation window, parsed by :func:`airflow_policyzones.db.audit.parse_since`."""


def _listed(values: type[Enum]) -> WithJsonSchema:
    """Document an enum parameter by its values, inline (as the API always has), not as a schema
    of its own."""
    return WithJsonSchema({"enum": [member.value for member in values], "type": "string"})


_Since = Annotated[datetime | None, Field(description="Only rows decided at or after (ISO 8601)")]
_Until = Annotated[datetime | None, Field(description="Only rows decided before (ISO 8601)")]


class QueryModel(BaseModel):
    """Base of the filter models: immutable, unknown parameters ignored, enums kept as their
    values (``rule`` is the string ``"unknown_zone"``, as it is stored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=True)


class ViolationFilters(QueryModel):
    """Which violations: every filter is an exact match, and all of them apply."""

    dag_id: FilterText = None
    task_id: FilterText = None
    zone: FilterText = None
    rule: Annotated[Rule, _listed(Rule)] | None = None
    mode: Mode | None = None
    outcome: ViolationOutcome | None = None
    category: FilterText = None
    since: _Since = None
    until: _Until = None

    def query_string(self, **extra: str) -> str:
        """The filters (and ``extra``) as a URL query string, datetimes in ISO 8601."""
        values = {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in self.model_dump(exclude_none=True).items()
        }
        return urlencode(values | extra)


class DecisionFilters(QueryModel):
    """Which decisions: every filter is an exact match, and all of them apply."""

    dag_id: FilterText = None
    task_id: FilterText = None
    zone: FilterText = None
    outcome: Annotated[Outcome, _listed(Outcome)] | None = None
    category: FilterText = None
    since: _Since = None
    until: _Until = None


class Paging(QueryModel):
    """A page of a keyset-paginated list: its size, and where the previous page ended."""

    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Page size")] = DEFAULT_LIMIT
    cursor: Annotated[
        str | None, Field(max_length=MAX_CURSOR_LEN, description="next_cursor of the previous page")
    ] = None


class ViolationListQuery(Paging, ViolationFilters):
    """The parameters of ``GET /violations``: the filters, then the page."""


class DecisionListQuery(Paging, DecisionFilters):
    """The parameters of ``GET /decisions``: the filters, then the page."""


class CoverageFilters(QueryModel):
    """Which tasks the coverage report lists (``zone`` and ``unzoned_only`` exclude each other)."""

    zone: FilterText = None
    dag_id: FilterText = None
    unzoned_only: bool = Field(default=False, description="Only tasks that run in no zone")


class UncheckedQuery(QueryModel):
    """The window of the unchecked-tries report and its size."""

    since: Window = None
    limit: Annotated[int, Field(ge=1, le=MAX_UNCHECKED_LIMIT, description="At most this many tries")] = (
        DEFAULT_UNCHECKED_LIMIT
    )


class BlindFilters(QueryModel):
    """The window of the blind-tasks report, its filters and its size."""

    since: Window = None
    until: _Until = None
    dag_id: FilterText = None
    zone: FilterText = None
    unzoned_only: bool = Field(default=False, description="Only tries decided in no zone")
    limit: Annotated[int, Field(ge=1, le=MAX_BLIND_LIMIT, description="At most this many tasks")] = (
        DEFAULT_BLIND_LIMIT
    )


class AssetQuery(QueryModel):
    """One asset (or table), and the moment its labels are asked for."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LEN, description="Asset URI or table name")]
    namespace: Namespace = "asset"
    at: Annotated[datetime | None, Field(description="Labels as of this moment (ISO 8601); default now")] = (
        None
    )


def utc(value: datetime | None) -> datetime | None:
    """``value`` with naive datetimes taken as UTC, like Airflow's own API; ``None`` stays."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def check_policy_name(kind: Literal["zone", "category"], value: str | None) -> None:
    """Raise :class:`InvalidQuery` (with the valid names) for a zone or category the active
    policy does not define: a typo would list nothing.

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
        raise InvalidQuery(f"unknown {kind} {value!r}", allowed=names)


def check_zone_filter(*, zone: str | None, unzoned_only: bool) -> None:
    """Raise :class:`InvalidQuery` for an unknown zone, or a zone asked together with unzoned only."""
    check_policy_name("zone", zone)
    if zone is not None and unzoned_only:
        raise InvalidQuery("zone and unzoned_only exclude each other")


def _common_clauses(
    model: type[PolicyZonesViolation] | type[PolicyZonesDecision],
    *,
    readable: set[str],
    filters: ViolationFilters | DecisionFilters,
) -> list[sa.ColumnElement[bool]]:
    since, until = utc(filters.since), utc(filters.until)
    if since is not None and until is not None and since > until:
        raise InvalidQuery("since is after until")
    check_policy_name("zone", filters.zone)
    clauses: list[sa.ColumnElement[bool]] = [model.dag_id.in_(sorted(readable))]
    if filters.dag_id is not None:
        clauses.append(model.dag_id == filters.dag_id)
    if filters.task_id is not None:
        clauses.append(model.task_id == filters.task_id)
    if filters.zone is not None:
        clauses.append(model.zone == filters.zone)
    if filters.outcome is not None:
        clauses.append(model.outcome == filters.outcome)
    if since is not None:
        clauses.append(model.decided_at >= since)
    if until is not None:
        clauses.append(model.decided_at < until)
    return clauses


def violation_select(*, readable: set[str], filters: ViolationFilters) -> sa.Select[PolicyZonesViolation]:
    """The violations of the DAGs in ``readable`` that match ``filters``, newest first (by
    ``decided_at``, then id). Raises :class:`InvalidQuery` (see the module)."""
    model = PolicyZonesViolation
    clauses = _common_clauses(model, readable=readable, filters=filters)
    if filters.rule is not None:
        clauses.append(model.rule == filters.rule)
    if filters.mode is not None:
        clauses.append(model.mode == filters.mode)
    if filters.category is not None:
        check_policy_name("category", filters.category)
        inputs = PolicyZonesDecisionInput
        clauses.append(
            sa.exists().where(
                inputs.decision_id == model.decision_id,
                inputs.name == model.input,
                inputs.category == filters.category,
            )
        )
    return sa.select(model).where(*clauses).order_by(model.decided_at.desc(), model.id.desc())


def decision_select(*, readable: set[str], filters: DecisionFilters) -> sa.Select[PolicyZonesDecision]:
    """The decisions of the DAGs in ``readable`` that match ``filters``, newest first (by
    ``decided_at``, then id). Raises :class:`InvalidQuery` (see the module)."""
    model = PolicyZonesDecision
    clauses = _common_clauses(model, readable=readable, filters=filters)
    if filters.category is not None:
        check_policy_name("category", filters.category)
        inputs = PolicyZonesDecisionInput
        clauses.append(sa.exists().where(inputs.decision_id == model.id, inputs.category == filters.category))
    return sa.select(model).where(*clauses).order_by(model.decided_at.desc(), model.id.desc())
