"""The provider's seven tables: the audit (one decision per task-instance try, its inputs, its
violations), the lineage (the label history of what tries wrote, the current labels per asset,
the reclassifications) and the text of every policy version that decided something.

The tables live in Airflow's metadata database but on their own ``MetaData`` (as providers/edge3
does), so Airflow's own migrations and ``db check-migrations`` never see them and our
``PolicyZonesDBManager`` owns their schema.

There are deliberately **no foreign keys to Airflow's tables**: audit evidence must outlive
``airflow db clean``, a deleted DAG or a cleared run. Identity columns are copied instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, get_args

from airflow.models.base import _get_schema, naming_convention
from airflow.utils.sqlalchemy import UtcDateTime
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from airflow_policyzones.policy.vocabulary import Outcome, ViolationOutcome

policyzones_metadata = MetaData(
    schema=_get_schema(),  # type: ignore[no-untyped-call]
    naming_convention=naming_convention,
)
"""Our own MetaData: not Airflow's ``Base.metadata``."""

ID_LEN = 250
"""Airflow's length for dag_id / task_id / run_id."""
NAME_LEN = 100
"""Zone, mode, rule and source names (policy names are short identifiers)."""
POLICY_VERSION_LEN = 80
"""``sha256:`` + 64 hex digits, with room to spare."""
INPUT_LEN = 3000
"""An input's normalized URI or table name (the wire schema's limit)."""
DIGEST_LEN = 64
"""A sha256 in hex."""

OUTCOMES = tuple(outcome.value for outcome in Outcome)
VIOLATION_OUTCOMES: tuple[str, ...] = get_args(ViolationOutcome)
SOURCES = ("api", "in_process")
INPUT_SOURCES = ("declared", "sql", "observed", "alias")
"""How an input or output became known (the wire schema's ``InputSource``); NULL in rows
recorded before sources were recorded."""

CREDENTIALS_ONLY = "credentials-only"
"""``claims_digest`` of a decision row that records only what the api-server decided on its own,
without the try's pre-execute check: a connection or variable refused before the check (see
:mod:`airflow_policyzones.db.credentials`), or a success refused to a try that was never decided
(:mod:`airflow_policyzones.db.undecided`). The stored value predates the second use."""

OBSERVED_DENY = "outcome = 'deny' AND input_source = 'observed'"
"""The violations a partial index on ``decision_id`` covers: denies of reads observed while a
body ran (few rows). Whether a denied try's body ran is asked of every denied decision a
data-use report reads (see :mod:`airflow_policyzones.db.evidence`)."""

# Integer on SQLite: only "INTEGER PRIMARY KEY" autoincrements there.
_PK = BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class Base(DeclarativeBase):
    """Declarative base bound to :data:`policyzones_metadata`."""

    metadata = policyzones_metadata


class PolicyZonesDecision(Base):
    """One decision per task-instance try; the unique key makes recording idempotent."""

    __tablename__ = "policyzones_decision"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    dag_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    task_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    run_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    map_index: Mapped[int] = mapped_column(Integer, nullable=False)
    try_number: Mapped[int] = mapped_column(Integer, nullable=False)
    zone: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    """The effective zone (the claimed one, else the policy's default zone)."""
    zone_source: Mapped[str] = mapped_column(String(20), nullable=False)
    """Where the zone came from: ``task``, ``group``, ``dag``, ``default`` (policy) or ``none``."""
    mode: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    policy_version: Mapped[str] = mapped_column(String(POLICY_VERSION_LEN), nullable=False)
    claims_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    """sha256 of what the try claimed: a repeat with other claims is refused."""
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    """``api`` (a worker, through the api-server) or ``in_process`` (``dag.test()``)."""
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    input_count: Mapped[int] = mapped_column(Integer, nullable=False)
    finding_count: Mapped[int] = mapped_column(Integer, nullable=False)
    violation_count: Mapped[int] = mapped_column(Integer, nullable=False)
    """Findings not waived by an exemption."""
    chain_prev: Mapped[int | None] = mapped_column(_PK, nullable=True)
    """The decision its writer process committed before this one (see :mod:`.chain`)."""
    chain_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """How many violation rows the try's record holds (their ``chain_seq`` run 1..n)."""
    digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN), nullable=True)
    """sha256 over the row and its violations' digests; NULL for rows from before the chain."""

    inputs: Mapped[list[PolicyZonesDecisionInput]] = relationship(
        back_populates="decision",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PolicyZonesDecisionInput.id",
    )
    violations: Mapped[list[PolicyZonesViolation]] = relationship(
        back_populates="decision",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="PolicyZonesViolation.id",
    )

    __table_args__ = (
        UniqueConstraint(
            "dag_id", "task_id", "run_id", "map_index", "try_number", name="policyzones_decision_ti_try_uq"
        ),
        CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(_in("source", SOURCES), name="source"),
        Index("idx_policyzones_decision_decided_at", "decided_at"),
        Index("idx_policyzones_decision_dag_decided_at", "dag_id", "decided_at"),
        Index("idx_policyzones_decision_zone_decided_at", "zone", "decided_at"),
        Index("idx_policyzones_decision_outcome_decided_at", "outcome", "decided_at"),
        Index("idx_policyzones_decision_policy_version", "policy_version", "decided_at"),
    )


