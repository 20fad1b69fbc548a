"""Policy Zones pages inside the Airflow UI: server-rendered HTML shown by ``external_views``.

Airflow 3 shows a plugin's external view in an iframe of its own origin, so these pages are
authenticated by Airflow's session cookie through the same auth-manager dependencies as the
JSON API (:mod:`airflow_policyzones.api.access`), and they render the same models the API returns,
from the same filter models and audit queries (:mod:`airflow_policyzones.db.audit_filters`,
:mod:`airflow_policyzones.db.audit_queries`): one implementation of every filter and permission.
Jinja autoescaping escapes all data — DAG ids, task ids, inputs and labels are user input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_policyzones.api.access import ReadableDagIds
from airflow_policyzones.api.errors import http_exception
from airflow_policyzones.config import get_engine
from airflow_policyzones.db.asset_history import asset_labels
from airflow_policyzones.db.audit import BLIND_EXPLANATION, blind_decisions
from airflow_policyzones.db.audit_filters import (
    DEFAULT_UNCHECKED_SINCE,
    AssetQuery,
    BlindFilters,
    CoverageFilters,
    Paging,
    UncheckedQuery,
    ViolationFilters,
    Window,
)
from airflow_policyzones.db.audit_models import PolicyOut, TaskInstanceRef
from airflow_policyzones.db.audit_queries import (
    active_policy,
    blind_report,
    task_instance_decisions,
    unchecked_report,
    violation_page,
)
from airflow_policyzones.db.coverage import coverage_report
from airflow_policyzones.db.policy_history import (
    UnknownVersion,
    diff_versions,
    policy_text,
    policy_versions,
    previous_of,
    resolve,
)
from airflow_policyzones.db.policy_status import PolicyStatus, policy_status, short
from airflow_policyzones.db.query_errors import AuditQueryError, PolicyUnavailable
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.diff import SECTIONS
from airflow_policyzones.policy.models import Credential, CredentialKind
from airflow_policyzones.policy.vocabulary import MODES, VIOLATION_OUTCOMES, Outcome, Rule
from airflow_policyzones.ui.derivation import explain_reason
from airflow_policyzones.ui.zone_map import render_zone_map
from airflow_policyzones.urls import API_PREFIX, UI_PREFIX, URL_PREFIX

STATIC_DIR = Path(__file__).parent / "static"
OUTCOME_LABELS = {
    Outcome.ALLOW.value: "allowed",
    Outcome.DENY.value: "blocked",
    Outcome.DRY_RUN.value: "dry run",
    Outcome.EXEMPTED.value: "exempted",
}
"""How the pages' badges name each outcome."""

