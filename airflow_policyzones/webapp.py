"""The provider's app on the api-server, mounted at ``/policyzones`` by the plugin: it only
assembles the API's routers (:mod:`airflow_policyzones.api`), the pages (:mod:`airflow_policyzones.ui`)
and the error handlers.

``GET /api/v1/health`` (no auth) says whether the policy loads here and which version each
component has loaded (:mod:`airflow_policyzones.db.policy_status`); the read-only audit API
(violations, decisions, policy, exports, coverage, assets; Airflow user auth) is assembled in
:mod:`.audit`, the pages shown in the Airflow UI in :mod:`airflow_policyzones.ui.pages`. Tries
reach the decision service through their task supervisor and the execution API, never through
this app (:mod:`airflow_policyzones.api.relay`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_policyzones import __version__
from airflow_policyzones.api import health
from airflow_policyzones.api.audit import include_audit_api
from airflow_policyzones.db.query_errors import AuditQueryError
from airflow_policyzones.ui.pages import page_http_error, static_files, ui_router
from airflow_policyzones.urls import API_PREFIX, STATIC_PREFIX


def create_app() -> FastAPI:
    """A fresh app (the plugin builds one per api-server process; tests build their own)."""
    app = FastAPI(
        title="Airflow Policy Zones decision service",
        version=__version__,
        description="Health of the decision service, and the audit API over its records: every "
        "decision, violation and label, for the pages in the Airflow UI and for exports.",
    )
    app.include_router(health.router, prefix=API_PREFIX)
    include_audit_api(app, prefix=API_PREFIX)
    app.include_router(ui_router())
    app.mount(STATIC_PREFIX, static_files(), name="policyzones-static")
    # Errors on pages are pages, API errors stay JSON (the audit queries' domain errors included).
    for error in (StarletteHTTPException, RequestValidationError, AuditQueryError):
        app.add_exception_handler(error, page_http_error)
    return app
