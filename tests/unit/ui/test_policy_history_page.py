"""The Zones page's "Policy history" section and the policy version page (text, diff vs previous),
over HTTP as the UI frame loads them, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import TEST_POLICY
from tests.unit.db.test_service import CLICKS, decide, request_for
from tests.unit.ui.test_pages import page

pytestmark = pytest.mark.integration

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def two_versions(engine: PolicyEngine, tmp_path: Path) -> tuple[PolicyEngine, PolicyEngine]:
    """Decisions under the test policy, then under a version that changed a zone (and whose
    description carries markup, to check escaping)."""
    changed = tmp_path / "policy-v2.yaml"
    changed.write_text(
        TEST_POLICY.replace("allowed_categories: [watch_history]", "allowed_categories: []").replace(
            "purchases}", f'"purchases {SCRIPT}"}}'
        )
    )
    newer = PolicyEngine.from_file(changed)
    for moment, policy in (
        (datetime(2031, 1, 1, tzinfo=timezone.utc), engine),
        (datetime(2031, 1, 2, tzinfo=timezone.utc), newer),
    ):
        request = request_for("ads_dag", f"history__{uuid.uuid4().hex}", zone="ads", inputs=[CLICKS])
        decide(policy, request, source="in_process", now=moment)
    return engine, newer


def test_the_zones_page_lists_policy_versions_with_links(
    client: TestClient, auth: dict[str, str], two_versions: tuple[PolicyEngine, PolicyEngine]
) -> None:
    old, new = two_versions
    html = page(client, "/zones", token=auth["viewer"]).text
    assert '<h2 id="history">Policy history</h2>' in html
    row = re.search(rf'<tr data-version="{new.version}">(.*?)</tr>', html, re.S)
    assert row is not None
    assert 'data-link="text"' in row.group(1) and 'data-link="diff"' in row.group(1)
    # (the version first used before it: another test's policy may be first used in between)
    assert old.version != new.version


def test_the_policy_version_page_shows_text_and_diff_escaped(
    client: TestClient, auth: dict[str, str], two_versions: tuple[PolicyEngine, PolicyEngine]
) -> None:
    old, new = two_versions
    text = page(client, "/policy-version", token=auth["viewer"], version=new.version)
    assert text.status_code == 200, text.text
    assert "data-policy-text" in text.text
    assert SCRIPT not in text.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text.text

    diff = page(client, "/policy-version", token=auth["viewer"], version=new.version, diff=old.version)
    assert diff.status_code == 200, diff.text
    assert 'data-section="zones"' in diff.text and "watch_history" in diff.text
    assert 'data-section="categories"' in diff.text and SCRIPT not in diff.text

    missing = page(client, "/policy-version", token=auth["viewer"], version="abcdef0123")
    assert missing.status_code == 404
    assert "no policy version" in missing.text and "Traceback" not in missing.text
