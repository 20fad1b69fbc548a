"""Data-use evidence: did data of a category (or an asset) reach a zone (or purpose) in a period?

Answered from the records only (decisions, their inputs and findings, propagated label events),
never from the policy text; the policy the report runs with names the valid categories and zones
and judges which observed flows it forbids. Domain operations beside the tables: no HTTP here,
errors are :class:`EvidenceQueryError` with a message a person can act on.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from airflow_policyzones.db.evidence_models import DataUseEvidence

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from airflow_policyzones.policy import PolicyEngine


class EvidenceQueryError(ValueError):
    """The question cannot be asked as given (unknown category or zone, empty period...); the
    message says what is valid."""


def data_use_evidence(
    session: Session,
    *,
    policy: PolicyEngine,
    category: str | None = None,
    asset: str | None = None,
    zone: str | None = None,
    purpose: str | None = None,
    since: datetime,
    until: datetime | None = None,
    readable_dag_ids: Collection[str] | None = None,
) -> DataUseEvidence:
    """The evidence for one question (see :class:`DataUseEvidence` for the shape).

    ``category`` and/or ``asset`` (a glob over recorded input names) say which data; ``zone`` or
    ``purpose`` (every zone with that purpose) say where (neither: every zone). ``since`` /
    ``until`` (default: now) bound the decisions by when they were decided, ``[since, until)``,
    UTC when naive. ``readable_dag_ids`` (``None``: every DAG) limits every row to the DAGs a
    user may read. Reads only. Raises :class:`EvidenceQueryError`.
    """
    raise NotImplementedError
