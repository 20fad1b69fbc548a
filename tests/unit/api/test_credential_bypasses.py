"""Ways a task whose zone may not use a restricted connection or variable still obtains it (or
changes it) through the api-server's execution API. Airflow's own api-server app, tokens from
Airflow's execution-token generator, the decision service as the relay calls it, real SQLite and
PostgreSQL metadata databases.

Each test that shows an open hole is marked ``xfail(strict=True)``: it asserts what should
happen, so it starts passing (and fails the suite) once the hole is closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.db.service import decide_and_record
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import DecisionRequest, TaskInstanceIdentity
from tests.support.airflow_db import JWT_SECRET, TEST_POLICY, Prepared, parsed_as, parsed_with
from tests.support.supervisor import airflow_api_server
from tests.unit.api.test_execution_api_guards import (
    CREDENTIALS,
    WAREHOUSE,
    _decision,
    _report,
    _state,
    _ti,
    _token,
    _violations,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def credentials_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("credentials") / "policy.yaml"
    path.write_text(TEST_POLICY + CREDENTIALS)
    return path


@pytest.fixture(autouse=True)
def _config(monkeypatch: pytest.MonkeyPatch, credentials_policy: Path) -> None:
    """The connection and variable defined on the api-server only (its own secrets)."""
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(credentials_policy))
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_RAW", WAREHOUSE)
    monkeypatch.setenv("AIRFLOW_VAR_ADS_BUDGET", "1000")


@pytest.fixture(scope="module")
def client(backend: Prepared) -> Iterator[TestClient]:
    """Airflow's api-server app as ``airflow api-server`` builds it, the provider's plugin in."""
    with airflow_api_server() as test_client:
        yield test_client


@pytest.fixture(scope="module")
def policy(credentials_policy: Path) -> PolicyEngine:
    return PolicyEngine.from_file(credentials_policy)


def _tag(dag_id: str, tag: str) -> None:
    from airflow.models.dag import DagTag
    from airflow.utils.session import create_session

    with create_session() as session:
        if session.get(DagTag, (tag, dag_id)) is None:
            session.add(DagTag(name=tag, dag_id=dag_id))


def _untag(dag_id: str, tag: str) -> None:
    from airflow.models.dag import DagTag
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.get(DagTag, (tag, dag_id))
        if found is not None:
            session.delete(found)


def _claim(identity: TaskInstanceIdentity, zone: str | None, engine: PolicyEngine) -> None:
    """A decision request as the task process sends it through the relay: the try comes from the
    token, the zone is whatever the task's code says (the relay passes it to the service)."""
    from airflow.utils.session import create_session

    request = DecisionRequest.model_validate(
        {"task": identity.model_dump(), "zone": zone, "zone_source": "task" if zone else "none", "inputs": []}
    )
    with create_session() as session:
        decide_and_record(session=session, engine=engine, request=request, source="api")


# --- a zone the DAG is not a member of, in dry_run mode -------------------------------------------


def test_a_non_member_dag_tagged_with_a_dry_run_zone_is_refused_before_its_check(client: TestClient) -> None:
    """``impostor`` (other/impostor.py, owner someone) is a member of no zone; ``marketing`` is in
    dry_run and admits only ``mkt_*`` DAGs. The DAG's author tags it ``policyzone:marketing``."""
    identity, ti_id = _ti("impostor")
    parsed_with("impostor", identity.run_id, tags=["team:ads", "policyzone:marketing"])

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert "s3cret" not in response.text, _violations(identity)
    assert response.status_code == 403
    assert response.json()["detail"]["rule"] == "connection_not_allowed"
    assert "not a member of zone 'marketing'" in response.json()["detail"]["message"]


def test_a_task_zoned_into_a_dry_run_zone_its_dag_is_no_member_of_is_refused(
    client: TestClient, policy: PolicyEngine
) -> None:
    """``recs_dag`` is a member of ``recs`` only; its task sets ``set_zone(task, zone="marketing")``
    (parsed and recorded by the dag-processor as such) and the pre-execute check agrees."""
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="marketing")
    _claim(identity, "marketing", policy)
    decision = _decision(identity)
    assert decision is not None and decision.zone == "marketing"

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert "s3cret" not in response.text, (decision.outcome, _violations(identity))
    assert response.status_code == 403


# --- the zone of a try as the guard reads it ------------------------------------------------------


def test_a_forged_zone_claim_does_not_open_credentials(client: TestClient, policy: PolicyEngine) -> None:
    """``ads_dag`` (ads/ads_dag.py) is a member of ``ads`` (files) and, tagged ``team:recs``, of
    ``recs``; its task ``read`` is parsed in zone ``recs``. The task's code sends a decision
    request claiming ``ads``: the service records a deny (the claim differs from the parsed
    task) with the zone claimed, and the guard decides in the zone the task was parsed in."""
    identity, ti_id = _ti("ads_dag")
    parsed_with("ads_dag", identity.run_id, tags=["ads", "team:recs"], read_zone="recs")
    _claim(identity, "ads", policy)
    decision = _decision(identity)
    assert decision is not None and decision.zone == "ads" and not decision.allowed
    assert ("claims_differ_from_parsed_dag", None, "deny") in _violations(identity)

    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))

    assert "s3cret" not in response.text
    assert response.status_code == 403
    assert response.json()["detail"]["zone"] == "recs"


