"""An asset's propagated labels at any moment, explained by the writes that made them.

The label history is append-only, so the labels at a moment are the union of every write
recorded up to then (the same union later decisions used).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_policyzones.config import get_engine
from airflow_policyzones.db.audit_filters import AssetQuery, utc
from airflow_policyzones.db.audit_models import AssetLabelsOut, LabelEventOut, LabelsOut
from airflow_policyzones.db.audit_rows import ti_ref
from airflow_policyzones.db.models import PolicyZonesAssetLabelEvent as Event
from airflow_policyzones.db.propagation import labels_of
from airflow_policyzones.db.query_errors import InvalidQuery
from airflow_policyzones.policy import PolicyError
from airflow_policyzones.policy.engine import InputRef
from airflow_policyzones.policy.lineage import union_labels

MAX_HISTORY = 500
"""Writes listed at most (newest first); ``truncated`` says when there were more."""


def asset_labels(*, session: Session, readable: set[str], query: AssetQuery) -> AssetLabelsOut:
    """The labels of ``query.name`` (normalized like an inlet) as of ``query.at`` (default now),
    and the writes up to then, newest first, of the DAGs in ``readable`` (the union and
    ``write_count`` cover every DAG's writes). :class:`InvalidQuery` for a name that is not a
    valid asset URI or table name."""
    try:
        ref = InputRef.asset(query.name) if query.namespace == "asset" else InputRef.table(query.name)
    except ValueError as error:
        raise InvalidQuery(f"invalid {query.namespace} name: {error}") from None
    moment = utc(query.at)
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
                task_instance=ti_ref(event),
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