class PolicyZonesDecisionInput(Base):
    """One row per (decision, input, category); ``category`` is NULL for an input without one.

    Answers the auditor's question "which decisions in zone Z read category C?" with an index
    on ``category`` joined to the decision's zone.
    """

    __tablename__ = "policyzones_decision_input"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(
        _PK,
        ForeignKey(
            "policyzones_decision.id", ondelete="CASCADE", name="policyzones_decision_input_decision_fkey"
        ),
        nullable=False,
    )
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    """The input's index in the (de-duplicated) request: keeps the rows of one input together."""
    namespace: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(INPUT_LEN), nullable=False)
    """Normalized asset URI or table name."""
    labeled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    """False when no catalog entry matched (then every label column is NULL)."""
    category: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    consented: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    aggregated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    origins: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    reclassified_by: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """``declared`` (an inlet), ``sql`` (the SQL operator's SQL) or ``observed`` (reported by a
    hook or object-storage path while the body ran, decided then)."""

    decision: Mapped[PolicyZonesDecision] = relationship(back_populates="inputs")

    __table_args__ = (
        Index("idx_policyzones_decision_input_decision", "decision_id"),
        Index("idx_policyzones_decision_input_category", "category", "decision_id"),
    )


class PolicyZonesViolation(Base):
    """One row per finding of a non-allow decision, denormalized for the UI's list views."""

    __tablename__ = "policyzones_violation"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    decision_id: Mapped[int] = mapped_column(
        _PK,
        ForeignKey("policyzones_decision.id", ondelete="CASCADE", name="policyzones_violation_decision_fkey"),
        nullable=False,
    )
    dag_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    task_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    run_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    map_index: Mapped[int] = mapped_column(Integer, nullable=False)
    try_number: Mapped[int] = mapped_column(Integer, nullable=False)
    zone: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    mode: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
    """``deny`` (task stopped), ``dry_run`` (task ran) or ``exempted`` (waived by ``exemption``)."""
    rule: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    """The first rule the finding breaks (the one the UI filters by)."""
    rules: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    input: Mapped[str | None] = mapped_column(String(INPUT_LEN), nullable=True)
    """The offending input; NULL for findings about the task itself (zone, membership)."""
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    remediation: Mapped[str] = mapped_column(Text, nullable=False)
    exemption: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)
    """Ticket of the exemption that waived the finding."""
    policy_version: Mapped[str] = mapped_column(String(POLICY_VERSION_LEN), nullable=False)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    input_source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """How the offending input became known (see ``INPUT_SOURCES``); NULL for task findings."""
    chain_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Position in its try's record (1..``chain_length`` of the decision)."""
    digest: Mapped[str | None] = mapped_column(String(DIGEST_LEN), nullable=True)
    """sha256 over the row (see :mod:`.chain`); NULL for rows from before the chain."""

    decision: Mapped[PolicyZonesDecision] = relationship(back_populates="violations")

    __table_args__ = (
        CheckConstraint(_in("outcome", VIOLATION_OUTCOMES), name="outcome"),
        Index("idx_policyzones_violation_decision", "decision_id"),
        Index("idx_policyzones_violation_decided_at", "decided_at"),
        Index("idx_policyzones_violation_dag_decided_at", "dag_id", "decided_at"),
        Index("idx_policyzones_violation_zone_decided_at", "zone", "decided_at"),
        Index("idx_policyzones_violation_rule_decided_at", "rule", "decided_at"),
        Index(
            "idx_policyzones_violation_observed_deny",
            "decision_id",
            postgresql_where=text(OBSERVED_DENY),
            sqlite_where=text(OBSERVED_DENY),
        ),
    )


