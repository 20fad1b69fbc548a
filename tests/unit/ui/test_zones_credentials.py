"""The Zones page's "Connections and variables" section: which zones may use each connection and
variable pattern of the policy, from the engine's credential map, over HTTP as the UI frame loads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.ui.pages import credential_sections
from tests.support.airflow_db import TEST_POLICY
from tests.unit.ui.test_pages import page

pytestmark = pytest.mark.integration

SCRIPT = "<script>alert(1)</script>"
CREDENTIALS = f"""\
connections:
  warehouse_raw:
    categories: [purchase_events]
    description: "{SCRIPT}"
  "lake_<b>*":
    catalog: ["s3://lake/raw/ad_clicks/**"]
  slack_ads:
    zones: [ads]
variables:
  "ads_*":
    zones: [ads, marketing]
"""


@pytest.fixture
def credentials_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    text = TEST_POLICY.replace(
        "settings:\n  require_zone: false\n", "settings:\n  require_zone: false\n  unlisted_variables: deny\n"
    )
    assert "unlisted_variables: deny" in text
    path = tmp_path / "policy.yaml"
    path.write_text(text + CREDENTIALS)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(path))
    return path


def _row(html: str, kind: str, pattern: str) -> str:
    match = re.search(rf'<tr data-{kind}="{re.escape(str(escape(pattern)))}">(.*?)</tr>', html, re.S)
    assert match is not None, (kind, pattern)
    return match.group(1)


def _cell(row: str, name: str) -> str:
    match = re.search(rf"<td {name}>(.*?)</td>", row, re.S)
    assert match is not None, name
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_the_zones_page_shows_which_zones_may_use_each_connection_and_variable(
    client: TestClient, auth: dict[str, str], credentials_policy: Path
) -> None:
    response = page(client, "/zones", token=auth["viewer"])

    assert response.status_code == 200, response.text
    html = response.text
    assert "<h2>Connections and variables</h2>" in html
    assert 'data-empty="credentials"' not in html

    warehouse = _row(html, "connection", "warehouse_raw")
    assert "categories purchase_events" in warehouse
    assert _cell(warehouse, "data-allowed") == "ads"
    # ai needs consent the connection's data does not carry; marketing is in dry_run.
    assert _cell(warehouse, "data-refused") == "ai, recs; marketing (dry run: served, violation recorded)"

    lake = _row(html, "connection", "lake_<b>*")
    assert "catalog s3://lake/raw/ad_clicks/**" in lake
    assert _cell(lake, "data-allowed") == "ads, marketing"
    assert _cell(lake, "data-refused") == "ai, recs"

    slack = _row(html, "connection", "slack_ads")
    assert "reserved for zones ads" in slack
    assert (_cell(slack, "data-allowed"), _cell(slack, "data-refused")) == (
        "ads",
        "ai, recs; marketing (dry run: served, violation recorded)",
    )

    ads_variables = _row(html, "variable", "ads_*")
    assert (_cell(ads_variables, "data-allowed"), _cell(ads_variables, "data-refused")) == (
        "ads, marketing",
        "ai, recs",
    )

    # What the policy author wrote is text, never markup.
    assert SCRIPT not in html and "lake_<b>" not in html
    assert str(escape(SCRIPT)) in html and str(escape("lake_<b>*")) in html

    # Ids no pattern matches, per kind, as the settings say.
    assert 'data-unlisted="connection">Connections the policy does not list: served to every task' in html
    assert 'data-unlisted="variable">Variables the policy does not list: refused to every task' in html


def test_the_section_follows_the_engines_credential_map(credentials_policy: Path) -> None:
    engine = PolicyEngine.from_file(credentials_policy)
    for section in credential_sections(engine):
        by_zone = engine.credential_map(kind=section.kind)
        for row in section.rows:
            assert set(row.allowed) == {zone for zone, served in by_zone.items() if served[row.pattern]}
            assert set(row.refused) | set(row.dry_run) == {
                zone for zone, served in by_zone.items() if not served[row.pattern]
            }
            assert set(row.dry_run) <= {"marketing"}


def test_a_policy_without_connections_or_variables_has_an_empty_state(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = page(client, "/zones", token=auth["viewer"])

    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-empty="credentials"' in html
    assert "The policy lists no connections or variables" in html
    assert "<tr data-connection=" not in html and "<tr data-variable=" not in html
    assert 'data-unlisted="connection">Connections the policy does not list: served to every task' in html


def test_the_zones_page_shows_what_weakens_enforcement_on_the_api_server(
    client: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.configuration import conf

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "the-api-server-needs-it")
    html = page(client, "/zones", token=auth["viewer"]).text
    # The api-server holds the JWT secret and the database by design: not a finding there.
    assert 'data-empty="doctor">Nothing found on the api-server.' in html
    assert conf.get("api_auth", "jwt_secret") == "the-api-server-needs-it"

    monkeypatch.setenv(
        "AIRFLOW__WORKERS__SECRETS_BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    )
    html = page(client, "/zones", token=auth["viewer"]).text
    [finding] = re.findall(r'<li data-weakness="([a-z_]+)">', html)
    assert finding == "worker_secrets_backend"
    assert "LocalFilesystemBackend" in html and "fix: configure the backend on the api-server only" in html
