"""A privacy reviewer's walk through the Policy Zones pages in a real Airflow UI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

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

    rows = frame.locator("[data-violation]")
    rows.first.wait_for()
    assert rows.count() == len(VIOLATING)
    table = frame.locator("[data-violations]").inner_text()
    for dag_id, task_id in VIOLATING.items():
        assert dag_id in table and task_id in table
    save_screenshot(page, "violations")

    frame.locator("select[name=zone]").select_option("content_recommendations")
    frame.get_by_role("button", name="Filter").click()
    frame.locator("select[name=zone] option[selected]", has_text="content_recommendations").wait_for(
        state="attached"
    )
    assert frame.locator("[data-violation]").count() == 2
    table = frame.locator("[data-violations]").inner_text()
    assert "rank_from_purchases" in table and "rank_by_spend_segments" in table
    assert "zone=content_recommendations" in page.url  # the frame's filters are in Airflow's URL
    # The path back to the purchases opens on demand: source first, the input last.
    derived = frame.locator("[data-violation]", has_text="rank_by_spend_segments").first
    path = derived.locator("[data-path]")
    assert not path.is_visible()
    derived.locator("summary time").click()
    path.wait_for()
    assets = path.locator("[data-asset]").evaluate_all("items => items.map(i => i.dataset.asset)")
    assert assets[-1] == "s3://lake/ads/spend_segments/daily" and len(assets) >= 2
    assert path.locator("[data-writer]").count() == len(assets) - 1

    frame.locator("[data-violation]", has_text="recs_content_ranking").locator("a[data-ti-link]").click()
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
    frame.locator("[data-violation]").first.wait_for()
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


# --- Violations: 50 on one screen -------------------------------------------------------------

SCAN_VIEWPORT = {"width": 1440, "height": 1200}
"""A reviewer's window on a 1920x1200 (or 2560x1440) display, less the browser's own bars: the
Violations page must show a page of 50 violations in one screen of it (one line each)."""
SEEDED_DAY = "2001-01-01"


@pytest.fixture
def fifty_violations(deployment: Deployment) -> Iterator[list[int]]:
    """50 more violation rows on one day long before the examples ran (the deployment recorded
    only a handful): copies of a recorded one with a derivation path, removed afterwards."""
    engine = deployment.engine()
    try:
        with engine.begin() as connection:
            source = connection.execute(
                sa.text(
                    "SELECT id FROM policyzones_violation ORDER BY (reason LIKE '%; derived: %') DESC, id "
                    "LIMIT 1"
                )
            ).scalar_one()
            ids = list(
                connection.execute(
                    sa.text(
                        f"INSERT INTO policyzones_violation ({COPIED}, decided_at) "
                        f"SELECT {COPIED}, CAST(:day AS timestamptz) + g * interval '1 minute' "
                        "FROM policyzones_violation, generate_series(0, 49) AS g WHERE id = :source "
                        "RETURNING id"
                    ),
                    {"day": SEEDED_DAY + "T00:00:00+00:00", "source": source},
                ).scalars()
            )
        yield ids
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text("DELETE FROM policyzones_violation WHERE decided_at < :day"),
                {"day": "2001-01-02T00:00:00+00:00"},
            )
        engine.dispose()


COPIED = (
    "decision_id, dag_id, task_id, run_id, map_index, try_number, zone, mode, outcome, rule, rules, "
    "input, reason, remediation, exemption, policy_version, input_source"
)


def test_fifty_violations_fit_on_one_screen_and_open_on_click(page: Any, fifty_violations: list[int]) -> None:
    page.set_viewport_size(SCAN_VIEWPORT)
    frame = open_policy_zones(page)
    frame.locator("input[name=since]").fill(SEEDED_DAY + "T00:00")
    frame.locator("input[name=until]").fill("2001-01-02T00:00")
    frame.get_by_role("button", name="Filter").click()
    # The page the server rendered for the filter (the attribute, not the typed value).
    frame.locator(f"input[name=since][value^='{SEEDED_DAY}']").wait_for(state="attached")
    rows = frame.locator("[data-violation]")
    shown = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.violation))")
    assert sorted(shown) == sorted(fifty_violations)
    # Scrolled to the list (past the filters), all 50 lines are inside the frame's viewport.
    box = rows.first.evaluate(
        """first => {
            first.scrollIntoView({block: "start"});
            const rows = document.querySelectorAll("[data-violation]");
            const last = rows[rows.length - 1].getBoundingClientRect();
            return {top: first.getBoundingClientRect().top, bottom: last.bottom, height: window.innerHeight};
        }"""
    )
    assert box["top"] >= 0 and box["bottom"] <= box["height"], box
    save_screenshot(page, "violations-50")

    row = rows.nth(2)
    body = row.locator("[data-violation-details]")
    assert not body.is_visible()
    row.locator("summary time").click()
    body.wait_for()
    assert row.locator("details").evaluate("details => details.open")
    assert body.locator("[data-remediation]").inner_text().strip()
    assert row.locator("[data-path] [data-asset]").count() >= 2
    row.locator("summary time").click()
    body.wait_for(state="hidden")


# --- Data use ---------------------------------------------------------------------------------


def ask_about_purchases_in_ai_training(page: Any) -> Any:
    frame = open_policy_zones(page)
    frame.get_by_role("link", name="Data use", exact=True).click()
    frame.locator("[data-empty='question']").wait_for()
    frame.locator("select[name=category]").select_option("purchase_events")
    frame.locator("select[name=zone]").select_option("ai_training")
    frame.get_by_role("button", name="Answer").click()
    frame.locator("[data-verdict]").wait_for()
    return frame


def test_data_use_answers_whether_purchases_train_ai(page: Any) -> None:
    frame = ask_about_purchases_in_ai_training(page)

    verdict = frame.locator("[data-verdict]").inner_text()
    assert "purchase_events" in verdict and "ai_training" in verdict
    uses = frame.locator("tr[data-use]").evaluate_all("rows => rows.map(r => r.dataset.use)")
    assert uses == ["ai_training_recsys.train_on_consented_aggregates"]
    use = frame.locator("tr[data-use]").first
    assert use.get_attribute("data-basis") in ("sanctioned_flow", "zone")
    assert "purchases_consented_daily" in use.inner_text()
    assert use.locator("[data-path] [data-writer]").count() >= 1  # written by the reclassifier
    blocked = frame.locator("tr[data-blocked]").all_inner_texts()
    assert any("train_on_raw_purchases" in text for text in blocked)
    assert all("ai_training" in text for text in blocked)
    assert frame.locator("[data-completeness]").count() == 1
    assert frame.locator("[data-chain-head]").inner_text().strip()
    # The flow picture: the zone map with what flowed drawn over it.
    picture = frame.locator("figure[data-flow-map] svg")
    picture.wait_for()
    zones = picture.locator("g.node").evaluate_all("nodes => nodes.map(n => n.dataset.zone)")
    assert "ai_training" in zones and "ads_optimization" in zones
    assert picture.locator("g.edge.observed, g.edge.forbidden").count() >= 1
    assert picture.evaluate("svg => svg.getBBox().width") > 0
    save_screenshot(page, "data-use")
    save_screenshot(frame.locator("figure[data-flow-map]"), "data-use-flows")

    frame.locator("[data-export='json']").wait_for()
    assert "category=purchase_events" in (frame.locator("[data-export='html']").get_attribute("href") or "")


def test_data_use_in_dark_mode(page: Any) -> None:
    page.evaluate("localStorage.setItem('theme', 'dark')")
    page.reload()
    frame = ask_about_purchases_in_ai_training(page)
    page.wait_for_function(
        "() => document.querySelector(\"iframe[title='Policy Zones']\")"
        ".contentDocument.documentElement.classList.contains('dark')"
    )
    background = frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
    assert background == "rgb(9, 9, 11)"
    box = frame.locator("figure[data-flow-map] svg g.node rect").first.evaluate(
        "rect => getComputedStyle(rect).fill"
    )
    assert box == "rgb(17, 17, 17)"  # the zone boxes follow the dark surface colour
    save_screenshot(page, "data-use-dark")
