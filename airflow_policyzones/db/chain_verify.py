"""Verifying the decision records' hash chain (:mod:`airflow_policyzones.db.chain` seals them):
recompute every digest of a period, streamed in id order, and report each row that is not as the
application wrote it (altered, inserted or deleted), with the per-DAG heads to keep outside the
database.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import BigInteger, DateTime, cast, func, select, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from airflow_policyzones.db.chain import (
    _DECISION_TAG,
    _HEAD_SEED,
    _VIOLATION_TAG,
    DECISION_FIELDS,
    VIOLATION_FIELDS,
    _fast_digest,
    _micros,
    chain_start,
)
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation

_IDENTITY = slice(0, 5)
"""The try's identity columns, first in both field lists."""
_Row = Any
"""A result row (indexed by position: the verification reads millions)."""
_HEAD_START = hashlib.sha256(_HEAD_SEED).hexdigest()

Kind = Literal["altered", "inserted", "deleted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One row that is not as the application wrote it."""

    kind: Kind
    table: Literal["decision", "violation"]
    id: int | None
    """The row's id; for a deleted violation ``None`` (its position is in ``detail``)."""
    decision_id: int
    detail: str

    def describe(self) -> str:
        name = f"{self.table} {self.id}"
        if self.id is None:
            name = f"a {self.table} of decision {self.decision_id}"
        return f"{self.kind}: {name}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "table": self.table,
            "id": self.id,
            "decision_id": self.decision_id,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """sha256 over the digests of a DAG's chained decision rows in id order, up to ``last_id``."""

    decisions: int
    last_id: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "last_id": self.last_id, "digest": self.digest}


