"""Pins the private Airflow behaviour enforcement relies on (README, "How enforcement works").

If a future Airflow renames ``_pre_execute_hook``, stops calling it before ``pre_execute`` and
``execute``, or stops passing ``partial_kwargs["pre_execute"]`` to unmapped operators, these
tests fail loudly instead of the check silently never running.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def hook(context: Any) -> None:
    pass


def test_base_operator_has_the_private_pre_execute_hook() -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk.bases.operator import BaseOperator

    assert "_pre_execute_hook" in vars(BaseOperator), "BaseOperator._pre_execute_hook is gone"
    assert BaseOperator._pre_execute_hook is None
    assert "pre_execute" in inspect.signature(BaseOperator.__init__).parameters
    assert PythonOperator(task_id="t", python_callable=print, pre_execute=hook)._pre_execute_hook is hook


def test_task_runner_calls_the_hook_before_pre_execute_and_execute() -> None:
    from airflow.sdk.execution_time import task_runner

    source = inspect.getsource(task_runner._execute_task)
    hook_call = source.find("task._pre_execute_hook")
    override_call = source.find("task.pre_execute")
    execute_call = source.find("_run_execute_callable(")
    assert hook_call != -1, "the task runner no longer reads task._pre_execute_hook"
    assert override_call != -1 and execute_call != -1
    assert hook_call < override_call < execute_call, (
        "the task runner must call _pre_execute_hook before an overridden pre_execute and before execute"
    )


def test_unmapped_operators_get_the_partial_pre_execute_hook() -> None:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG("pz_contract", schedule=None):
        mapped = PythonOperator.partial(task_id="t", python_callable=print).expand(op_args=[[1]])
    mapped.partial_kwargs["pre_execute"] = hook
    unmapped = mapped.unmap({"op_args": [1]})
    assert unmapped._pre_execute_hook is hook


def test_fail_exception_is_the_no_retry_exception_of_the_runner() -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from airflow.sdk.execution_time import task_runner

    from airflow_policyzones.enforcement.errors import DecisionUnavailable, UncheckableTask, ZoneViolation

    assert "except (AirflowFailException, AirflowSensorTimeout)" in inspect.getsource(task_runner)
    assert issubclass(ZoneViolation, AirflowFailException)
    assert issubclass(UncheckableTask, AirflowFailException)
    assert issubclass(DecisionUnavailable, AirflowException)
    assert not issubclass(DecisionUnavailable, AirflowFailException)


def test_the_policy_entry_point_is_loaded_by_airflow_settings() -> None:
    from airflow import settings

    from airflow_policyzones.enforcement import cluster_policy

    manager = settings.get_policy_plugin_manager()
    assert cluster_policy in manager.get_plugins()
    assert cluster_policy.task_policy in [impl.function for impl in manager.hook.task_policy.get_hookimpls()]
    assert cluster_policy.dag_policy in [impl.function for impl in manager.hook.dag_policy.get_hookimpls()]


def test_a_real_worker_blocks_the_orm_and_the_hook_notices() -> None:
    """In a worker the supervisor calls block_orm_access() before the task runs (fact 3)."""
    code = (
        "from airflow_policyzones.enforcement.hook import orm_available\n"
        "before = orm_available()\n"
        "from airflow.sdk.execution_time.supervisor import block_orm_access\n"
        "block_orm_access()\n"
        "blocked = orm_available()\n"
        "from airflow.configuration import conf\n"
        "conf.set('database', 'sql_alchemy_conn', 'sqlite:////tmp/a-dag-file-pretends.db')\n"
        "print(before, blocked, orm_available())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # The stub Session alone still tells: a DAG file resetting the URL does not reopen the ORM.
    assert result.stdout.split()[-3:] == ["True", "False", "False"], result.stderr[-2000:]
