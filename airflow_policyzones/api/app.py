"""The decision service: a FastAPI app the api-server mounts at ``/policyzones`` (see plugin.py).

``POST /api/v1/decisions`` (worker token required) decides one task-instance try and records it;
``POST /api/v1/observations`` decides what the running try reads through hooks, within that
decision; ``POST /api/v1/outputs`` records what a succeeded try wrote; ``GET /api/v1/health``
(no auth) says whether the policy loads here and which version each component has loaded
(:mod:`airflow_policyzones.policy_status`). The read-only audit API
(violations, decisions, policy, export; Airflow user auth) is in :mod:`.read_routes`, the pages
shown in the Airflow UI in :mod:`airflow_policyzones.ui.pages`.
HTTP status codes of the worker endpoint:

* 401 no token / 403 a token that does not verify, is for another endpoint or another try;
* 404 unknown task instance, 409 the task instance is at another try;
* 422 malformed body; 503 the policy is missing or invalid (the worker fails closed).
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_policyzones import __version__
from airflow_policyzones.api.auth import WorkerAuth, WorkerClaims
from airflow_policyzones.api.read_routes import read_router
from airflow_policyzones.api.schema import (
    API_VERSION,
    CONNECTION_TYPE_PATH,
    DECISIONS_PATH,
    OBSERVATIONS_PATH,
    OUTPUTS_PATH,
    ConnectionTypeRequest,
    ConnectionTypeResponse,
    DecisionRequest,
    DecisionResponse,
    ObservationRequest,
    OutputsRequest,
    OutputsResponse,
    TaskInstanceIdentity,
)
from airflow_policyzones.api.tokens import ti_claim
from airflow_policyzones.config import get_engine
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.propagation import OutputsRefused, record_outputs
from airflow_policyzones.service import DecisionRefused, decide_and_record, decide_observed
from airflow_policyzones.ui.pages import UI_PREFIX, page_http_error, static_files, ui_router

URL_PREFIX = "/policyzones"
"""Where the plugin mounts the app below the api-server's base URL."""
API_PREFIX = f"/api/{API_VERSION}"

_decisions_route = DECISIONS_PATH.removeprefix(URL_PREFIX + API_PREFIX)
_outputs_route = OUTPUTS_PATH.removeprefix(URL_PREFIX + API_PREFIX)
_observations_route = OBSERVATIONS_PATH.removeprefix(URL_PREFIX + API_PREFIX)
_connection_type_route = CONNECTION_TYPE_PATH.removeprefix(URL_PREFIX + API_PREFIX)
WorkerClaimsDep = Annotated[WorkerClaims, Depends(WorkerAuth(method=DECISIONS_PATH))]
OutputsClaimsDep = Annotated[WorkerClaims, Depends(WorkerAuth(method=OUTPUTS_PATH))]
ObservationsClaimsDep = Annotated[WorkerClaims, Depends(WorkerAuth(method=OBSERVATIONS_PATH))]
ConnectionTypeClaimsDep = Annotated[WorkerClaims, Depends(WorkerAuth(method=CONNECTION_TYPE_PATH))]


def _check_try(claims: WorkerClaims, identity: TaskInstanceIdentity) -> None:
    if claims.ti != ti_claim(identity):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: the token is for task-instance try {claims.ti}, the request names "
            f"{ti_claim(identity)}",
        )


def _engine() -> PolicyEngine:
    try:
        return get_engine()
    except PolicyError as error:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the decision service has no valid policy, so no task may run: {error}",
        ) from None


def _decide(body: DecisionRequest, claims: WorkerClaimsDep, session: SessionDep) -> DecisionResponse:
    """Decide one task-instance try for the worker the token was signed for, and record it."""
    _check_try(claims, body.task)
    engine = _engine()
    try:
        return decide_and_record(session=session, engine=engine, request=body, source="api")
    except DecisionRefused as error:
        raise HTTPException(error.status_code, str(error)) from None


def _observations(
    body: ObservationRequest, claims: ObservationsClaimsDep, session: SessionDep
) -> DecisionResponse:
    """Decide what a running try's hooks read, within the try's recorded decision."""
    _check_try(claims, body.task)
    engine = _engine()
    try:
        return decide_observed(session=session, engine=engine, request=body, source="api")
    except DecisionRefused as error:
        raise HTTPException(error.status_code, str(error)) from None


