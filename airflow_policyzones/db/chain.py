"""Tamper evidence for the decision records: every decision and violation row carries a digest.

**One chain per task-instance try.** A try's record is its decision row and its violation rows.
Each violation row gets a position in its try's record (``chain_seq``, 1, 2, ...) and a digest
over its content and position; the decision row's digest covers its own content, the number of
violation rows (``chain_length``) and their digests in order. The decision row is the head of its
try's chain, and is rewritten (with a new digest) whenever the try's record legitimately grows.
A violation's digest does not cover its predecessor's: the positions and the head fix the order,
and a deleted row then leaves the rows after it verifiable, each by its own id.

Why per try and not per DAG or per deployment: every write to a try's record already happens on
the try's decision row — inserted under its unique key, or updated under ``SELECT ... FOR
UPDATE`` by observed reads and credential refusals — so chaining per try adds no lock and no
query to the decision path. A chain per DAG or per deployment would make every decision wait
for the previous one (mapped tasks decide hundreds at a time).

**Tries are linked per writer process.** Each new decision row names the decision its writer
process committed before it (``chain_prev``), so deleting a whole try's record (its decision
row, whose violations go with it) leaves a dangling ``chain_prev`` naming the deleted id. The
link is an id, not a digest: the previous decision may still be growing (observed reads).

What verification detects, by id (:func:`~airflow_policyzones.db.chain_verify.verify_records`):
a row whose content no longer matches its digest (altered); a row without a digest after the chain
started, a violation whose position is taken or beyond its record's length, or one moved to
another try (inserted); a position missing from a record, or a decision another one names as its
writer's predecessor (deleted). Rows recorded before the chain started (migration
``f2a9c4e7b130``) have no digest and are reported as such, not verified.

The digests are plain sha256, not keyed: they catch edits made outside the application (SQL
consoles, scripts, restores of doctored backups), not someone who runs this code to recompute
them. The chain heads verification prints, kept outside the database, catch that too for the
rows they cover: docs/evidence.md.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, Session, object_session
from sqlalchemy.orm import attributes as orm_attributes

from airflow_policyzones.db.models import (
    PolicyZonesDecision,
    PolicyZonesPolicyVersion,
    PolicyZonesViolation,
)
from airflow_policyzones.policy.loader import loaded_text

DECISION_FIELDS = (
    "dag_id",
    "task_id",
    "run_id",
    "map_index",
    "try_number",
    "zone",
    "zone_source",
    "mode",
    "outcome",
    "allowed",
    "policy_version",
    "claims_digest",
    "source",
    "decided_at",
    "input_count",
    "finding_count",
    "violation_count",
    "chain_prev",
    "chain_length",
)
"""What a decision row's digest covers (with its violations' digests): every column but ``id``."""
VIOLATION_FIELDS = (
    "dag_id",
    "task_id",
    "run_id",
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
    "decided_at",
    "input_source",
    "chain_seq",
)
"""What a violation row's digest covers: every column but ``id`` and ``decision_id`` (the try's
identity columns are covered, and must match its decision's)."""

_DECISION_TAG = b"policyzones-decision-1\n"
_VIOLATION_TAG = b"policyzones-violation-1\n"
_HEAD_SEED = b"policyzones-head-1\n"


# --- digests ---------------------------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """A moment as microseconds since the epoch (naive moments are UTC, as stored on SQLite)."""
    return (moment - (_EPOCH if moment.tzinfo is not None else _NAIVE_EPOCH)) // _MICROSECOND


_PLAIN = frozenset({str, int, bool})


def _canonical(value: Any) -> Any:
    """A column value as plain Python values read back from the database are: ``repr`` of the
    whole row is then its encoding (unambiguous, and computed in C when verifying)."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime):
        return _micros(value)
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    return json.dumps(value, sort_keys=True, default=str)  # JSON columns hold lists of names


def violation_digest(values: Sequence[object]) -> str:
    """The digest of a violation row's :data:`VIOLATION_FIELDS` values."""
    encoded = repr(tuple(_canonical(value) for value in values))
    return hashlib.sha256(_VIOLATION_TAG + encoded.encode()).hexdigest()


def decision_digest(values: Sequence[object], violation_digests: Iterable[str]) -> str:
    """The digest of a decision row's :data:`DECISION_FIELDS` values and its violations' digests
    (in ``chain_seq`` order)."""
    encoded = repr(tuple(_canonical(value) for value in values)) + "|" + ",".join(violation_digests)
    return hashlib.sha256(_DECISION_TAG + encoded.encode()).hexdigest()


def _fast_digest(tag: bytes, values: tuple[Any, ...], at: int, tail: str = "") -> str:
    """The digest of values as verification reads them (plain types; the moment at ``at``
    already in microseconds, or a datetime)."""
    row = values if isinstance(values[at], int) else (*values[:at], _micros(values[at]), *values[at + 1 :])
    return hashlib.sha256(tag + (repr(row) + tail).encode()).hexdigest()


def _values(row: object, fields: Sequence[str]) -> list[object]:
    return [getattr(row, name) for name in fields]


# --- sealing rows as the application writes them --------------------------------------------------


_last_committed: dict[Any, int] = {}
"""Per database (engine), this process's last committed decision: ``chain_prev`` of its next one."""
_PENDING_DECISIONS = "policyzones.chain.decisions"
_PENDING_VERSIONS = "policyzones.chain.versions"
LAST_USE_REFRESH_S = 60.0
"""How often a process refreshes a policy version's ``last_used_at`` (at most)."""
_versions: dict[tuple[Any, str], float] = {}
"""Policy versions this process knows to be stored, with when it last refreshed their last use."""
_versions_lock = threading.Lock()


