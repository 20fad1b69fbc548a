"""``GET /coverage``: which DAGs and tasks run in which zone, and which are unzoned."""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Query

from airflow_policyzones.api.access import ReadableDagIds, audit_router
from airflow_policyzones.db.audit_filters import CoverageFilters
from airflow_policyzones.db.audit_models import CoverageOut
from airflow_policyzones.db.coverage import coverage_report

COVERAGE_DESCRIPTION = """\
For every active DAG the user may read: its file, tags and default zone (its `policyzone:<zone>`
tag, else the policy's `settings.default_zone`), whether the policy admits the DAG in that zone,
and its tasks (from the DAG's latest serialized version) with the zone each runs in.

Airflow does not serialize zones set on tasks (`ZoneGroup`, `set_zone`, `zoned`), so a task's
zone is the zone of its **most recent decision**; only a task never decided falls back to its
DAG's default zone. `null` zone: the task runs unzoned.

Filters: `zone` (tasks in that zone), `dag_id` (exact match), `unzoned_only` (tasks without a
zone). A filtered report lists the DAGs with a matching task, and the summary counts what is
listed. When the policy does not load the report is still served, with `membership` null and
`policy_error` set."""

router = audit_router()


@router.get(
    "/coverage",
    response_model=CoverageOut,
    summary="Which DAGs and tasks run in which zone, and which are unzoned",
    description=COVERAGE_DESCRIPTION,
)
def get_coverage(
    *, session: SessionDep, readable: ReadableDagIds, filters: Annotated[CoverageFilters, Query()]
) -> CoverageOut:
    """Which DAGs and tasks run in which zone, and which are unzoned (see COVERAGE_DESCRIPTION)."""
    return coverage_report(session=session, readable=readable, filters=filters)