def _outputs(body: OutputsRequest, claims: OutputsClaimsDep, session: SessionDep) -> OutputsResponse:
    """Record what a succeeded try wrote; its labels come from the try's recorded decision."""
    _check_try(claims, body.task)
    engine = _engine()
    try:
        return record_outputs(session=session, engine=engine, request=body)
    except OutputsRefused as error:
        raise HTTPException(error.status_code, str(error)) from None


def _connection_type(body: ConnectionTypeRequest, claims: ConnectionTypeClaimsDep) -> ConnectionTypeResponse:
    """The type of a connection, looked up where the api-server finds connections; its credentials
    never leave the server, and asking is not a use (the zone check applies when a try fetches it)."""
    _check_try(claims, body.task)
    from airflow.models.connection import Connection

    try:
        found = Connection.get_connection_from_secrets(body.conn_id)
    except Exception:  # not found anywhere (AirflowNotFoundException) or a backend error
        return ConnectionTypeResponse(conn_type=None)
    return ConnectionTypeResponse(conn_type=str(found.conn_type or "") or None)


def _health(session: SessionDep) -> dict[str, Any]:
    """Liveness, and the policy each component has loaded (no auth: it reveals hashes and the
    policy's validation errors, never decisions).

    ``policy`` is ``ok``, ``invalid`` (this api-server has no valid policy: tasks fail closed and
    retry) or ``mismatch`` (a component validated against another version); ``problems`` and
    ``warnings`` say it in words, with both versions.
    """
    from airflow_policyzones.policy_status import policy_status

    status_ = policy_status(session=session)
    report = status_.to_dict()
    return {
        "status": "ok",
        "policy": "invalid" if status_.problems else "mismatch" if status_.warnings else "ok",
        "policy_version": status_.api_server.version if status_.api_server.loaded else None,
        "policy_error": status_.api_server.error,
        **report,
    }


_WORKER_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token"},
    403: {"description": "Token invalid, expired, or for another endpoint or try"},
}
"""What every worker-token endpoint may answer about its token."""


def create_app() -> FastAPI:
    """A fresh app (the plugin builds one per api-server process; tests build their own)."""
    router = APIRouter(prefix=API_PREFIX)
    router.add_api_route(
        _decisions_route,
        _decide,
        methods=["POST"],
        response_model=DecisionResponse,
        summary="Decide and record one task-instance try (worker token required)",
        responses={
            **_WORKER_TOKEN_RESPONSES,
            404: {"description": "No such task instance"},
            409: {"description": "The task instance is at another try"},
            503: {"description": "The policy is missing or invalid: the worker fails closed"},
        },
    )
    router.add_api_route(
        _observations_route,
        _observations,
        methods=["POST"],
        response_model=DecisionResponse,
        summary="Decide what a running try reads through hooks, before its code sees it (worker token)",
        responses={
            **_WORKER_TOKEN_RESPONSES,
            404: {"description": "No such task instance"},
            409: {"description": "The try has no decision yet, was denied, or is at another try"},
            503: {"description": "The policy is missing or invalid: the worker fails closed"},
        },
    )
    router.add_api_route(
        _outputs_route,
        _outputs,
        methods=["POST"],
        response_model=OutputsResponse,
        summary="Record what a succeeded try wrote, and propagate labels to it (worker token required)",
        responses={
            **_WORKER_TOKEN_RESPONSES,
            409: {"description": "The try has no decision, or was denied"},
            503: {"description": "The policy is missing or invalid"},
        },
    )
    router.add_api_route(
        _connection_type_route,
        _connection_type,
        methods=["POST"],
        response_model=ConnectionTypeResponse,
        summary="The type of a SQL task's connection, without its credentials (worker token required)",
        responses=_WORKER_TOKEN_RESPONSES,
    )
    router.add_api_route("/health", _health, methods=["GET"], summary="Liveness and policy status")
    app = FastAPI(
        title="Airflow Policy Zones decision service",
        version=__version__,
        description="Workers ask, before a task body runs, whether the task may read its inputs in "
        "its zone; every decision is recorded for audit.",
    )
    app.include_router(router)
    app.include_router(read_router(prefix=API_PREFIX))
    app.include_router(ui_router())
    app.mount(UI_PREFIX + "/static", static_files(), name="policyzones-static")
    app.add_exception_handler(StarletteHTTPException, page_http_error)
    app.add_exception_handler(RequestValidationError, page_http_error)
    return app
