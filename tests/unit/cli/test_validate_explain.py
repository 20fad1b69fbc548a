"""``policyzones validate`` and ``policyzones explain``: run in-process through ``main(argv)``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_policyzones.cli.main import EXIT_OK, EXIT_USAGE, EXIT_VIOLATIONS, main
from airflow_policyzones.policy import Rule, load_policy

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_POLICY = REPO_ROOT / "dags_examples" / "policy.yaml"
POLICY = str(EXAMPLE_POLICY)

RAW_PURCHASES = "s3://lake/raw/purchases/daily"
CONSENTED_DAILY = "s3://lake/derived/purchases_consented_daily/latest"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- validate -----------------------------------------------------------------------------------


def test_validate_example_policy_summarizes_counts_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", POLICY)

    assert code == EXIT_OK, err
    assert err == ""
    loaded = load_policy(EXAMPLE_POLICY)
    assert loaded.short_version in out
    for expected in (
        "4 zones",
        "3 categories",
        "6 catalog entries",
        "1 flow",
        "1 reclassifier",
        "1 exemption",
    ):
        assert expected in out
    assert "'example-company' is valid" in out
    assert out.count("\n") == 1  # one paragraph, no warnings


def test_validate_lists_warnings_and_still_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = EXAMPLE_POLICY.read_text(encoding="utf-8").replace("expires: 2030-12-31", "expires: 2020-01-31")
    policy = tmp_path / "expired.yaml"
    policy.write_text(text, encoding="utf-8")
    expires_line = next(n for n, line in enumerate(text.splitlines(), 1) if "expires: 2020-01-31" in line)

    code, out, err = run(capsys, "validate", str(policy))

    assert code == EXIT_OK, err
    assert "1 warning:" in out
    assert f"{policy}:{expires_line}" in out
    assert "PRIV-1042" in out and "expired" in out


@pytest.mark.parametrize(
    ("name", "content", "line", "message"),
    [
        (
            "unknown_field",
            """\
            zones:
              ads:
                purpose: ads
                allowd_categories: []
                members: {dag_ids: ["*"]}
            """,
            4,
            "unknown field 'allowd_categories'",
        ),
        (
            "bad_yaml",
            """\
            zones:
              ads:
                purpose: [ads
                members: {}
            """,
            4,
            "invalid YAML",
        ),
        (
            "unknown_category",
            """\
            categories:
              purchase_events: {}
            zones:
              ads:
                purpose: ads
                allowed_categories: [purchase_event]
                members: {dag_ids: ["*"]}
            """,
            6,
            "purchase_event",
        ),
    ],
)
def test_validate_invalid_policy_reports_located_issues_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, line: int, message: str
) -> None:
    policy = tmp_path / f"{name}.yaml"
    policy.write_text(textwrap.dedent(content), encoding="utf-8")

    code, out, err = run(capsys, "validate", str(policy))

    assert code == EXIT_USAGE
    assert out == ""
    assert f"{policy}:{line}" in err
    assert message in err
    assert "fix:" in err
    assert "Traceback" not in err


def test_validate_reports_every_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "two_problems.yaml"
    policy.write_text(
        textwrap.dedent(
            """\
            zones:
              ads:
                purpose: ads
                allowed_categories: [nope]
                members: {dag_ids: ["*"]}
              recs:
                purpose: recs
                allowed_categories: [nada]
                members: {dag_ids: ["*"]}
            """
        ),
        encoding="utf-8",
    )

    code, _, err = run(capsys, "validate", str(policy))

    assert code == EXIT_USAGE
    assert f"{policy}:4" in err and f"{policy}:8" in err
    assert "2 problems" in err


def test_validate_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path / "absent.yaml"))

    assert code == EXIT_USAGE
    assert out == ""
    assert "policy file not found" in err
    assert "Traceback" not in err


# --- explain ------------------------------------------------------------------------------------


def test_explain_ads_optimization_reading_purchases_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "ads_optimization",
        "--dag-id",
        "ads_optimization_daily",
        "--input",
        RAW_PURCHASES,
    )

    assert code == EXIT_OK
    assert "outcome: allow" in out
    assert "zone:    ads_optimization" in out
    assert "mode:    enforce" in out
    assert load_policy(EXAMPLE_POLICY).short_version in out
    assert "categories: purchase_events; consented: ads_optimization; aggregated: no" in out
    assert "findings: none" in out


def test_explain_content_recommendations_reading_purchases_is_denied(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "content_recommendations",
        "--dag-id",
        "recs_content_ranking",
        "--task-id",
        "rank_from_purchases",
        "--input",
        RAW_PURCHASES,
    )

    assert code == EXIT_VIOLATIONS
    assert "outcome: DENY" in out
    assert "task:    recs_content_ranking.rank_from_purchases" in out
    assert f"1. category_not_allowed on {RAW_PURCHASES}" in out
    assert "reason: " in out and "'purchase_events'" in out
    assert "fix:    add 'purchase_events' to zones.content_recommendations.allowed_categories" in out


def test_explain_ai_training_denies_raw_purchases(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "ai_training",
        "--dag-id",
        "ai_training_recsys",
        "--input",
        RAW_PURCHASES,
    )

    assert code == EXIT_VIOLATIONS
    assert "outcome: DENY" in out
    assert "consent_missing, not_aggregated" in out


def test_explain_ai_training_allows_the_reclassified_aggregate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "ai_training",
        "--dag-id",
        "ai_training_recsys",
        "--input",
        CONSENTED_DAILY,
    )

    assert code == EXIT_OK
    assert "outcome: allow" in out
    assert "categories: purchase_events; consented: ai_training; aggregated: yes" in out


def test_explain_json_is_the_decision_plus_input_labels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "ai_training",
        "--dag-id",
        "ai_training_recsys",
        "--input",
        RAW_PURCHASES,
        "--input",
        CONSENTED_DAILY,
        "--table",
        "warehouse.unknown.table",
        "--json",
    )

    data = json.loads(out)
    assert code == EXIT_VIOLATIONS
    assert {"outcome", "allowed", "zone", "mode", "policy_version", "findings", "inputs", "task"} <= set(data)
    assert (data["outcome"], data["allowed"]) == ("deny", False)
    assert (data["zone"], data["mode"]) == ("ai_training", "enforce")
    assert data["policy_version"] == load_policy(EXAMPLE_POLICY).version
    findings = {finding["input"]: finding for finding in data["findings"]}
    assert set(findings) == {RAW_PURCHASES, "warehouse.unknown.table"}
    assert findings[RAW_PURCHASES]["rules"] == [Rule.CONSENT_MISSING.value, Rule.NOT_AGGREGATED.value]
    assert findings["warehouse.unknown.table"]["rule"] == Rule.UNLABELED_INPUT.value
    assert all(finding["reason"] and finding["remediation"] for finding in data["findings"])
    inputs = {item["input"]: item for item in data["inputs"]}
    assert inputs[RAW_PURCHASES]["labels"]["consented"] == ["ads_optimization"]
    assert inputs[CONSENTED_DAILY]["labels"] == {
        "categories": ["purchase_events"],
        "consented": ["ai_training"],
        "aggregated": True,
        "origins": [],
        "reclassified_by": [],
    }
    assert inputs["warehouse.unknown.table"] == {
        "input": "warehouse.unknown.table",
        "namespace": "table",
        "labels": None,
    }


def test_explain_shows_the_exemption_that_waived_a_finding(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "content_recommendations",
        "--dag-id",
        "recs_holiday_backfill",
        "--input",
        "s3://lake/raw/ad_clicks/2025-12",
    )

    assert code == EXIT_OK
    assert "outcome: exempted" in out
    assert "exempted by PRIV-1042" in out


def test_explain_expired_exemption_no_longer_waives_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "expired.yaml"
    policy.write_text(
        EXAMPLE_POLICY.read_text(encoding="utf-8").replace("expires: 2030-12-31", "expires: 2020-01-31"),
        encoding="utf-8",
    )

    code, out, err = run(
        capsys,
        "explain",
        str(policy),
        "--zone",
        "content_recommendations",
        "--dag-id",
        "recs_holiday_backfill",
        "--input",
        "s3://lake/raw/ad_clicks/2025-12",
    )

    assert code == EXIT_VIOLATIONS
    assert "outcome: DENY" in out and "exempted by" not in out
    assert "warning" in err and "PRIV-1042" in err


def test_explain_dry_run_zone_runs_the_task(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        POLICY,
        "--zone",
        "marketing_analytics",
        "--dag-id",
        "marketing_attribution",
        "--input",
        RAW_PURCHASES,
        "--json",
    )

    data = json.loads(out)
    assert code == EXIT_OK
    assert (data["outcome"], data["allowed"], data["mode"]) == ("dry_run", True, "dry_run")


def test_explain_membership_uses_dag_id_tags_and_owners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "members.yaml"
    policy.write_text(
        textwrap.dedent(
            """\
            categories: {ad_clicks: {}}
            catalog:
              - uri: "s3://lake/raw/ad_clicks/**"
                categories: [ad_clicks]
            zones:
              ads:
                purpose: ads
                allowed_categories: [ad_clicks]
                members: {tags: [team-ads], owners: [ads-oncall], files: ["ads/*.py"]}
            """
        ),
        encoding="utf-8",
    )
    base = [
        "explain",
        str(policy),
        "--zone",
        "ads",
        "--dag-id",
        "random_dag",
        "--input",
        "s3://lake/raw/ad_clicks/x",
    ]

    denied, out, _ = run(capsys, *base)
    assert denied == EXIT_VIOLATIONS
    assert "zone_membership" in out
    assert run(capsys, *base, "--tag", "team-ads")[0] == EXIT_OK
    assert run(capsys, *base, "--owner", "ads-oncall")[0] == EXIT_OK
    assert run(capsys, *base, "--dag-file", "ads/daily.py")[0] == EXIT_OK


def test_explain_unknown_zone_is_denied(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", POLICY, "--zone", "nope", "--dag-id", "ads_x")

    assert code == EXIT_VIOLATIONS
    assert "unknown_zone" in out
    assert "mode:    -" in out


def test_explain_invalid_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "broken.yaml"
    policy.write_text("zones: [\n", encoding="utf-8")

    code, out, err = run(capsys, "explain", str(policy), "--zone", "ads", "--dag-id", "ads_x")

    assert code == EXIT_USAGE
    assert out == ""
    assert f"{policy}:" in err and "invalid YAML" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["explain", POLICY, "--dag-id", "ads_x"],  # --zone is required
        ["explain", POLICY, "--zone", "ads_optimization"],  # --dag-id is required
        ["frobnicate"],
        [],
        ["check", POLICY, "dags", "--format", "xml"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *argv)

    assert code == EXIT_USAGE
    assert "usage: policyzones" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")

    assert code == EXIT_OK
    assert "validate" in out and "explain" in out and "check" in out


def test_validate_and_explain_of_a_table_only_policy_do_not_import_airflow(tmp_path: Path) -> None:
    """Airflow is imported only to normalize catalog uri patterns (it takes seconds to import)."""
    policy = tmp_path / "tables.yaml"
    policy.write_text(
        textwrap.dedent(
            """
            version: 1
            categories: {purchase_events: {}}
            catalog:
              - {table: "warehouse.raw.purchases", categories: [purchase_events]}
            zones:
              ads: {purpose: ads, allowed_categories: [purchase_events], members: {dag_ids: ["*"]}}
            """
        ),
        encoding="utf-8",
    )
    script = textwrap.dedent(
        f"""
        import sys
        from airflow_policyzones.cli.main import main
        assert main(["validate", {str(policy)!r}]) == 0
        assert main(["explain", {str(policy)!r}, "--zone", "ads", "--dag-id", "d",
                     "--table", "warehouse.raw.purchases"]) == 0
        loaded = sorted(name for name in sys.modules if name == "airflow" or name.startswith("airflow."))
        assert not loaded, loaded
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr


def test_validate_and_explain_work_without_airflow_and_say_uris_are_matched_as_written(
    tmp_path: Path,
) -> None:
    """They run where Airflow is absent (a policy repository's CI): uri patterns are then not normalized."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["airflow"] = None  # as if Airflow were not installed: any import of it fails
        from airflow_policyzones.cli.main import main
        assert main(["validate", {POLICY!r}]) == 0
        assert main(["explain", {POLICY!r}, "--zone", "ai_training", "--dag-id", "ai_x",
                     "--input", {RAW_PURCHASES!r}, "--json"]) == 1
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.count("note: Airflow is not installed here") == 2, completed.stderr


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLE_POLICY, policy)

    completed = subprocess.run(
        [sys.executable, "-m", "airflow_policyzones", "validate", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == EXIT_OK, completed.stderr
    assert "is valid" in completed.stdout


def test_validate_against_prints_the_semantic_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(EXAMPLE_POLICY.read_text().replace("aggregated_only: true", "aggregated_only: false"))
    code = main(["validate", str(new), "--against", str(EXAMPLE_POLICY), "--no-simulate"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "is valid" in out.splitlines()[0]
    assert f"Changes from {EXAMPLE_POLICY} (" in out
    assert "zones (1 changed):\n  ~ zones ai_training: aggregated_only: true -> false\n" in out

    assert main(["validate", str(new), "--against", str(new)]) == EXIT_OK
    assert out != (same := capsys.readouterr().out) and same.endswith("no semantic changes\n")

    assert (
        main(["validate", str(new), "--against", str(EXAMPLE_POLICY), "--format", "json", "--no-simulate"])
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["counts"] == {"zones": {"added": 0, "removed": 0, "changed": 1}}
    assert payload["changes"][0]["fields"] == [{"field": "aggregated_only", "before": True, "after": False}]


def test_validate_against_reports_connections_variables_and_their_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(
        EXAMPLE_POLICY.read_text().replace(
            "\nconnections:\n", '\nconnections:\n  warehouse_raw:\n    catalog: ["warehouse.raw.purchases"]\n'
        )
        + '\nvariables:\n  "ads_*":\n    zones: [ads_optimization]\n'
    )
    new = tmp_path / "new.yaml"
    new.write_text(
        old.read_text()
        .replace("  require_zone: false\n", "  require_zone: false\n  unlisted_connections: deny\n")
        .replace("    zones: [ads_optimization]\n", "    zones: [ads_optimization, marketing_analytics]\n")
        .replace(
            '  warehouse_raw:\n    catalog: ["warehouse.raw.purchases"]\n',
            '  "lake_*":\n    categories: [watch_history]\n',
        )
    )
    assert "unlisted_connections: deny" in new.read_text()

    code = main(["validate", str(new), "--against", str(old), "--no-simulate"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert (
        "settings (1 changed):\n  ~ settings unlisted_connections: unlisted_connections: 'allow' -> 'deny'\n"
        in out
    )
    assert "connections (1 added, 1 removed):\n  - connections warehouse_raw\n  + connections lake_*\n" in out
    assert "variables (1 changed):\n  ~ variables ads_*: zones: +marketing_analytics\n" in out

    assert main(["validate", str(new), "--against", str(old), "--format", "json", "--no-simulate"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["counts"] == {
        "settings": {"added": 0, "removed": 0, "changed": 1},
        "connections": {"added": 1, "removed": 1, "changed": 0},
        "variables": {"added": 0, "removed": 0, "changed": 1},
    }


def test_validate_against_an_invalid_old_policy_exits_2_with_the_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("version: 1\nzones:\n  ads: [\n")
    assert main(["validate", str(EXAMPLE_POLICY), "--against", str(old)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{old}:4:1: error: invalid YAML" in err and "fix:" in err
    assert "Traceback" not in err


def test_explain_a_connection_says_whether_the_api_server_serves_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["explain", str(EXAMPLE_POLICY), "--dag-id", "recs_purchase_warehouse", "--json"]
    assert main([*argv, "--zone", "content_recommendations", "--connection", "purchases_warehouse"]) == 1
    refused = json.loads(capsys.readouterr().out)
    [finding] = refused["findings"]
    assert (refused["outcome"], finding["input"], finding["rules"]) == (
        "deny",
        "connection:purchases_warehouse",
        ["connection_not_allowed", "category_not_allowed"],
    )
    ads = ["explain", str(EXAMPLE_POLICY), "--dag-id", "ads_optimization_daily", "--json"]
    assert main([*ads, "--zone", "ads_optimization", "--connection", "purchases_warehouse"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "allow"
    # Not listed: served to every zone (settings.unlisted_variables defaults to allow).
    assert main([*argv, "--zone", "content_recommendations", "--variable", "anything"]) == 0
    capsys.readouterr()
    # A credential or inputs, not both: a usage error that says so.
    assert main([*argv, "--zone", "ads_optimization", "--connection", "x", "--table", "t"]) == 2
    assert "not both" in capsys.readouterr().err
