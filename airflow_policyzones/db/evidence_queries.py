"""The reads of a data-use evidence report (:mod:`airflow_policyzones.db.evidence`): the question's
bounds (:class:`Scope`), the one query for the recorded inputs of the asked data, and the counts of
decisions and policy versions in a period.

Plain SQLAlchemy over the provider's tables; the report's classification, grouping and wording
are in :mod:`airflow_policyzones.db.evidence`, its completeness in
:mod:`airflow_policyzones.db.evidence_completeness`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from airflow_policyzones.db.evidence_models import PolicyVersionInForce
from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesDecisionInput,
    PolicyZonesPolicyVersion,
    PolicyZonesViolation,
)
from airflow_policyzones.db.policy_history import short_version
from airflow_policyzones.policy.vocabulary import Outcome

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class Scope:
    """One question's bounds: the period ``[start, end)``, the data, the zones (empty: every
    zone) and the DAGs a user may read (``None``: every DAG)."""

    start: datetime
    end: datetime
    category: str | None
    asset: str | None
    zones: list[str]
    readable: list[str] | None


def as_utc(moment: datetime) -> datetime:
    """``moment`` with a naive datetime taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@contextmanager
def without_jit(session: Session) -> Iterator[None]:
    """PostgreSQL's JIT off for the report's queries, in the session's transaction only.

    PostgreSQL compiles a query to machine code when its estimated cost is high: the report's
    queries (correlated EXISTS over 10^5-10^6 rows) are estimated expensive and run in tens of
    milliseconds from their indexes, while compiling them takes most of a second. The previous
    setting is restored afterwards (a failed statement aborts the transaction, whose rollback
    ends the setting too). Other databases: nothing to do.
    """
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    previous = session.scalar(sa.text("SELECT current_setting('jit', true)"))
    if previous is None:  # a server without JIT
        yield
        return
    session.execute(sa.text("SELECT set_config('jit', 'off', true)"))
    try:
        yield
    except sa.exc.DBAPIError:
        raise
    except BaseException:
        session.execute(sa.text("SELECT set_config('jit', :value, true)"), {"value": previous})
        raise
    session.execute(sa.text("SELECT set_config('jit', :value, true)"), {"value": previous})


def _like(pattern: str) -> str:
    """A ``*``/``?`` glob as a LIKE pattern (``\\`` escapes LIKE's own wildcards)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _data_filters(scope: Scope) -> list[sa.ColumnElement[bool]]:
    decision, inputs = PolicyZonesDecision, PolicyZonesDecisionInput
    clauses: list[sa.ColumnElement[bool]] = [
        decision.decided_at >= scope.start,
        decision.decided_at < scope.end,
    ]
    if scope.category is not None:
        clauses.append(inputs.category == scope.category)
    if scope.asset:
        clauses.append(inputs.name.like(_like(scope.asset), escape="\\"))
    if scope.readable is not None:
        clauses.append(decision.dag_id.in_(scope.readable))
    return clauses


def _body_ran() -> sa.ColumnElement[bool]:
    """The decision's deny came from a read observed while the body ran (so the body ran)."""
    observed = aliased(PolicyZonesViolation)
    return sa.exists().where(
        observed.decision_id == PolicyZonesDecision.id,
        observed.outcome == Outcome.DENY.value,
        observed.input_source == "observed",
    )


class UseRow(NamedTuple):
    """One recorded input (one category of it) of a decision, with one finding on it (if any)."""

    id: int
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    zone: str | None
    outcome: str
    decided_at: datetime
    policy_version: str
    digest: str | None
    position: int
    namespace: str
    name: str
    category: str | None
    consented: tuple[str, ...] | None
    aggregated: bool | None
    origins: tuple[str, ...] | None
    reclassified_by: tuple[str, ...] | None
    violation_id: int | None
    finding: str | None
    rule: str | None
    rules: tuple[str, ...] | None
    reason: str | None
    exemption: str | None
    ran: bool | None


_JSON_FIELDS = frozenset({"consented", "origins", "reclassified_by", "rules"})
"""List columns of :class:`UseRow`, read as JSON text and decoded once per distinct value."""


