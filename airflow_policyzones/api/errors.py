"""The one mapping of the audit queries' domain errors to HTTP: a status code per error type,
the error responses the routes document, and the exception an error becomes at the app's edge
(answered as JSON for the API and as an error page for the pages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException

from airflow_policyzones.db.query_errors import AuditQueryError, InvalidQuery, NotFound, PolicyUnavailable

STATUS_CODES: dict[type[AuditQueryError], int] = {
    InvalidQuery: 422,  # a literal: Starlette renamed the constant (..._CONTENT) and deprecated the old name
    NotFound: 404,
    PolicyUnavailable: 503,
}
"""The HTTP status of each domain error type (a subclass answers as its nearest listed base)."""


def status_of(error: AuditQueryError) -> int:
    """The HTTP status ``error`` is answered with (500 for a type not in :data:`STATUS_CODES`)."""
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]
    return 500


def http_exception(error: AuditQueryError) -> HTTPException:
    """``error`` as the HTTP exception it is answered with: its status and its detail."""
    return HTTPException(status_of(error), error.detail)


def error_responses(described: Mapping[type[AuditQueryError], str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the domain errors a route may raise, each with its description:
    ``{status: {"description": str}}``."""
    return {STATUS_CODES[kind]: {"description": text} for kind, text in described.items()}
