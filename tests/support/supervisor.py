"""What a task's supervisor does with the task's XCom messages, for tests that run no worker.

The task process sends ``SetXCom``/``GetXCom`` to its supervisor; the supervisor answers them with
Airflow's own request handlers and execution-API client, authenticated with the try's execution
token, and turns an error answer into an ``ErrorResponse`` the task's ``send`` raises as
``AirflowRuntimeError``. :class:`TaskSupervisor` does exactly that against an api-server app (the
full app Airflow builds, the provider's root middlewares included) through Starlette's test
transport, so the decision client is exercised on the path a real worker takes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient


@contextlib.contextmanager
def airflow_api_server() -> Iterator[TestClient]:
    """Airflow's api-server app as ``airflow api-server`` builds it (execution API and plugins, the
    provider's root middlewares included), signing with the tests' JWT secret; Airflow's cached app
    is dropped afterwards."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    from tests.support.airflow_db import JWT_SECRET

    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET
    try:
        with TestClient(create_app(apps="all")) as test_client:
            yield test_client
    finally:
        os.environ.pop("AIRFLOW__API_AUTH__JWT_SECRET", None)
        purge_cached_app()


def task_instance_id(dag_id: str, run_id: str, task_id: str = "read") -> str:
    """The id of a task instance (what its execution token's ``sub`` names); a random id when there
    is no such task instance."""
    import uuid

    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.scalar(
            sa.select(TaskInstance.id).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
        )
    return str(found if found is not None else uuid.uuid4())


def execution_token(ti_id: str) -> str:
    """An execution token exactly as the scheduler's executor signs it for a workload."""
    from airflow.api_fastapi.execution_api.app import _jwt_generator

    return str(_jwt_generator().generate({"sub": ti_id}))


class TaskSupervisor:
    """Answers a task's ``SetXCom``/``GetXCom`` as its supervisor does, with ``client`` (Airflow's
    execution-API client, holding the try's token)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent: list[Any] = []

    @classmethod
    def of_try(cls, app_client: TestClient, *, ti_id: str, token: str | None = None) -> TaskSupervisor:
        """The supervisor of try ``ti_id`` talking to the api-server app behind ``app_client``."""
        from airflow.sdk.api.client import Client

        return cls(
            Client(
                base_url=f"{app_client.base_url}/execution/",
                token=token if token is not None else execution_token(ti_id),
                transport=app_client._transport,
            )
        )

    def send(self, msg: Any) -> Any:
        from airflow.sdk.api.client import ServerResponseError
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse, GetXCom, SetXCom
        from airflow.sdk.execution_time.request_handlers import handle_get_xcom, handle_set_xcom

        self.sent.append(msg)
        handler = {SetXCom: handle_set_xcom, GetXCom: handle_get_xcom}[type(msg)]
        try:
            response, _ = handler(self.client, msg)  # type: ignore[operator]
        except ServerResponseError as error:
            raise AirflowRuntimeError(
                ErrorResponse(
                    error=ErrorType.API_SERVER_ERROR,
                    detail={
                        "status_code": error.response.status_code,
                        "message": str(error),
                        "detail": error.response.json() if error.response else None,
                    },
                )
            ) from error
        return response
