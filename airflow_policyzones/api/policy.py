"""``GET /policy``: the active policy, as the decision service enforces it now."""

from __future__ import annotations

from airflow_policyzones.api.access import audit_router
from airflow_policyzones.api.errors import error_responses
from airflow_policyzones.db.audit_models import PolicyOut
from airflow_policyzones.db.audit_queries import active_policy
from airflow_policyzones.db.query_errors import PolicyUnavailable

router = audit_router()


@router.get(
    "/policy",
    response_model=PolicyOut,
    response_model_by_alias=True,
    summary="The active policy: zones, categories, flows and reclassifiers",
    responses=error_responses({PolicyUnavailable: "The policy is missing or invalid"}),
)
def get_policy() -> PolicyOut:
    """The policy the decision service enforces now (503 with the reason when it does not load)."""
    return active_policy()
