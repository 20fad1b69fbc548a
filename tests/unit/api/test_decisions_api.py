"""The decision service over HTTP: FastAPI's TestClient, real tokens, real metadata databases."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from airflow_policyzones.api.app import create_app
from airflow_policyzones.api.schema import DECISIONS_PATH, TaskInstanceIdentity
from airflow_policyzones.api.tokens import AUDIENCE, sign_worker_token, ti_claim
from airflow_policyzones.db.models import PolicyZonesDecision
from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import JWT_SECRET, Prepared, create_run, parsed_as

pytestmark = pytest.mark.integration

PREFIX = "/policyzones"
URL = DECISIONS_PATH.removeprefix(PREFIX)
HEALTH = "/api/v1/health"
PURCHASES = "s3://lake/raw/purchases/daily"


@pytest.fixture(autouse=True)
def _config(monkeypatch: pytest.MonkeyPatch, policy_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy_path))


@pytest.fixture(scope="module")
def client(backend: Prepared) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def identity(dag_id: str, run_id: str, **values: Any) -> TaskInstanceIdentity:
    return TaskInstanceIdentity.model_validate(
        {"dag_id": dag_id, "task_id": "read", "run_id": run_id, "map_index": -1, "try_number": 1, **values}
    )


def body(
    ti: TaskInstanceIdentity, *, zone: str | None = "recs", inputs: tuple[str, ...] = (PURCHASES,)
) -> dict[str, Any]:
    return {
        "task": ti.model_dump(),
        "zone": zone,
        "zone_source": "dag" if zone else "none",
        "inputs": [{"namespace": "asset", "name": name} for name in inputs],
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(client: TestClient, ti: TaskInstanceIdentity, token: str | None = None, **kwargs: Any) -> Any:
    token = sign_worker_token(identity=ti) if token is None else token
    return client.post(URL, json=body(ti, **kwargs), headers=bearer(token))


def recorded(run_id: str) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        statement = sa.select(sa.func.count()).where(PolicyZonesDecision.run_id == run_id)
        return int(session.scalar(statement) or 0)


@pytest.fixture
def ti(backend: Prepared) -> TaskInstanceIdentity:
    """A running try of recs_dag's ``read``, parsed as declaring what ``body`` claims by default."""
    run_id = create_run("recs_dag")
    parsed_as("recs_dag", run_id, zone="recs", inlets=[PURCHASES])
    return identity("recs_dag", run_id)


# --- the happy path ---------------------------------------------------------------------------


def test_a_worker_token_gets_a_recorded_decision(
    client: TestClient, ti: TaskInstanceIdentity, engine: PolicyEngine
) -> None:
    response = post(client, ti)

    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["outcome"] == "deny"
    assert decision["allowed"] is False
    assert decision["policy_version"] == engine.version
    assert [finding["rule"] for finding in decision["findings"]] == ["category_not_allowed"]
    assert decision["already_recorded"] is False
    assert recorded(ti.run_id) == 1

    again = post(client, ti)
    assert again.status_code == 200
    assert again.json() == {**decision, "already_recorded": True}
    assert recorded(ti.run_id) == 1


def test_a_bare_token_is_accepted_as_edge3_workers_send_it(
    client: TestClient, ti: TaskInstanceIdentity
) -> None:
    response = client.post(URL, json=body(ti), headers={"Authorization": sign_worker_token(identity=ti)})
    assert response.status_code == 200, response.text


def test_health_needs_no_token(client: TestClient, engine: PolicyEngine) -> None:
    response = client.get(HEALTH)
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["policy"], health["policy_version"], health["policy_error"]) == (
        "ok",
        "ok",
        engine.version,
        None,
    )
    assert health["api_server"] == {"version": engine.version, "loaded": True, "error": None}
    assert health["problems"] == [] and health["warnings"] == []


# --- authentication ---------------------------------------------------------------------------


def test_no_token_is_401(client: TestClient, ti: TaskInstanceIdentity) -> None:
    response = client.post(URL, json=body(ti))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing token" in response.json()["detail"]
    # Even a malformed body is refused before it is looked at.
    assert client.post(URL, json={"nonsense": True}).status_code == 401
    assert recorded(ti.run_id) == 0


