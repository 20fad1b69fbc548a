"""Policy Zones pages inside the Airflow UI: server-rendered HTML shown by ``external_views``.

Airflow 3 shows a plugin's external view in an iframe of its own origin, so these pages are
authenticated by Airflow's session cookie through the same auth-manager dependencies as the
JSON API, and they render the same models the API returns (the endpoint functions are called
directly: one implementation of every filter and permission). Jinja autoescaping escapes all
data — DAG ids, task ids, inputs and labels are user input.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_policyzones.api import read_routes
from airflow_policyzones.api.read_schema import PolicyOut, TaskInstanceRef
from airflow_policyzones.audit import BLIND_EXPLANATION, blind_decisions
from airflow_policyzones.config import get_engine
from airflow_policyzones.db.models import PolicyZonesDecision
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.policy.diff import SECTIONS
from airflow_policyzones.policy.models import Credential, CredentialKind
from airflow_policyzones.policy_history import (
    UnknownVersion,
    diff_versions,
    policy_text,
    policy_versions,
    previous_of,
    resolve,
)
from airflow_policyzones.policy_status import PolicyStatus, policy_status, short
from airflow_policyzones.ui.derivation import explain_reason
from airflow_policyzones.ui.zone_map import render_zone_map

UI_PREFIX = "/ui"
"""Below the plugin app's mount point (``/policyzones``)."""
STATIC_DIR = Path(__file__).parent / "static"

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
    return env


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _airflow_base(request: Request) -> str:
    """The Airflow UI's base path: the plugin app's root path without its own mount point."""
    from airflow_policyzones.api.app import URL_PREFIX

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
            ui_base=base.rstrip("/") + "/policyzones" + UI_PREFIX + "/",
            api_base=base.rstrip("/") + "/policyzones/api/v1/",
            current=template.removesuffix(".html"),
            policy_status=_policy_status(),
            short=short,
            **context,
        )
    )
    return HTMLResponse(page, status_code=status_code, headers=_SECURITY_HEADERS)


# --- filters from HTML forms ----------------------------------------------------------------


