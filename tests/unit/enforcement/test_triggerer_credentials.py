"""What a trigger obtains in ``airflow triggerer``: the triggerer's own ``TriggerRunnerSupervisor``
(a forked child runs every trigger of the triggerer in one event loop and asks the supervisor
for connections, which serves them through Airflow's in-process execution API), real SQLite and
PostgreSQL metadata databases, a trigger deferred by a task of ``recs_dag`` (zone ``recs``,
which may not use ``warehouse_raw``).

The provider's check wraps the supervisor's request handler, as ``airflow triggerer`` installs it
(tests/unit/enforcement/test_in_process_credentials.py pins that installation).
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_db import TEST_POLICY, Prepared, create_run, scoped_env
from tests.support.db_fixtures import backend  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

CREDENTIALS = """\
connections:
  warehouse_raw:
    categories: [purchase_events]
"""

_TRIGGERS = '''\
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent


class ReadWarehouse(BaseTrigger):
    """A trigger a recs task defers to: it asks for the warehouse connection."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def serialize(self):
        return ("pz_red_triggers.ReadWarehouse", {"out": self.out})

    async def run(self):
        try:
            conn = await BaseHook.aget_connection("warehouse_raw")
            Path(self.out).write_text(conn.password or "")
        except Exception as error:
            Path(self.out).write_text(f"refused: {error!r}")
        yield TriggerEvent("done")
'''


@pytest.fixture(scope="module", autouse=True)
def _setup(backend: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:  # noqa: F811
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_policyzones.enforcement.settings import reload_settings

    folder = tmp_path_factory.mktemp("triggers")
    (folder / "pz_red_triggers.py").write_text(textwrap.dedent(_TRIGGERS))
    sys.path.insert(0, str(folder))
    policy = folder / "policy.yaml"
    policy.write_text(TEST_POLICY + CREDENTIALS)
    with create_session() as session:
        if session.query(Connection).filter(Connection.conn_id == "warehouse_raw").first() is None:
            session.add(
                Connection(
                    conn_id="warehouse_raw", conn_type="postgres", host="h", password="warehouse_raw-pw"
                )
            )
    try:
        with scoped_env(AIRFLOW__POLICYZONES__POLICY_FILE=str(policy), AIRFLOW__POLICYZONES__ENABLED="True"):
            reload_settings()
            yield
    finally:
        sys.path.remove(str(folder))
        reload_settings()


def _defer(out: Path) -> None:
    """A try of ``recs_dag.read`` (zone recs) deferred to ``ReadWarehouse``, as the execution API
    records a deferral."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    run_id = create_run("recs_dag")
    with create_session() as session:
        trigger = Trigger(classpath="pz_red_triggers.ReadWarehouse", kwargs={"out": str(out)})
        session.add(trigger)
        session.flush()
        session.execute(
            sa.update(TaskInstance)
            .where(
                TaskInstance.dag_id == "recs_dag",
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == "read",
            )
            .values(state=TaskInstanceState.DEFERRED, trigger_id=trigger.id)
        )


def _run_triggerer(out: Path) -> str:
    """Airflow's triggerer supervisor, as ``airflow triggerer`` runs it, until the trigger ran."""
    import structlog
    from airflow.jobs.job import Job
    from airflow.jobs.triggerer_job_runner import TriggererJobRunner, TriggerRunnerSupervisor
    from airflow.utils.session import create_session

    with create_session() as session:
        job = Job(job_type=TriggererJobRunner.job_type)
        session.add(job)
        session.flush()
        session.expunge(job)
    supervisor = TriggerRunnerSupervisor.start(job=job, capacity=10, logger=structlog.get_logger())
    try:
        deadline = time.monotonic() + 90
        while not out.exists() and time.monotonic() < deadline:
            supervisor.load_triggers()
            supervisor._service_subprocess(0.5)
            supervisor.handle_events()
    finally:
        supervisor.kill(escalation_delay=5)
    assert out.exists(), "the trigger did not run"
    return out.read_text()


def test_a_trigger_of_a_recs_task_is_refused_the_warehouse_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    from airflow_policyzones.enforcement import in_process_credentials

    monkeypatch.setattr(TriggerRunnerSupervisor, "_handle_request", TriggerRunnerSupervisor._handle_request)
    in_process_credentials.install("triggerer")
    out = tmp_path / "received"
    _defer(out)
    received = _run_triggerer(out)
    assert received != "warehouse_raw-pw"
    assert received.startswith("refused:")


def test_a_triggers_request_names_no_trigger() -> None:
    """What a check in the triggerer's supervisor would get: the id only, not which trigger (or
    task, or zone) asks; every trigger of the triggerer runs in the same child process."""
    from airflow.sdk.execution_time.comms import GetConnection, GetVariable

    assert set(GetConnection.model_fields) == {"conn_id", "type"}
    assert set(GetVariable.model_fields) == {"key", "type"}