def test_another_authorization_scheme_is_401(client: TestClient, ti: TaskInstanceIdentity) -> None:
    response = client.post(URL, json=body(ti), headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert response.status_code == 401
    assert "unsupported authorization scheme 'Basic'" in response.json()["detail"]


def _generate(
    claims: dict[str, Any], *, secret: str = JWT_SECRET, algorithm: str = "HS512", **extra: Any
) -> str:
    now = int(time.time())
    payload = {"aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 60, **claims, **extra}
    return jwt.encode(payload, secret, algorithm=algorithm)


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        pytest.param(
            lambda ti: _generate({"method": DECISIONS_PATH, "ti": ti_claim(ti)}, secret="not-the-secret" * 8),
            "signature does not verify",
            id="forged-signature",
        ),
        pytest.param(
            lambda ti: sign_worker_token(identity=ti, valid_for=-300),
            "expired",
            id="expired",
        ),
        pytest.param(
            lambda ti: _generate({"method": DECISIONS_PATH, "ti": ti_claim(ti)}, aud="api"),
            "another audience",
            id="wrong-audience (an edge3 worker token)",
        ),
        pytest.param(
            lambda ti: _generate({"method": DECISIONS_PATH, "ti": ti_claim(ti), "aud": None}),
            "lacks a required claim ('aud')",
            id="no-audience",
        ),
        pytest.param(
            lambda ti: sign_worker_token(identity=ti, method="/policyzones/api/v1/other"),
            "signed for method '/policyzones/api/v1/other'",
            id="wrong-method",
        ),
        pytest.param(
            lambda ti: _generate({"ti": ti_claim(ti)}),
            "lacks a required claim ('method')",
            id="no-method",
        ),
        pytest.param(
            lambda ti: _generate({"method": DECISIONS_PATH}),
            "lacks a required claim ('ti')",
            id="no-ti",
        ),
        pytest.param(
            lambda ti: sign_worker_token(identity=ti.model_copy(update={"try_number": 2})),
            "the token is for task-instance try",
            id="token-for-another-try",
        ),
        pytest.param(
            lambda ti: sign_worker_token(
                identity=ti.model_copy(update={"task_id": "mapped", "map_index": 0})
            ),
            "the token is for task-instance try",
            id="token-for-another-task",
        ),
        pytest.param(
            lambda ti: _generate({"method": DECISIONS_PATH, "ti": ti_claim(ti)}, secret="", algorithm="none"),
            "algorithm",
            id="alg-none",
        ),
        pytest.param(lambda ti: "abc.def.ghi", "malformed", id="garbage"),
    ],
)
def test_a_token_that_does_not_verify_is_403(
    client: TestClient, ti: TaskInstanceIdentity, make_token: Any, reason: str
) -> None:
    response = post(client, ti, token=make_token(ti))
    assert response.status_code == 403, response.text
    assert reason in response.json()["detail"]
    assert recorded(ti.run_id) == 0


def test_no_jwt_secret_on_the_server_is_503(
    client: TestClient, ti: TaskInstanceIdentity, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign_worker_token(identity=ti)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "")
    response = post(client, ti, token=token)
    assert response.status_code == 503
    assert "jwt_secret is empty" in response.json()["detail"]


# --- the request ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda b: b.pop("task"), id="no-task"),
        pytest.param(lambda b: b.update(surprise=1), id="unknown-field"),
        pytest.param(lambda b: b["inputs"].append({"namespace": "s3", "name": "x"}), id="bad-namespace"),
        pytest.param(lambda b: b["task"].update(try_number=-1), id="negative-try"),
        pytest.param(lambda b: b.update(inputs=[{"namespace": "asset", "name": ""}]), id="empty-name"),
        pytest.param(lambda b: b.update(zone_source="worker"), id="bad-zone-source"),
        pytest.param(
            lambda b: b.update(inputs=[{"namespace": "asset", "name": "x"}] * 1001), id="too-many-inputs"
        ),
    ],
)
def test_a_malformed_body_is_422(client: TestClient, ti: TaskInstanceIdentity, mutate: Any) -> None:
    payload = body(ti)
    mutate(payload)
    response = client.post(URL, json=payload, headers=bearer(sign_worker_token(identity=ti)))
    assert response.status_code == 422, response.text
    assert recorded(ti.run_id) == 0


