"""The provider's app on the api-server, mounted at ``/policyzones`` (see plugin.py).

``GET /api/v1/health`` (no auth) says whether the policy loads here and which version each
component has loaded (:mod:`airflow_policyzones.db.policy_status`); the read-only audit API
(violations, decisions, policy, exports, coverage, assets; Airflow user auth) is assembled in
:mod:`.audit`, the pages shown in the Airflow UI in :mod:`airflow_policyzones.ui.pages`. Tries
reach the decision service through their task supervisor and the execution API, never through
this app (:mod:`airflow_policyzones.api.relay`).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_policyzones import __version__
from airflow_policyzones.api.audit import include_audit_api
from airflow_policyzones.ui.pages import page_http_error, static_files, ui_router
from airflow_policyzones.urls import API_PREFIX, STATIC_PREFIX


def _health(session: SessionDep) -> dict[str, Any]:
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


def create_app() -> FastAPI:
    """A fresh app (the plugin builds one per api-server process; tests build their own)."""
    router = APIRouter(prefix=API_PREFIX)
    router.add_api_route("/health", _health, methods=["GET"], summary="Liveness and policy status")
    app = FastAPI(
        title="Airflow Policy Zones decision service",
        version=__version__,
        description="Health of the decision service, and the audit API over its records: every "
        "decision, violation and label, for the pages in the Airflow UI and for exports.",
    )
    app.include_router(router)
    include_audit_api(app, prefix=API_PREFIX)
    app.include_router(ui_router())
    app.mount(STATIC_PREFIX, static_files(), name="policyzones-static")
    app.add_exception_handler(StarletteHTTPException, page_http_error)
    app.add_exception_handler(RequestValidationError, page_http_error)
    return app
