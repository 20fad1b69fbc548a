"""The Violations page as a reviewer scans it: one line per violation (rule chips, input, zone,
outcome, a one-line reason), the full reason, the derivation path and the fix in a <details>."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from airflow_policyzones.db.audit_filters import DEFAULT_LIMIT
from airflow_policyzones.ui.derivation import PathStep, explain_reason
from tests.unit.api.test_read_api import PURCHASES, _decide
from tests.unit.ui.test_pages import decisions_listed, page

SEGMENTS = "s3://lake/ads/spend_segments/daily"
FEATURES = "s3://lake/ads/bid_features/daily"

pytestmark = pytest.mark.integration


def test_a_recorded_derivation_reads_back_as_steps_from_the_source() -> None:
    reason = (
        "input carries purchase_events, which zone recs does not allow; derived: "
        f"{SEGMENTS} (written by ads_spend_segments.segment_spenders in ads_optimization) ← "
        f"table raw.bids (written by ads_daily.build in no zone) ← {PURCHASES}"
    )
    explained = explain_reason(reason)

    assert explained.summary == "input carries purchase_events, which zone recs does not allow"
    assert explained.path == (
        PathStep(asset=PURCHASES, namespace="asset"),
        PathStep(asset="raw.bids", namespace="table", writer="ads_daily.build", zone="no zone"),
        PathStep(
            asset=SEGMENTS,
            namespace="asset",
            writer="ads_spend_segments.segment_spenders",
            zone="ads_optimization",
        ),
    )


def test_a_reason_without_a_derivation_is_kept_whole() -> None:
    for reason in ("zone x does not allow purchase_events", "odd; derived: ", ""):
        assert explain_reason(reason).path == ()
        assert explain_reason(reason).summary == reason
    cycle = explain_reason(f"r; derived: {SEGMENTS} (written by d.t in z) ← {FEATURES} (cycle)")
    assert cycle.path[0] == PathStep(asset=FEATURES, namespace="asset", cycle=True)


def window(at: datetime, seconds: int = 1) -> dict[str, str]:
    return {"since": at.isoformat(), "until": (at + timedelta(seconds=seconds)).isoformat()}


def a_unique_moment() -> datetime:
    return datetime(2033, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))


def test_one_line_per_violation_with_details_on_demand(
    client: TestClient, auth: dict[str, str], engine: Any
) -> None:
    from tests.unit.db.test_propagation import decide, fresh, write

    features = fresh("features")
    run_id, allowed = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[features])
    assert allowed.outcome == "allow"
    write(engine, "ads_dag", run_id, [features])
    at = a_unique_moment()
    denied = _decide(engine=engine, dag_id="recs_dag", zone="recs", inputs=[features], now=at)
    assert denied.outcome == "deny"

    html = page(client, "/violations", token=auth["viewer"], **window(at)).text

    assert decisions_listed(html) == [denied.decision_id] * len(denied.findings)
    row = html[html.index('<li class="pz-vrow"') :]
    summary = row[row.index("<summary>") : row.index("</summary>")]
    # The line: rule chips, the input, the zone, the outcome, the reason without its path.
    for rule in denied.findings[0].rules:
        assert f'<span class="pz-chip">{rule}</span>' in summary
    assert f"<code>{features}</code>" in summary
    assert ">recs</span>" in summary and "blocked" in summary
    assert "derived:" not in summary and "written by" not in summary
    # On demand: the path from the labeled source, through the writer, to the input; the fix.
    body = row[row.index("data-violation-details") :]
    path = re.search(r"<ol class=\"pz-path\".*?</ol>", body, re.S)
    assert path is not None
    steps = re.findall(r'data-(asset|writer)="([^"]+)"', path.group(0))
    assert steps == [("asset", PURCHASES), ("writer", "ads_dag.read"), ("asset", features)]
    assert "written by <strong>ads_dag.read</strong> in ads" in path.group(0)
    assert str(escape(denied.findings[0].remediation)) in body
    assert "<details>" in row and "<details open" not in html


def test_markup_in_a_derivation_path_is_text(client: TestClient, auth: dict[str, str], engine: Any) -> None:
    from tests.unit.db.test_propagation import decide, write

    payload = "<img src=x onerror=alert(1)>"
    features = f"s3://lake/features/{random.randrange(10**9)}/{payload}"
    run_id, _ = decide(engine, "ads_dag", zone="ads", inputs=[PURCHASES], outlets=[features])
    write(engine, "ads_dag", run_id, [features])
    at = a_unique_moment()
    denied = _decide(engine=engine, dag_id="recs_dag", zone="recs", inputs=[features], now=at)

    html = page(client, "/violations", token=auth["viewer"], **window(at)).text
    assert decisions_listed(html)[0] == denied.decision_id
    assert "<img src=x" not in html
    assert html.count(f'data-asset="{escape(features)}"') == len(denied.findings)


def test_a_page_holds_fifty_violations_and_links_to_the_older_ones(
    client: TestClient, auth: dict[str, str], engine: Any
) -> None:
    at = a_unique_moment()
    made = [
        _decide(
            engine=engine, dag_id="recs_dag", zone="recs", inputs=[PURCHASES], now=at + timedelta(seconds=i)
        )
        for i in range(DEFAULT_LIMIT + 1)
    ]
    assert all(len(item.findings) == 1 for item in made)

    html = page(client, "/violations", token=auth["viewer"], **window(at, seconds=DEFAULT_LIMIT + 1)).text

    assert DEFAULT_LIMIT == 50
    assert decisions_listed(html) == [item.decision_id for item in reversed(made)][:DEFAULT_LIMIT]
    older = re.search(r'href="([^"]*violations\?[^"]*cursor=[^"]+)" rel="next"', html)
    assert older is not None
