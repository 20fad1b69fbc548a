"""The read-only audit API: violations, decisions, the active policy, zone coverage, tries that
ran unchecked, tasks that ran blind, asset label history and CSV/JSON export.

One router per resource (each module holds its routes and their decorators); this module only
assembles them, in the order the OpenAPI document lists them, and maps the audit queries' domain
errors to HTTP at the app's edge (:mod:`airflow_policyzones.api.errors`, registered by
:mod:`airflow_policyzones.webapp`). Every route is behind
Airflow's DAG read permission and answers only about the DAGs the user may read
(:mod:`airflow_policyzones.api.access`). Lists page by keyset on ``(decided_at, id)``, newest
first (:mod:`airflow_policyzones.db.paging`).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from airflow_policyzones.api import assets, coverage, decisions, exports, policy, reconciliation, violations

ROUTERS: tuple[APIRouter, ...] = (
    violations.router,
    decisions.router,
    policy.router,
    coverage.router,
    reconciliation.router,
    assets.router,
    exports.router,
)
"""The resources of the read API, in the order of its OpenAPI document."""


def include_audit_api(app: FastAPI, *, prefix: str) -> None:
    """Add the read API's routes to ``app`` below ``prefix`` (e.g. ``/api/v1``); the app maps the
    audit queries' domain errors to HTTP (:mod:`airflow_policyzones.webapp`)."""
    for router in ROUTERS:
        app.include_router(router, prefix=prefix)
