"""The violation and decision exports: what an export covers (its seal, computed before its
first byte), its rows in batches, and the rows as CSV or JSON text.

An export streams exactly the rows its seal names, each batch in its own short session, so a long
export holds no transaction and a row deleted meanwhile is left out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.orm import InstrumentedAttribute

from airflow_policyzones.db.audit_filters import (
    DecisionFilters,
    QueryModel,
    ViolationFilters,
    decision_select,
    violation_select,
)
from airflow_policyzones.db.chain import chain_head
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation

DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 100_000
_EXPORT_BATCH = 1_000

_TRY_COLUMNS = ("id", "decided_at", "dag_id", "run_id", "task_id", "map_index", "try_number", "zone")
"""The leading columns of both exports: the row, when, and the try it is about."""
EXPORT_COLUMNS = (
    *_TRY_COLUMNS,
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
    *_TRY_COLUMNS,
    "zone_source",
    "mode",
    "outcome",
    "allowed",
    "input_count",
    "violation_count",
    "policy_version",
    "source",
)
"""Columns of the decisions export."""
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

RowT = TypeVar("RowT", PolicyZonesViolation, PolicyZonesDecision)
ExportFormat = Literal["csv", "json"]
_MaxRows = Annotated[int, Field(ge=1, le=MAX_EXPORT_ROWS, description="At most this many rows, newest first")]


class _Format(QueryModel):
    format: ExportFormat = "csv"


class ViolationExportQuery(ViolationFilters, _Format):
    """The parameters of the violations export: its format, the list's filters, its size."""

    max_rows: _MaxRows = DEFAULT_EXPORT_ROWS


class DecisionExportQuery(DecisionFilters, _Format):
    """The parameters of the decisions export: its format, the list's filters, its size."""

    max_rows: _MaxRows = DEFAULT_EXPORT_ROWS


def csv_cell(value: object) -> str:
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
    """Decisions of the exported rows recorded before the chain started (no digest: not in the head)."""
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


@dataclass(frozen=True, slots=True)
class Export:
    """A sealed export: its seal, its columns, and its rows (a one-shot iterator of records keyed
    by column, datetimes in ISO 8601, lists as lists)."""

    seal: ExportSeal
    columns: Sequence[str]
    rows: Iterator[dict[str, Any]]


def _seal(
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


def _rows(
    query: sa.Select[RowT],
    model: type[RowT],
    record: Callable[[RowT], dict[str, Any]],
    ids: Sequence[int],
) -> Iterator[dict[str, Any]]:
    """The sealed rows (``ids``, in export order) in batches, each in its own short session."""
    from airflow.utils.session import create_session

    for start in range(0, len(ids), _EXPORT_BATCH):
        with create_session() as session:
            batch = query.where(model.id.in_(ids[start : start + _EXPORT_BATCH]))
            records = [record(row) for row in session.scalars(batch)]
        yield from records


def violation_export(*, readable: set[str], filters: ViolationFilters, max_rows: int) -> Export:
    """The matching violations of readable DAGs, newest first, at most ``max_rows``, sealed.
    Raises :class:`~airflow_policyzones.db.query_errors.InvalidQuery` as the list does."""
    model = PolicyZonesViolation
    query = violation_select(readable=readable, filters=filters)
    seal = _seal(query, model, decision_of=model.decision_id, max_rows=max_rows)
    return Export(seal=seal, columns=EXPORT_COLUMNS, rows=_rows(query, model, _violation_record, seal.ids))


def decision_export(*, readable: set[str], filters: DecisionFilters, max_rows: int) -> Export:
    """The matching decisions of readable DAGs, newest first, at most ``max_rows``, sealed.
    Raises :class:`~airflow_policyzones.db.query_errors.InvalidQuery` as the list does."""
    model = PolicyZonesDecision
    query = decision_select(readable=readable, filters=filters)
    seal = _seal(query, model, decision_of=model.id, max_rows=max_rows)
    return Export(
        seal=seal, columns=DECISION_EXPORT_COLUMNS, rows=_rows(query, model, _decision_record, seal.ids)
    )


def csv_text(export: Export) -> Iterator[str]:
    """The export as CSV, in chunks: a header line, then one line per row; a list becomes one
    cell of space-separated values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(export.columns)
    for row in export.rows:
        cells = (row[column] for column in export.columns)
        writer.writerow([csv_cell(" ".join(cell) if isinstance(cell, list) else cell) for cell in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def json_text(export: Export) -> Iterator[str]:
    """The export as JSON, in chunks: ``{"policy_versions": [str], "chain": {...}, "rows": [row, ...]}``
    (``chain`` as :meth:`ExportSeal.chain`)."""
    seal = export.seal
    yield json.dumps({"policy_versions": seal.policy_versions, "chain": seal.chain()})[:-1] + ', "rows": ['
    for index, row in enumerate(export.rows):
        yield ("," if index else "") + json.dumps(row)
    yield "]}"
