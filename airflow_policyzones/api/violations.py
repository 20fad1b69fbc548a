"""``GET /violations``: violations newest first, keyset-paginated, filtered by
:class:`~airflow_policyzones.db.audit_filters.ViolationFilters`."""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Query

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.db.audit_filters import ViolationListQuery
from airflow_policyzones.db.audit_models import ViolationPage
from airflow_policyzones.db.audit_queries import violation_page

router = audit_router()


@router.get(
    "/violations",
    response_model=ViolationPage,
    summary="List violations, newest first (keyset pagination)",
)
def list_violations(
    *, session: SessionDep, readable: ReadableDagIds, query: Annotated[ViolationListQuery, Query()]
) -> ViolationPage:
    """Violations newest first, restricted to the DAGs the user may read."""
    return violation_page(session=session, readable=readable, filters=query, paging=query)
