"""Keyset pagination of the audit lists: on ``(decided_at, id)``, newest first.

A page costs the same at any depth, and rows recorded meanwhile neither repeat nor go missing.
The cursor is opaque to clients: the ``(decided_at, id)`` of the last row of a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from airflow_policyzones.db.audit_filters import MAX_CURSOR_LEN, utc
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation
from airflow_policyzones.db.query_errors import InvalidQuery

RowT = TypeVar("RowT", PolicyZonesViolation, PolicyZonesDecision)


def encode_cursor(*, decided_at: datetime, row_id: int) -> str:
    """Opaque keyset cursor: the (decided_at, id) of the last row of a page (URL-safe base64)."""
    raw = json.dumps([decided_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The cursor's ``(decided_at, id)``; :class:`InvalidQuery` when the cursor is not one of ours."""
    try:
        if len(cursor) > MAX_CURSOR_LEN:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        if not isinstance(at, str) or not isinstance(row_id, int) or isinstance(row_id, bool):
            raise ValueError("wrong types")
        decided_at = utc(datetime.fromisoformat(at))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery(
            "malformed cursor: pass back the next_cursor of a previous page unchanged"
        ) from None
    assert decided_at is not None  # fromisoformat never returns None
    return decided_at, row_id


def keyset_after(
    model: type[PolicyZonesViolation] | type[PolicyZonesDecision], position: tuple[datetime, int]
) -> sa.ColumnElement[bool]:
    """Rows after ``position`` in newest-first order, as a row-value comparison: PostgreSQL uses
    it as an index condition (the equivalent ``a < x OR (a = x AND b < y)`` is only a filter, so
    deep pages got slower)."""
    at, row_id = position
    return sa.tuple_(model.decided_at, model.id) < sa.tuple_(sa.literal(at, model.decided_at.type), row_id)


def fetch_page(
    session: Session, query: sa.Select[RowT], model: type[RowT], *, cursor: str | None, limit: int
) -> tuple[list[RowT], str | None]:
    """At most ``limit`` rows of ``query`` after ``cursor``, and the cursor of the next page
    (``None``: this is the last page). Raises :class:`InvalidQuery` for a malformed cursor."""
    if cursor is not None:
        query = query.where(keyset_after(model, decode_cursor(cursor)))
    rows = list(session.scalars(query.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(decided_at=last.decided_at, row_id=last.id)
