"""The Data use page: "did this data reach this zone (or purpose) in this period?", answered from
the records by :func:`airflow_policyzones.db.evidence.data_use_evidence`, and its exports.

The page, its JSON and its HTML export render one report object, computed over the DAGs the
user may read only. A bad question (an unknown category, zone or purpose, an empty period) is a
422 that names the field and its valid values; a period without decisions says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import Field, ValidationError
from sqlalchemy.orm import Session

from airflow_policyzones.api.access import ReadableDagIds
from airflow_policyzones.config import get_engine
from airflow_policyzones.db.audit_filters import FilterText
from airflow_policyzones.db.audit_models import TaskInstanceRef, policy_out
from airflow_policyzones.db.audit_rows import ti_ref
from airflow_policyzones.db.evidence import EvidenceQueryError, data_use_evidence
from airflow_policyzones.db.evidence_models import SOURCE_ORIGIN, DataUseEvidence, FlowCell
from airflow_policyzones.policy import PolicyEngine, PolicyError
from airflow_policyzones.ui import pages
from airflow_policyzones.ui.evidence_report import render_evidence_html, render_flow_map

DEFAULT_DAYS = 30
"""The period when none is given: the last 30 days."""
_EXPORT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class EvidenceFilters(pages._Form):
    """The question: which data (category and/or asset glob), where (zone or purpose), when."""

    category: FilterText = None
    asset: Annotated[str | None, Field(min_length=1, max_length=3000)] = None
    zone: FilterText = None
    purpose: FilterText = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def asked(self) -> bool:
        """Whether the form names any data (a first visit does not: it shows the form only)."""
        return self.category is not None or self.asset is not None

    def start(self, *, now: datetime) -> datetime:
        return self.since if self.since is not None else now - timedelta(days=DEFAULT_DAYS)

    def query_string(self) -> str:
        values = {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in self.model_dump(exclude_none=True).items()
        }
        return urlencode(values)


@dataclass(frozen=True, slots=True)
class MatrixView:
    """The zone-to-zone matrix as a table: origin zones down, reading zones across."""

    origins: list[str]
    zones: list[str]
    cells: dict[tuple[str, str], list[FlowCell]]

    @classmethod
    def of(cls, cells: Sequence[FlowCell]) -> MatrixView:
        by_pair: dict[tuple[str, str], list[FlowCell]] = {}
        for cell in cells:
            by_pair.setdefault((cell.origin, cell.zone), []).append(cell)
        origins = sorted({cell.origin for cell in cells}, key=lambda name: (name == SOURCE_ORIGIN, name))
        return cls(origins=origins, zones=sorted({cell.zone for cell in cells}), cells=by_pair)


def _names(engine: PolicyEngine) -> dict[str, list[str]]:
    """The valid values of each field, from the policy the report runs with."""
    spec = engine.policy
    return {
        "category": sorted(spec.categories),
        "zone": sorted(spec.zones),
        "purpose": sorted({zone.purpose for zone in spec.zones.values()}),
    }


def _problem(error: EvidenceQueryError, filters: EvidenceFilters, engine: PolicyEngine) -> dict[str, Any]:
    """The 422 detail: the report's message, and the field it is about with its valid values."""
    names = _names(engine)
    detail: dict[str, Any] = {"msg": str(error)}
    for field in ("category", "zone", "purpose"):
        given = getattr(filters, field)
        if given is not None and given not in names[field] and f"unknown {field}" in str(error):
            detail = {"msg": f"{field}: {error}", "allowed": names[field]}
            break
    return detail


def evidence(
    *, session: Session, readable: set[str], filters: EvidenceFilters, now: datetime | None = None
) -> DataUseEvidence:
    """The report for the page and its exports; a bad question becomes a 422, no policy a 503."""
    moment = now or datetime.now(timezone.utc)
    try:
        engine = get_engine()
    except PolicyError as error:
        raise HTTPException(503, f"the api-server's policy does not load: {error}") from None
    try:
        return data_use_evidence(
            session,
            policy=engine,
            category=filters.category,
            asset=filters.asset,
            zone=filters.zone,
            purpose=filters.purpose,
            since=filters.start(now=moment),
            until=filters.until,
            readable_dag_ids=readable,
            now=moment,
        )
    except EvidenceQueryError as error:
        raise HTTPException(422, _problem(error, filters, engine)) from None


def _parse(request: Request) -> EvidenceFilters:
    try:
        filters: EvidenceFilters = EvidenceFilters.parse(request)
    except ValidationError as error:
        raise pages._invalid(error) from None
    return filters


def data_use_page(request: Request, session: SessionDep, readable: ReadableDagIds) -> HTMLResponse:
    """The question's form and, once it names data, the answer with its evidence."""
    now = datetime.now(timezone.utc)
    filters, report, problem, status_code = pages._query(
        request,
        EvidenceFilters,
        lambda filters: (
            evidence(session=session, readable=readable, filters=filters, now=now) if filters.asked else None
        ),
    )
    try:
        engine = get_engine()
        names = _names(engine)
        flow_map = _flow_map(report, engine) if report is not None else None
    except PolicyError:  # no policy that loads: the form without its choices
        names, flow_map = {"category": [], "zone": [], "purpose": []}, None
    return pages._render(
        request,
        "data_use.html",
        status_code=status_code,
        filters=filters,
        names=names,
        report=report,
        problem=problem,
        default_since=filters.start(now=now),
        default_days=DEFAULT_DAYS,
        matrix=MatrixView.of(report.matrix) if report is not None else None,
        flow_map=flow_map,
        ti_links=pages._ti_links,
        ti_ref=_ti_ref,
        run_ref=_run_ref,
        reversed_path=lambda path: list(reversed(path)),
    )


def _flow_map(report: DataUseEvidence, engine: PolicyEngine) -> str:
    """The policy's zone map with the flows observed in the period drawn over it (SVG)."""
    return render_flow_map(report, policy=policy_out(engine))


def _ti_ref(row: Any) -> TaskInstanceRef:
    return ti_ref(row)


def _run_ref(*, dag_id: str, run_id: str, task_id: str) -> TaskInstanceRef:
    """An allowed use's last run (the task's page in that run; its tries are on the page)."""
    return ti_ref(_Row(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1, try_number=1))


@dataclass(frozen=True, slots=True)
class _Row:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int


def data_use_export(request: Request, session: SessionDep, readable: ReadableDagIds, format: str) -> Response:
    """The report as a file: JSON (the report object) or a self-contained HTML page."""
    kind: Literal["json", "html"] = "json" if format == "json" else "html"
    if format not in ("json", "html"):
        raise HTTPException(404, f"no export as {format!r}: json or html")
    filters = _parse(request)
    if not filters.asked:
        raise HTTPException(422, {"msg": "say which data: give a category or an asset pattern"})
    report = evidence(session=session, readable=readable, filters=filters)
    name = f"policyzones-evidence-{report.generated_at.strftime('%Y%m%dT%H%M%SZ')}.{kind}"
    headers = _EXPORT_HEADERS | {"Content-Disposition": f'attachment; filename="{name}"'}
    if kind == "json":
        return Response(report.model_dump_json(indent=2), media_type="application/json", headers=headers)
    # Self-contained: its own styles and SVG inline, nothing loaded (prints to PDF as it is).
    headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return HTMLResponse(render_evidence_html(report, policy=policy_out(get_engine())), headers=headers)
