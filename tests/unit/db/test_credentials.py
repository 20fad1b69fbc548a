"""Decisions on connection requests that no single try makes: a triggerer's trigger runner, which
serves the triggers of many tries, on real Airflow tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.credentials import check_trigger_credential
from airflow_policyzones.policy import PolicyEngine, load_policy_bytes
from tests.support.airflow_db import TEST_POLICY, Prepared, create_run, parsed_as

pytestmark = pytest.mark.integration

CONNECTIONS = textwrap.dedent("""\
    connections:
      warehouse_raw:
        categories: [purchase_events]
    """)
ENGINE = PolicyEngine(load_policy_bytes((TEST_POLICY + CONNECTIONS).encode(), source="inline.yaml"))


def _trigger(session: sa.orm.Session, *, dag_id: str | None, zone: str | None = None) -> int:
    """A trigger row; for ``dag_id``, the trigger of a new run's ``read`` try in ``zone``."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger

    trigger = Trigger(classpath="tests.Trigger", kwargs={})
    session.add(trigger)
    session.flush()
    if dag_id is not None:
        run_id = create_run(dag_id)
        parsed_as(dag_id, run_id, zone=zone)
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.run_id == run_id, TaskInstance.task_id == "read")
            .values(trigger_id=trigger.id)
        )
    return int(trigger.id)


def _check(trigger_ids: list[int], name: str = "warehouse_raw") -> tuple[bool, str]:
    from airflow.utils.session import create_session

    with create_session() as session:
        verdict = check_trigger_credential(
            session=session, engine=ENGINE, trigger_ids=trigger_ids, kind="connection", name=name
        )
    return verdict.allowed, verdict.message


def test_served_when_every_try_whose_trigger_runs_there_may_use_it(backend: Prepared) -> None:
    from airflow.utils.session import create_session

    with create_session() as session:
        ads = _trigger(session, dag_id="ads_dag", zone="ads")
    assert _check([ads])[0]


def test_refused_when_one_of_them_may_not_and_the_refusal_names_it(backend: Prepared) -> None:
    from airflow.utils.session import create_session

    with create_session() as session:
        ads = _trigger(session, dag_id="ads_dag", zone="ads")
        recs = _trigger(session, dag_id="recs_dag", zone="recs")
    allowed, message = _check([ads, recs])
    assert not allowed
    assert "dag_id='recs_dag'" in message and "refused by the zone policy" in message
    assert _check([ads, recs], name="open_data")[0]  # not restricted: served to all


def test_a_trigger_of_no_task_instance_establishes_no_zone(backend: Prepared) -> None:
    from airflow.utils.session import create_session

    with create_session() as session:
        ads = _trigger(session, dag_id="ads_dag", zone="ads")
        watcher = _trigger(session, dag_id=None)
    allowed, message = _check([ads, watcher])
    assert not allowed and "asset watchers" in message and str(watcher) in message
    assert not _check([])[0]


def test_the_triggerers_refusal_names_the_fix_for_triggers(
    backend: Prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the triggerer answers (and logs) carries the verdict's own remedy, not the one for
    DAG files."""
    from airflow.utils.session import create_session

    from airflow_policyzones.enforcement.in_process_credentials import refusal_for

    policy = tmp_path / "policy.yaml"
    policy.write_text(TEST_POLICY + CONNECTIONS)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy))
    with create_session() as session:
        watcher = _trigger(session, dag_id=None)

    refusal = refusal_for(
        where="the triggerer's runner",
        kind="connection",
        name="warehouse_raw",
        decide=lambda session, engine, kind, name: check_trigger_credential(
            session=session, engine=engine, trigger_ids=[watcher], kind=kind, name=name
        ),
    )

    assert refusal is not None and refusal["reason"] == "policyzones_refused"
    assert "airflow triggerer --queues" in refusal["fix"]
