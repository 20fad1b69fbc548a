"""``GET /unchecked`` and ``GET /blind``: reconciliations of tries over a window, the tries that
started without a recorded decision and the tasks whose successful tries had no known reads."""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Query

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.db.audit import BLIND_EXPLANATION
from airflow_policyzones.db.audit_filters import DEFAULT_UNCHECKED_SINCE, BlindFilters, UncheckedQuery
from airflow_policyzones.db.audit_models import BlindOut, UncheckedOut
from airflow_policyzones.db.audit_queries import blind_report, unchecked_report

BLIND_DESCRIPTION = f"""\
Tasks of readable DAGs whose tries decided since `since` finished successfully (Airflow state
`success`: the body ran to completion) **without a single known read**: no declared inlet, no
table or file in SQL the provider analyzes, nothing a hook or object-storage path reported while
the body ran, and no finding about a read (`undeclared_input`, `uncheckable_input`). In short,
{BLIND_EXPLANATION}. Such a task passed its zone check only because there was nothing to check.

Per task: the number of blind tries, for contrast the number of successful tries of the same task
in the window whose decision had reads, and the last blind try (its zone, decision and task
instance). Filters: `since` (as for `/unchecked`, default {DEFAULT_UNCHECKED_SINCE}), `until` (ISO
8601, exclusive), `dag_id` (exact), `zone` (tries decided in that zone) or `unzoned_only`. Sorted
by DAG and task id.

A separate endpoint rather than a part of `/coverage`: coverage describes DAGs and tasks as they
stand now (their zone, their latest decision) with no time window, while this, like
`/unchecked`, is a reconciliation of tries over a window and takes the same `since`."""

router = audit_router()


@router.get(
    "/unchecked",
    response_model=UncheckedOut,
    summary="Task-instance tries that started without a recorded decision (evidence of a bypass)",
)
def list_unchecked(
    *, session: SessionDep, readable: ReadableDagIds, query: Annotated[UncheckedQuery, Query()]
) -> UncheckedOut:
    """Task-instance tries of readable DAGs that started without a recorded decision, oldest first.

    Such a try skipped the check (enforcement off, or DAG code got around it): evidence to look at.
    """
    return unchecked_report(session=session, readable=readable, query=query)


@router.get(
    "/blind",
    response_model=BlindOut,
    summary="Tasks whose successful tries had no known reads: the check had nothing to decide on",
    description=BLIND_DESCRIPTION,
)
def list_blind(
    *, session: SessionDep, readable: ReadableDagIds, filters: Annotated[BlindFilters, Query()]
) -> BlindOut:
    """Tasks whose successful tries had no known reads (see BLIND_DESCRIPTION).

    Its own endpoint, not a part of ``GET /coverage``: coverage is the state of DAGs and tasks now,
    without a window; this reconciles tries over a window (``since``), like ``GET /unchecked``.
    """
    return blind_report(session=session, readable=readable, filters=filters)
