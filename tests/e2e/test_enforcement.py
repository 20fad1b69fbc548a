"""End to end on a real deployment: blocked tasks never run, and the audit trail is exact."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


CONSENTED_DAILY = "s3://lake/derived/purchases_consented_daily/latest"
WHEN = ("--since", "2000-01-01", "--format", "json")


def _evidence(deployment: Deployment, zone: str) -> dict[str, Any]:
    """``policyzones evidence --category purchase_events --zone ZONE`` on the deployment, as JSON."""
    answer = subprocess.run(
        [str(VENV_BIN / "policyzones"), "evidence", "--category", "purchase_events", "--zone", zone, *WHEN],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr
    report: dict[str, Any] = json.loads(answer.stdout)
    return report


def test_evidence_answers_is_purchase_data_used_to_train_ai(deployment: Deployment) -> None:
    """After the examples ran: AI training used purchases only as the reclassified aggregates, with
    the path; its raw reads were blocked; content recommendations only has blocked attempts."""
    examples = EXAMPLE_DAGS | ASSET_DAGS
    report = _evidence(deployment, "ai_training")
    uses = [use for use in report["uses"] if use["dag_id"] in examples]
    assert [(u["dag_id"], u["task_id"], u["input"]) for u in uses] == [
        ("ai_training_recsys", "train_on_consented_aggregates", CONSENTED_DAILY)
    ]
    [use] = uses
    # The examples run at once: read before the reclassifier wrote, the catalog's labels admit it
    # in the zone; read after, the propagated ones arrive along the sanctioned flow.
    assert use["basis"] in {"zone", "sanctioned_flow"}
    assert use["aggregated"] is True and use["consented"] == ["ai_training"]
    assert use["path_text"] == (
        f"{CONSENTED_DAILY} (written by purchases_reclassify.aggregate_consented in ads_optimization) "
        f"← {PURCHASES}"
    )
    assert [step["reclassifier"] for step in use["path"]] == ["purchases_consented_daily", None]
    blocked = {(b["dag_id"], b["task_id"], b["input"]) for b in report["blocked"] if b["dag_id"] in examples}
    assert blocked == {
        ("ai_training_recsys", "train_on_raw_purchases", PURCHASES),
        ("ai_training_features", "train_on_bid_features", BID_FEATURES),
    }
    if len(uses) == len(report["uses"]):  # no other module's DAG used purchases in ai_training
        assert report["verdict"].startswith(
            "purchase_events reached ai_training only as aggregated data consented for ai_training, "
            "through reclassifier purchases_consented_daily; 0 other uses"
        )
    assert report["completeness"]["policy_versions"] and len(report["completeness"]["chain"]["head"]) == 64

    recs = _evidence(deployment, "content_recommendations")
    assert [use for use in recs["uses"] if use["dag_id"] in examples] == []
    assert {(b["dag_id"], b["task_id"], b["input"]) for b in recs["blocked"] if b["dag_id"] in examples} == {
        ("recs_content_ranking", "rank_from_purchases", PURCHASES),
        ("recs_spend_ranking", "rank_by_spend_segments", SPEND_SEGMENTS),
    }
    if recs["uses_total"] == 0:
        assert recs["verdict"].startswith("purchase_events never reached content_recommendations: ")


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


def test_a_monkeypatching_bypass_runs_its_body_but_cannot_succeed_and_the_audit_reports_it(
    deployment: Deployment,
) -> None:
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    deployment.wait_for_dags({"recs_bypass_attempt"})
    run_id = deployment.trigger("recs_bypass_attempt")
    assert deployment.wait_for_runs({"recs_bypass_attempt": run_id}) == {"recs_bypass_attempt": "failed"}
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    # The body ran (removing the check in the task process is possible)...
    assert (evidence / "recs_bypass_attempt.sneak").exists(), "the documented bypass runs its body"
    assert (evidence / "recs_bypass_attempt.named_empty").exists()
    # ...but the api-server refused its success: failed, with the reason recorded on the try.
    refused = deployment.query(
        "SELECT v.task_id, v.rule, v.outcome, d.claims_digest FROM policyzones_violation v "
        "JOIN policyzones_decision d ON d.id = v.decision_id WHERE v.run_id = :r ORDER BY v.task_id",
        r=run_id,
    )
    assert [(row["task_id"], row["rule"], row["outcome"]) for row in refused] == [
        ("named_empty", "undecided_run", "deny"),
        ("sneak", "undecided_run", "deny"),
    ]

    audit = subprocess.run(
        [str(VENV_BIN / "policyzones"), "audit", "--since", started.isoformat(), "--format", "json"],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 1, audit.stderr
    unchecked = json.loads(audit.stdout)["unchecked"]
    # Every other try of this deployment (examples, the burst) was decided: only the bypass shows,
    # with its class named EmptyOperator (it ran); the markers the scheduler completed without
    # running them (an EmptyOperator subclass, ExternalTaskMarker) are not false alarms.
    assert sorted((u["dag_id"], u["task_id"], u["run_id"], u["try_number"]) for u in unchecked) == [
        ("recs_bypass_attempt", "named_empty", run_id, 1),
        ("recs_bypass_attempt", "sneak", run_id, 1),
    ]
    states = deployment.task_instances("recs_bypass_attempt", run_id)
    assert {task_id: ti["state"] for (task_id, _), ti in states.items()} == {
        "sneak": "failed",
        "named_empty": "failed",
        "team_marker": "success",
        "external_marker": "success",
    }
    assert states[("sneak", -1)]["try_number"] == 1  # failed at once, although it has retries


# --- reads the task really makes: hooks and object storage, no inlets declared ------------------------
#
# The DAGs are tests/fixtures/e2e/observed_reads.py; they query the deployment's PostgreSQL
# warehouse through PostgresHook (connection `warehouse`, defined for the workers only) and write
# and read `file://` paths with ObjectStoragePath. Every read is decided by the api-server over
# HTTP while the body runs.

OBSERVED_FIRST = {
    "recs_observed_purchases": "read_purchases",
    "ads_observed_spend": "spend_by_user",
    "recs_observed_catch": "swallow_refusal",
    "ads_observed_alias": "aliased_spend",
    "recs_declared_warehouse": "read_declared",
}
# Reads the file ads_observed_spend wrote: runs once that run has succeeded.
OBSERVED_THEN = {"recs_observed_spend_file": "read_spend_file"}
OBSERVED = OBSERVED_FIRST | OBSERVED_THEN
WAREHOUSE_PURCHASES = "raw.purchases"


@pytest.fixture(scope="module")
def observed(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Every observed-read DAG run once: dag_id -> its run's state, task instance and run id."""
    deployment.wait_for_dags(set(OBSERVED))
    assert deployment.import_errors() == {}
    runs = {dag_id: deployment.trigger(dag_id) for dag_id in sorted(OBSERVED_FIRST)}
    states = deployment.wait_for_runs(runs)
    assert states["ads_observed_spend"] == "success", _task_log(
        deployment, "ads_observed_spend", runs["ads_observed_spend"], "spend_by_user"
    )
    then = {dag_id: deployment.trigger(dag_id) for dag_id in OBSERVED_THEN}
    states |= deployment.wait_for_runs(then)
    runs |= then
    return {
        dag_id: {
            "state": states[dag_id],
            "run_id": runs[dag_id],
            "ti": deployment.task_instances(dag_id, runs[dag_id])[(OBSERVED[dag_id], -1)],
        }
        for dag_id in OBSERVED
    }


