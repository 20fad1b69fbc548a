"""The decision service reached the way a task reaches it: through its supervisor and the execution
API, with the try's own execution token. Airflow's own api-server app (execution API and plugins),
Airflow's own execution-API client and request handlers, real SQLite and PostgreSQL databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from airflow_policyzones.api.relay import DecisionRelay, relay_request
from airflow_policyzones.db.models import PolicyZonesDecision
from airflow_policyzones.enforcement.client import DecisionClient
from airflow_policyzones.enforcement.errors import DecisionUnavailable
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import (
    ConnectionTypeRequest,
    DecisionRequest,
    RelayMethod,
    TaskInstanceIdentity,
)
from tests.support.airflow_db import JWT_SECRET, Prepared, create_run, parsed_as, statements_run
from tests.support.supervisor import TaskSupervisor, airflow_api_server, execution_token, task_instance_id

pytestmark = pytest.mark.integration

PURCHASES = "s3://lake/raw/purchases/daily"
HEALTH = "/policyzones/api/v1/health"


@pytest.fixture(autouse=True)
def _config(monkeypatch: pytest.MonkeyPatch, policy_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)  # the api-server's, not a worker's
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy_path))


@pytest.fixture(scope="module")
def api_server(backend: Prepared) -> Iterator[TestClient]:
    with airflow_api_server() as test_client:
        yield test_client


def running_try(
    dag_id: str = "recs_dag", *, zone: str = "recs", inlets: tuple[str, ...] = (PURCHASES,)
) -> tuple[TaskInstanceIdentity, str]:
    """A running try of ``dag_id``'s ``read``, parsed as declaring ``zone`` and ``inlets``; and its
    task instance id."""
    run_id = create_run(dag_id)
    parsed_as(dag_id, run_id, zone=zone, inlets=list(inlets))
    identity = TaskInstanceIdentity(dag_id=dag_id, task_id="read", run_id=run_id, map_index=-1, try_number=1)
    return identity, task_instance_id(dag_id, run_id)


def request(
    ti: TaskInstanceIdentity, *, zone: str | None = "recs", inputs: tuple[str, ...] = (PURCHASES,)
) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "task": ti.model_dump(),
            "zone": zone,
            "zone_source": "dag" if zone else "none",
            "inputs": [{"namespace": "asset", "name": name} for name in inputs],
        }
    )


def client_of(api_server: TestClient, ti_id: str, *, token: str | None = None) -> DecisionClient:
    return DecisionClient(comms=TaskSupervisor.of_try(api_server, ti_id=ti_id, token=token))


def recorded(run_id: str) -> list[PolicyZonesDecision]:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = list(
            session.scalars(sa.select(PolicyZonesDecision).where(PolicyZonesDecision.run_id == run_id))
        )
        session.expunge_all()
        return rows


def xcom_url(ti: TaskInstanceIdentity, method: RelayMethod = RelayMethod.DECISIONS) -> str:
    return f"/execution/xcoms/{ti.dag_id}/{ti.run_id}/{ti.task_id}/{method.key}"


def stored_value(api_server: TestClient, ti: TaskInstanceIdentity, ti_id: str) -> Any:
    """What Airflow's XCom route now holds for the relay key (read with the try's own token)."""
    response = api_server.get(xcom_url(ti), headers={"Authorization": f"Bearer {execution_token(ti_id)}"})
    return response.json()["value"] if response.status_code == 200 else None


# --- the mechanism, pinned on this Airflow version ----------------------------------------------


def test_airflow_wraps_the_execution_api_in_the_relay(api_server: TestClient) -> None:
    from airflow import plugins_manager
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom

    _, middlewares = plugins_manager.get_fastapi_plugins()
    assert DecisionRelay in [m["middleware"] for m in middlewares]
    assert DecisionRelay in [m.cls for m in api_server.app.user_middleware]  # type: ignore[attr-defined]
    # What the client relies on in the task process: a supervisor channel and the XCom messages.
    assert "SUPERVISOR_COMMS" in task_runner.__annotations__  # set by the task runner at start
    assert {"key", "dag_id", "run_id", "task_id", "map_index", "value"} <= set(SetXCom.model_fields)
    assert {"key", "dag_id", "run_id", "task_id", "map_index"} <= set(GetXCom.model_fields)
    # The try's token is not sent to the task process (a forked task process may still find its
    # supervisor's copy in memory: it is good for that try only; docs/decision-transport.md).
    from airflow.sdk.execution_time.comms import StartupDetails

    startup = StartupDetails.model_fields
    sent_to_task = {*startup, *startup["ti"].annotation.model_fields}  # type: ignore[union-attr]
    assert not {name for name in sent_to_task if "token" in name.lower()}, sent_to_task


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/execution/xcoms/d/r/t/__policyzones.decisions", ("d", "r", "t", "__policyzones.decisions")),
        (
            "/execution/xcoms/d/manual__2026-01-01T00:00:00+00:00/t/__policyzones.outputs",
            ("d", "manual__2026-01-01T00:00:00+00:00", "t", "__policyzones.outputs"),
        ),
        ("/execution/xcoms/d/r/t/return_value", None),
        ("/execution/xcoms/d/r/t/x__policyzones.decisions", None),
        ("/execution/xcoms/d/r/__policyzones.decisions", None),
        ("/execution/variables/__policyzones.decisions", None),
        ("/api/v2/dags/d/dagRuns/r/taskInstances/t/xcomEntries/__policyzones.decisions", None),
    ],
)
def test_relay_request(path: str, expected: object) -> None:
    assert relay_request(path) == expected


# --- a try asks through its supervisor ------------------------------------------------------------


def test_a_try_gets_a_recorded_decision_through_its_supervisor(
    api_server: TestClient, engine: PolicyEngine
) -> None:
    ti, ti_id = running_try()

    decision = client_of(api_server, ti_id).decide(request(ti))

    assert (decision.outcome, decision.allowed, decision.policy_version) == ("deny", False, engine.version)
    assert [finding.rule for finding in decision.findings] == ["category_not_allowed"]
    assert not decision.already_recorded
    [row] = recorded(ti.run_id)
    assert (row.task_id, row.try_number, row.source) == ("read", 1, "api")
    # The request fit in the key: one GetXCom, answered by the relay, nothing stored in Airflow.
    assert stored_value(api_server, ti, ti_id) is None

    again = client_of(api_server, ti_id).decide(request(ti))
    assert again.already_recorded and again.decision_id == decision.decision_id
    assert len(recorded(ti.run_id)) == 1


def test_the_relay_reads_the_try_once_per_decision(api_server: TestClient) -> None:
    """The try the token names is read once, and the decision reuses what was read (its state, DAG
    version and membership facts): each further read was a round trip on every task start."""
    ti, ti_id = running_try()

    with statements_run() as statements:
        decision = client_of(api_server, ti_id).decide(request(ti))

    assert decision.outcome == "deny" and not decision.already_recorded
    selects = [statement for statement in statements if statement.startswith("select")]
    assert len([s for s in selects if " task_instance" in s]) == 1, selects
    assert len([s for s in selects if " dag_tag" in s]) == 1, selects
    assert len(recorded(ti.run_id)) == 1


def test_a_request_too_long_for_a_key_is_set_then_read_back(api_server: TestClient) -> None:
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom

    from airflow_policyzones.wire import MAX_INLINE, encode_inline

    ti, ti_id = running_try()
    # Many distinct inputs (random names compress badly): longer than a relay key carries.
    inputs = tuple(f"s3://lake/raw/purchases/{uuid.uuid4().hex}" for _ in range(120))
    long = request(ti, inputs=inputs)
    assert len(encode_inline(long.model_dump_json().encode())) > MAX_INLINE
    supervisor = TaskSupervisor.of_try(api_server, ti_id=ti_id)

    decision = DecisionClient(comms=supervisor).decide(long)

    assert decision.outcome == "deny" and [type(msg) for msg in supervisor.sent] == [SetXCom, GetXCom]
    # What Airflow stored under the key is the service's answer, never the request the task sent.
    stored = stored_value(api_server, ti, ti_id)
    assert stored["status"] == 200 and stored["body"]["decision_id"] == decision.decision_id
    assert "inputs" not in stored["body"]


@pytest.mark.parametrize("payload", ["!!not-base64!!", "eJzLSM3JyQcABiwCFQ"])
def test_a_key_that_carries_no_request_is_answered_422(api_server: TestClient, payload: str) -> None:
    ti, ti_id = running_try()
    url = f"{xcom_url(ti)}.{payload}"
    answer = api_server.get(url, headers={"Authorization": f"Bearer {execution_token(ti_id)}"})
    assert answer.status_code == 200 and answer.json()["value"]["status"] == 422
    assert recorded(ti.run_id) == []


def test_the_try_is_the_tokens_whatever_the_request_says(api_server: TestClient) -> None:
    ti, ti_id = running_try()
    victim, _ = running_try()
    # The body names another run and try: the decision is recorded for the token's try only.
    forged = request(victim).model_copy(update={"task": victim.model_copy(update={"try_number": 7})})
    supervisor = TaskSupervisor.of_try(api_server, ti_id=ti_id)
    from airflow.sdk.execution_time.comms import GetXCom, SetXCom

    where = {"key": RelayMethod.DECISIONS.key, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": "read"}
    supervisor.send(SetXCom(value=forged.model_dump(mode="json"), **where))
    answer = supervisor.send(GetXCom(**where)).value
    assert answer["status"] == 200
    assert [row.try_number for row in recorded(ti.run_id)] == [1]
    assert recorded(victim.run_id) == []


def test_a_try_cannot_ask_or_answer_for_another_task_instance(api_server: TestClient) -> None:
    attacker, attacker_id = running_try()
    victim, victim_id = running_try()
    # The attacker's supervisor sets the relay key on the victim's task instance: refused, and
    # nothing is stored where the victim will read its answer.
    with pytest.raises(
        DecisionUnavailable, match=r"HTTP 403.*a try asks the decision service only about itself"
    ):
        client_of(api_server, attacker_id).decide(request(victim))
    assert recorded(victim.run_id) == [] and recorded(attacker.run_id) == []
    assert stored_value(api_server, victim, victim_id) is None
    # The victim then asks for itself and gets its own decision.
    assert client_of(api_server, victim_id).decide(request(victim)).outcome == "deny"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="garbage"),
        pytest.param({"Authorization": "Bearer {signed_elsewhere}"}, id="another-secret"),
    ],
)
def test_without_a_valid_execution_token_nothing_is_decided_or_stored(
    api_server: TestClient, headers: dict[str, str]
) -> None:
    import jwt

    ti, ti_id = running_try()
    if "{signed_elsewhere}" in headers.get("Authorization", ""):
        token = jwt.encode(
            {"sub": ti_id, "scope": "execution", "aud": "urn:airflow.apache.org:task"}, "x" * 64, "HS512"
        )
        headers = {"Authorization": f"Bearer {token}"}
    response = api_server.post(xcom_url(ti), json=request(ti).model_dump(mode="json"), headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["detail"]["reason"] == "policyzones_relay"
    assert recorded(ti.run_id) == []
    assert stored_value(api_server, ti, ti_id) is None


def test_a_token_of_no_task_instance_gets_no_decision_and_stores_nothing(
    api_server: TestClient, backend: Prepared
) -> None:
    ti, ti_id = running_try()
    # E.g. the token of a try whose task instance was archived when it was cleared.
    with pytest.raises(DecisionUnavailable, match=r"HTTP 404.*no task instance"):
        client_of(api_server, str(uuid.uuid4())).decide(request(ti))
    assert recorded(ti.run_id) == []
    assert stored_value(api_server, ti, ti_id) is None


# --- what the service answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.update(surprise=1), id="unknown-field"),
        pytest.param(lambda b: b["inputs"].append({"namespace": "s3", "name": "x"}), id="bad-namespace"),
        pytest.param(lambda b: b.update(inputs=[{"namespace": "asset", "name": ""}]), id="empty-name"),
        pytest.param(lambda b: b.update(zone_source="worker"), id="bad-zone-source"),
        pytest.param(lambda b: b.update(inputs=[{"namespace": "asset", "name": "x"}] * 1001), id="too-many"),
        pytest.param(lambda b: b.clear() or b.update(x=[1]), id="not-a-request"),
    ],
)
def test_a_malformed_request_is_answered_422_and_decides_nothing(api_server: TestClient, mutate: Any) -> None:
    ti, ti_id = running_try()
    payload = request(ti).model_dump(mode="json")
    mutate(payload)
    response = api_server.post(
        xcom_url(ti), json=payload, headers={"Authorization": f"Bearer {execution_token(ti_id)}"}
    )
    assert response.status_code == 201, response.text  # Airflow stored the answer
    stored = stored_value(api_server, ti, ti_id)
    assert stored["status"] == 422 and "malformed decisions request" in stored["detail"]
    assert recorded(ti.run_id) == []


def test_an_unknown_method_is_answered_404(api_server: TestClient) -> None:
    ti, ti_id = running_try()
    url = f"/execution/xcoms/{ti.dag_id}/{ti.run_id}/read/__policyzones.secrets"
    token = {"Authorization": f"Bearer {execution_token(ti_id)}"}
    assert api_server.post(url, json={}, headers=token).status_code == 201
    assert api_server.get(url, headers=token).json()["value"]["status"] == 404


def test_an_invalid_policy_is_a_retryable_failure_naming_the_policy_error(
    api_server: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ti, ti_id = running_try()
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nzones:\n  ads:\n    purpose: ads\n    allowed_categories: [nope]\n")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(broken))

    with pytest.raises(DecisionUnavailable, match="HTTP 503") as caught:
        client_of(api_server, ti_id).decide(request(ti))
    message = str(caught.value)
    assert "no valid policy, so no task may run" in message and f"{broken}:" in message
    assert "policyzones validate" in message and "retried" in message
    assert recorded(ti.run_id) == []

    health = api_server.get(HEALTH).json()
    assert (health["status"], health["policy"], health["policy_version"]) == ("ok", "invalid", None)


def test_health_needs_no_token(api_server: TestClient, engine: PolicyEngine) -> None:
    health = api_server.get(HEALTH).json()
    assert (health["status"], health["policy"], health["policy_version"]) == ("ok", "ok", engine.version)


def test_a_try_learns_its_connections_type_without_its_credentials(api_server: TestClient) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.scalar(sa.select(Connection).where(Connection.conn_id == "pz_typed")) is None:
            session.add(Connection(conn_id="pz_typed", conn_type="snowflake", password="s3cret", login="me"))
    ti, ti_id = running_try()
    client = client_of(api_server, ti_id)
    assert client.connection_type(ConnectionTypeRequest(task=ti, conn_id="pz_typed")) == "snowflake"
    assert client.connection_type(ConnectionTypeRequest(task=ti, conn_id="pz_nowhere")) is None

    url = xcom_url(ti, RelayMethod.CONNECTION_TYPE)
    stored = api_server.get(url, headers={"Authorization": f"Bearer {execution_token(ti_id)}"}).text
    assert "s3cret" not in stored


def test_an_api_server_without_the_relay_gives_no_decision(backend: Prepared) -> None:
    """Airflow's in-process execution API (what ``dag.test()`` uses) has no provider middleware:
    the task reads back its own request, which is never taken for an answer."""
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from airflow.sdk.api.client import Client

    ti, _ = running_try()
    api = InProcessExecutionAPI()
    execution_api = Client(base_url=None, token="", dry_run=True, transport=api.transport)
    execution_api.base_url = "http://in-process.invalid./"  # as InProcessTestSupervisor sets it
    client = DecisionClient(comms=TaskSupervisor(execution_api))
    with pytest.raises(DecisionUnavailable, match="did not answer the decisions request") as caught:
        client.decide(request(ti))
    assert "root middlewares" in str(caught.value)
    assert recorded(ti.run_id) == []
