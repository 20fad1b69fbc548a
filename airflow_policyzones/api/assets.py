"""``GET /assets/labels``: an asset's propagated labels at a moment, and the writes that made them."""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Query

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.db.asset_history import asset_labels
from airflow_policyzones.db.audit_filters import AssetQuery
from airflow_policyzones.db.audit_models import AssetLabelsOut

router = audit_router()


@router.get(
    "/assets/labels",
    response_model=AssetLabelsOut,
    summary="An asset's propagated labels at a moment, and the writes that made them",
)
def get_asset_labels(
    *, session: SessionDep, readable: ReadableDagIds, query: Annotated[AssetQuery, Query()]
) -> AssetLabelsOut:
    """The propagated labels of an asset at any moment, explained by the writes that made them.

    The history is append-only, so the labels at ``at`` are the union of every write recorded
    up to then (the same union later decisions used). The name is normalized like an inlet.
    """
    return asset_labels(session=session, readable=readable, query=query)
