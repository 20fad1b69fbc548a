"""The provider's checks around Airflow's execution API: connections and variables served only to
zones that may use them, and success only for a try that was decided. Airflow's own api-server
app (execution API and plugins, as ``airflow api-server`` builds it), tokens from Airflow's own
execution-token generator, real SQLite and PostgreSQL metadata databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from airflow_policyzones.api.credentials import CredentialGuard, credential_request
from airflow_policyzones.api.success_guard import SuccessGuard, state_report
from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation
from airflow_policyzones.db.service import decide_and_record
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import DecisionRequest, TaskInstanceIdentity
from tests.support.airflow_db import (
    JWT_SECRET,
    TEST_POLICY,
    Prepared,
    create_run,
    parsed_as,
    parsed_with,
    statements_run,
)
from tests.support.supervisor import airflow_api_server, execution_token, task_instance_id

pytestmark = pytest.mark.integration

CREDENTIALS = """\
connections:
  warehouse_raw:
    categories: [purchase_events]
  "slack_*":
    zones: [ads]
variables:
  "ads_*":
    zones: [ads]
"""
WAREHOUSE = json.dumps(
    {"conn_type": "postgres", "host": "warehouse", "login": "reader", "password": "s3cret"}
)


@pytest.fixture(scope="module")
def credentials_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("credentials") / "policy.yaml"
    path.write_text(TEST_POLICY + CREDENTIALS)
    return path


@pytest.fixture(autouse=True)
def _config(monkeypatch: pytest.MonkeyPatch, credentials_policy: Path) -> None:
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(credentials_policy))
    # Defined on the api-server only: what the execution API serves from its own secrets.
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_RAW", WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_ADS", json.dumps({"conn_type": "http", "host": "slack"}))
    monkeypatch.setenv("AIRFLOW_CONN_OPEN_DATA", json.dumps({"conn_type": "http", "host": "open"}))
    monkeypatch.setenv("AIRFLOW_VAR_ADS_BUDGET", "1000")


@pytest.fixture(scope="module")
def client(backend: Prepared) -> Iterator[TestClient]:
    with airflow_api_server() as test_client:
        yield test_client


def _ti(dag_id: str) -> tuple[TaskInstanceIdentity, str]:
    run_id = create_run(dag_id)
    identity = TaskInstanceIdentity(dag_id=dag_id, task_id="read", run_id=run_id, map_index=-1, try_number=1)
    return identity, task_instance_id(dag_id, run_id)


def _token(ti_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {execution_token(ti_id)}"}


def _decide(identity: TaskInstanceIdentity, zone: str | None, engine: PolicyEngine) -> None:
    """The try's pre-execute decision, for a task the dag-processor parsed in ``zone``."""
    from airflow.utils.session import create_session

    parsed_as(identity.dag_id, identity.run_id, zone=zone)

    request = DecisionRequest.model_validate(
        {"task": identity.model_dump(), "zone": zone, "zone_source": "dag" if zone else "none", "inputs": []}
    )
    with create_session() as session:
        decide_and_record(session=session, engine=engine, request=request, source="api")


def _violations(identity: TaskInstanceIdentity) -> list[tuple[str, str | None, str]]:
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            sa.select(PolicyZonesViolation.rule, PolicyZonesViolation.input, PolicyZonesViolation.outcome)
            .where(PolicyZonesViolation.run_id == identity.run_id)
            .order_by(PolicyZonesViolation.id)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _decision(identity: TaskInstanceIdentity) -> PolicyZonesDecision | None:
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalar(
            sa.select(PolicyZonesDecision).where(PolicyZonesDecision.run_id == identity.run_id)
        )
        if row is not None:
            session.expunge(row)
        return row


@pytest.fixture(scope="module")
def policy(credentials_policy: Path) -> PolicyEngine:
    return PolicyEngine.from_file(credentials_policy)


# --- the mechanism, pinned on this Airflow version ----------------------------------------------


def test_airflow_mounts_the_guard_around_the_execution_api(client: TestClient) -> None:
    from airflow import plugins_manager
    from airflow.api_fastapi.execution_api.routes import connections, variables

    _, middlewares = plugins_manager.get_fastapi_plugins()
    assert [m["middleware"] for m in middlewares if m["middleware"] is CredentialGuard] == [CredentialGuard]
    assert CredentialGuard in [m.cls for m in client.app.user_middleware]  # type: ignore[attr-defined]
    # The per-task hooks Airflow leaves open (always True on this version) are still there.
    assert connections.has_connection_access.__name__ == "has_connection_access"
    assert variables.has_variable_access.__name__ == "has_variable_access"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/execution/connections/warehouse_raw", ("connection", "warehouse_raw")),
        ("/execution/variables/a/b", ("variable", "a/b")),
        ("/execution/variables/keys", None),
        ("/execution/connections/", None),
        ("/execution/connections/a/b", None),
        ("/execution/task-instances/x/run", None),
        ("/api/v2/connections/warehouse_raw", None),
    ],
)
def test_credential_request(path: str, expected: object) -> None:
    assert credential_request(path) == expected


