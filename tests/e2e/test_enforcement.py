"""End to end on a real deployment: blocked tasks never run, and the audit trail is exact."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.e2e.conftest import BURST_TASKS
from tests.e2e.deployment import VENV_BIN, Deployment

pytestmark = pytest.mark.e2e

EXAMPLE_DAGS = {
    "ads_optimization_daily",
    "purchases_reclassify",
    "recs_content_ranking",
    "ai_training_recsys",
    "marketing_attribution",
}
# Scheduled on Assets the examples write: they run when their upstream succeeds.
ASSET_DAGS = {"ads_spend_segments", "recs_spend_ranking", "ai_training_features"}
# (dag, task) -> (task state, decision outcome, whether the body ran)
EXPECTED = {
    ("ads_optimization_daily", "build_bid_features"): ("success", "allow", True),
    ("purchases_reclassify", "aggregate_consented"): ("success", "allow", True),
    ("recs_content_ranking", "rank_from_watch_history"): ("success", "allow", True),
    ("recs_content_ranking", "rank_from_purchases"): ("failed", "deny", False),
    ("ai_training_recsys", "train_on_raw_purchases"): ("failed", "deny", False),
    ("ai_training_recsys", "train_on_consented_aggregates"): ("success", "allow", True),
    ("marketing_attribution", "attribute_campaigns"): ("success", "dry_run", True),
    ("ads_spend_segments", "segment_spenders"): ("success", "allow", True),
    ("recs_spend_ranking", "rank_by_spend_segments"): ("failed", "deny", False),
    ("ai_training_features", "train_on_bid_features"): ("failed", "deny", False),
}
EXPECTED_VIOLATIONS = {
    ("recs_content_ranking", "rank_from_purchases", "deny", "category_not_allowed"),
    ("ai_training_recsys", "train_on_raw_purchases", "deny", "consent_missing"),
    ("marketing_attribution", "attribute_campaigns", "dry_run", "category_not_allowed"),
    ("recs_spend_ranking", "rank_by_spend_segments", "deny", "category_not_allowed"),
    ("ai_training_features", "train_on_bid_features", "deny", "category_not_allowed"),
}
PURCHASES = "s3://lake/raw/purchases/daily"
BID_FEATURES = "s3://lake/ads/bid_features/daily"
SPEND_SEGMENTS = "s3://lake/ads/spend_segments/daily"


def test_example_dags_are_enforced_and_recorded(deployment: Deployment) -> None:
    deployment.wait_for_dags(EXAMPLE_DAGS)
    assert deployment.import_errors() == {}
    runs = {dag_id: deployment.trigger(dag_id) for dag_id in sorted(EXAMPLE_DAGS)}
    states = deployment.wait_for_runs(runs)
    asset_runs = deployment.wait_for_asset_runs(ASSET_DAGS)
    runs |= {dag_id: run_id for dag_id, (run_id, _) in asset_runs.items()}
    states |= {dag_id: state for dag_id, (_, state) in asset_runs.items()}
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]

    expected_run_states = {
        dag_id: "failed"
        if any(s == "failed" for (d, _), (s, _, _) in EXPECTED.items() if d == dag_id)
        else "success"
        for dag_id in EXAMPLE_DAGS | ASSET_DAGS
    }
    assert states == expected_run_states

    for (dag_id, task_id), (state, _, body_ran) in EXPECTED.items():
        ti = deployment.task_instances(dag_id, runs[dag_id])[(task_id, -1)]
        assert ti["state"] == state, (dag_id, task_id)
        assert ti["try_number"] == 1, f"{dag_id}.{task_id} was retried (retries=2 in the DAG)"
        assert (evidence / f"{dag_id}.{task_id}").exists() is body_ran, (dag_id, task_id)

    decisions = deployment.query(
        "SELECT dag_id, task_id, run_id, map_index, try_number, outcome, source, zone, policy_version "
        "FROM policyzones_decision WHERE dag_id <> 'recs_violation_burst'"
    )
    assert sorted((d["dag_id"], d["task_id"], d["outcome"]) for d in decisions) == sorted(
        (dag_id, task_id, outcome) for (dag_id, task_id), (_, outcome, _) in EXPECTED.items()
    )
    assert all(d["source"] == "api" and d["try_number"] == 1 and d["map_index"] == -1 for d in decisions)
    assert all(d["run_id"] == runs[d["dag_id"]] for d in decisions)
    assert len({d["policy_version"] for d in decisions}) == 1

    violations = deployment.query(
        "SELECT dag_id, task_id, outcome, rule, input, try_number FROM policyzones_violation "
        "WHERE dag_id <> 'recs_violation_burst'"
    )
    assert {(v["dag_id"], v["task_id"], v["outcome"], v["rule"]) for v in violations} == EXPECTED_VIOLATIONS
    assert len(violations) == len(EXPECTED_VIOLATIONS)
    assert {v["input"] for v in violations} == {PURCHASES, SPEND_SEGMENTS, BID_FEATURES}

    # Restrictions travelled with the data: two hops from the raw purchases, with the path.
    [two_hops] = deployment.query(
        "SELECT rules, reason FROM policyzones_violation WHERE dag_id = 'recs_spend_ranking'"
    )
    assert "unsanctioned_flow" in str(two_hops["rules"])
    assert two_hops["reason"].endswith(
        f"derived: {SPEND_SEGMENTS} (written by ads_spend_segments.segment_spenders in ads_optimization) "
        f"← {BID_FEATURES} (written by ads_optimization_daily.build_bid_features in ads_optimization) "
        f"← {PURCHASES}"
    )
    labels = {
        row["name"]: row
        for row in deployment.query(
            "SELECT name, categories, consented, aggregated, origins, reclassified_by, event_count "
            "FROM policyzones_asset_labels"
        )
    }
    segments = labels[SPEND_SEGMENTS]
    assert (segments["categories"], segments["consented"], segments["origins"]) == (
        ["ad_clicks", "purchase_events"],
        ["ads_optimization"],
        ["ads_optimization"],
    )
    consented_daily = labels["s3://lake/derived/purchases_consented_daily/latest"]
    assert "purchases_consented_daily" in str(consented_daily["reclassified_by"])
    [reclassified] = deployment.query(
        "SELECT reclassifier, dag_id, task_id, labels_before, labels_after FROM policyzones_reclassification"
    )
    assert (reclassified["reclassifier"], reclassified["dag_id"], reclassified["task_id"]) == (
        "purchases_consented_daily",
        "purchases_reclassify",
        "aggregate_consented",
    )
    history = deployment.query("SELECT name, dag_id, task_id FROM policyzones_asset_label_event ORDER BY id")
    assert {(h["name"], h["dag_id"]) for h in history} >= {
        (BID_FEATURES, "ads_optimization_daily"),
        (SPEND_SEGMENTS, "ads_spend_segments"),
    }

    categories = deployment.query(
        "SELECT DISTINCT d.task_id FROM policyzones_decision d "
        "JOIN policyzones_decision_input i ON i.decision_id = d.id "
        "WHERE d.zone = 'ai_training' AND i.category = 'purchase_events'"
    )
    assert {row["task_id"] for row in categories} == {
        "train_on_raw_purchases",
        "train_on_consented_aggregates",
        "train_on_bid_features",
    }, "an auditor can list every AI-training task that touched purchase data"

    log = _task_log(deployment, "recs_content_ranking", runs["recs_content_ranking"], "rank_from_purchases")
    assert "category_not_allowed" in log and "s3://lake/raw/purchases/daily" in log


def test_burst_of_violations_is_recorded_exactly_once_per_try(deployment: Deployment) -> None:
    deployment.wait_for_dags({"recs_violation_burst"})
    run_id = deployment.trigger("recs_violation_burst")
    assert deployment.wait_for_runs({"recs_violation_burst": run_id}, timeout=600) == {
        "recs_violation_burst": "failed"
    }
    instances = deployment.task_instances("recs_violation_burst", run_id)
    assert len(instances) == BURST_TASKS
    assert {ti["state"] for ti in instances.values()} == {"failed"}
    assert {ti["try_number"] for ti in instances.values()} == {1}
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert not list(evidence.glob("recs_violation_burst.*")), "no blocked body may run"

    decisions = deployment.query(
        "SELECT map_index, try_number, outcome FROM policyzones_decision WHERE run_id = :r", r=run_id
    )
    violations = deployment.query(
        "SELECT map_index, try_number, rule FROM policyzones_violation WHERE run_id = :r", r=run_id
    )
    assert sorted(d["map_index"] for d in decisions) == list(range(BURST_TASKS))
    assert sorted(v["map_index"] for v in violations) == list(range(BURST_TASKS))
    assert {d["outcome"] for d in decisions} == {"deny"}
    assert {v["rule"] for v in violations} == {"category_not_allowed"}


def test_a_monkeypatching_bypass_runs_but_the_audit_reports_it(deployment: Deployment) -> None:
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    deployment.wait_for_dags({"recs_bypass_attempt"})
    run_id = deployment.trigger("recs_bypass_attempt")
    assert deployment.wait_for_runs({"recs_bypass_attempt": run_id}) == {"recs_bypass_attempt": "success"}
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert (evidence / "recs_bypass_attempt.sneak").exists(), "the documented bypass works"
    assert deployment.query("SELECT id FROM policyzones_decision WHERE run_id = :r", r=run_id) == []

    audit = subprocess.run(
        [str(VENV_BIN / "policyzones"), "audit", "--since", started.isoformat(), "--format", "json"],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 1, audit.stderr
    unchecked = json.loads(audit.stdout)["unchecked"]
    # Every other try of this deployment (examples, the burst) was decided: only the bypass shows.
    assert [(u["dag_id"], u["task_id"], u["run_id"], u["try_number"]) for u in unchecked] == [
        ("recs_bypass_attempt", "sneak", run_id, 1)
    ]


def _task_log(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> str:
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.rglob("*.log")))