class PolicyZonesAssetLabelEvent(Base):
    """Append-only history: the labels one task-instance try gave one output it wrote.

    Never updated or deleted, so the labels of any asset at any past moment can be explained
    (which task wrote it, in which zone, from which decision, through which reclassifier).
    """

    __tablename__ = "policyzones_asset_label_event"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(INPUT_LEN), nullable=False)
    categories: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    consented: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    aggregated: Mapped[bool] = mapped_column(Boolean, nullable=False)
    origins: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    reclassified_by: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    dag_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    task_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    run_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    map_index: Mapped[int] = mapped_column(Integer, nullable=False)
    try_number: Mapped[int] = mapped_column(Integer, nullable=False)
    zone: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    decision_id: Mapped[int] = mapped_column(_PK, nullable=False)
    """The decision of the writing try: its recorded inputs are where these labels came from."""
    reclassifier: Mapped[str | None] = mapped_column(String(NAME_LEN), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(POLICY_VERSION_LEN), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    source: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """How the output became known (see ``INPUT_SOURCES``)."""

    __table_args__ = (
        UniqueConstraint(
            "decision_id", "namespace", "name", name="policyzones_asset_label_event_decision_output_uq"
        ),
        Index("idx_policyzones_asset_label_event_asset", "namespace", "name", "recorded_at"),
    )


class PolicyZonesAssetLabels(Base):
    """The propagated labels of one asset now: the union of every event recorded for it.

    A summary of the history kept up to date on every write, so a decision reads one row per
    input instead of the asset's whole history. Union, not "latest": a table written by several
    tasks holds all their rows, so its restrictions are those of every writer.
    """

    __tablename__ = "policyzones_asset_labels"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(INPUT_LEN), nullable=False)
    categories: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    consented: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    aggregated: Mapped[bool] = mapped_column(Boolean, nullable=False)
    origins: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    reclassified_by: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    event_count: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (UniqueConstraint("namespace", "name", name="policyzones_asset_labels_asset_uq"),)


class PolicyZonesReclassification(Base):
    """One run of a reclassifier: which try changed which labels of which outputs, and how."""

    __tablename__ = "policyzones_reclassification"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    reclassifier: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    zone: Mapped[str] = mapped_column(String(NAME_LEN), nullable=False)
    dag_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    task_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    run_id: Mapped[str] = mapped_column(String(ID_LEN), nullable=False)
    map_index: Mapped[int] = mapped_column(Integer, nullable=False)
    try_number: Mapped[int] = mapped_column(Integer, nullable=False)
    decision_id: Mapped[int] = mapped_column(_PK, nullable=False)
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    labels_before: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    labels_after: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    policy_version: Mapped[str] = mapped_column(String(POLICY_VERSION_LEN), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("decision_id", name="policyzones_reclassification_decision_uq"),
        Index("idx_policyzones_reclassification_recorded_at", "recorded_at"),
    )


class PolicyZonesPolicyVersion(Base):
    """The full text of every policy version that decided something, stored on its first use.

    ``version`` is the content hash every decision records in ``policy_version``; the text is what
    the deciding process loaded (its bytes hash to ``version``). ``last_used_at`` is refreshed at
    most once a minute per process; the decisions themselves give the exact last use.
    """

    __tablename__ = "policyzones_policy_version"

    id: Mapped[int] = mapped_column(_PK, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(POLICY_VERSION_LEN), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str | None] = mapped_column(String(INPUT_LEN), nullable=True)
    """The file the deciding process loaded it from (as configured there)."""
    first_used_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    last_used_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (UniqueConstraint("version", name="policyzones_policy_version_version_uq"),)


def inputs_by_position(
    rows: Iterable[PolicyZonesDecisionInput],
) -> list[tuple[PolicyZonesDecisionInput, list[str]]]:
    """One entry per input of a decision: its first row and the categories of all its rows
    (rows come one per category, in ``id`` order)."""
    grouped: dict[int, tuple[PolicyZonesDecisionInput, list[str]]] = {}
    for row in rows:
        _first, categories = grouped.setdefault(row.position, (row, []))
        if row.category is not None:
            categories.append(row.category)
    return list(grouped.values())


def decision_of_try(
    *, dag_id: str, task_id: str, run_id: str, map_index: int, try_number: int
) -> Select[PolicyZonesDecision]:
    """The decision of one task-instance try (at most one: the unique key)."""
    return select(PolicyZonesDecision).where(
        PolicyZonesDecision.dag_id == dag_id,
        PolicyZonesDecision.task_id == task_id,
        PolicyZonesDecision.run_id == run_id,
        PolicyZonesDecision.map_index == map_index,
        PolicyZonesDecision.try_number == try_number,
    )


def table_names() -> frozenset[str]:
    """Every table the provider owns (without the Alembic version table)."""
    return frozenset(table.name for table in policyzones_metadata.sorted_tables)


def as_dict(row: Base) -> dict[str, Any]:
    """A row's columns as a dict (for tests, the CLI and the UI)."""
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}