def _violations(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    return deployment.query(
        "SELECT v.rules, v.input, v.outcome, v.input_source, v.reason, v.try_number, d.source "
        "FROM policyzones_violation v JOIN policyzones_decision d ON d.id = v.decision_id "
        "WHERE v.dag_id = :d ORDER BY v.id",
        d=dag_id,
    )


def _return_values(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    return deployment.query(
        "SELECT task_id, value FROM xcom WHERE dag_id = :d AND key = 'return_value'", d=dag_id
    )


def test_an_undeclared_hook_read_is_stopped_inside_the_hook_call(
    deployment: Deployment, observed: dict[str, dict[str, Any]]
) -> None:
    run = observed["recs_observed_purchases"]
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    log = _task_log(deployment, "recs_observed_purchases", run["run_id"], "read_purchases")
    assert run["state"] == "failed", log
    ti = run["ti"]
    assert (ti["state"], ti["try_number"]) == ("failed", 1), "a refused read is not retried (retries=2)"
    assert not (evidence / "recs_observed_purchases.read_purchases.rows").exists(), "rows reached the code"
    assert _return_values(deployment, "recs_observed_purchases") == []
    [violation] = _violations(deployment, "recs_observed_purchases")
    assert (
        violation["rules"],
        violation["input"],
        violation["outcome"],
        violation["input_source"],
        violation["try_number"],
        violation["source"],
    ) == (["category_not_allowed"], WAREHOUSE_PURCHASES, "deny", "observed", 1, "api")
    [decision] = deployment.query(
        "SELECT outcome, allowed, try_number FROM policyzones_decision "
        "WHERE dag_id = 'recs_observed_purchases'"
    )
    assert (decision["outcome"], decision["allowed"], decision["try_number"]) == ("deny", False, 1)
    assert "read data through a hook that zone 'content_recommendations' may not use" in log


def test_an_allowed_hook_read_labels_the_file_written_and_a_reader_is_denied_with_the_path(
    deployment: Deployment, observed: dict[str, dict[str, Any]]
) -> None:
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    data: Path = deployment.data  # type: ignore[attr-defined]
    run = observed["ads_observed_spend"]
    assert (run["state"], run["ti"]["try_number"]) == ("success", 1)
    assert (evidence / "ads_observed_spend.spend_by_user.rows").exists()
    assert (data / "observed_spend_by_user.csv").read_text() == "1,10\n2,20\n3,30\n"
    assert [row["value"] for row in _return_values(deployment, "ads_observed_spend")] == [3]
    assert _violations(deployment, "ads_observed_spend") == []
    inputs = deployment.query(
        "SELECT i.namespace, i.name, i.category, i.source, d.source AS via FROM policyzones_decision_input i "
        "JOIN policyzones_decision d ON d.id = i.decision_id WHERE d.dag_id = 'ads_observed_spend'"
    )
    assert [(i["namespace"], i["name"], i["category"], i["source"], i["via"]) for i in inputs] == [
        ("table", WAREHOUSE_PURCHASES, "purchase_events", "observed", "api")
    ]
    spend = f"file://{data}/observed_spend_by_user.csv"
    events = deployment.query(
        "SELECT categories, consented, origins, source, dag_id, task_id FROM policyzones_asset_label_event "
        "WHERE name = :n",
        n=spend,
    )
    assert [
        (e["categories"], e["consented"], e["origins"], e["source"], e["dag_id"], e["task_id"])
        for e in events
    ] == [
        (
            ["purchase_events"],
            ["ads_optimization"],
            ["ads_optimization"],
            "observed",
            "ads_observed_spend",
            "spend_by_user",
        )
    ]

    reader = observed["recs_observed_spend_file"]
    assert (reader["state"], reader["ti"]["state"], reader["ti"]["try_number"]) == ("failed", "failed", 1)
    assert not (evidence / "recs_observed_spend_file.read_spend_file.rows").exists()
    assert _return_values(deployment, "recs_observed_spend_file") == []
    [violation] = _violations(deployment, "recs_observed_spend_file")
    assert (violation["input"], violation["outcome"], violation["input_source"], violation["source"]) == (
        spend,
        "deny",
        "observed",
        "api",
    )
    assert set(violation["rules"]) == {"category_not_allowed", "unsanctioned_flow"}
    assert (
        f"derived: {spend} (written by ads_observed_spend.spend_by_user in ads_optimization) "
        f"← table {WAREHOUSE_PURCHASES}"
    ) in violation["reason"]


def test_a_task_that_catches_the_refusal_still_fails_before_success(
    deployment: Deployment, observed: dict[str, dict[str, Any]]
) -> None:
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    run = observed["recs_observed_catch"]
    # The code caught the refusal and returned normally ...
    assert (evidence / "recs_observed_catch.swallow_refusal.caught").exists()
    assert (evidence / "recs_observed_catch.swallow_refusal.returned").exists()
    # ... and the try failed before Airflow recorded success: no retry, no return value.
    assert run["state"] == "failed"
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("failed", 1)
    assert _return_values(deployment, "recs_observed_catch") == []
    violations = _violations(deployment, "recs_observed_catch")
    assert [(v["rules"], v["input"], v["outcome"], v["input_source"], v["source"]) for v in violations] == [
        (["category_not_allowed"], WAREHOUSE_PURCHASES, "deny", "observed", "api")
    ]
    log = _task_log(deployment, "recs_observed_catch", run["run_id"], "swallow_refusal")
    assert "the task's code went on after the refusal" in log


def test_the_asset_an_asset_alias_resolves_to_is_labelled(
    deployment: Deployment, observed: dict[str, dict[str, Any]]
) -> None:
    data: Path = deployment.data  # type: ignore[attr-defined]
    run = observed["ads_observed_alias"]
    assert (run["state"], run["ti"]["try_number"]) == ("success", 1)
    aliased = f"file://{data}/observed_aliased_spend.csv"
    events = deployment.query(
        "SELECT categories, source, dag_id FROM policyzones_asset_label_event WHERE name = :n", n=aliased
    )
    assert [(e["categories"], e["source"], e["dag_id"]) for e in events] == [
        (["purchase_events"], "alias", "ads_observed_alias")
    ]
    [labels] = deployment.query("SELECT categories FROM policyzones_asset_labels WHERE name = :n", n=aliased)
    assert labels["categories"] == ["purchase_events"]
    # Airflow resolved the alias to that asset too (an asset event through the alias).
    assert deployment.query("SELECT id FROM asset WHERE uri = :u", u=aliased)


def test_an_asset_inlet_without_the_port_matches_the_catalog_pattern_without_it(
    deployment: Deployment, observed: dict[str, dict[str, Any]]
) -> None:
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    run = observed["recs_declared_warehouse"]
    assert (run["state"], run["ti"]["try_number"]) == ("failed", 1)
    assert not (evidence / "recs_declared_warehouse.read_declared").exists()
    stored = "postgres://warehouse:5432/analytics/raw/purchases"  # Airflow added the default port
    [inlet] = deployment.query(
        "SELECT i.name, i.labeled, i.category, i.source FROM policyzones_decision_input i "
        "JOIN policyzones_decision d ON d.id = i.decision_id WHERE d.dag_id = 'recs_declared_warehouse'"
    )
    assert (inlet["name"], inlet["labeled"], inlet["category"], inlet["source"]) == (
        stored,
        True,
        "purchase_events",
        "declared",
    )
    [violation] = _violations(deployment, "recs_declared_warehouse")
    assert (violation["rules"], violation["input"], violation["input_source"]) == (
        ["category_not_allowed"],
        stored,
        "declared",
    )


# --- connections and variables: refused on the api-server --------------------------------------------
#
# The DAGs are tests/fixtures/e2e/credentials.py. Connection `warehouse_raw` (the warehouse's raw
# purchases) and variable `ads_bid_budget` are in the metadata DB, so tasks can only get them from
# the api-server's execution API, where the policy's `connections:` / `variables:` sections apply.

CREDENTIAL_TASKS = {
    "recs_credentials_connection": "read_warehouse_raw",
    "ads_credentials_served": "read_warehouse_raw",
    "marketing_credentials_dry_run": "read_warehouse_raw",
    "recs_credentials_variable": "read_ads_budget",
    "recs_credentials_sql": "rank_purchases_sql",
}


@pytest.fixture(scope="module")
def credential_runs(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Every credential DAG run once: dag_id -> its run's state, task instance, run id and task log."""
    deployment.wait_for_dags(set(CREDENTIAL_TASKS))
    assert deployment.import_errors() == {}
    runs = {dag_id: deployment.trigger(dag_id) for dag_id in sorted(CREDENTIAL_TASKS)}
    states = deployment.wait_for_runs(runs)
    return {
        dag_id: {
            "state": states[dag_id],
            "run_id": runs[dag_id],
            "ti": deployment.task_instances(dag_id, runs[dag_id])[(task_id, -1)],
            "log": _task_log(deployment, dag_id, runs[dag_id], task_id),
        }
        for dag_id, task_id in CREDENTIAL_TASKS.items()
    }


def _credential_violations(deployment: Deployment, dag_id: str) -> list[dict[str, Any]]:
    return deployment.query(
        "SELECT v.rule, v.rules, v.input, v.outcome, v.zone, v.try_number, d.outcome AS decision, "
        "d.allowed FROM policyzones_violation v JOIN policyzones_decision d ON d.id = v.decision_id "
        "WHERE v.dag_id = :d ORDER BY v.id",
        d=dag_id,
    )


def test_a_zone_that_may_not_use_a_connection_never_gets_it(
    deployment: Deployment, credential_runs: dict[str, dict[str, Any]]
) -> None:
    run = credential_runs["recs_credentials_connection"]
    log = run["log"]
    assert run["state"] == "failed", log
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("failed", 1)
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert not (evidence / "recs_credentials_connection.read_warehouse_raw.rows").exists()
    assert _return_values(deployment, "recs_credentials_connection") == []
    [violation] = _credential_violations(deployment, "recs_credentials_connection")
    assert (
        violation["rule"],
        violation["input"],
        violation["outcome"],
        violation["zone"],
        violation["try_number"],
        violation["decision"],
        violation["allowed"],
    ) == (
        "connection_not_allowed",
        "connection:warehouse_raw",
        "deny",
        "content_recommendations",
        1,
        "deny",
        False,
    )
    assert set(violation["rules"]) == {"connection_not_allowed", "category_not_allowed"}
    # The hook call raises Airflow's "access denied" (no other secrets backend is asked), carrying
    # the zone's reason and fix; the try fails although the task has retries left.
    assert "CredentialRefused" in log
    assert "policyzones: the api-server refused connection 'warehouse_raw' to task " in log
    assert "recs_credentials_connection.read_warehouse_raw" in log
    assert "fails without retry" in log
    assert "connection 'warehouse_raw' (policy connections.'warehouse_raw')" in log
    assert "fix: " in log
    assert "zone 'content_recommendations'" in log
    # The api-server says why, with the zone.
    api_log = (deployment.home / "api-server.log").read_text(errors="replace")
    assert "policyzones: connection 'warehouse_raw' refused by the zone policy" in api_log
    assert "content_recommendations" in api_log


def test_a_zone_that_may_use_the_connection_and_variable_gets_them_and_reads(
    deployment: Deployment, credential_runs: dict[str, dict[str, Any]]
) -> None:
    run = credential_runs["ads_credentials_served"]
    assert run["state"] == "success", run["log"]
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("success", 1)
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert (evidence / "ads_credentials_served.read_warehouse_raw.rows").exists()
    assert [row["value"] for row in _return_values(deployment, "ads_credentials_served")] == [
        "3 rows, budget 1000"
    ]
    assert _credential_violations(deployment, "ads_credentials_served") == []
    [decision] = deployment.query(
        "SELECT outcome, zone FROM policyzones_decision WHERE dag_id = 'ads_credentials_served'"
    )
    assert (decision["outcome"], decision["zone"]) == ("allow", "ads_optimization")


def test_a_dry_run_zone_gets_the_connection_and_the_violation_is_recorded(
    deployment: Deployment, credential_runs: dict[str, dict[str, Any]]
) -> None:
    run = credential_runs["marketing_credentials_dry_run"]
    assert run["state"] == "success", run["log"]
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("success", 1)
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert (evidence / "marketing_credentials_dry_run.read_warehouse_raw.rows").exists()
    assert [row["value"] for row in _return_values(deployment, "marketing_credentials_dry_run")] == [3]
    violations = _credential_violations(deployment, "marketing_credentials_dry_run")
    # The connection, then the read made with it (observed): both in dry_run, on try 1's decision.
    assert [(v["rule"], v["input"], v["outcome"], v["zone"], v["try_number"]) for v in violations] == [
        ("connection_not_allowed", "connection:warehouse_raw", "dry_run", "marketing_analytics", 1),
        ("category_not_allowed", WAREHOUSE_PURCHASES, "dry_run", "marketing_analytics", 1),
    ]
    assert {(v["decision"], v["allowed"]) for v in violations} == {("dry_run", True)}
    assert "Access denied" not in run["log"]


def test_a_zone_that_may_not_use_a_variable_never_gets_it(
    deployment: Deployment, credential_runs: dict[str, dict[str, Any]]
) -> None:
    run = credential_runs["recs_credentials_variable"]
    log = run["log"]
    assert run["state"] == "failed", log
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("failed", 1)
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    assert not (evidence / "recs_credentials_variable.read_ads_budget.value").exists()
    assert _return_values(deployment, "recs_credentials_variable") == []
    [violation] = _credential_violations(deployment, "recs_credentials_variable")
    assert (
        violation["rule"],
        violation["rules"],
        violation["input"],
        violation["outcome"],
        violation["zone"],
        violation["try_number"],
    ) == (
        "variable_not_allowed",
        ["variable_not_allowed"],
        "variable:ads_bid_budget",
        "deny",
        "content_recommendations",
        1,
    )
    # The task's code caught the refusal and went on: the try fails all the same, without retry.
    assert (evidence / "recs_credentials_variable.read_ads_budget.went_on").exists()
    assert "policyzones: the api-server refused variable 'ads_bid_budget' to task " in log
    assert "the task's code went on after the refusal" in log
    assert "zone 'content_recommendations'" in log
    assert "1000" not in log


def test_a_sql_task_is_decided_before_it_asks_for_its_connection(
    deployment: Deployment, credential_runs: dict[str, dict[str, Any]]
) -> None:
    run = credential_runs["recs_credentials_sql"]
    log = run["log"]
    assert run["state"] == "failed", log
    assert (run["ti"]["state"], run["ti"]["try_number"]) == ("failed", 1)
    # Denied on what its SQL reads (parsed as PostgreSQL: the api-server named the connection's
    # type); the connection itself was never fetched, so it was never refused.
    violations = _credential_violations(deployment, "recs_credentials_sql")
    assert [(v["rule"], v["input"], v["outcome"]) for v in violations] == [
        ("category_not_allowed", "raw.purchases", "deny")
    ]
    assert "parsing its SQL as generic SQL" not in log
    assert "may not run in zone 'content_recommendations'" in log


def test_a_trigger_gets_a_connection_only_if_every_try_whose_trigger_runs_there_may_use_it(
    deployment: Deployment,
) -> None:
    """Triggers ask the triggerer, which checks like the api-server; one at a time, so that each
    is the only trigger running (a trigger runner does not say which of its triggers asks)."""
    deployment.wait_for_dags({"recs_credentials_trigger", "ads_credentials_trigger"})
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    for dag_id, served in (("recs_credentials_trigger", False), ("ads_credentials_trigger", True)):
        run_id = deployment.trigger(dag_id)
        state = deployment.wait_for_runs({dag_id: run_id})[dag_id]
        log = _task_log(deployment, dag_id, run_id, "fetch_in_trigger")
        assert state == ("success" if served else "failed"), log
        assert (evidence / f"{dag_id}.fetch_in_trigger.served").exists() is served
        if not served:
            assert "the trigger got no connection: AirflowSecretsBackendAccessDenied" in log
    triggerer_log = (deployment.home / "triggerer.log").read_text(errors="replace")
    assert "policyzones: the triggerer's runner (triggers [" in triggerer_log
    assert "recs_credentials_trigger" in triggerer_log and "refused by the zone policy" in triggerer_log


def _task_log(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> str:
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.rglob("*.log")))
