"""``GET /decisions`` (newest first, keyset-paginated, filtered by
:class:`~airflow_policyzones.db.audit_filters.DecisionFilters`) and ``GET /decisions/{id}``."""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Query

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.api.errors import error_responses
from airflow_policyzones.db.audit_filters import DecisionListQuery
from airflow_policyzones.db.audit_models import DecisionDetailOut, DecisionPage
from airflow_policyzones.db.audit_queries import decision_detail, decision_page
from airflow_policyzones.db.query_errors import NotFound

router = audit_router()


@router.get(
    "/decisions",
    response_model=DecisionPage,
    summary="List decisions with their inputs and labels, newest first (keyset pagination)",
)
def list_decisions(
    *, session: SessionDep, readable: ReadableDagIds, query: Annotated[DecisionListQuery, Query()]
) -> DecisionPage:
    """Decisions newest first with their inputs and labels, restricted to readable DAGs."""
    return decision_page(session=session, readable=readable, filters=query, paging=query)


@router.get(
    "/decisions/{decision_id}",
    response_model=DecisionDetailOut,
    summary="One decision with its inputs and findings",
    responses=error_responses({NotFound: "No such decision, or its DAG is not readable"}),
)
def get_decision(*, decision_id: int, session: SessionDep, readable: ReadableDagIds) -> DecisionDetailOut:
    """One decision with its inputs and findings; 404 also hides decisions of unreadable DAGs."""
    return decision_detail(session=session, readable=readable, decision_id=decision_id)
