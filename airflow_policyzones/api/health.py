"""``GET /health`` (below the API prefix): liveness and the policy each component has loaded."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import APIRouter

router = APIRouter()


@router.get("/health", summary="Liveness and policy status")
def health(session: SessionDep) -> dict[str, Any]:
    """Liveness, and the policy each component has loaded (no auth: it reveals hashes and the
    policy's validation errors, never decisions).

    ``policy`` is ``ok``, ``invalid`` (this api-server has no valid policy: tasks fail closed and
    retry) or ``mismatch`` (a component validated against another version); ``problems`` and
    ``warnings`` say it in words, with both versions.
    """
    from airflow_policyzones.db.policy_status import policy_status

    status_ = policy_status(session=session)
    report = status_.to_dict()
    return {
        "status": "ok",
        "policy": "invalid" if status_.problems else "mismatch" if status_.warnings else "ok",
        "policy_version": status_.api_server.version if status_.api_server.loaded else None,
        "policy_error": status_.api_server.error,
        **report,
    }
