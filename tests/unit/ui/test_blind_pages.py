"""Blind tasks on the Coverage page and how each input became known on the decision tab, over
HTTP with Airflow's session cookie, on the tries the blind API tests record (``blind_*`` DAGs).

Each module that records tries of those DAGs decides them in its own years (the API tests from
2033 within an hour's window, the CLI tests from 2040, this one from 2045): the page's window has
no end, so this module's tries are the last ones.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from airflow_policyzones.db.audit import BLIND_EXPLANATION
from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import create_run
from tests.unit.api.test_blind_api import PURCHASES, Seeded, Try, finish, our_dags, readable, record, seed
from tests.unit.ui.test_pages import page

pytestmark = pytest.mark.integration

__all__ = ["our_dags", "readable"]

PAYLOAD = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


@pytest.fixture(scope="module")
def seeded(our_dags: set[str], engine: PolicyEngine) -> Seeded:
    return seed(
        engine, base=datetime(2045, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))
    )


def blind_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-blind="([^"]+)">', html)


def ti_page(client: TestClient, token: str, seeded: Seeded, name: str, *, dag_id: str, task_id: str) -> str:
    response = page(
        client,
        "/task-instance",
        token=token,
        dag_id=dag_id,
        run_id=seeded.run_ids[name],
        task_id=task_id,
        map_index="{MAP_INDEX}",
    )
    assert response.status_code == 200, response.text
    return response.text


def test_coverage_page_lists_blind_tasks_with_the_explanation(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    response = page(client, "/coverage", token=auth["viewer"], since=seeded.since.isoformat())
    assert response.status_code == 200, response.text
    html = response.text

    assert "data-blind-section" in html
    assert str(escape(BLIND_EXPLANATION)) in html
    assert (
        "the check had nothing to decide on: the task declared nothing, ran no SQL the provider sees and "
        "no hook reported a read"
    ) in html
    assert blind_rows(html) == [
        "blind_ads.mixed",
        "blind_ads.quiet",
        "blind_ads.retried",
        "blind_plain.quiet",
        "mkt_blind.quiet",
    ]  # not blind_hidden: its DAG is not readable
    assert 'data-blind-count="5"' in html
    row = re.search(r'<tr data-blind="blind_ads.mixed">(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    assert cells[1:5] == ["mixed", "ads", "1", "2"]  # task, zone, blind tries, tries with reads
    run_id = seeded.run_ids["mixed_blind"]
    assert f'href="/dags/blind_ads/runs/{run_id}/tasks/mixed/plugin/policy-decision"' in row.group(1)
    plain = re.search(r'<tr data-blind="blind_plain.quiet">(.*?)</tr>', html, re.S)
    assert plain is not None and "unzoned" in plain.group(1)
    # The same since in the form, and the DAG tab's filter narrows the section too.
    assert f'name="since" value="{seeded.since.isoformat()}"' in html
    narrowed = page(
        client, "/coverage", token=auth["viewer"], since=seeded.since.isoformat(), dag_id="mkt_blind"
    )
    assert blind_rows(narrowed.text) == ["mkt_blind.quiet"]
    unzoned = page(
        client, "/coverage", token=auth["viewer"], since=seeded.since.isoformat(), unzoned_only="true"
    )
    assert blind_rows(unzoned.text) == ["blind_plain.quiet"]


def test_coverage_page_without_blind_tasks_says_so(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    later = (seeded.since + timedelta(days=3650)).isoformat()
    html = page(client, "/coverage", token=auth["viewer"], since=later).text
    assert 'data-empty="blind"' in html
    assert blind_rows(html) == []
    assert 'data-blind-count="0"' in html


def test_a_bad_window_is_a_422_page_with_the_value_escaped(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    response = page(client, "/coverage", token=auth["viewer"], since=PAYLOAD)
    assert response.status_code == 422
    assert 'data-error="invalid"' in response.text
    assert "is neither an ISO date/date-time nor a duration" in response.text
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert str(escape(PAYLOAD)) in response.text


def test_the_decision_tab_says_a_try_was_blind(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    html = ti_page(client, auth["viewer"], seeded, "quiet_2", dag_id="blind_ads", task_id="quiet")
    assert html.count("data-blind-try") == 1
    assert f"<strong>Blind try:</strong> {escape(BLIND_EXPLANATION)}." in html

    # Both tries of the re-run task were blind: the one in the history and the current one.
    html = ti_page(client, auth["viewer"], seeded, "retried_2", dag_id="blind_ads", task_id="retried")
    assert re.findall(r'data-try="(\d+)"', html) == ["2", "1"]
    assert html.count("data-blind-try") == 2

    # A failed try without reads is not blind (its body may have stopped before its reads).
    html = ti_page(client, auth["viewer"], seeded, "failed", dag_id="blind_ads", task_id="failed")
    assert "data-blind-try" not in html
    assert "No read is known for this try: nothing declared, no SQL read, nothing observed" in html

    # An undeclared table has no input row, but the try read it: not blind.
    html = ti_page(client, auth["viewer"], seeded, "undeclared", dag_id="mkt_blind", task_id="undeclared")
    assert "data-blind-try" not in html
    assert "No input was labeled; the findings above say what the try read." in html


def test_the_decision_tab_shows_how_each_input_became_known(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str], engine: PolicyEngine
) -> None:
    html = ti_page(client, auth["viewer"], seeded, "reader", dag_id="blind_ads", task_id="reader")
    assert "<th>Known from</th>" in html
    assert re.findall(r'data-input-source="([^"]*)"', html) == ["declared", "sql"]
    assert "<td>declared (inlet)</td>" in html and "<td>SQL</td>" in html
    assert "data-blind-try" not in html and "data-no-inputs" not in html

    html = ti_page(client, auth["viewer"], seeded, "observed", dag_id="blind_ads", task_id="observed")
    assert re.findall(r'data-input-source="([^"]*)"', html) == ["observed"]
    assert "<td>observed (hook)</td>" in html

    # Input names are user input: shown as text, never run.
    run_id = create_run("blind_ads")
    record(
        engine,
        Try("blind_ads", "reader", 0, inputs=[PURCHASES + PAYLOAD]),
        run_id=run_id,
        at=seeded.until + timedelta(minutes=1),
    )
    finish("blind_ads", run_id, "reader", "success")
    html = page(
        client, "/task-instance", token=auth["viewer"], dag_id="blind_ads", run_id=run_id, task_id="reader"
    ).text
    assert re.findall(r'data-input-source="([^"]*)"', html) == ["declared"]
    assert "<script>alert" not in html and "<img src=x" not in html
    assert str(escape(PURCHASES + PAYLOAD)) in html