def test_a_forged_dry_run_zone_claim_cannot_keep_a_success(client: TestClient, policy: PolicyEngine) -> None:
    """The same claim, of the dry-run zone ``marketing`` the DAG is also a member of: the decision
    is a deny, the task's code goes on anyway and reports success; the success is judged in the
    zone the task was parsed in (enforcing), so the try fails."""
    identity, ti_id = _ti("mkt_dag")
    parsed_with("mkt_dag", identity.run_id, tags=["team:recs"], read_zone="recs")
    _claim(identity, "marketing", policy)

    assert _report(client, ti_id).status_code == 204
    assert _state(ti_id) == "failed"
    assert ("undecided_run", None, "deny") in _violations(identity)


# --- writes -----------------------------------------------------------------------------------------


def test_a_zone_that_may_not_use_a_variable_cannot_overwrite_or_delete_it(
    client: TestClient, policy: PolicyEngine
) -> None:
    from airflow.models.variable import Variable

    Variable.set("ads_target", "ads-only")
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    assert client.get("/execution/variables/ads_target", headers=_token(ti_id)).status_code == 403

    put = client.put("/execution/variables/ads_target", json={"value": "from-recs"}, headers=_token(ti_id))
    value = Variable.get("ads_target", default_var=None)
    deleted = client.delete("/execution/variables/ads_target", headers=_token(ti_id))
    gone = Variable.get("ads_target", default_var=None) is None

    assert (put.status_code, value) == (403, "ads-only")
    assert deleted.status_code == 403 and not gone


# --- what held ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("HEAD", "/execution/connections/warehouse_raw", {403, 405}),
        ("GET", "/execution/connections/warehouse_raw/", {307, 403, 404}),  # redirect to the checked path
        ("GET", "/execution//connections/warehouse_raw", {403, 404}),
        ("GET", "/execution/connections//warehouse_raw", {403, 404}),
        ("GET", "/execution/./connections/warehouse_raw", {403}),
        ("GET", "/execution/connections/warehouse%5Fraw", {403}),
        ("GET", "/execution/connections/wareho%75se_raw", {403}),
        ("GET", "/execution/connections/WAREHOU%C5%BFE_RAW", {403}),  # long s: upper() is S
        ("GET", "/execution/connections/ware%2Fhouse_raw", {403, 404}),
        ("GET", "/execution/variables/ads_budget/", {403}),
        ("GET", "/execution/variables//ads_budget", {403, 404}),
        ("GET", "/execution/variables/ADS_BUDGET%20%20", {403}),
    ],
)
def test_spellings_and_routes_that_held(
    client: TestClient, policy: PolicyEngine, method: str, path: str, statuses: set[int]
) -> None:
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    response = client.request(method, path, headers=_token(ti_id), follow_redirects=False)
    assert response.status_code in statuses, response.text
    assert "s3cret" not in response.text and "1000" not in response.text
    if response.status_code == 307:
        assert response.headers["location"].endswith("/execution/connections/warehouse_raw")


@pytest.mark.parametrize("version", ["2025-04-28", "2025-08-10", "2026-04-01", "not-a-version"])
def test_every_execution_api_version_is_checked(
    client: TestClient, policy: PolicyEngine, version: str
) -> None:
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    response = client.get(
        "/execution/connections/warehouse_raw", headers={**_token(ti_id), "Airflow-API-Version": version}
    )
    assert response.status_code in (403, 422), response.text
    assert "s3cret" not in response.text


@pytest.mark.parametrize("root", ["/e", "/exec", "/execution"])
def test_a_root_path_that_is_a_prefix_of_execution_does_not_route_around_the_guard(
    client: TestClient, policy: PolicyEngine, root: str
) -> None:
    """The guard strips the root path by string prefix where Starlette requires a segment
    boundary; Starlette's mount then does not route such a request into the execution API."""
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    rooted = TestClient(client.app, root_path=root)
    response = rooted.get("/execution/connections/warehouse_raw", headers=_token(ti_id))
    assert "s3cret" not in response.text


def test_a_finished_or_superseded_try_gets_nothing_its_zone_may_not_use(
    client: TestClient, policy: PolicyEngine
) -> None:
    """A token of a try that finished: the task instance row keeps its id, the zone is still the
    try's (refused); a token naming no task instance is refused."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    with create_session() as session:
        session.execute(
            sa.update(TaskInstance).where(TaskInstance.run_id == identity.run_id).values(state="success")
        )
    response = client.get("/execution/connections/warehouse_raw", headers=_token(ti_id))
    assert response.status_code == 403 and "s3cret" not in response.text


def test_a_workload_scoped_token_gets_no_connection(client: TestClient) -> None:
    """A ``workload`` token (what the scheduler hands an executor before the try starts) is left
    to Airflow, whose connection route takes execution tokens only."""
    from airflow.api_fastapi.execution_api.app import _jwt_generator

    _, ti_id = _ti("ads_dag")
    token = str(_jwt_generator().generate({"sub": ti_id, "scope": "workload"}))
    response = client.get(
        "/execution/connections/warehouse_raw", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403, response.text
    assert "s3cret" not in response.text


def test_a_team_scoped_copy_of_a_restricted_connection_is_refused(
    client: TestClient, policy: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api-server holds the analytics team's copy of the warehouse connection (ready for
    multi-team mode); a recs try asks for it under the name the environment backend reads."""
    monkeypatch.setenv("AIRFLOW_CONN__ANALYTICS___WAREHOUSE_RAW", WAREHOUSE)
    identity, ti_id = _ti("recs_dag")
    parsed_as(identity.dag_id, identity.run_id, zone="recs")
    _claim(identity, "recs", policy)
    response = client.get("/execution/connections/_analytics___warehouse_raw", headers=_token(ti_id))
    assert "s3cret" not in response.text
