"""The Policy Zones pages over HTTP, as the Airflow UI's frame loads them: Airflow's session
cookie, the real auth manager, rows recorded by the real service (the API tests' seed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from airflow_policyzones.plugin import PolicyZonesPlugin, external_views
from tests.unit.api.test_read_api import PURCHASES, Seeded, bearer, newest_first

pytestmark = pytest.mark.integration


def page(client: TestClient, path: str, *, token: str | None, **params: Any) -> Any:
    """A page as the browser frame asks for it: the session travels in Airflow's cookie."""
    client.cookies.clear()
    if token is not None:
        client.cookies.set("_token", token)
    try:
        return client.get("/ui" + path, params=params, follow_redirects=False)
    finally:
        client.cookies.clear()


def window(seeded: Seeded) -> dict[str, str]:
    return {"since": seeded.since.isoformat(), "until": seeded.until.isoformat()}


def decisions_listed(html: str) -> list[int]:
    return [int(value) for value in re.findall(r'data-decision="(\d+)"', html)]


def run_id_of(client: TestClient, token: str, decision_id: int) -> str:
    response = client.get(f"/api/v1/decisions/{decision_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return str(response.json()["task_instance"]["run_id"])


def test_the_plugin_registers_a_nav_entry_and_tabs() -> None:
    views = {view["destination"]: view for view in external_views()}
    assert views["nav"]["name"] == "Policy Zones"
    assert views["nav"]["href"] == "/policyzones/ui/violations"
    assert views["task_instance"]["href"] == (
        "/policyzones/ui/task-instance?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    )
    assert views["dag"]["href"] == "/policyzones/ui/coverage?dag_id={DAG_ID}"
    assert PolicyZonesPlugin().external_views == external_views()


def test_violations_page_lists_the_violations_newest_first_with_links(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    response = page(client, "/violations", token=auth["viewer"], **window(seeded))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    html = response.text
    assert decisions_listed(html) == newest_first(seeded, "deny", "dry_run", "exempted")
    run_id = run_id_of(client, auth["viewer"], seeded.decisions[1].decision_id)
    assert f'href="/dags/recs_dag/runs/{run_id}/tasks/read/details"' in html
    assert f'href="/dags/recs_dag/runs/{run_id}/tasks/read?try_number=1"' in html
    assert f'href="/dags/recs_dag/runs/{run_id}/tasks/read/plugin/policy-decision"' in html
    assert f"<code>{PURCHASES}</code>" in html
    assert 'href="/policyzones/api/v1/export/violations?' in html


def test_filtering_by_zone_keeps_the_filter_in_the_form(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    html = page(client, "/violations", token=auth["viewer"], zone="marketing", **window(seeded)).text

    assert decisions_listed(html) == newest_first(seeded, "dry_run")
    assert '<option value="marketing" selected>marketing</option>' in html


def test_empty_form_fields_mean_no_filter(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    html = page(
        client, "/violations", token=auth["viewer"], dag_id="", zone="", rule="", **window(seeded)
    ).text
    assert len(decisions_listed(html)) == len(newest_first(seeded, "deny", "dry_run", "exempted"))


def test_no_match_is_an_empty_state(client: TestClient, seeded: Seeded, auth: dict[str, str]) -> None:
    response = page(client, "/violations", token=auth["viewer"], dag_id="no_such_dag", **window(seeded))
    assert response.status_code == 200
    assert 'data-empty="violations"' in response.text
    assert "No violations match these filters" in response.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"zone": "no_such_zone"}, "unknown zone &#39;no_such_zone&#39;"),
        ({"since": "yesterday"}, "since: Input should be a valid datetime"),
        ({"limit": "100000"}, "limit: Input should be less than or equal to 500"),
        ({"rule": "<b>bold</b>"}, "rule: Input should be"),
        ({"cursor": "not-a-cursor"}, "malformed cursor"),
    ],
)
def test_bad_filters_are_a_422_page_that_says_what_is_wrong(
    client: TestClient, seeded: Seeded, auth: dict[str, str], params: dict[str, str], message: str
) -> None:
    response = page(client, "/violations", token=auth["viewer"], **params)
    assert response.status_code == 422
    assert 'data-error="invalid"' in response.text
    assert message in response.text
    assert "<b>bold</b>" not in response.text


@pytest.mark.parametrize("path", ["/violations", "/zones", "/task-instance?dag_id=a&run_id=b&task_id=c"])
def test_without_a_session_the_page_says_how_to_log_in(client: TestClient, path: str) -> None:
    response = page(client, path, token=None)
    assert response.status_code == 401
    assert "Your Airflow session has expired" in response.text
    assert 'data-error="login"' in response.text


def test_an_expired_or_forged_session_is_a_login_page_not_a_500(
    client: TestClient, auth: dict[str, str]
) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    expired = get_auth_manager().generate_jwt(
        SimpleAuthManagerUser(username="viewer", role="viewer"), expiration_time_in_seconds=-3600
    )
    forged = auth["viewer"][:-6] + ("AAAAAA" if not auth["viewer"].endswith("AAAAAA") else "BBBBBB")
    for token, status_code in ((expired, 401), (forged, 403)):
        response = page(client, "/violations", token=token)
        assert response.status_code == status_code
        assert 'data-error="login"' in response.text
        assert "/auth/login" in response.text


def test_a_user_without_dag_access_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    response = page(client, "/violations", token=auth["nobody"])
    assert response.status_code == 403
    assert 'data-error="forbidden"' in response.text


def test_api_errors_stay_json(client: TestClient) -> None:
    response = client.get("/api/v1/violations")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


def test_zones_page_draws_the_zone_map(client: TestClient, auth: dict[str, str]) -> None:
    response = page(client, "/zones", token=auth["viewer"])

    assert response.status_code == 200, response.text
    html = response.text
    assert html.count('<g class="node') == len(re.findall(r'<tr data-zone="', html))
    for zone in ("ads", "recs", "marketing"):
        assert f'data-zone="{zone}"' in html
    svg = page(client, "/zone-map.svg", token=auth["viewer"])
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.startswith("<svg") and svg.text.endswith("</svg>")


def test_static_files_are_served(client: TestClient) -> None:
    for name, kind in (
        ("policyzones.css", "text/css"),
        ("policyzones.js", "javascript"),
        ("icon.svg", "svg"),
    ):
        response = client.get(f"/ui/static/{name}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]


def test_task_instance_view_shows_the_decision_and_why(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    denied = seeded.decisions[1]
    run_id = run_id_of(client, auth["viewer"], denied.decision_id)
    response = page(
        client,
        "/task-instance",
        token=auth["viewer"],
        dag_id="recs_dag",
        run_id=run_id,
        task_id="read",
        map_index="{MAP_INDEX}",
    )
    assert response.status_code == 200, response.text
    html = response.text
    assert f'data-decision="{denied.decision_id}"' in html
    assert 'data-try="1"' in html
    assert str(escape(denied.findings[0].reason)) in html
    assert "purchase_events" in html


def test_task_instance_without_a_decision_says_so(client: TestClient, auth: dict[str, str]) -> None:
    html = page(
        client, "/task-instance", token=auth["viewer"], dag_id="recs_dag", run_id="never", task_id="read"
    ).text
    assert 'data-empty="decision"' in html


def test_data_is_escaped_everywhere(
    client: TestClient, seeded: Seeded, auth: dict[str, str], engine: Any
) -> None:
    """Inputs, reasons and run ids are user input: markup in them is shown as text, never run."""
    from datetime import timedelta

    from tests.unit.api.test_read_api import _decide

    payload = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    at = seeded.until + timedelta(days=3)
    decision = _decide(engine=engine, dag_id="recs_dag", zone="recs", inputs=[PURCHASES + payload], now=at)
    assert decision.outcome == "deny"

    html = page(
        client,
        "/violations",
        token=auth["viewer"],
        since=at.isoformat(),
        until=(at + timedelta(seconds=1)).isoformat(),
    ).text
    assert decisions_listed(html) == [decision.decision_id]
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert str(escape(PURCHASES + payload)) in html


def test_coverage_page_shows_each_task_and_its_zone(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    response = page(client, "/coverage", token=auth["viewer"], dag_id="recs_dag")
    assert response.status_code == 200, response.text
    html = response.text
    row = re.search(r'<tr data-dag="recs_dag" data-task="read"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None
    assert "<td>recs</td>" in row.group(1)
    assert "blocked" in row.group(1) or "exempted" in row.group(1)
    assert "data-summary" in html


def test_coverage_page_rejects_contradictory_filters(client: TestClient, auth: dict[str, str]) -> None:
    response = page(client, "/coverage", token=auth["viewer"], zone="recs", unzoned_only="true")
    assert response.status_code == 422
    assert 'data-error="invalid"' in response.text


def test_unchecked_tries_are_shown_and_flagged_on_the_violations_page(
    client: TestClient, auth: dict[str, str]
) -> None:
    from datetime import datetime, timedelta, timezone

    from tests.support.airflow_db import create_run
    from tests.unit.api.test_coverage_api import _start

    run_id = create_run("mkt_dag")
    _start("mkt_dag", run_id, "read", datetime.now(timezone.utc) - timedelta(minutes=5))

    html = page(client, "/unchecked", token=auth["viewer"]).text
    assert 'data-unchecked="mkt_dag.read"' in html
    assert run_id in html
    assert "data-unchecked-banner" in page(client, "/violations", token=auth["viewer"]).text

    bad = page(client, "/unchecked", token=auth["viewer"], since="last tuesday")
    assert bad.status_code == 422
    assert 'data-error="invalid"' in bad.text


def test_asset_page_shows_propagated_labels_and_writes(
    client: TestClient, auth: dict[str, str], engine: Any
) -> None:
    from tests.unit.db.test_propagation import decide, fresh, write

    features = fresh("features")
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[features])
    write(engine, "ads_dag", run_id, [features])

    html = page(client, "/asset", token=auth["viewer"], name=features).text
    assert "data-asset-labels" in html
    assert html.count("data-write=") == 1
    assert run_id in html and "purchase_events" in html
    assert 'data-empty="asset"' in page(client, "/asset", token=auth["viewer"], name=fresh("none")).text
    assert page(client, "/asset", token=auth["viewer"]).status_code == 422


def test_a_broken_policy_is_a_banner_on_every_page_and_the_footer_shows_versions(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    html = page(client, "/violations", token=auth["viewer"]).text
    assert 'data-policy="invalid"' not in html
    assert "data-policy-versions" in html and "on the api-server" in html

    broken = tmp_path / "policy.yaml"
    broken.write_text("version: 1\nzones:\n  ads: [\n")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(broken))
    for path in ("/violations", "/zones", "/coverage", "/unchecked", "/asset"):
        response = page(client, path, token=auth["viewer"])
        assert response.status_code in (200, 422, 503), (path, response.status_code)
        html = response.text
        assert html.count('data-policy="invalid"') == 1, path
        assert f"The api-server cannot load the zone policy {escape(str(broken))}" in html, path
        assert "every task that needs a decision fails closed (its body does not run) and is retried" in html
        assert (
            f"{escape(str(broken))}:4:1: error: invalid YAML" in html and "fix: fix the YAML syntax" in html
        )
        assert "<strong>not loaded</strong> on the api-server" in html
    # An error page shows it too.
    missing = page(client, "/task-instance", token=auth["viewer"])
    assert 'data-policy="invalid"' in missing.text