class _Form(BaseModel):
    """Query parameters of a page; empty form fields mean "no filter"."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, request: Request) -> Any:
        values = {key: value for key, value in request.query_params.items() if value.strip()}
        return cls.model_validate(values)


_FilterText = Annotated[str | None, Field(min_length=1, max_length=250)]


class ViolationFilters(_Form):
    dag_id: _FilterText = None
    task_id: _FilterText = None
    zone: _FilterText = None
    rule: read_routes.RuleValue | None = None
    mode: read_routes.ModeValue | None = None
    outcome: read_routes.ViolationOutcome | None = None
    category: _FilterText = None
    since: datetime | None = None
    until: datetime | None = None

    def query_string(self, **extra: str) -> str:
        values = {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in self.model_dump(exclude_none=True).items()
        }
        return urlencode(values | extra)


class _Paging(_Form):
    limit: Annotated[int, Field(ge=1, le=read_routes.MAX_LIMIT)] = read_routes.DEFAULT_LIMIT
    cursor: Annotated[str | None, Field(max_length=200)] = None


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


FormT = TypeVar("FormT", bound=_Form)


def _query(request: Request, form: type[FormT], fetch: Callable[[FormT], Any]) -> tuple[FormT, Any, Any, int]:
    """Parse a page's filters and fetch its rows; a bad filter becomes a message on the page.

    Returns (filters, rows or None, problem or None, HTTP status).
    """
    filters = form()
    try:
        filters = form.parse(request)
        return filters, fetch(filters), None, 200
    except ValidationError as error:
        return filters, None, _invalid(error).detail, 422
    except HTTPException as error:
        return filters, None, error.detail, error.status_code


def _policy_or_none() -> tuple[PolicyOut | None, str | None]:
    try:
        return read_routes.get_policy(), None
    except HTTPException as error:
        return None, str(error.detail)


# --- pages ----------------------------------------------------------------------------------


def violations_page(
    request: Request, session: SessionDep, readable: read_routes.ReadableDagIds
) -> HTMLResponse:
    """Violations newest first, filterable; each links to its task instance and log."""
    policy, policy_error = _policy_or_none()
    filters, page, problem, status_code = _query(
        request,
        ViolationFilters,
        lambda filters: read_routes.list_violations(
            session=session, readable=readable, **_Paging.parse(request).model_dump(), **filters.model_dump()
        ),
    )
    unchecked = read_routes.list_unchecked(session=session, readable=readable, since=None, limit=1)
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
        rules=get_args(read_routes.RuleValue),
        modes=get_args(read_routes.ModeValue),
        outcomes=get_args(read_routes.ViolationOutcome),
        ti_links=_ti_links,
    )


class CoverageFilters(_Form):
    dag_id: _FilterText = None
    zone: _FilterText = None
    unzoned_only: bool = False
    since: Annotated[str | None, Field(max_length=64)] = None
    """The window of the blind-tasks section (coverage itself has none)."""


class UncheckedFilters(_Form):
    since: Annotated[str | None, Field(max_length=64)] = None
    limit: Annotated[int, Field(ge=1, le=read_routes.MAX_UNCHECKED_LIMIT)] = (
        read_routes.DEFAULT_UNCHECKED_LIMIT
    )


def coverage_page(
    request: Request, session: SessionDep, readable: read_routes.ReadableDagIds
) -> HTMLResponse:
    """Which DAGs and tasks run in which zone; unzoned, never-decided and blind tasks stand out."""
    policy, _error = _policy_or_none()
    filters, reports, problem, status_code = _query(
        request,
        CoverageFilters,
        lambda filters: (
            read_routes.get_coverage(
                session=session, readable=readable, **filters.model_dump(exclude={"since"})
            ),
            read_routes.list_blind(
                session=session,
                readable=readable,
                until=None,
                limit=read_routes.DEFAULT_BLIND_LIMIT,
                **filters.model_dump(),
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
        default_since=read_routes.DEFAULT_UNCHECKED_SINCE,
        ti_links=_ti_links,
    )


def unchecked_page(
    request: Request, session: SessionDep, readable: read_routes.ReadableDagIds
) -> HTMLResponse:
    """Tries that started without a decision: what ``policyzones audit`` reports, in the UI."""
    filters, report, problem, status_code = _query(
        request,
        UncheckedFilters,
        lambda filters: read_routes.list_unchecked(
            session=session, readable=readable, **filters.model_dump()
        ),
    )
    return _render(
        request,
        "unchecked.html",
        status_code=status_code,
        filters=filters,
        report=report,
        problem=problem,
        default_since=read_routes.DEFAULT_UNCHECKED_SINCE,
        ti_links=_ti_links,
    )


class AssetQuery(_Form):
    name: Annotated[str, Field(min_length=1, max_length=3000)]
    namespace: Literal["asset", "table"] = "asset"
    at: datetime | None = None


def asset_page(request: Request, session: SessionDep, readable: read_routes.ReadableDagIds) -> HTMLResponse:
    """One asset's propagated labels and the writes that made them (optionally as of a moment)."""
    try:
        query = AssetQuery.parse(request)
    except ValidationError as error:
        raise _invalid(error) from None
    report = read_routes.get_asset_labels(session=session, readable=readable, **query.model_dump())
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
    from airflow_policyzones.cli.doctor import diagnose

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
    policy = read_routes.get_policy()
    headers = _SECURITY_HEADERS | {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return Response(render_zone_map(policy, standalone=True), media_type="image/svg+xml", headers=headers)


def task_instance_page(
    request: Request, session: SessionDep, readable: read_routes.ReadableDagIds
) -> HTMLResponse:
    """The decisions made for one task instance (every try), with inputs, labels and findings."""
    try:
        query = TaskInstanceQuery.parse(request)
    except ValidationError as error:
        raise _invalid(error) from None
    decisions = []
    if query.dag_id in readable:
        ids = session.scalars(
            sa.select(PolicyZonesDecision.id)
            .where(
                PolicyZonesDecision.dag_id == query.dag_id,
                PolicyZonesDecision.run_id == query.run_id,
                PolicyZonesDecision.task_id == query.task_id,
                PolicyZonesDecision.map_index == query.map_index_value,
            )
            .order_by(PolicyZonesDecision.try_number.desc())
        )
        decisions = [
            read_routes.get_decision(decision_id=decision_id, session=session, readable=readable)
            for decision_id in ids
        ]
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
    """Errors on pages are pages (an expired session says how to log in again); API errors stay JSON."""
    from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler

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
