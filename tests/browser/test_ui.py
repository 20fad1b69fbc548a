"""A privacy reviewer's walk through the Policy Zones pages in a real Airflow UI."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import save_screenshot
from tests.e2e.deployment import Deployment

pytestmark = pytest.mark.browser

NAV_FRAME = "iframe[title='Policy Zones']"
VIOLATING = {
    "recs_content_ranking": "rank_from_purchases",
    "ai_training_recsys": "train_on_raw_purchases",
    "marketing_attribution": "attribute_campaigns",
    "recs_spend_ranking": "rank_by_spend_segments",
    "ai_training_features": "train_on_bid_features",
}


def open_policy_zones(page: Any) -> Any:
    """Open Policy Zones from Airflow's navigation; the page shows in a frame."""
    page.get_by_role("link", name="Policy Zones").click()
    page.wait_for_url(re.compile(r".*/plugin/policy-zones.*"))
    frame = page.frame_locator(NAV_FRAME)
    frame.locator("h1", has_text="Policy Zones").wait_for()
    return frame


def test_reviewer_sees_violations_filters_by_zone_and_opens_the_task_instance(
    page: Any, deployment: Deployment
) -> None:
    frame = open_policy_zones(page)

    rows = frame.locator("tr[data-violation]")
    rows.first.wait_for()
    assert rows.count() == len(VIOLATING)
    table = frame.locator("table").inner_text()
    for dag_id, task_id in VIOLATING.items():
        assert dag_id in table and task_id in table
    save_screenshot(page, "violations")

    frame.locator("select[name=zone]").select_option("content_recommendations")
    frame.get_by_role("button", name="Filter").click()
    frame.locator("select[name=zone] option[selected]", has_text="content_recommendations").wait_for(
        state="attached"
    )
    assert frame.locator("tr[data-violation]").count() == 2
    table = frame.locator("table").inner_text()
    assert "rank_from_purchases" in table and "rank_by_spend_segments" in table
    assert "derived: s3://lake/ads/spend_segments/daily" in table  # the path back to the purchases
    assert "zone=content_recommendations" in page.url  # the frame's filters are in Airflow's URL

    frame.locator("tr[data-violation]", has_text="recs_content_ranking").locator("a[data-ti-link]").click()
    run_id = deployment.runs["recs_content_ranking"]  # type: ignore[attr-defined]
    page.wait_for_url(
        re.compile(
            rf".*/dags/recs_content_ranking/runs/{re.escape(run_id)}/tasks/rank_from_purchases/details"
        )
    )
    page.get_by_text("No Task Instance found").wait_for(state="hidden")
    page.get_by_text("Failed", exact=True).first.wait_for()
    save_screenshot(page, "task-instance")


def test_task_instance_tab_shows_the_decision(page: Any, deployment: Deployment) -> None:
    run_id = deployment.runs["ai_training_recsys"]  # type: ignore[attr-defined]
    page.goto(f"/dags/ai_training_recsys/runs/{run_id}/tasks/train_on_raw_purchases")
    page.get_by_text("Policy decision", exact=True).click()
    frame = page.frame_locator("iframe[title='Policy decision']")
    card = frame.locator("section[data-decision]")
    card.wait_for()
    text = card.inner_text()
    assert "Try 1" in text and "blocked" in text
    assert "consent_missing" in text and "not_aggregated" in text
    assert "s3://lake/raw/purchases/daily" in text
    save_screenshot(page, "task-instance-decision")


def test_zone_map_shows_zones_and_sanctioned_flows(page: Any) -> None:
    frame = open_policy_zones(page)
    frame.get_by_role("link", name="Zones", exact=True).click()
    zone_map = frame.locator("figure.pz-map-wrap svg")
    zone_map.wait_for()
    zones = sorted(frame.locator("svg g.node").evaluate_all("nodes => nodes.map(n => n.dataset.zone)"))
    assert zones == ["ads_optimization", "ai_training", "content_recommendations", "marketing_analytics"]
    edge = frame.locator("svg g.edge[data-from='ads_optimization'][data-to='ai_training']")
    assert edge.text_content() == "via purchases_consented_daily"
    save_screenshot(frame.locator("figure.pz-map-wrap"), "zone-map")
    save_screenshot(page, "zones")


def test_pages_follow_airflow_dark_mode(page: Any) -> None:
    page.evaluate("localStorage.setItem('theme', 'dark')")
    page.reload()
    frame = open_policy_zones(page)
    frame.locator("tr[data-violation]").first.wait_for()
    page.wait_for_function(
        "() => document.querySelector(\"iframe[title='Policy Zones']\")"
        ".contentDocument.documentElement.classList.contains('dark')"
    )
    background = frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    assert background == "rgb(9, 9, 11)"
    font = frame.locator("body").evaluate("body => getComputedStyle(body).fontFamily")
    airflow_font = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert font == airflow_font
    save_screenshot(page, "violations-dark")


def test_coverage_shows_every_example_task_in_its_zone(page: Any) -> None:
    frame = open_policy_zones(page)
    frame.get_by_role("link", name="Coverage", exact=True).click()
    frame.locator("tr[data-task]").first.wait_for()
    rows = frame.locator("tr[data-task]").evaluate_all(
        "rows => rows.map(r => [r.dataset.dag, r.dataset.task, r.querySelectorAll('td')[r.cells.length - 2]"
        ".textContent.trim().split(' ')[0]])"
    )
    zones = {(dag, task): zone for dag, task, zone in rows}
    assert zones[("recs_content_ranking", "rank_from_purchases")] == "content_recommendations"
    assert zones[("ai_training_recsys", "train_on_raw_purchases")] == "ai_training"
    assert zones[("purchases_reclassify", "aggregate_consented")] == "ads_optimization"
    assert frame.locator("[data-unzoned]").get_attribute("data-unzoned") == "0"
    save_screenshot(page, "coverage")
