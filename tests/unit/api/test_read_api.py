"""The read-only audit API over HTTP: real auth manager tokens, rows recorded by the real service.

Rows are seeded by calling ``decide_and_record`` on real task instances, inside a time window
unique to this module run, and every list query is bounded to that window so rows recorded by
other tests in the same database never interfere.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.db.audit_filters import MAX_LIMIT, ViolationFilters
from airflow_policyzones.db.paging import encode_cursor
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.policy.vocabulary import Rule
from airflow_policyzones.webapp import create_app
from airflow_policyzones.wire import DecisionRequest, DecisionResponse
from tests.support.airflow_db import JWT_SECRET, Prepared, create_run, parsed_as

pytestmark = pytest.mark.integration

API = "/api/v1"
PURCHASES = "s3://lake/raw/purchases/daily"
CLICKS = "s3://lake/raw/ad_clicks/2026"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass(frozen=True)
class Seeded:
    """What the module recorded: decisions in order of decided_at, and the window they lie in."""

    decisions: list[DecisionResponse]
    since: datetime
    until: datetime


@pytest.fixture(scope="module")
def auth(
    backend: Prepared, policy_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Airflow's SimpleAuthManager, really initialized; tokens for an admin, a viewer and a role-less user."""
    from airflow.api_fastapi.app import init_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
        patch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy_path))
        patch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        purge_cached_app()
        manager = init_auth_manager()
        try:
            yield {
                role: manager.generate_jwt(SimpleAuthManagerUser(username=role, role=role))
                for role in ("admin", "viewer")
            } | {"nobody": manager.generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))}
        finally:
            purge_cached_app()


@pytest.fixture(scope="module")
def client(auth: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app()) as test_client:
        yield test_client


def _decide(
    *, engine: PolicyEngine, dag_id: str, zone: str, inputs: list[str], now: datetime
) -> DecisionResponse:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.service import decide_and_record

    run_id = create_run(dag_id)
    parsed_as(dag_id, run_id, zone=zone, inlets=inputs)  # the task declares what its try claims
    request = DecisionRequest.model_validate(
        {
            "task": {"dag_id": dag_id, "task_id": "read", "run_id": run_id, "try_number": 1},
            "zone": zone,
            "zone_source": "dag",
            "inputs": [{"namespace": "asset", "name": name} for name in inputs],
        }
    )
    with create_session() as session:
        return decide_and_record(session=session, engine=engine, request=request, source="api", now=now)


