"""``GET /export/violations`` and ``GET /export/decisions``: the lists' rows for auditors, as CSV
or JSON, streamed newest first and bounded by ``max_rows``.

Both formats name what the export covers in response headers (:data:`CHAIN_HEAD_HEADER` and the
others, from the export's :class:`~airflow_policyzones.db.exports.ExportSeal`); JSON also puts
the seal in the object around the rows.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import StreamingResponse

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.db.exports import (
    DecisionExportQuery,
    Export,
    ExportFormat,
    ExportSeal,
    ViolationExportQuery,
    csv_text,
    decision_export,
    json_text,
    violation_export,
)

CHAIN_HEAD_HEADER = "X-Policyzones-Chain-Head"
"""sha256 over the digests of the exported rows' decisions, in id order (as ``verify-records``)."""
CHAIN_DECISIONS_HEADER = "X-Policyzones-Chain-Decisions"
"""How many chained decisions the head covers."""
CHAIN_LAST_ID_HEADER = "X-Policyzones-Chain-Last-Id"
"""The highest decision id among the exported rows' decisions (absent when nothing was exported)."""
UNCHAINED_HEADER = "X-Policyzones-Unchained-Decisions"
"""Exported rows' decisions recorded before the chain started (no digest: not in the head)."""
POLICY_VERSIONS_HEADER = "X-Policyzones-Policy-Versions"
"""The policy versions that decided the exported rows, sorted, comma-separated."""


def seal_headers(seal: ExportSeal) -> dict[str, str]:
    """The response headers that name what an export covers."""
    headers = {
        CHAIN_HEAD_HEADER: seal.head,
        CHAIN_DECISIONS_HEADER: str(seal.decisions),
        UNCHAINED_HEADER: str(seal.unchained_decisions),
        POLICY_VERSIONS_HEADER: ",".join(seal.policy_versions),
    }
    if seal.last_id is not None:
        headers[CHAIN_LAST_ID_HEADER] = str(seal.last_id)
    return headers


def _streamed(export: Export, *, format: ExportFormat, name: str) -> StreamingResponse:
    """CSV (plain rows) or JSON (rows in an object with the seal), as an attachment."""
    headers = {
        "Content-Disposition": f'attachment; filename="policyzones-{name}.{format}"',
        **seal_headers(export.seal),
    }
    if format == "csv":
        return StreamingResponse(csv_text(export), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(json_text(export), media_type="application/json", headers=headers)


def _streamed_responses(rows: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": rows, "content": {"text/csv": {}, "application/json": {}}}}


router = audit_router()


@router.get(
    "/export/violations",
    summary="Export filtered violations as CSV or JSON (streamed, bounded by max_rows)",
    response_class=StreamingResponse,
    responses=_streamed_responses("The violations, newest first"),
)
def export_violations(
    *, readable: ReadableDagIds, query: Annotated[ViolationExportQuery, Query()]
) -> StreamingResponse:
    """Filtered violations for auditors, streamed newest first (filters as for the list)."""
    export = violation_export(readable=readable, filters=query, max_rows=query.max_rows)
    return _streamed(export, format=query.format, name="violations")


@router.get(
    "/export/decisions",
    summary="Export filtered decisions as CSV or JSON (streamed, bounded by max_rows)",
    response_class=StreamingResponse,
    responses=_streamed_responses("The decisions, newest first"),
)
def export_decisions(
    *, readable: ReadableDagIds, query: Annotated[DecisionExportQuery, Query()]
) -> StreamingResponse:
    """Filtered decisions for auditors, streamed newest first (filters as for the list)."""
    export = decision_export(readable=readable, filters=query, max_rows=query.max_rows)
    return _streamed(export, format=query.format, name="decisions")
