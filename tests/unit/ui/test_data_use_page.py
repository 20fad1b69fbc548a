"""The Data use page over HTTP (Airflow's session cookie, the real auth manager), on the rows the
API tests' seed recorded through the real service, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from tests.unit.api.test_read_api import PURCHASES, Seeded
from tests.unit.ui.test_pages import page, window

pytestmark = pytest.mark.integration


def rows(html: str, kind: str) -> list[str]:
    return re.findall(rf'<tr data-{kind}="([^"]+)"', html)


def test_the_tab_is_next_to_the_others_and_a_first_visit_shows_the_question(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = page(client, "/data-use", token=auth["viewer"])

    assert response.status_code == 200, response.text
    html = response.text
    assert '<a href="/policyzones/ui/data-use" aria-current="page">Data use</a>' in html
    assert 'data-empty="question"' in html
    assert '<option value="purchase_events">purchase_events</option>' in html
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert 'aria-current="page">Data use' not in page(client, "/violations", token=auth["viewer"]).text


def test_purchases_in_any_zone_lists_the_uses_and_the_blocked_attempts(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    response = page(client, "/data-use", token=auth["viewer"], category="purchase_events", **window(seeded))

    assert response.status_code == 200, response.text
    html = response.text
    assert sorted(rows(html, "use")) == ["ads_dag.read", "mkt_dag.read"]
    assert re.search(r'data-use="mkt_dag.read" data-basis="dry_run"', html)
    assert re.search(r'data-use="ads_dag.read" data-basis="zone"', html)
    denied = [item.decision_id for item in seeded.decisions if item.outcome == "deny"]
    assert sorted(int(value) for value in rows(html, "blocked")) == sorted(denied)
    # Blocked attempts link into the task instance page of their try.
    assert re.search(r'href="/dags/recs_dag/runs/[^"]+/tasks/read/details"[^>]*data-ti-link', html)
    assert "data-verdict" in html and "purchase_events" in html
    assert 'data-cell="(source)→recs:purchase_events"' in html
    assert "data-chain-head" in html and "policyzones verify-records --since" in html
    assert 'data-completeness="' in html and "data-version=" in html
    assert f"<code>{PURCHASES}</code>" in html
    query = re.search(r'href="/policyzones/ui/data-use/export.json\?([^"]+)"', html)
    assert query is not None and "category=purchase_events" in query.group(1)


def test_an_exemption_names_its_ticket_and_expiry(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    html = page(
        client, "/data-use", token=auth["viewer"], category="ad_clicks", zone="recs", **window(seeded)
    ).text
    assert re.search(r'data-use="recs_dag.read" data-basis="exemption"', html)
    # The policy's "expires: 2099-12-31" means through that day.
    assert "ticket <strong>PRIV-1</strong>, expires 2100-01-01 00:00:00 UTC" in html
    assert rows(html, "blocked") == []


def test_purchases_in_recs_were_only_blocked(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    html = page(
        client, "/data-use", token=auth["viewer"], category="purchase_events", zone="recs", **window(seeded)
    ).text
    assert rows(html, "use") == []
    assert 'data-empty="uses"' in html
    assert len(rows(html, "blocked")) == sum(item.outcome == "deny" for item in seeded.decisions)
    assert 'data-answer="none"' in html


@pytest.mark.parametrize(
    ("params", "field", "allowed"),
    [
        ({"category": "no_such_category"}, "category", "ad_clicks, purchase_events, watch_history"),
        ({"category": "purchase_events", "zone": "no_such_zone"}, "zone", "ads, ai, marketing, recs"),
        (
            {"category": "purchase_events", "purpose": "no_such_purpose"},
            "purpose",
            "ads, ai, marketing, recs",
        ),
    ],
)
def test_an_unknown_name_is_a_422_that_names_the_field_and_the_valid_values(
    client: TestClient, auth: dict[str, str], params: dict[str, str], field: str, allowed: str
) -> None:
    response = page(client, "/data-use", token=auth["viewer"], **params)

    assert response.status_code == 422
    html = response.text
    assert 'data-error="invalid"' in html
    assert f"{field}: unknown {field}" in html
    assert f"Allowed values: {allowed}" in html


def test_markup_in_the_question_is_text(client: TestClient, auth: dict[str, str]) -> None:
    payload = "<img src=x onerror=alert(1)>"
    for params in ({"category": payload}, {"asset": "s3://" + payload, "zone": payload}):
        response = page(client, "/data-use", token=auth["viewer"], **params)
        assert response.status_code == 422
        assert "<img src=x" not in response.text
        assert str(escape(payload)) in response.text


def test_a_period_without_decisions_says_so_and_is_no_all_clear(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    before = seeded.since - timedelta(days=3650)
    response = page(
        client,
        "/data-use",
        token=auth["viewer"],
        category="purchase_events",
        zone="ai",
        since=before.isoformat(),
        until=(before + timedelta(days=1)).isoformat(),
    )
    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-empty="decisions"' in html
    assert "No decisions were recorded in this period" in html
    assert "not an all-clear" in html
    assert "data-answer=" not in html


@pytest.mark.parametrize(
    "params",
    [
        {"category": "purchase_events", "since": "2030-01-02T00:00", "until": "2030-01-01T00:00"},
        {"category": "purchase_events", "since": "last week"},
        {"category": "purchase_events", "zone": "ads", "purpose": "ads"},
    ],
)
def test_a_bad_period_or_both_zone_and_purpose_is_a_422(
    client: TestClient, auth: dict[str, str], params: dict[str, str]
) -> None:
    response = page(client, "/data-use", token=auth["viewer"], **params)
    assert response.status_code == 422
    assert 'data-error="invalid"' in response.text


def test_the_json_export_is_the_report_the_page_shows(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    params = {"category": "purchase_events", "zone": "recs", **window(seeded)}
    response = page(client, "/data-use/export.json", token=auth["viewer"], **params)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    report = json.loads(response.text)
    html = page(client, "/data-use", token=auth["viewer"], **params).text
    assert str(escape(report["verdict"])) in html
    assert report["completeness"]["chain"]["head"] in html
    assert report["completeness"]["policy_versions"]
    assert report["blocked_total"] == len(rows(html, "blocked"))


def test_the_html_export_is_one_self_contained_file(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    params = {"category": "purchase_events", **window(seeded)}
    response = page(client, "/data-use/export.html", token=auth["viewer"], **params)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "attachment" in response.headers["content-disposition"]
    html = response.text
    assert "<svg" in html
    assert not re.search(r"<(?:link|script)[^>]+(?:href|src)=", html)  # nothing loaded from elsewhere


def test_exports_need_a_question_and_a_known_format(client: TestClient, auth: dict[str, str]) -> None:
    assert page(client, "/data-use/export.json", token=auth["viewer"]).status_code == 422
    assert page(client, "/data-use/export.pdf", token=auth["viewer"], category="ad_clicks").status_code == 404


def test_without_a_session_or_dag_access_the_page_is_refused(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert page(client, "/data-use", token=None).status_code == 401
    refused: Any = page(client, "/data-use", token=auth["nobody"], category="purchase_events")
    assert refused.status_code == 403
    assert 'data-error="forbidden"' in refused.text