# --- decisions --------------------------------------------------------------------------------


def test_a_zone_that_may_not_use_the_data_never_gets_the_credentials(
    client: TestClient, policy: PolicyEngine
) -> None:
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert response.status_code == 403, response.text
    assert "s3cret" not in response.text
    detail = response.json()["detail"]
    assert detail["reason"] == "policyzones_refused"
    assert detail["connection"] == "warehouse_raw"
    assert detail["zone"] == "recs"
    assert detail["rule"] == "connection_not_allowed"
    assert "purchase_events" in detail["message"] and detail["fix"]
    assert _violations(identity) == [("connection_not_allowed", "connection:warehouse_raw", "deny")]
    row = _decision(identity)
    assert row is not None and row.outcome == "deny" and row.allowed is False
    assert row.violation_count == 1

    again = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))
    assert again.status_code == 403
    assert len(_violations(identity)) == 1  # one finding per try and connection


def test_before_its_decision_a_try_is_decided_in_the_zone_its_task_was_parsed_in(
    client: TestClient,
) -> None:
    """A task set in zone recs (``set_zone``) in a DAG tagged for ads asks for the warehouse while
    its templates render, before its pre-execute check: decided in recs, not in the DAG's ads."""
    identity, ti_id = _ti("ads_dag")
    parsed_with(
        identity.dag_id, identity.run_id, tags=["ads", "policyzone:ads", "team:recs"], read_zone="recs"
    )  # in both zones

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert response.status_code == 403, response.text
    assert response.json()["detail"]["zone"] == "recs"
    row = _decision(identity)
    assert row is not None and (row.zone, row.zone_source) == ("recs", "task")


def test_another_spelling_of_a_restricted_id_is_refused_the_same_way(
    client: TestClient, policy: PolicyEngine
) -> None:
    """Airflow's environment-variables backend serves ``AIRFLOW_CONN_WAREHOUSE_RAW`` for any case
    of the id (and ``AIRFLOW_VAR_ADS_BUDGET`` for any case of the key): each spelling is the
    restricted connection, not an unlisted one."""
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)

    for path in (
        "/execution/connections/WAREHOUSE_RAW",
        "/execution/connections/Warehouse_Raw",
        "/execution/connections/warehouse_raw%20",
        "/execution/variables/ADS_BUDGET",
    ):
        response = client.get(path, headers=_token(ti_id))
        assert response.status_code == 403, (path, response.text)
        assert "s3cret" not in response.text and "1000" not in response.text
    assert [rule for rule, _, _ in _violations(identity)] == [
        "connection_not_allowed",
        "connection_not_allowed",
        "connection_not_allowed",
        "variable_not_allowed",
    ]


def test_a_zone_that_may_use_it_gets_it(client: TestClient, policy: PolicyEngine) -> None:
    identity, ti_id = _ti("ads_dag")
    _decide(identity, "ads", policy)

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert response.status_code == 200, response.text
    assert response.json()["password"] == "s3cret"
    assert client.get("/execution/connections/slack_ads", headers=_token(ti_id)).status_code == 200
    assert _violations(identity) == []


def test_unrestricted_connections_are_served_to_everyone(client: TestClient, policy: PolicyEngine) -> None:
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)
    response = client.get("/execution/connections/open_data", headers=_token(ti_id))
    assert response.status_code == 200, response.text
    assert client.get("/execution/connections/missing_one", headers=_token(ti_id)).status_code == 404


def test_variables_are_refused_the_same_way(client: TestClient, policy: PolicyEngine) -> None:
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)
    refused = client.get("/execution/variables/ads_budget", headers=_token(ti_id))
    assert refused.status_code == 403, refused.text
    assert refused.json()["detail"]["variable"] == "ads_budget"
    assert _violations(identity) == [("variable_not_allowed", "variable:ads_budget", "deny")]

    ads, ads_ti = _ti("ads_dag")
    _decide(ads, "ads", policy)
    served = client.get("/execution/variables/ads_budget", headers=_token(ads_ti))
    assert served.status_code == 200, served.text
    assert served.json()["value"] == "1000"