@lru_cache(maxsize=4096)
def _json_list(text: str | None) -> tuple[str, ...] | None:
    """A JSON list column's text as a tuple (``None`` for SQL or JSON null). Tens of thousands of
    rows share a handful of label lists: decoding each distinct text once, into an immutable
    tuple the rows can share, is most of what reading them cost."""
    if text is None:
        return None
    value = json.loads(text)
    return tuple(value) if value is not None else None


def use_rows(session: Session, scope: Scope) -> list[UseRow]:
    """Each recorded input of the asked data in the asked zones, with its finding (if any).

    One query; rows come back as plain tuples through the session's connection (no ORM row
    processing), list columns as JSON text decoded by :func:`_json_list`."""
    decision, inputs, violation = PolicyZonesDecision, PolicyZonesDecisionInput, PolicyZonesViolation

    def text(column: Any, name: str) -> sa.ColumnElement[Any]:
        return sa.cast(column, sa.Text).label(name)

    query = (
        sa.select(
            decision.id,
            decision.dag_id,
            decision.task_id,
            decision.run_id,
            decision.map_index,
            decision.try_number,
            decision.zone,
            decision.outcome,
            decision.decided_at,
            decision.policy_version,
            decision.digest,
            inputs.position,
            inputs.namespace,
            inputs.name,
            inputs.category,
            text(inputs.consented, "consented"),
            inputs.aggregated,
            text(inputs.origins, "origins"),
            text(inputs.reclassified_by, "reclassified_by"),
            violation.id.label("violation_id"),
            violation.outcome.label("finding"),
            violation.rule,
            text(violation.rules, "rules"),
            violation.reason,
            violation.exemption,
            sa.case((decision.outcome == Outcome.DENY.value, _body_ran()), else_=sa.false()).label("ran"),
        )
        .join(decision, decision.id == inputs.decision_id)
        .outerjoin(violation, sa.and_(violation.decision_id == decision.id, violation.input == inputs.name))
        .where(*_data_filters(scope))
        .order_by(decision.id, inputs.position)
    )
    if scope.zones:
        query = query.where(decision.zone.in_(scope.zones))
    result = session.connection().execute(query)
    assert tuple(result.keys()) == UseRow._fields, result.keys()
    lists = [index for index, key in enumerate(UseRow._fields) if key in _JSON_FIELDS]
    rows = []
    for row in result:
        values = list(row)
        for index in lists:
            values[index] = _json_list(values[index])
        rows.append(UseRow._make(values))
    return rows


def count_decisions(session: Session, scope: Scope, *, zones: Sequence[str] = ()) -> int:
    decision = PolicyZonesDecision
    query = (
        sa.select(sa.func.count())
        .select_from(decision)
        .where(decision.decided_at >= scope.start, decision.decided_at < scope.end)
    )
    if zones:
        query = query.where(decision.zone.in_(list(zones)))
    if scope.readable is not None:
        query = query.where(decision.dag_id.in_(scope.readable))
    return int(session.scalar(query) or 0)


def policy_versions(session: Session, scope: Scope) -> list[PolicyVersionInForce]:
    """The policy versions that decided something in the period (every DAG's decisions), first
    use first, each with its first and last use and how many decisions it made."""
    decision = PolicyZonesDecision
    query = (
        sa.select(
            decision.policy_version,
            sa.func.min(decision.decided_at),
            sa.func.max(decision.decided_at),
            sa.func.count(),
        )
        .where(decision.decided_at >= scope.start, decision.decided_at < scope.end)
        .group_by(decision.policy_version)
    )
    used = list(session.execute(query))
    stored = (
        set(
            session.scalars(
                sa.select(PolicyZonesPolicyVersion.version).where(
                    PolicyZonesPolicyVersion.version.in_([row[0] for row in used])
                )
            )
        )
        if used
        else set()
    )
    versions = [
        PolicyVersionInForce(
            version=version,
            short=short_version(version),
            first_used_at=as_utc(first),
            last_used_at=as_utc(last),
            decisions=int(count),
            text_stored=version in stored,
        )
        for version, first, last, count in used
    ]
    return sorted(versions, key=lambda item: (item.first_used_at, item.version))