def test_not_json_is_422(client: TestClient, ti: TaskInstanceIdentity) -> None:
    headers = {**bearer(sign_worker_token(identity=ti)), "Content-Type": "application/json"}
    assert client.post(URL, content=b"{not json", headers=headers).status_code == 422


def test_an_unknown_task_instance_is_404(client: TestClient, backend: Prepared) -> None:
    ghost = identity("recs_dag", "manual__no_such_run")
    response = post(client, ghost)
    assert response.status_code == 404
    assert "no task instance" in response.json()["detail"]
    assert recorded(ghost.run_id) == 0


def test_another_try_of_an_existing_task_instance_is_409(
    client: TestClient, ti: TaskInstanceIdentity
) -> None:
    stale = ti.model_copy(update={"try_number": 3})
    response = post(client, stale)
    assert response.status_code == 409
    assert "is at try 1, not 3" in response.json()["detail"]
    assert recorded(ti.run_id) == 0


# --- the policy -------------------------------------------------------------------------------


def test_an_invalid_policy_is_503_with_the_policy_error(
    client: TestClient, ti: TaskInstanceIdentity, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nzones:\n  ads:\n    purpose: ads\n    allowed_categories: [nope]\n")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(broken))

    response = post(client, ti)
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "no valid policy, so no task may run" in detail
    assert "policy is invalid" in detail
    assert f"{broken}:" in detail
    assert recorded(ti.run_id) == 0

    health = client.get(HEALTH).json()
    assert (health["status"], health["policy"], health["policy_version"]) == ("ok", "invalid", None)
    assert "policy is invalid" in health["policy_error"]
    assert health["api_server"]["version"].startswith("sha256:")  # the broken file's bytes
    [problem] = health["problems"]
    assert "every task that needs a decision fails closed" in problem and f"{broken}:" in problem


def test_a_missing_policy_is_503(
    client: TestClient, ti: TaskInstanceIdentity, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(tmp_path / "absent.yaml"))
    assert post(client, ti).status_code == 503
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", "")
    response = post(client, ti)
    assert response.status_code == 503
    assert "policy_file is empty" in response.json()["detail"]
    assert recorded(ti.run_id) == 0


# --- the connection type of a SQL task, without its credentials -------------------------------------


def test_a_try_learns_its_connections_type_without_its_credentials(
    client: TestClient, ti: TaskInstanceIdentity
) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from airflow_policyzones.api.schema import CONNECTION_TYPE_PATH

    with create_session() as session:
        if session.scalar(sa.select(Connection).where(Connection.conn_id == "pz_typed")) is None:
            session.add(Connection(conn_id="pz_typed", conn_type="snowflake", password="s3cret", login="me"))
    url = CONNECTION_TYPE_PATH.removeprefix(PREFIX)
    token = sign_worker_token(identity=ti, method=CONNECTION_TYPE_PATH)

    answer = client.post(url, json={"task": ti.model_dump(), "conn_id": "pz_typed"}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"conn_type": "snowflake"}
    assert "s3cret" not in answer.text and "me" not in answer.json().values()

    unknown = client.post(url, json={"task": ti.model_dump(), "conn_id": "pz_nowhere"}, headers=bearer(token))
    assert unknown.json() == {"conn_type": None}

    # A token for the decisions endpoint, or for another try, is refused.
    other = ti.model_copy(update={"try_number": 2})
    decisions_token = sign_worker_token(identity=ti)
    assert (
        client.post(
            url, json={"task": ti.model_dump(), "conn_id": "pz_typed"}, headers=bearer(decisions_token)
        ).status_code
        == 403
    )
    assert (
        client.post(
            url, json={"task": other.model_dump(), "conn_id": "pz_typed"}, headers=bearer(token)
        ).status_code
        == 403
    )