def test_dry_run_serves_and_records_before_the_check_then_the_check_completes_the_decision(
    client: TestClient, policy: PolicyEngine
) -> None:
    identity, ti_id = _ti("mkt_dag")
    parsed_with(identity.dag_id, identity.run_id, tags=["policyzone:marketing"])

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert response.status_code == 200, response.text
    assert _violations(identity) == [("connection_not_allowed", "connection:warehouse_raw", "dry_run")]
    pending = _decision(identity)
    assert pending is not None and pending.zone == "marketing" and pending.outcome == "dry_run"

    _decide(identity, "marketing", policy)  # the pre-execute check, later in the same try
    row = _decision(identity)
    assert row is not None and row.outcome == "dry_run" and row.allowed
    assert row.zone_source == "dag" and row.claims_digest != "credentials-only"
    assert _violations(identity) == [("connection_not_allowed", "connection:warehouse_raw", "dry_run")]


def test_before_a_decision_an_unzoned_try_gets_nothing_restricted(client: TestClient) -> None:
    identity, ti_id = _ti("ai_dag")  # no zone tag, no default zone
    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))
    assert response.status_code == 403
    assert _violations(identity) == [("connection_not_allowed", "connection:warehouse_raw", "deny")]


def test_tokens_that_name_no_try_get_nothing_restricted(client: TestClient) -> None:
    response = client.get("/execution/connections/warehouse_raw", headers=_token(str(uuid.uuid4())))
    assert response.status_code == 403
    assert "no current task instance" in response.json()["detail"]["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic eA=="}]
)
def test_bad_tokens_are_refused_by_airflow_itself(client: TestClient, headers: dict[str, Any]) -> None:
    response = client.get("/execution/connections/warehouse_raw", headers=headers)
    assert response.status_code in (401, 403)
    assert "s3cret" not in response.text


def test_disabled_enforcement_serves_everything(
    client: TestClient, policy: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__POLICYZONES__ENABLED", "False")
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)
    assert client.get("/execution/connections/warehouse_raw", headers=_token(ti_id)).status_code == 200