@pytest.fixture(scope="module")
def seeded(auth: dict[str, str], engine: PolicyEngine) -> Seeded:
    """Nine decisions a minute apart (three sharing one instant, to test the keyset's tie-break)."""
    base = datetime(2031, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))
    plan = [
        ("ads_dag", "ads", PURCHASES, 0),  # allow
        ("recs_dag", "recs", PURCHASES, 1),  # deny
        ("mkt_dag", "marketing", PURCHASES, 2),  # dry_run
        ("recs_dag", "recs", CLICKS, 3),  # exempted
        ("recs_dag", "recs", PURCHASES, 4),
        ("recs_dag", "recs", PURCHASES, 4),
        ("recs_dag", "recs", PURCHASES, 4),
        ("recs_dag", "recs", PURCHASES, 5),
        ("recs_dag", "recs", PURCHASES, 6),
    ]
    decisions = [
        _decide(engine=engine, dag_id=dag_id, zone=zone, inputs=[name], now=base + timedelta(minutes=minute))
        for dag_id, zone, name, minute in plan
    ]
    assert [decision.outcome for decision in decisions[:4]] == ["allow", "deny", "dry_run", "exempted"]
    assert all(len(decision.findings) == 1 for decision in decisions[1:])
    return Seeded(decisions, base, base + timedelta(hours=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get(
    client: TestClient, seeded: Seeded, path: str, *, token: str | None, window: bool = True, **params: Any
) -> Any:
    if window:
        params = {"since": seeded.since.isoformat(), "until": seeded.until.isoformat(), **params}
    return client.get(API + path, params=params, headers=bearer(token) if token else {})


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def newest_first(seeded: Seeded, *outcomes: str) -> list[int]:
    """Decision ids with these outcomes, as the API orders them: (decided_at, id) descending."""
    chosen = [d for d in seeded.decisions if d.outcome in outcomes]
    return [d.decision_id for d in reversed(chosen)]


# --- violations -------------------------------------------------------------------------------


def test_violations_are_listed_newest_first_with_their_task_instance(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    page = ok(get(client, seeded, "/violations", token=auth["viewer"]))

    assert page["next_cursor"] is None
    assert [item["decision_id"] for item in page["items"]] == newest_first(
        seeded, "deny", "dry_run", "exempted"
    )
    keys = [(item["decided_at"], item["id"]) for item in page["items"]]
    assert keys == sorted(keys, reverse=True)
    first = page["items"][0]
    ti = first["task_instance"]
    assert {k: ti[k] for k in ("dag_id", "task_id", "map_index", "try_number")} == {
        "dag_id": "recs_dag",
        "task_id": "read",
        "map_index": -1,
        "try_number": 1,
    }
    assert ti["ui_path"] == f"dags/recs_dag/runs/{ti['run_id']}/tasks/read"
    assert first["rule"] == "category_not_allowed"
    assert first["input"] == PURCHASES


@pytest.mark.parametrize(
    ("params", "outcomes", "dag_ids"),
    [
        ({"dag_id": "mkt_dag"}, {"dry_run"}, {"mkt_dag"}),
        ({"zone": "recs"}, {"deny", "exempted"}, {"recs_dag"}),
        ({"mode": "dry_run"}, {"dry_run"}, {"mkt_dag"}),
        ({"outcome": "exempted"}, {"exempted"}, {"recs_dag"}),
        ({"rule": "category_not_allowed", "outcome": "deny"}, {"deny"}, {"recs_dag"}),
        ({"category": "ad_clicks"}, {"exempted"}, {"recs_dag"}),
        ({"category": "purchase_events"}, {"deny", "dry_run"}, {"recs_dag", "mkt_dag"}),
        ({"task_id": "mapped"}, set(), set()),
        ({"rule": "consent_missing"}, set(), set()),
    ],
)
def test_violation_filters(
    client: TestClient,
    seeded: Seeded,
    auth: dict[str, str],
    params: dict[str, str],
    outcomes: set[str],
    dag_ids: set[str],
) -> None:
    items = ok(get(client, seeded, "/violations", token=auth["viewer"], **params))["items"]

    assert {item["outcome"] for item in items} == outcomes
    assert {item["task_instance"]["dag_id"] for item in items} == dag_ids
    expected = [d for d in newest_first(seeded, *outcomes) if d in {i["decision_id"] for i in items}]
    assert [item["decision_id"] for item in items] == expected


def test_since_and_until_bound_the_window(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    # Decided at base+4min (three of them) and base+5min; until is exclusive.
    items = ok(
        get(
            client,
            seeded,
            "/violations",
            token=auth["viewer"],
            window=False,
            since=(seeded.since + timedelta(minutes=4)).isoformat(),
            until=(seeded.since + timedelta(minutes=6)).isoformat(),
        )
    )["items"]
    assert sorted(item["decision_id"] for item in items) == sorted(
        d.decision_id for d in seeded.decisions[4:8]
    )


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_pages_have_no_duplicates_and_no_gaps(
    client: TestClient, seeded: Seeded, auth: dict[str, str], limit: int
) -> None:
    for path, everything in (
        ("/violations", newest_first(seeded, "deny", "dry_run", "exempted")),
        ("/decisions", newest_first(seeded, "allow", "deny", "dry_run", "exempted")),
    ):
        seen: list[int] = []
        cursor: str | None = None
        for _ in range(20):
            params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            page = ok(get(client, seeded, path, token=auth["viewer"], **params))
            assert len(page["items"]) <= limit
            key = "decision_id" if path == "/violations" else "id"
            seen += [item[key] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == everything, path


# --- decisions --------------------------------------------------------------------------------


def test_decisions_carry_inputs_and_labels(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    page = ok(get(client, seeded, "/decisions", token=auth["viewer"], zone="ads"))
    [decision] = page["items"]
    assert decision["id"] == seeded.decisions[0].decision_id
    assert decision["outcome"] == "allow"
    assert decision["allowed"] is True
    assert decision["inputs"] == [
        {
            "namespace": "asset",
            "name": PURCHASES,
            "labeled": True,
            "categories": ["purchase_events"],
            "consented": ["ads"],
            "aggregated": False,
            "origins": [],
            "reclassified_by": [],
            "source": "declared",
        }
    ]


@pytest.mark.parametrize(
    ("params", "outcomes"),
    [
        ({"outcome": "allow"}, {"allow"}),
        ({"category": "ad_clicks"}, {"exempted"}),
        ({"dag_id": "ads_dag"}, {"allow"}),
        ({"task_id": "read", "zone": "marketing"}, {"dry_run"}),
    ],
)
def test_decision_filters(
    client: TestClient, seeded: Seeded, auth: dict[str, str], params: dict[str, str], outcomes: set[str]
) -> None:
    items = ok(get(client, seeded, "/decisions", token=auth["viewer"], **params))["items"]
    assert {item["outcome"] for item in items} == outcomes


def test_one_decision_with_findings(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    denied = seeded.decisions[1]
    decision = ok(client.get(f"{API}/decisions/{denied.decision_id}", headers=bearer(auth["viewer"])))
    assert decision["outcome"] == "deny"
    assert decision["policy_version"] == denied.policy_version
    assert [finding["rule"] for finding in decision["findings"]] == ["category_not_allowed"]
    assert decision["findings"][0]["reason"] == denied.findings[0].reason
    assert [item["name"] for item in decision["inputs"]] == [PURCHASES]


def test_an_absent_decision_is_404(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    response = client.get(f"{API}/decisions/999999999", headers=bearer(auth["viewer"]))
    assert response.status_code == 404
    assert client.get(f"{API}/decisions/abc", headers=bearer(auth["viewer"])).status_code == 422


# --- policy -----------------------------------------------------------------------------------


def test_the_active_policy(client: TestClient, auth: dict[str, str], engine: PolicyEngine) -> None:
    policy = ok(client.get(f"{API}/policy", headers=bearer(auth["viewer"])))
    assert policy["version"] == engine.version
    assert policy["name"] == "service-tests"
    zones = {zone["name"]: zone for zone in policy["zones"]}
    assert set(zones) == {"ads", "recs", "ai", "marketing"}
    assert zones["marketing"]["mode"] == "dry_run"
    assert zones["ai"]["requires_consent"] is True
    assert zones["recs"]["allowed_categories"] == ["watch_history"]
    assert {category["name"] for category in policy["categories"]} == {
        "purchase_events",
        "ad_clicks",
        "watch_history",
    }
    assert policy["flows"] == []
    assert policy["reclassifiers"] == []


def test_a_policy_that_does_not_load_is_503(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nzones: [not, a, mapping]\n")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(broken))
    response = client.get(f"{API}/policy", headers=bearer(auth["viewer"]))
    assert response.status_code == 503
    assert "the policy does not load" in response.json()["detail"]


# --- export -----------------------------------------------------------------------------------


def test_export_csv(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    response = get(client, seeded, "/export/violations", token=auth["viewer"], format="csv", zone="recs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(row["decision_id"]) for row in rows] == [d for d in newest_first(seeded, "deny", "exempted")]
    assert {row["dag_id"] for row in rows} == {"recs_dag"}
    assert [row["exemption"] for row in rows if row["outcome"] == "exempted"] == ["PRIV-1"]
    assert rows[0]["rules"] == "category_not_allowed"


def test_export_json_bounded_by_max_rows(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    everything = newest_first(seeded, "deny", "dry_run", "exempted")
    response = get(client, seeded, "/export/violations", token=auth["viewer"], format="json")
    assert response.status_code == 200, response.text
    assert [row["decision_id"] for row in json.loads(response.text)["rows"]] == everything

    capped = get(client, seeded, "/export/violations", token=auth["viewer"], format="json", max_rows=2)
    assert [row["decision_id"] for row in capped.json()["rows"]] == everything[:2]


def test_export_escapes_spreadsheet_formulas() -> None:
    from airflow_policyzones.db.exports import csv_cell

    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("recs_dag") == "recs_dag"
    assert csv_cell(None) == ""


# --- authentication and authorization ---------------------------------------------------------

READ_PATHS = ["/violations", "/decisions", "/decisions/1", "/policy", "/export/violations"]


@pytest.mark.parametrize("path", READ_PATHS)
def test_anonymous_is_401(client: TestClient, path: str) -> None:
    assert client.get(API + path).status_code == 401


@pytest.mark.parametrize("path", READ_PATHS)
def test_a_user_without_a_role_is_403(client: TestClient, auth: dict[str, str], path: str) -> None:
    response = client.get(API + path, headers=bearer(auth["nobody"]))
    assert response.status_code == 403, response.text


def test_an_invalid_token_is_refused(client: TestClient) -> None:
    assert client.get(f"{API}/violations", headers=bearer("not-a-jwt")).status_code == 403


def test_an_execution_token_does_not_read(client: TestClient, auth: dict[str, str]) -> None:
    """A try's execution token (what its supervisor holds) is no user: it reads nothing."""
    from tests.support.supervisor import execution_token

    token = execution_token("0190a0f0-0000-7000-8000-000000000001")
    assert client.get(f"{API}/violations", headers=bearer(token)).status_code in {401, 403}


def test_rows_are_restricted_to_readable_dags(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    monkeypatch.setattr(manager, "get_authorized_dag_ids", lambda **_: {"mkt_dag"})

    violations = ok(get(client, seeded, "/violations", token=auth["viewer"]))["items"]
    assert {item["task_instance"]["dag_id"] for item in violations} == {"mkt_dag"}
    decisions = ok(get(client, seeded, "/decisions", token=auth["viewer"]))["items"]
    assert {item["task_instance"]["dag_id"] for item in decisions} == {"mkt_dag"}
    exported = get(client, seeded, "/export/violations", token=auth["viewer"], format="json").json()["rows"]
    assert {row["dag_id"] for row in exported} == {"mkt_dag"}
    hidden = client.get(f"{API}/decisions/{seeded.decisions[1].decision_id}", headers=bearer(auth["viewer"]))
    assert hidden.status_code == 404


def test_no_one_records_a_decision_through_this_app(client: TestClient, auth: dict[str, str]) -> None:
    # Not even an admin: decisions are recorded only for the try an execution token names.
    response = client.post(f"{API}/decisions", json={}, headers=bearer(auth["admin"]))
    assert response.status_code == 405


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/violations", {"since": "yesterday"}, None),
        ("/violations", {"until": "2031-13-45T00:00:00"}, None),
        ("/violations", {"zone": "nowhere"}, ["ads", "ai", "marketing", "recs"]),
        ("/decisions", {"zone": "<script>alert(1)</script>"}, ["ads", "ai", "marketing", "recs"]),
        ("/violations", {"category": "shoe_sizes"}, ["ad_clicks", "purchase_events", "watch_history"]),
        ("/violations", {"rule": "no_such_rule"}, None),
        ("/violations", {"outcome": "allow"}, None),
        ("/decisions", {"outcome": "maybe"}, None),
        ("/violations", {"mode": "lenient"}, None),
        ("/violations", {"limit": 0}, None),
        ("/violations", {"limit": MAX_LIMIT + 1}, None),
        ("/decisions", {"limit": 10**12}, None),
        ("/violations", {"limit": "many"}, None),
        ("/violations", {"cursor": "not-a-cursor"}, None),
        ("/decisions", {"cursor": "W10"}, None),
        ("/violations", {"cursor": "x" * 201}, None),
        ("/violations", {"since": "2031-01-02T00:00:00Z", "until": "2031-01-01T00:00:00Z"}, None),
        ("/violations", {"dag_id": "d" * 251}, None),
        ("/export/violations", {"format": "xml"}, None),
        ("/export/violations", {"max_rows": 10**9}, None),
    ],
)
def test_bad_input_is_422(
    client: TestClient,
    auth: dict[str, str],
    path: str,
    params: dict[str, Any],
    expected: list[str] | None,
) -> None:
    response = client.get(API + path, params=params, headers=bearer(auth["viewer"]))
    assert response.status_code == 422, response.text
    if expected is not None:
        assert response.json()["detail"]["allowed"] == expected


def test_rule_and_outcome_errors_name_the_allowed_values(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get(f"{API}/violations", params={"rule": "nope"}, headers=bearer(auth["viewer"]))
    assert "category_not_allowed" in response.text
    response = client.get(f"{API}/violations", params={"outcome": "allow"}, headers=bearer(auth["viewer"]))
    assert "'exempted'" in response.text


def test_a_cursor_for_a_valid_position_works(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    cursor = encode_cursor(decided_at=seeded.until, row_id=2**40)
    page = ok(get(client, seeded, "/violations", token=auth["viewer"], cursor=cursor))
    assert len(page["items"]) == len(newest_first(seeded, "deny", "dry_run", "exempted"))


def test_the_rule_values_match_the_engine() -> None:
    accepted = ViolationFilters.model_json_schema()["properties"]["rule"]["anyOf"][0]["enum"]
    assert set(accepted) == {rule.value for rule in Rule}


# --- OpenAPI ----------------------------------------------------------------------------------


def test_openapi_lists_the_read_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ["/violations", "/decisions", "/decisions/{decision_id}", "/policy", "/export/violations"]:
        assert "get" in paths[API + path], path
        assert paths[API + path]["get"]["summary"]
    assert "post" not in paths[f"{API}/decisions"]  # tries ask through the execution API only
    assert {"ViolationPage", "DecisionPage", "DecisionDetailOut", "PolicyOut"} <= set(
        schema["components"]["schemas"]
    )
