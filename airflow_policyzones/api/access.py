"""Who may read the audit (Airflow's auth manager decides, for the read API and the pages alike),
and the router every resource of the read API starts from.

Authentication and authorization go through the dependencies of
``airflow.api_fastapi.core_api.security``, never through a worker's token: anonymous callers get
401, users who may not read DAGs get 403, and every answer is restricted to the DAGs the user may
read (:data:`ReadableDagIds`).
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends
from fastapi.params import Depends as DependsParam

from airflow_policyzones.api.errors import error_responses
from airflow_policyzones.db.query_errors import InvalidQuery


def _readable_dag_ids(user: GetUserDep) -> set[str]:
    """The DAG ids whose audit rows the user may read (Airflow's list endpoints filter the same way)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


ReadableDagIds = Annotated[set[str], Depends(_readable_dag_ids)]
"""A route parameter: the ids of the DAGs the user may read."""


def read_access() -> list[DependsParam]:
    """Router dependencies: Airflow's permission to read DAGs (401 without a user, 403 without it)."""
    return [Depends(requires_access_dag(method="GET"))]


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not authenticated"},
    403: {"description": "The user may not read DAGs"},
}
"""What every read route may answer about its caller."""


def audit_router() -> APIRouter:
    """A router for one resource of the read API: tagged ``audit``, behind :func:`read_access`,
    documenting the answers every read route may give (401, 403, and 422 for a bad parameter)."""
    return APIRouter(
        tags=["audit"],
        dependencies=read_access(),
        responses={**AUTH_RESPONSES, **error_responses({InvalidQuery: "Invalid filter, limit or cursor"})},
    )