def test_the_route_reuses_the_token_the_guard_validated(
    client: TestClient, policy: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard leaves the validated token where Airflow's JWTBearer caches it: a checked fetch
    validates the token as often as an unchecked one."""
    from airflow.api_fastapi.auth.tokens import JWTValidator
    from airflow.api_fastapi.execution_api.security import _REQUEST_SCOPE_TOKEN_KEY

    assert _REQUEST_SCOPE_TOKEN_KEY == "ti_token"
    identity, ti_id = _ti("ads_dag")
    _decide(identity, "ads", policy)
    validated: list[str] = []
    original = JWTValidator.avalidated_claims

    async def counted(self: JWTValidator, token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        validated.append(token)
        return await original(self, token, *args, **kwargs)

    monkeypatch.setattr(JWTValidator, "avalidated_claims", counted)
    counts = {}
    for enabled in ("False", "True"):
        monkeypatch.setenv("AIRFLOW__POLICYZONES__ENABLED", enabled)
        validated.clear()
        response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))
        assert response.status_code == 200, response.text
        counts[enabled] = len(validated)
    assert counts["True"] == counts["False"] >= 1


# --- success only for a try that was decided ------------------------------------------------------

END = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc).isoformat()


def _report(client: TestClient, ti_id: str, state: str = "success", **extra: Any) -> Any:
    body: dict[str, Any] = {"state": state, "end_date": END, **extra}
    if state == "success":
        body.setdefault("task_outlets", [])
        body.setdefault("outlet_events", [])
    return client.patch(f"/execution/task-instances/{ti_id}/state", json=body, headers=_token(ti_id))


def _state(ti_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(sa.select(TaskInstance.state).where(TaskInstance.id == uuid.UUID(ti_id)))


def test_the_guard_is_mounted_around_the_execution_api(client: TestClient) -> None:
    assert SuccessGuard in [m.cls for m in client.app.user_middleware]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/execution/task-instances/0190b7c4-8c2f-7a61-9b43-0f3cc4fa0c11/state",
            "0190b7c4-8c2f-7a61-9b43-0f3cc4fa0c11",
        ),
        ("/execution/task-instances/0190b7c4-8c2f-7a61-9b43-0f3cc4fa0c11/run", None),
        ("/execution/task-instances/0190b7c4-8c2f-7a61-9b43-0f3cc4fa0c11/state/x", None),
        ("/api/v2/task-instances/0190b7c4-8c2f-7a61-9b43-0f3cc4fa0c11/state", None),
    ],
)
def test_state_report(path: str, expected: str | None) -> None:
    assert state_report(path) == expected


def test_a_try_without_a_decision_is_failed_instead_and_the_refusal_recorded(client: TestClient) -> None:
    identity, ti_id = _ti("recs_dag")
    parsed_with(identity.dag_id, identity.run_id, tags=["team:recs"])  # no zone

    response = _report(client, ti_id)

    assert response.status_code == 204, response.text
    assert _state(ti_id) == "failed"
    assert _violations(identity) == [("undecided_run", None, "deny")]
    row = _decision(identity)
    assert row is not None and row.outcome == "deny" and not row.allowed and row.zone is None
    # A repeated report (the supervisor retries) records nothing more; the try stays failed.
    assert _report(client, ti_id).status_code in (200, 204, 409)
    assert _violations(identity) == [("undecided_run", None, "deny")]


def test_a_try_whose_decision_allowed_it_succeeds(client: TestClient, policy: PolicyEngine) -> None:
    identity, ti_id = _ti("recs_dag")
    _decide(identity, "recs", policy)

    with statements_run() as statements:
        assert _report(client, ti_id).status_code == 204

    assert _state(ti_id) == "success"
    assert _violations(identity) == []
    # The common case costs the guard one read (the try with its decision), nothing locked.
    ours = [statement for statement in statements if "policyzones_decision" in statement]
    assert len(ours) == 1 and "for update" not in ours[0], ours


def test_a_denied_try_that_reports_success_is_failed(client: TestClient, policy: PolicyEngine) -> None:
    identity, ti_id = _ti("recs_dag")
    refused = client.get("/execution/variables/ads_budget", headers=_token(ti_id))  # denied mid-run
    assert refused.status_code == 403
    _decide(identity, "recs", policy)

    assert _report(client, ti_id).status_code == 204
    assert _state(ti_id) == "failed"
    assert _violations(identity) == [
        ("variable_not_allowed", "variable:ads_budget", "deny"),
        ("undecided_run", None, "deny"),
    ]


def test_in_a_dry_run_zone_the_success_stands_and_the_violation_is_recorded(client: TestClient) -> None:
    identity, ti_id = _ti("mkt_dag")
    parsed_with(identity.dag_id, identity.run_id, tags=["policyzone:marketing"])

    assert _report(client, ti_id).status_code == 204
    assert _state(ti_id) == "success"
    assert _violations(identity) == [("undecided_run", None, "dry_run")]


def test_an_undecided_task_set_in_an_enforcing_zone_fails_though_its_dag_is_in_a_dry_run_zone(
    client: TestClient,
) -> None:
    """Judged in the zone its task was parsed in (``set_zone``), not the DAG's dry-run zone."""
    identity, ti_id = _ti("mkt_dag")
    parsed_with(
        identity.dag_id, identity.run_id, tags=["policyzone:marketing", "team:recs"], read_zone="recs"
    )

    assert _report(client, ti_id).status_code == 204
    assert _state(ti_id) == "failed"
    row = _decision(identity)
    assert row is not None and (row.zone, row.zone_source, row.outcome) == ("recs", "task", "deny")


def test_other_states_and_other_tokens_are_left_to_airflow(client: TestClient) -> None:
    identity, ti_id = _ti("recs_dag")
    assert _report(client, ti_id, state="failed").status_code == 204
    assert _state(ti_id) == "failed"
    assert _violations(identity) == []

    identity, ti_id = _ti("recs_dag")
    other, other_ti = _ti("recs_dag")
    response = client.patch(
        f"/execution/task-instances/{ti_id}/state",
        json={"state": "success", "end_date": END, "task_outlets": [], "outlet_events": []},
        headers=_token(other_ti),  # another try's token: Airflow refuses it (ti:self)
    )
    assert response.status_code == 403, response.text
    assert _state(ti_id) == "running"
    assert _violations(identity) == [] and _violations(other) == []


def test_disabled_enforcement_lets_every_success_through(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__POLICYZONES__ENABLED", "False")
    identity, ti_id = _ti("recs_dag")
    assert _report(client, ti_id).status_code == 204
    assert _state(ti_id) == "success"
    assert _violations(identity) == []


def test_a_policy_that_breaks_while_tries_run_fails_only_the_undecided_ones(
    client: TestClient, policy: PolicyEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    decided, decided_ti = _ti("recs_dag")
    _decide(decided, "recs", policy)
    undecided, undecided_ti = _ti("recs_dag")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(tmp_path / "gone.yaml"))

    # Decided under the policy that was valid: its success needs no policy.
    assert _report(client, decided_ti).status_code == 204
    assert _state(decided_ti) == "success"
    # Not decided, and no policy to judge it by: failed closed (nothing can be recorded about it).
    assert _report(client, undecided_ti).status_code == 204
    assert _state(undecided_ti) == "failed"
    assert _violations(undecided) == []