@dataclass(slots=True, kw_only=True)
class Verification:
    """What :func:`verify_records` found."""

    since: datetime | None
    until: datetime | None = None
    decisions: int = 0
    violations: int = 0
    unchained_decisions: int = 0
    """Rows recorded before the chain started: counted, not verifiable."""
    unchained_violations: int = 0
    chain_started_at: datetime | None = None
    first_chained_id: int | None = None
    problems: list[Problem] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)
    head: str = _HEAD_START
    """sha256 over the digests of every chained decision row verified, in id order."""
    changed_heads: dict[str, str] = field(default_factory=dict)
    """With ``against``: DAGs whose records up to the kept head no longer give the kept digest."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.changed_heads

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "decisions": self.decisions,
            "violations": self.violations,
            "unchained": {
                "decisions": self.unchained_decisions,
                "violations": self.unchained_violations,
                "chain_started_at": self.chain_started_at.isoformat() if self.chain_started_at else None,
                "first_chained_id": self.first_chained_id,
            },
            "problems": [problem.to_dict() for problem in self.problems],
            "head": self.head,
            "heads": {dag_id: head.to_dict() for dag_id, head in sorted(self.heads.items())},
            "changed_heads": dict(sorted(self.changed_heads.items())),
        }


def verify_records(
    *,
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    against: Mapping[str, Head] | None = None,
    batch: int = 20_000,
) -> Verification:
    """Recompute every digest of the decisions recorded since ``since`` (and before ``until``) and
    of their violations.

    ``against``: heads kept from an earlier run (per DAG); each DAG's head is recomputed over its
    decisions up to the kept ``last_id`` and reported in ``changed_heads`` when it differs.
    Reads only; streams both tables in id order.
    """
    decision, violation = PolicyZonesDecision, PolicyZonesViolation
    result = Verification(since=since, until=until)
    first = chain_start(session=session)
    if first is not None:
        result.first_chained_id, result.chain_started_at = first
    first_chained = result.first_chained_id

    dialect = session.connection().dialect.name
    d_columns = [
        decision.id,
        *(_plain(decision, name, dialect=dialect) for name in DECISION_FIELDS),
        decision.digest,
    ]
    d_query = select(*d_columns).order_by(decision.id)
    v_columns = [
        violation.id,
        violation.decision_id,
        *(_plain(violation, name, dialect=dialect) for name in VIOLATION_FIELDS),
        violation.digest,
    ]
    v_query = select(*v_columns).order_by(violation.decision_id, violation.chain_seq, violation.id)
    window = [
        *([decision.decided_at >= since] if since is not None else []),
        *([decision.decided_at < until] if until is not None else []),
    ]
    if window:
        d_query = d_query.where(*window)
        v_query = v_query.join(decision, decision.id == violation.decision_id).where(*window)
    connection = session.connection()
    decisions = _stream(connection, d_query, batch=batch)
    violations = _grouped(_stream(connection, v_query, batch=batch))
    bounds = {dag_id: head.last_id for dag_id, head in (against or {}).items()}
    bounded: dict[str, str | None] = {}
    overall = hashlib.sha256(_HEAD_SEED)
    folds: dict[str, list[Any]] = {}
    """Per DAG: decisions, last id, hasher over their digests."""
    seen: set[int] = set()
    links: list[tuple[int, int]] = []
    """(previous decision not verified in this run, the decision naming it): checked at the end."""
    pending = next(violations, None)
    problems = result.problems
    n_fields = len(DECISION_FIELDS)
    prev_index = DECISION_FIELDS.index("chain_prev") + 1
    length_index = DECISION_FIELDS.index("chain_length") + 1
    counted = unchained = unchained_violations = violation_rows = 0
    sha256, in_micros = hashlib.sha256, dialect == "postgresql"
    for row in decisions:
        d_id = row[0]
        counted += 1
        group: Sequence[_Row] = ()
        if pending is not None and pending[0] <= d_id:
            while pending is not None and pending[0] < d_id:  # violations of no decision in range
                problems.extend(_problem("inserted", item, pending[0], _NO_DECISION) for item in pending[1])
                pending = next(violations, None)
            if pending is not None and pending[0] == d_id:
                group = pending[1]
                violation_rows += len(group)
                pending = next(violations, None)
        digest = row[n_fields + 1]
        if digest is None:
            if first_chained is None or d_id < first_chained:
                unchained += 1
                unchained_violations += len(group)
            else:
                problems.append(
                    Problem(
                        kind="inserted",
                        table="decision",
                        id=d_id,
                        decision_id=d_id,
                        detail="no digest, but recorded after the chain started "
                        f"(decision {first_chained}): not written by the application",
                    )
                )
                problems.extend(_problem("inserted", item, d_id, "no digest") for item in group)
            continue
        seen.add(d_id)
        prev = row[prev_index]
        if prev is not None and prev not in seen:  # a writer's previous decision has a lower id
            links.append((prev, d_id))
        values = row[1 : n_fields + 1]
        length = row[length_index] or 0
        tail = _check_record(values, group, length, d_id, problems) if group or length else "|"
        if (
            tail is not None
            and sha256(
                _DECISION_TAG
                + (
                    repr(
                        values
                        if in_micros
                        else (*values[:_D_AT], _micros(values[_D_AT]), *values[_D_AT + 1 :])
                    )
                    + tail
                ).encode()
            ).hexdigest()
            != digest
        ):
            problems.append(
                Problem(
                    kind="altered",
                    table="decision",
                    id=d_id,
                    decision_id=d_id,
                    detail="its content no longer matches its digest "
                    f"({_describe_try(values)}, outcome {values[8]})",
                )
            )
        encoded = digest.encode()
        overall.update(encoded)
        dag_id = values[0]
        fold = folds.get(dag_id)
        if fold is None:
            fold = folds[dag_id] = [0, d_id, hashlib.sha256(_HEAD_SEED)]
        if bounds and dag_id in bounds and d_id > bounds[dag_id] and dag_id not in bounded:
            bounded[dag_id] = fold[2].hexdigest() if fold[0] else None  # the head before this row
        fold[0] += 1
        fold[1] = d_id
        fold[2].update(encoded)
    while pending is not None:
        problems.extend(_problem("inserted", item, pending[0], _NO_DECISION) for item in pending[1])
        pending = next(violations, None)
    _check_links(session, links, seen, problems)
    result.decisions, result.violations = counted, violation_rows
    result.unchained_decisions, result.unchained_violations = unchained, unchained_violations
    result.head = overall.hexdigest()
    result.heads = {
        dag_id: Head(decisions=n, last_id=last, digest=hasher.hexdigest())
        for dag_id, (n, last, hasher) in folds.items()
    }
    for dag_id, kept in (against or {}).items():
        if dag_id not in bounded:
            bounded[dag_id] = result.heads[dag_id].digest if dag_id in result.heads else None
        now = bounded[dag_id]
        if now != kept.digest:
            result.changed_heads[dag_id] = (
                f"the head kept over its decisions up to {kept.last_id} ({kept.decisions} decisions) "
                + ("is gone" if now is None else f"is now {now}, not {kept.digest}")
            )
    return result


def _stream(connection: Connection, statement: Any, *, batch: int) -> Iterator[_Row]:
    """The rows of ``statement``, streamed; on psycopg2 straight from a server-side cursor (plain
    tuples, no result-row objects: verification reads millions)."""
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg2":
        yield from connection.execution_options(stream_results=True, yield_per=batch).execute(statement)
        return
    compiled = statement.compile(dialect=dialect)
    raw: Any = connection.connection.dbapi_connection
    cursor = raw.cursor(name=f"policyzones_verify_{uuid.uuid4().hex}")
    cursor.itersize = batch
    try:
        cursor.execute(str(compiled), compiled.params)
        yield from cursor
    finally:
        cursor.close()


def _check_record(
    values: Sequence[Any], group: Sequence[_Row], length: int, d_id: int, problems: list[Problem]
) -> str | None:
    """Check a chained decision's violations; the digest tail its own digest covers, or ``None``
    when a position is missing (then the decision cannot be checked)."""
    by_seq = _check_violations(values[_IDENTITY], group, length, d_id, problems)
    missing = [seq for seq in range(1, length + 1) if seq not in by_seq]
    for seq in missing:
        before = max((by_seq[s][0] for s in by_seq if s < seq), default=None)
        after = min((by_seq[s][0] for s in by_seq if s > seq), default=None)
        where = (
            f" (between violations {before} and {after})"
            if before and after
            else f" (before violation {after})"
            if after
            else f" (after violation {before})"
            if before
            else ""
        )
        problems.append(
            Problem(
                kind="deleted",
                table="violation",
                id=None,
                decision_id=d_id,
                detail=f"violation {seq} of {length} of decision {d_id} is missing{where}; "
                "the decision's own digest cannot be checked without it",
            )
        )
    if missing:
        return None
    return "|" + ",".join([by_seq[s][-1] for s in sorted(by_seq)])


_NO_DECISION = "its decision does not exist"
_D_AT = DECISION_FIELDS.index("decided_at")
_V_AT = VIOLATION_FIELDS.index("decided_at")


def _plain(model: Any, name: str, *, dialect: str) -> Any:
    """A column as verification reads it. Moments skip Airflow's per-row UTC conversion: on
    PostgreSQL the server gives microseconds since the epoch (exact: rounding the epoch's float
    seconds errs by less than half a microsecond), elsewhere :func:`_micros` converts them."""
    column = getattr(model, name)
    if name != "decided_at":
        return column
    if dialect == "postgresql":
        return cast(func.round(func.extract("epoch", column) * 1_000_000), BigInteger).label(name)
    return type_coerce(column, DateTime()).label(name)


def _grouped(rows: Iterable[_Row]) -> Iterator[tuple[int, list[_Row]]]:
    """Violation rows grouped by decision id (they come ordered by it)."""
    current: int | None = None
    group: list[_Row] = []
    for row in rows:
        if row[1] != current:
            if current is not None:
                yield current, group
            current, group = row[1], []
        group.append(row)
    if current is not None:
        yield current, group


def _check_violations(
    identity: Sequence[object], group: Sequence[_Row], length: int, d_id: int, problems: list[Problem]
) -> dict[int, _Row]:
    """The violations of one chained decision that verify, by position; the others reported."""
    by_seq: dict[int, _Row] = {}
    n_fields = len(VIOLATION_FIELDS)
    for item in group:
        digest, seq = item[n_fields + 2], item[n_fields + 1]
        values = item[2 : n_fields + 2]
        if digest is None or seq is None:
            problems.append(_problem("inserted", item, d_id, "no digest in a chained record"))
        elif _fast_digest(_VIOLATION_TAG, values, _V_AT) != digest:
            problems.append(_problem("altered", item, d_id, "its content no longer matches its digest"))
            by_seq.setdefault(seq, item)  # still holds its position: not also reported as deleted
        elif tuple(values[_IDENTITY]) != tuple(identity):
            problems.append(
                _problem("inserted", item, d_id, f"it was recorded for another try ({_describe_try(values)})")
            )
        elif seq in by_seq or not 1 <= seq <= length:
            problems.append(
                _problem("inserted", item, d_id, f"position {seq} is taken or beyond the record's {length}")
            )
        else:
            by_seq[seq] = item
    return by_seq


def _check_links(
    session: Session, links: Sequence[tuple[int, int]], seen: set[int], problems: list[Problem]
) -> None:
    """Every decision a writer committed before another one must still exist."""
    unknown = sorted({prev for prev, _ in links if prev not in seen})
    existing: set[int] = set()
    for start in range(0, len(unknown), 1000):
        chunk = unknown[start : start + 1000]
        existing.update(
            session.execute(select(PolicyZonesDecision.id).where(PolicyZonesDecision.id.in_(chunk))).scalars()
        )
    named = dict(links)
    for prev in unknown:
        if prev not in existing:
            problems.append(
                Problem(
                    kind="deleted",
                    table="decision",
                    id=prev,
                    decision_id=prev,
                    detail=f"decision {named[prev]} names it as its writer's previous decision, and it "
                    "is gone (with its violations)",
                )
            )


def _problem(kind: Kind, item: _Row, decision_id: int, detail: str) -> Problem:
    return Problem(kind=kind, table="violation", id=item[0], decision_id=decision_id, detail=detail)


def _describe_try(values: Sequence[Any]) -> str:
    return f"{values[0]}.{values[1]} run {values[2]} map {values[3]} try {values[4]}"


def heads_from(payload: Mapping[str, Any]) -> dict[str, Head]:
    """The per-DAG heads of an earlier ``verify-records --format json`` report.

    Raises ``ValueError`` naming what is wrong with it.
    """
    heads = payload.get("heads") if isinstance(payload, Mapping) else None
    if not isinstance(heads, Mapping):
        raise ValueError("it has no 'heads' object: pass the JSON a `verify-records --format json` run wrote")
    kept: dict[str, Head] = {}
    for dag_id, value in heads.items():
        try:
            kept[str(dag_id)] = Head(
                decisions=int(value["decisions"]), last_id=int(value["last_id"]), digest=str(value["digest"])
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"heads[{dag_id!r}] needs 'decisions', 'last_id' and 'digest': pass the report unedited"
            ) from None
    return kept
