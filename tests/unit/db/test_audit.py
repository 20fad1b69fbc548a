"""Reconciliation by fact, not by class name: which tries count as unchecked.

Real ``task_instance`` rows on SQLite and PostgreSQL, made by Airflow's own code: the scheduler's
``DagRun.update_state`` / ``schedule_tis`` (which completes an ``EmptyOperator`` without running
it) and the execution API (``PATCH /run`` and ``/state``, through Airflow's in-process client, as
a worker's supervisor calls them). No decision is recorded for any of these tries.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.audit import unchecked_tries
from tests.support.airflow_db import Prepared, sync_dags
from tests.support.db_fixtures import backend

__all__ = ["backend"]

pytestmark = pytest.mark.integration

DAG_ID = "audit_by_fact"

MARKERS_DAG = f'''
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator as AirflowEmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
from airflow.sdk import DAG, BaseOperator


class EmptyOperator(BaseOperator):
    """Named like Airflow's, but a plain operator: the scheduler runs it on a worker."""

    def execute(self, context):
        return None


class TeamMarker(AirflowEmptyOperator):
    """A team's own marker class: the scheduler completes it without running it."""


with DAG({DAG_ID!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    EmptyOperator(task_id="named_empty")
    TeamMarker(task_id="team_marker")
    ExternalTaskMarker(task_id="external_marker", external_dag_id="elsewhere", external_task_id="t")
    AirflowEmptyOperator(task_id="airflow_empty")
'''


@dataclass(frozen=True)
class Scheduled:
    run_id: str
    since: datetime
    rows: dict[str, dict[str, object]]
    """task_id -> the task_instance columns the rule reads, after the run."""


@pytest.fixture(scope="module")
def scheduled(backend: Prepared) -> Iterator[Scheduled]:
    from airflow._shared.timezones import timezone as airflow_timezone
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    folder = Path(tempfile.mkdtemp(prefix="policyzones-audit-"))
    (folder / "markers.py").write_text(MARKERS_DAG)
    sync_dags(folder, expected={DAG_ID})
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    run_id = f"manual__{uuid.uuid4().hex}"
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(DAG_ID, session=session)
        assert dag is not None
        run = dag.create_dagrun(
            run_id=run_id,
            run_after=airflow_timezone.utcnow(),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        session.flush()
        run.dag = dag
        # What the scheduler does for a running DAG run: the empty tasks are completed here.
        schedulable, _ = run.update_state(session=session, execute_callbacks=False)
        run.schedule_tis(schedulable, session=session)
    with create_session() as session:
        named = session.scalars(
            sa.select(TaskInstance).where(
                TaskInstance.run_id == run_id, TaskInstance.task_id == "named_empty"
            )
        ).one()
        assert named.state == TaskInstanceState.SCHEDULED
        # The scheduler queues it for the executor...
        named.state = TaskInstanceState.QUEUED
        named.queued_dttm = airflow_timezone.utcnow()
        ti_id = named.id
    # ... and the worker's supervisor starts and finishes it through the execution API.
    client = InProcessTestSupervisor._api_client(dag)
    client.task_instances.start(ti_id, os.getpid(), airflow_timezone.utcnow())
    client.task_instances.succeed(
        ti_id, when=airflow_timezone.utcnow(), task_outlets=[], outlet_events=[], rendered_map_index=None
    )
    with create_session() as session:
        found = session.execute(
            sa.select(
                TaskInstance.task_id,
                TaskInstance.operator,
                TaskInstance.state,
                TaskInstance.duration,
                TaskInstance.pid,
                TaskInstance.hostname,
                TaskInstance.start_date,
            ).where(TaskInstance.run_id == run_id)
        ).mappings()
        rows = {row["task_id"]: dict(row) for row in found}
    yield Scheduled(run_id=run_id, since=since, rows=rows)


def unchecked(scheduled: Scheduled) -> list[tuple[str, str | None]]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tries = unchecked_tries(session=session, since=scheduled.since, dag_ids={DAG_ID})
    return [(item.task_id, item.operator) for item in tries if item.run_id == scheduled.run_id]


def test_the_rows_are_what_airflow_writes(scheduled: Scheduled) -> None:
    """The facts the rule relies on, as Airflow 3.3 records them: every try succeeded and has a
    start date; only the one that ran has a worker (hostname, pid) and a duration."""
    rows = scheduled.rows
    assert {task: row["state"] for task, row in rows.items()} == dict.fromkeys(
        ("named_empty", "team_marker", "external_marker", "airflow_empty"), "success"
    )
    assert all(row["start_date"] is not None for row in rows.values())
    for task in ("team_marker", "external_marker", "airflow_empty"):
        assert (rows[task]["duration"], rows[task]["pid"], rows[task]["hostname"] or "") == (0, None, "")
    assert rows["named_empty"]["operator"] == "EmptyOperator"
    assert rows["named_empty"]["pid"] == os.getpid() and rows["named_empty"]["hostname"]


def test_tries_completed_without_running_are_not_unchecked_whatever_their_class(
    scheduled: Scheduled,
) -> None:
    """ExternalTaskMarker and a team's EmptyOperator subclass are not false alarms any more, and a
    DAG-file class named EmptyOperator that really ran is reported."""
    assert unchecked(scheduled) == [("named_empty", "EmptyOperator")]


def test_a_try_that_started_in_the_triggerer_is_unchecked(scheduled: Scheduled) -> None:
    """No worker either (``start_from_trigger``), but trigger code ran for a while: reported."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.run_id == scheduled.run_id, TaskInstance.task_id == "team_marker")
            .values(duration=4.5)
        )
    try:
        assert sorted(unchecked(scheduled)) == [
            ("named_empty", "EmptyOperator"),
            ("team_marker", "TeamMarker"),
        ]
    finally:
        with create_session() as session:
            session.execute(
                sa.update(TaskInstance)
                .where(TaskInstance.run_id == scheduled.run_id, TaskInstance.task_id == "team_marker")
                .values(duration=0)
            )
