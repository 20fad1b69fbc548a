"""What the policy says about each example task, and the demo's verdict (scripts/localdemo/outcomes.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from scripts.localdemo import outcomes
from scripts.localdemo.outcomes import (
    Expected,
    TaskResult,
    expected_outcomes,
    format_doctor,
    format_task_summary,
    verdict,
)
from scripts.localdemo.settings import clean_environment

CHECK_REPORT: dict[str, Any] = {
    "tasks": [
        {"dag_id": "d", "task_id": "ok", "file": "d.py", "outcome": "allow", "decision": {"findings": []}},
        {
            "dag_id": "d",
            "task_id": "blocked",
            "file": "d.py",
            "outcome": "deny",
            "decision": {
                "findings": [
                    {"rule": "consent_missing", "rules": ["consent_missing", "not_aggregated"]},
                    {"rule": "consent_missing", "rules": ["consent_missing"]},
                ]
            },
        },
        {
            "dag_id": "m",
            "task_id": "logged",
            "file": "sub/m.py",
            "outcome": "dry_run",
            "decision": {"findings": [{"rule": "category_not_allowed", "rules": []}]},
        },
        {"dag_id": "m", "task_id": "mapped", "file": "sub/m.py", "outcome": "not_checked", "decision": None},
    ]
}


def test_expected_outcomes_from_a_check_report() -> None:
    expected = expected_outcomes(CHECK_REPORT)
    assert expected[("d", "ok")] == Expected("d", "ok", "allow", ())
    blocked = expected[("d", "blocked")]
    assert (blocked.state, blocked.rules) == ("failed", ("consent_missing", "not_aggregated"))
    assert blocked.label == "deny (consent_missing, not_aggregated)"
    assert expected[("m", "logged")].state == "success"
    assert expected[("m", "logged")].rules == ("category_not_allowed",)
    assert expected[("m", "mapped")].state is None
    assert outcomes.dag_files(CHECK_REPORT) == {"d": "d.py", "m": "sub/m.py"}


@pytest.mark.integration
def test_expected_outcomes_of_the_example_dags() -> None:
    """What `make demo` must show: the blocked tasks fail, everything else succeeds."""
    settings = {
        "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__POLICYZONES__POLICY_FILE": str(outcomes.POLICY_FILE),
    }
    env, _ = clean_environment(os.environ, settings)
    report = outcomes.policy_check(env)
    states = {key: e.state for key, e in expected_outcomes(report).items()}
    assert states == {
        ("ads_optimization_daily", "build_bid_features"): "success",
        ("purchases_reclassify", "aggregate_consented"): "success",
        ("recs_content_ranking", "rank_from_watch_history"): "success",
        ("recs_content_ranking", "rank_from_purchases"): "failed",
        ("ai_training_recsys", "train_on_raw_purchases"): "failed",
        ("ai_training_recsys", "train_on_consented_aggregates"): "success",
        ("marketing_attribution", "attribute_campaigns"): "success",
        # Scheduled on the Assets above: labels propagated from what their upstream read.
        ("ads_spend_segments", "segment_spenders"): "success",
        ("recs_spend_ranking", "rank_by_spend_segments"): "failed",
        ("ai_training_features", "train_on_bid_features"): "failed",
        # Declares nothing: the check sees no input; its read is decided while it runs (below).
        ("recs_purchase_export", "rank_from_purchase_export"): "success",
        # Declares nothing: the api-server decides when it asks for its connection (below).
        ("recs_purchase_warehouse", "rank_from_purchase_warehouse"): "success",
    }
    observed = outcomes.observed_outcomes(report, env, data=Path("/srv/demo/data"))
    assert observed == {
        ("recs_purchase_export", "rank_from_purchase_export"): Expected(
            "recs_purchase_export",
            "rank_from_purchase_export",
            "deny",
            ("category_not_allowed",),
            observed="read observed",
        ),
        ("recs_purchase_warehouse", "rank_from_purchase_warehouse"): Expected(
            "recs_purchase_warehouse",
            "rank_from_purchase_warehouse",
            "deny",
            ("connection_not_allowed", "category_not_allowed"),
            observed="connection asked for",
        ),
    }
    read, connection = observed.values()
    assert (read.state, read.label) == ("failed", "deny (category_not_allowed), read observed")
    assert (connection.state, connection.label) == (
        "failed",
        "deny (connection_not_allowed, category_not_allowed), connection asked for",
    )


def test_the_demo_writes_the_files_its_observed_readers_read(tmp_path: Path) -> None:
    outcomes.write_data(tmp_path)
    [relative] = outcomes.OBSERVED_READS.values()
    assert (tmp_path / relative).read_text().startswith("user_id,")


def test_verdicts() -> None:
    deny = Expected("d", "t", "deny", ("category_not_allowed",))
    allow = Expected("d", "t", "allow", ())
    assert verdict(TaskResult("d", "t", -1, "failed", 1), deny) == "ok"
    assert verdict(TaskResult("d", "t", -1, "failed", 2), deny).startswith("MISMATCH: retried")
    assert verdict(TaskResult("d", "t", -1, "success", 1), deny) == "MISMATCH: expected failed"
    assert verdict(TaskResult("d", "t", -1, "success", 1), allow) == "ok"
    assert verdict(TaskResult("d", "t", -1, "upstream_failed", 0), allow) == "MISMATCH: expected success"
    assert verdict(TaskResult("d", "t", -1, "success", 1), None) == ""


def test_task_summary_table() -> None:
    expected = expected_outcomes(CHECK_REPORT)
    results = [
        TaskResult("d", "ok", -1, "success", 1, body_ran=True, max_tries=2),
        TaskResult("d", "blocked", -1, "success", 1, body_ran=True),
        TaskResult("m", "mapped", 0, "success", 1),
        TaskResult("m", "unknown", -1, "success", 1, body_ran=False),
    ]
    lines, mismatches = format_task_summary(results, expected)
    assert mismatches == 1
    assert lines[0].split() == ["task", "state", "try", "body", "ran", "policy", "says", "verdict"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["d.blocked"] == [
        "success",
        "1",
        "yes",
        "deny",
        "(consent_missing,",
        "not_aggregated)",
        "MISMATCH:",
        "expected",
        "failed",
    ]
    assert rows["d.ok"] == ["success", "1/3", "yes", "allow", "ok"]
    assert rows["m.mapped[0]"] == ["success", "1", "?", "not_checked"]
    assert rows["m.unknown"] == ["success", "1", "no", "-"]
    # columns line up
    assert len({line.index("success") for line in lines[1:]}) == 1


def test_a_blocked_task_whose_body_ran_is_a_mismatch() -> None:
    deny = Expected("d", "t", "deny", ("category_not_allowed",))
    assert verdict(TaskResult("d", "t", -1, "failed", 1, body_ran=True), deny) == "MISMATCH: its body ran"
    assert verdict(TaskResult("d", "t", -1, "failed", 1, body_ran=False), deny) == "ok"


def test_the_doctors_answer_is_said_under_its_label() -> None:
    lines, found = format_doctor("  doctor (x):", 0, "no weakness found\n", "")
    assert (lines, found) == (["  doctor (x): no weakness found"], 0)


def test_each_weakness_the_doctor_finds_is_printed_with_its_fix() -> None:
    stdout = (
        "jwt_secret_visible: [api_auth] jwt_secret is visible here\n    fix: keep it off workers\n"
        "metadata_db_visible: the metadata database URL is visible here\n    fix: do not give it\n"
        "2 weaknesses found\n"
    )
    lines, found = format_doctor("  doctor (x):", 1, stdout, "")
    assert found == 2
    assert lines == [
        "  doctor (x): 2 weaknesses found",
        "    jwt_secret_visible: [api_auth] jwt_secret is visible here",
        "        fix: keep it off workers",
        "    metadata_db_visible: the metadata database URL is visible here",
        "        fix: do not give it",
    ]


def test_a_doctor_that_failed_says_so_and_rules_nothing_out() -> None:
    lines, found = format_doctor("  doctor (x):", 2, "", "Traceback (most recent call last):\nBoom: no\n")
    assert found == 1
    assert lines == [
        "  doctor (x): FAILED (exit 2)",
        "    | Traceback (most recent call last):",
        "    | Boom: no",
    ]