def _seal(connection: Connection, decision: PolicyZonesDecision, *, new: bool) -> None:
    """Give new violation rows their position and digest, and the decision its digest."""
    if new:
        decision.chain_prev = _last_committed.get(connection.engine)
        decision.chain_length = 0
    elif decision.digest is None or decision.chain_length is None:
        return  # recorded before the chain started: stays unverifiable rather than half-chained
    length = decision.chain_length or 0
    state: Any = orm_attributes.instance_state(decision)
    if not new and "violations" in state.unloaded:  # untouched in this transaction: digests as stored
        digests = [
            digest or ""
            for digest in connection.execute(
                select(PolicyZonesViolation.digest)
                .where(PolicyZonesViolation.decision_id == decision.id)
                .order_by(PolicyZonesViolation.chain_seq)
            ).scalars()
        ]
    else:
        violations = decision.violations
        sealed = sorted((v for v in violations if v.chain_seq is not None), key=lambda v: v.chain_seq or 0)
        for violation in violations:
            if violation.chain_seq is None:
                length += 1
                violation.chain_seq = length
                violation.digest = violation_digest(_values(violation, VIOLATION_FIELDS))
                sealed.append(violation)
        digests = [v.digest or "" for v in sealed]
    decision.chain_length = length
    decision.digest = decision_digest(_values(decision, DECISION_FIELDS), digests)
    _note_policy_version(connection, decision)


def _note_policy_version(connection: Connection, decision: PolicyZonesDecision) -> None:
    """Store the text of the decision's policy version on its first use (once per process: no
    query per decision once known); refresh its last use at most once a minute."""
    version = decision.policy_version
    key = (connection.engine, version)
    refreshed = _versions.get(key)
    now = time.monotonic()
    if refreshed is not None and now - refreshed < LAST_USE_REFRESH_S:
        return
    moment = decision.decided_at
    table = PolicyZonesPolicyVersion.__table__
    if refreshed is not None:
        with _versions_lock:
            if now - _versions.get(key, 0.0) < LAST_USE_REFRESH_S:
                return
            _versions[key] = now
        model = PolicyZonesPolicyVersion
        connection.execute(
            update(model)
            .where(model.version == version, model.last_used_at < moment)
            .values(last_used_at=moment)
        )
        return
    loaded = loaded_text(version)
    if loaded is None:
        return  # a policy this process did not load: the process that did stores it
    text, source = loaded
    values = {
        "version": version,
        "text": text,
        "source": source[:3000],
        "first_used_at": moment,
        "last_used_at": moment,
    }
    connection.execute(_insert_ignoring_duplicates(connection, table), values)
    session = object_session(decision)
    if session is not None:  # known once committed (a rolled-back insert is tried again)
        session.info.setdefault(_PENDING_VERSIONS, set()).add(key)


def _insert_ignoring_duplicates(connection: Connection, table: Any) -> Any:
    """``INSERT`` that does nothing when another process stored the version first."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["version"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["version"])
    return table.insert().prefix_with("IGNORE")  # MySQL


@event.listens_for(PolicyZonesDecision, "before_insert")
def _before_insert(_mapper: Mapper[Any], connection: Connection, target: PolicyZonesDecision) -> None:
    _seal(connection, target, new=True)


@event.listens_for(PolicyZonesDecision, "before_update")
def _before_update(_mapper: Mapper[Any], connection: Connection, target: PolicyZonesDecision) -> None:
    _seal(connection, target, new=False)


@event.listens_for(PolicyZonesDecision, "after_insert")
def _after_insert(_mapper: Mapper[Any], connection: Connection, target: PolicyZonesDecision) -> None:
    session = object_session(target)
    if session is not None:
        session.info.setdefault(_PENDING_DECISIONS, []).append((connection.engine, target.id))


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    info = session.info
    if _PENDING_DECISIONS in info:
        for engine, decision_id in info.pop(_PENDING_DECISIONS):
            _last_committed[engine] = decision_id
    if _PENDING_VERSIONS in info:
        now = time.monotonic()
        with _versions_lock:
            for key in info.pop(_PENDING_VERSIONS):
                _versions.setdefault(key, now)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_DECISIONS, None)
    session.info.pop(_PENDING_VERSIONS, None)


def forget_process_state() -> None:
    """Start a new writer chain and forget which policy versions are stored (tests, benchmarks)."""
    _last_committed.clear()
    with _versions_lock:
        _versions.clear()


# --- the chain's start and heads ------------------------------------------------------------------


def chain_start(*, session: Session) -> tuple[int, datetime] | None:
    """The first chained decision row (id, when decided); ``None`` when no row is chained yet.
    Rows with a lower id were recorded before the chain started."""
    decision = PolicyZonesDecision
    first = session.execute(
        select(decision.id, decision.decided_at)
        .where(decision.digest.is_not(None))
        .order_by(decision.id)
        .limit(1)
    ).first()
    return None if first is None else (int(first[0]), first[1])


def chain_head(digests: Iterable[str]) -> str:
    """sha256 over decision digests (give them in id order): the fold verification computes its
    heads with (:mod:`airflow_policyzones.db.chain_verify`), so the same rows give the same head."""
    head = hashlib.sha256(_HEAD_SEED)
    for digest in digests:
        head.update(digest.encode())
    return head.hexdigest()