_SECURITY_HEADERS = {
    # Pages are framed by the Airflow UI (same origin) and load only their own CSS and script.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("airflow_policyzones.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals["explain_reason"] = explain_reason
    env.globals |= {"Rule": Rule, "Outcome": Outcome, "outcome_labels": OUTCOME_LABELS}
    return env


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _airflow_base(request: Request) -> str:
    """The Airflow UI's base path: the plugin app's root path without its own mount point."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root.removesuffix(URL_PREFIX) + "/"


def _policy_status() -> PolicyStatus | None:
    """The policy as each component has loaded it, for the banner and footer of every page."""
    from airflow.utils.session import create_session

    try:
        with create_session() as session:
            return policy_status(session=session)
    except Exception:  # a page must render even when the status cannot be read
        try:
            return policy_status(session=None)
        except Exception:
            return None


def _render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    base = _airflow_base(request)
    page = (
        _templates()
        .get_template(template)
        .render(
            airflow=base,
            ui_base=base.rstrip("/") + URL_PREFIX + UI_PREFIX + "/",
            api_base=base.rstrip("/") + URL_PREFIX + API_PREFIX + "/",
            current=template.removesuffix(".html"),
            policy_status=_policy_status(),
            short=short,
            **context,
        )
    )
    return HTMLResponse(page, status_code=status_code, headers=_SECURITY_HEADERS)


# --- filters from HTML forms ----------------------------------------------------------------


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_form(model: type[ModelT], request: Request) -> ModelT:
    """A page's query parameters as ``model``; empty form fields mean "no filter". Raises
    pydantic's ``ValidationError``."""
    values = {key: value for key, value in request.query_params.items() if value.strip()}
    return model.model_validate(values)


class _Form(BaseModel):
    """Query parameters of a page of its own (no list of the read API has them)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, request: Request) -> Any:
        return parse_form(cls, request)


class TaskInstanceQuery(_Form):
    dag_id: Annotated[str, Field(min_length=1, max_length=250)]
    run_id: Annotated[str, Field(min_length=1, max_length=250)]
    task_id: Annotated[str, Field(min_length=1, max_length=250)]
    map_index: str = "-1"

    @property
    def map_index_value(self) -> int:
        """Airflow leaves ``{MAP_INDEX}`` unreplaced for unmapped tasks: that means -1."""
        try:
            return int(self.map_index)
        except ValueError:
            return -1


def _invalid(error: ValidationError) -> HTTPException:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'query'}: {item['msg']}" for item in error.errors()
    ]
    return HTTPException(422, {"msg": "invalid filter", "problems": problems})


def _query(
    request: Request, form: type[ModelT], fetch: Callable[[ModelT], Any]
) -> tuple[ModelT, Any, Any, int]:
    """Parse a page's filters and fetch its rows; a bad filter becomes a message on the page.

    Returns (filters, rows or None, problem or None, HTTP status).
    """
    filters = form()
    try:
        filters = parse_form(form, request)
        return filters, fetch(filters), None, 200
    except ValidationError as error:
        return filters, None, _invalid(error).detail, 422
    except AuditQueryError as error:
        refused = http_exception(error)
        return filters, None, refused.detail, refused.status_code
    except HTTPException as error:
        return filters, None, error.detail, error.status_code


def _policy_or_none() -> tuple[PolicyOut | None, str | None]:
    try:
        return active_policy(), None
    except PolicyUnavailable as error:
        return None, str(error)


# --- pages ----------------------------------------------------------------------------------


def violations_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """Violations newest first, filterable; each links to its task instance and log."""
    policy, policy_error = _policy_or_none()
    filters, page, problem, status_code = _query(
        request,
        ViolationFilters,
        lambda filters: violation_page(
            session=session, readable=readable, filters=filters, paging=parse_form(Paging, request)
        ),
    )
    unchecked = unchecked_report(session=session, readable=readable, query=UncheckedQuery(limit=1))
    return _render(
        request,
        "violations.html",
        unchecked_since=unchecked.since if unchecked.items else None,
        status_code=status_code,
        policy=policy,
        policy_error=policy_error,
        filters=filters,
        results=page,
        problem=problem,
        rules=[rule.value for rule in Rule],
        modes=MODES,
        outcomes=[outcome.value for outcome in VIOLATION_OUTCOMES],
        ti_links=_ti_links,
    )


class CoveragePageFilters(CoverageFilters):
    """The coverage report's filters, and the window of the page's blind-tasks section."""

    since: Window = None


def coverage_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """Which DAGs and tasks run in which zone; unzoned, never-decided and blind tasks stand out."""
    policy, _error = _policy_or_none()
    filters, reports, problem, status_code = _query(
        request,
        CoveragePageFilters,
        lambda filters: (
            coverage_report(session=session, readable=readable, filters=filters),
            blind_report(
                session=session,
                readable=readable,
                filters=BlindFilters.model_validate(filters.model_dump()),
            ),
        ),
    )
    report, blind = reports if reports is not None else (None, None)
    return _render(
        request,
        "coverage.html",
        status_code=status_code,
        policy=policy,
        filters=filters,
        report=report,
        blind=blind,
        problem=problem,
        default_since=DEFAULT_UNCHECKED_SINCE,
        ti_links=_ti_links,
    )


def unchecked_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """Tries that started without a decision: what ``policyzones audit`` reports, in the UI."""
    filters, report, problem, status_code = _query(
        request,
        UncheckedQuery,
        lambda filters: unchecked_report(session=session, readable=readable, query=filters),
    )
    return _render(
        request,
        "unchecked.html",
        status_code=status_code,
        filters=filters,
        report=report,
        problem=problem,
        default_since=DEFAULT_UNCHECKED_SINCE,
        ti_links=_ti_links,
    )


def asset_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """One asset's propagated labels and the writes that made them (optionally as of a moment)."""
    try:
        query = parse_form(AssetQuery, request)
    except ValidationError as error:
        raise _invalid(error) from None
    report = asset_labels(session=session, readable=readable, query=query)
    return _render(request, "asset.html", query=query, report=report, ti_links=_ti_links)


class CredentialRow(BaseModel):
    """One ``connections:`` or ``variables:`` pattern of the policy and the zones it is served to."""

    model_config = ConfigDict(frozen=True)

    pattern: str
    reaches: str = Field(description="what the policy says it gives access to")
    description: str
    allowed: list[str] = Field(description="zones whose member tasks are served it")
    refused: list[str] = Field(description="zones refused it, enforcing")
    dry_run: list[str] = Field(description="zones refused it in dry_run: served, and recorded")


class CredentialSection(BaseModel):
    """The connections (or the variables) of the policy, as the api-server serves them to zones."""

    model_config = ConfigDict(frozen=True)

    kind: CredentialKind
    title: str
    unlisted_allowed: bool
    rows: list[CredentialRow]


def credential_sections(engine: PolicyEngine) -> list[CredentialSection]:
    """Per kind, each listed pattern and the zones that may use it (``engine.credential_map``)."""
    policy = engine.loaded.policy
    modes = {name: zone.mode for name, zone in policy.zones.items()}
    sections: list[CredentialSection] = []
    kinds: tuple[tuple[CredentialKind, str, dict[str, Credential]], ...] = (
        ("connection", "Connections", policy.connections),
        ("variable", "Variables", policy.variables),
    )
    for kind, title, specs in kinds:
        by_zone = engine.credential_map(kind=kind)
        rows = []
        for pattern, spec in specs.items():
            served = {zone: row.get(pattern, False) for zone, row in by_zone.items()}
            refused = sorted(zone for zone, ok in served.items() if not ok)
            rows.append(
                CredentialRow(
                    pattern=pattern,
                    reaches=_reaches(spec),
                    description=spec.description,
                    allowed=sorted(zone for zone, ok in served.items() if ok),
                    refused=[zone for zone in refused if modes.get(zone) != "dry_run"],
                    dry_run=[zone for zone in refused if modes.get(zone) == "dry_run"],
                )
            )
        sections.append(
            CredentialSection(
                kind=kind, title=title, unlisted_allowed=engine.unlisted_allowed(kind=kind), rows=rows
            )
        )
    return sections


def _reaches(spec: Credential) -> str:
    if spec.zones:
        return "reserved for zones " + ", ".join(spec.zones)
    parts = []
    if spec.catalog:
        parts.append("catalog " + ", ".join(spec.catalog))
    if spec.categories:
        parts.append("categories " + ", ".join(spec.categories))
    return "; ".join(parts)


def zones_page(request: Request, session: SessionDep) -> HTMLResponse:
    """The active policy: the zone map, zones, flows, reclassifiers, which zones may use each
    connection and variable the policy lists, what weakens enforcement on this api-server
    (``policyzones doctor --component api-server``), and the policy versions that decided
    something."""
    policy, policy_error = _policy_or_none()
    versions = policy_versions(session=session)
    history = [(use, previous_of(versions, use)) for use in reversed(versions)]
    zone_map = render_zone_map(policy) if policy is not None else None
    credentials: list[CredentialSection] = []
    if policy is not None:
        try:
            credentials = credential_sections(get_engine())
        except PolicyError:  # changed since: the page shows the policy it has
            credentials = []
    from airflow_policyzones.doctor import diagnose

    return _render(
        request,
        "zones.html",
        status_code=200 if policy is not None else 503,
        policy=policy,
        policy_error=policy_error,
        zone_map=zone_map,
        credentials=credentials,
        weaknesses=diagnose(component="api-server"),
        history=history,
    )


class VersionQuery(_Form):
    version: Annotated[str, Field(min_length=1, max_length=80)]
    diff: Annotated[str | None, Field(min_length=1, max_length=80)] = None
    """Show what changed from this version to ``version`` instead of ``version``'s text."""


def policy_version_page(request: Request, session: SessionDep) -> HTMLResponse:
    """One policy version that decided something: its full text, or what changed from another."""
    try:
        query = VersionQuery.parse(request)
    except ValidationError as error:
        raise _invalid(error) from None
    versions = policy_versions(session=session)
    try:
        use = resolve(versions=versions, given=query.version)
        old = resolve(versions=versions, given=query.diff) if query.diff else None
        changes = diff_versions(session=session, old=old, new=use) if old is not None else None
    except UnknownVersion as error:
        raise HTTPException(status_code=404, detail=str(error)) from None
    text = policy_text(session=session, version=use.version) if old is None else None
    return _render(
        request,
        "policy_version.html",
        use=use,
        old=old,
        changes=changes,
        text=text,
        sections=SECTIONS,
    )


def zone_map_svg() -> Response:
    """The zone map alone, as an SVG file (for reviews and documents)."""
    policy = active_policy()
    headers = _SECURITY_HEADERS | {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return Response(render_zone_map(policy, standalone=True), media_type="image/svg+xml", headers=headers)


def task_instance_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """The decisions made for one task instance (every try), with inputs, labels and findings."""
    try:
        query = TaskInstanceQuery.parse(request)
    except ValidationError as error:
        raise _invalid(error) from None
    decisions = task_instance_decisions(
        session=session,
        readable=readable,
        dag_id=query.dag_id,
        run_id=query.run_id,
        task_id=query.task_id,
        map_index=query.map_index_value,
    )
    blind = blind_decisions(session=session, decision_ids=[decision.id for decision in decisions])
    return _render(
        request,
        "task_instance.html",
        query=query,
        map_index=query.map_index_value,
        decisions=decisions,
        blind=blind,
        blind_explanation=BLIND_EXPLANATION,
        readable=query.dag_id in readable,
        ti_links=_ti_links,
    )


def _ti_links(ti: TaskInstanceRef, airflow: str) -> dict[str, str]:
    """Where a row's task instance lives in the Airflow UI (its default tab is the log)."""
    page = airflow + ti.ui_path
    return {
        "task_instance": page + "/details",
        "log": f"{page}?try_number={ti.try_number}",
        "decision": f"{page}/plugin/policy-decision",
        "dag": airflow + "dags/" + quote(ti.dag_id, safe=""),
    }


def index() -> RedirectResponse:
    return RedirectResponse("violations", status_code=307)


# --- errors as pages ------------------------------------------------------------------------


def _is_page(request: Request) -> bool:
    route_path = str(request.scope.get("path", ""))
    root = str(request.scope.get("root_path", ""))
    return route_path.removeprefix(root).startswith(UI_PREFIX + "/")


async def page_http_error(request: Request, error: Exception) -> Response:
    """Errors on pages are pages (an expired session says how to log in again); API errors stay JSON.

    Handles HTTP exceptions, request validation errors and the audit queries' domain errors
    (answered as :func:`airflow_policyzones.api.errors.http_exception` says)."""
    from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler

    if isinstance(error, AuditQueryError):
        error = http_exception(error)
    if isinstance(error, RequestValidationError):
        if not _is_page(request):
            return await request_validation_exception_handler(request, error)
        detail: Any = {
            "msg": "invalid request",
            "problems": [str(item.get("msg")) for item in error.errors()],
        }
        status_code = 422
    else:
        assert isinstance(error, StarletteHTTPException)
        if not _is_page(request):
            return await http_exception_handler(request, error)
        detail, status_code = error.detail, error.status_code
    session_lost = status_code == 401 or (status_code == 403 and detail == "Invalid JWT token")
    kind: Literal["login", "forbidden", "missing", "invalid", "unavailable"] = (
        "login"
        if session_lost
        else "forbidden"
        if status_code == 403
        else "missing"
        if status_code == 404
        else "unavailable"
        if status_code >= 500
        else "invalid"
    )
    return _render(
        request,
        "error.html",
        status_code=status_code,
        kind=kind,
        detail=detail,
        login_url=_login_url(request),
    )


def _login_url(request: Request) -> str:
    """The auth manager's login page, coming back to Policy Zones afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return str(get_auth_manager().get_url_login(next_url=_airflow_base(request) + "plugin/policy-zones"))
    except Exception:  # an auth manager without a login page of its own: Airflow's start page
        return _airflow_base(request)


def ui_router() -> APIRouter:
    """The pages, each behind Airflow's DAG read permission (like the audit API)."""
    router = APIRouter(
        prefix=UI_PREFIX, include_in_schema=False, dependencies=[Depends(requires_access_dag(method="GET"))]
    )
    router.add_api_route("/", index, methods=["GET"])
    router.add_api_route("/violations", violations_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/zones", zones_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/zone-map.svg", zone_map_svg, methods=["GET"])
    router.add_api_route("/policy-version", policy_version_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/task-instance", task_instance_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/asset", asset_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/coverage", coverage_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/unchecked", unchecked_page, methods=["GET"], response_class=HTMLResponse)
    from airflow_policyzones.ui import data_use  # imports this module

    router.add_api_route("/data-use", data_use.data_use_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/data-use/export.{format}", data_use.data_use_export, methods=["GET"])
    return router


def static_files() -> StaticFiles:
    """CSS, script and icon of the pages (public: they contain no data)."""
    return StaticFiles(directory=STATIC_DIR)
