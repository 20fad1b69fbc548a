"""``policyzones check``: real DAG files parsed by Airflow's DagBag, decided by the engine."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_policyzones.cli.check import _import_failure, dag_line, task_line
from airflow_policyzones.cli.main import EXIT_OK, EXIT_USAGE, EXIT_VIOLATIONS, main
from airflow_policyzones.cli.sarif import EXTRA_RULES
from airflow_policyzones.policy import Rule, load_policy
from airflow_policyzones.policy.vocabulary import RULE_DESCRIPTIONS

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "dags_examples"
POLICY = str(EXAMPLES / "policy.yaml")
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "cli_dags"

EXAMPLE_NON_ALLOW = {
    ("recs_content_ranking", "rank_from_purchases"): "deny",
    ("ai_training_recsys", "train_on_raw_purchases"): "deny",
    ("marketing_attribution", "attribute_campaigns"): "dry_run",
    # derived assets: denied through the flow analysis (tests/unit/cli/test_check_flows.py)
    ("ai_training_features", "train_on_bid_features"): "deny",
    ("recs_spend_ranking", "rank_by_spend_segments"): "deny",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, needle: str) -> int:
    """The line the test expects, found independently of the code under test."""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def by_task(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(task["dag_id"], task["task_id"]): task for task in report["tasks"]}


# --- the example DAGs ---------------------------------------------------------------------------


@pytest.mark.integration
def test_check_examples_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", POLICY, str(EXAMPLES), "--format", "json")

    report = json.loads(out)
    tasks = by_task(report)
    assert code == EXIT_VIOLATIONS
    assert (report["format"], report["format_version"]) == ("policyzones-check", 1)
    assert report["ok"] is False and report["exit_code"] == 1
    assert report["policy"]["version"] == load_policy(POLICY).version
    non_allow = {key: task["outcome"] for key, task in tasks.items() if task["outcome"] != "allow"}
    assert non_allow == EXAMPLE_NON_ALLOW
    assert {
        ("ads_optimization_daily", "build_bid_features"),
        ("recs_content_ranking", "rank_from_watch_history"),
        ("ai_training_recsys", "train_on_consented_aggregates"),
        ("purchases_reclassify", "aggregate_consented"),
    } <= set(tasks)
    summary = report["summary"]
    assert summary["tasks"] == len(tasks) >= 7
    assert (summary["deny"], summary["dry_run"], summary["exempted"]) == (4, 1, 0)
    assert summary["allow"] == len(tasks) - 5
    assert (summary["import_errors"], summary["dag_problems"], summary["not_checked"]) == (0, 0, 0)
    assert report["import_errors"] == [] and report["dag_problems"] == []

    recs = tasks[("recs_content_ranking", "rank_from_purchases")]
    assert recs["file"] == "content_recommendations.py"
    assert (recs["zone"], recs["zone_origin"]) == ("content_recommendations", "dag")
    assert recs["decision"]["findings"][0]["rule"] == "category_not_allowed"
    categories = [item["labels"]["categories"] for item in recs["inputs"]]
    assert categories == [["watch_history"], ["purchase_events"]]
    training = tasks[("ai_training_recsys", "train_on_raw_purchases")]
    assert (training["zone"], training["zone_origin"]) == ("ai_training", "task")
    assert training["decision"]["findings"][0]["rules"] == ["consent_missing", "not_aggregated"]
    assert tasks[("marketing_attribution", "attribute_campaigns")]["decision"]["mode"] == "dry_run"


@pytest.mark.integration
def test_check_examples_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", POLICY, str(EXAMPLES))

    assert code == EXIT_VIOLATIONS
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("DAG "))
    assert lines[header].split() == ["DAG", "TASK", "ZONE", "OUTCOME", "RULES"]
    rows: dict[tuple[str, str], list[str]] = {}
    for line in lines[header + 2 :]:
        if not line:
            break
        cells = re.split(r"\s{2,}", line)
        rows[(cells[0], cells[1])] = cells
    outcomes = {key: cells[3] for key, cells in rows.items()}
    assert {key: value for key, value in outcomes.items() if value != "allow"} == {
        ("recs_content_ranking", "rank_from_purchases"): "DENY",
        ("ai_training_recsys", "train_on_raw_purchases"): "DENY",
        ("marketing_attribution", "attribute_campaigns"): "dry-run",
        ("ai_training_features", "train_on_bid_features"): "DENY",
        ("recs_spend_ranking", "rank_by_spend_segments"): "DENY",
    }
    assert rows[("recs_content_ranking", "rank_from_purchases")][2] == "content_recommendations (dag tag)"
    assert rows[("recs_content_ranking", "rank_from_purchases")][4] == "category_not_allowed"
    assert rows[("ai_training_recsys", "train_on_raw_purchases")][2] == "ai_training (task)"
    assert rows[("ai_training_recsys", "train_on_raw_purchases")][4] == "consent_missing, not_aggregated"

    details = out[out.index("Decisions that are not 'allow':") :]
    recs_line = line_of(EXAMPLES / "content_recommendations.py", "def rank_from_purchases(")
    assert (
        f"DENY  recs_content_ranking.rank_from_purchases  (zone content_recommendations, mode enforce)  "
        f"content_recommendations.py:{recs_line}" in details
    )
    assert "reason: s3://lake/raw/purchases/daily carries category 'purchase_events'" in details
    assert "fix:    add 'purchase_events' to zones.content_recommendations.allowed_categories" in details
    assert "dry-run  marketing_attribution.attribute_campaigns" in details
    assert "rank_from_watch_history" not in details

    total = len(rows)
    assert lines[-1] == (
        f"{total} tasks: {total - 5} allowed, 4 denied, 1 dry-run, 0 exempted; 0 import errors -> FAILED"
    )


@pytest.mark.integration
def test_check_examples_sarif(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # as CI runs it: from the repository root
    code, out, _ = run(capsys, "check", POLICY, str(EXAMPLES), "--format", "sarif")

    sarif = json.loads(out)
    assert code == EXIT_VIOLATIONS
    assert sarif["version"] == "2.1.0"
    assert "sarif-2.1.0" in sarif["$schema"]
    (sarif_run,) = sarif["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [rule.value for rule in Rule] + list(EXTRA_RULES)
    assert all(rule["shortDescription"]["text"] for rule in rules)
    base = sarif_run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == EXAMPLES.parent.resolve().as_uri() + "/"

    got = set()
    for result in sarif_run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert result["message"]["text"]
        assert result["partialFingerprints"]["policyzones/v1"]
        got.add(
            (
                result["ruleId"],
                result["level"],
                physical["artifactLocation"]["uri"],
                physical["region"]["startLine"],
                location["logicalLocations"][0]["fullyQualifiedName"],
            )
        )
    assert got == {
        (
            "consent_missing",
            "error",
            "dags_examples/ai_training.py",
            line_of(EXAMPLES / "ai_training.py", 'task_id="train_on_raw_purchases"'),
            "ai_training_recsys.train_on_raw_purchases",
        ),
        (
            "category_not_allowed",
            "error",
            "dags_examples/content_recommendations.py",
            line_of(EXAMPLES / "content_recommendations.py", "def rank_from_purchases("),
            "recs_content_ranking.rank_from_purchases",
        ),
        (
            "category_not_allowed",
            "warning",
            "dags_examples/marketing_attribution.py",
            line_of(EXAMPLES / "marketing_attribution.py", "def attribute_campaigns("),
            "marketing_attribution.attribute_campaigns",
        ),
        (
            "category_not_allowed",
            "error",
            "dags_examples/ai_training_features.py",
            line_of(EXAMPLES / "ai_training_features.py", "def train_on_bid_features("),
            "ai_training_features.train_on_bid_features",
        ),
        (
            "category_not_allowed",
            "error",
            "dags_examples/recs_spend_ranking.py",
            line_of(EXAMPLES / "recs_spend_ranking.py", "def rank_by_spend_segments("),
            "recs_spend_ranking.rank_by_spend_segments",
        ),
    }
    assert len(sarif_run["results"]) == 5
    training = next(r for r in sarif_run["results"] if r["ruleId"] == "consent_missing")
    assert training["properties"]["rules"] == ["consent_missing", "not_aggregated"]
    assert "[dry run" in next(r for r in sarif_run["results"] if r["level"] == "warning")["message"]["text"]


@pytest.mark.integration
def test_sarif_paths_fall_back_to_the_dag_folder_outside_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, out, _ = run(capsys, "check", POLICY, str(EXAMPLES), "--format", "sarif")

    (sarif_run,) = json.loads(out)["runs"]
    assert sarif_run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == EXAMPLES.resolve().as_uri() + "/"
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif_run["results"]}
    assert uris == {
        "ai_training.py",
        "content_recommendations.py",
        "marketing_attribution.py",
        "ai_training_features.py",
        "recs_spend_ranking.py",
    }


@pytest.mark.integration
def test_check_writes_the_report_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.sarif"

    code, out, err = run(capsys, "check", POLICY, str(EXAMPLES), "--format", "sarif", "--output", str(target))

    assert code == EXIT_VIOLATIONS
    assert out == ""
    assert json.loads(target.read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert "4 denied, 1 dry-run" in err and str(target) in err


@pytest.mark.integration
def test_all_allowed_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # evidence.py: the helper the example DAGs import (a DAG folder is on sys.path when parsed).
    for name in ("ads_optimization.py", "purchases_reclassify.py", "evidence.py"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"), encoding="utf-8")

    code, out, _ = run(capsys, "check", POLICY, str(tmp_path), "--format", "json")

    report = json.loads(out)
    assert code == EXIT_OK
    assert report["ok"] is True
    assert {task["outcome"] for task in report["tasks"]} == {"allow"}
    assert report["summary"]["tasks"] == 2


# --- the fixture DAGs: import errors, uncheckable inlets, mapped tasks, bad annotations ---------


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    target = tmp_path_factory.mktemp("report") / "report.json"
    code = main(["check", POLICY, str(FIXTURES), "--format", "json", "--output", str(target)])
    return code, json.loads(target.read_text(encoding="utf-8"))


@pytest.mark.integration
def test_fixture_import_error_is_reported_and_fails(fixture_report: tuple[int, dict[str, Any]]) -> None:
    code, report = fixture_report

    assert code == EXIT_VIOLATIONS
    failures = {failure["file"]: failure for failure in report["import_errors"]}
    assert "lake_uris.py" not in failures  # a helper module, imported by mapped.py from the DAG folder
    broken = failures["broken_import.py"]
    assert broken["line"] == line_of(FIXTURES / "broken_import.py", "raise RuntimeError")
    assert broken["message"] == "RuntimeError: lake credentials missing at parse time"
    assert "lake credentials missing" in broken["detail"]
    assert report["summary"]["import_errors"] >= 1


@pytest.mark.integration
def test_fixture_non_asset_inlet_is_uncheckable(fixture_report: tuple[int, dict[str, Any]]) -> None:
    task = by_task(fixture_report[1])[("ads_string_inlet", "read_string_inlet")]

    assert task["outcome"] == "deny"
    assert [finding["rule"] for finding in task["decision"]["findings"]] == ["uncheckable_input"]
    assert task["inputs"] == []
    assert len(task["uncheckable"]) == 1 and "is not an Asset" in task["uncheckable"][0]


@pytest.mark.integration
def test_fixture_mapped_tasks_are_checked(fixture_report: tuple[int, dict[str, Any]]) -> None:
    tasks = by_task(fixture_report[1])
    rank = tasks[("recs_mapped", "rank_shard")]
    score = tasks[("recs_mapped", "score_shard")]

    assert rank["mapped"] is True and score["mapped"] is True
    assert rank["outcome"] == "deny"
    assert rank["decision"]["findings"][0]["rule"] == "category_not_allowed"
    assert rank["line"] == line_of(FIXTURES / "mapped.py", "def rank_shard(")
    assert score["outcome"] == "allow"


@pytest.mark.integration
def test_fixture_two_zone_tags_is_a_problem_for_the_dag(fixture_report: tuple[int, dict[str, Any]]) -> None:
    _, report = fixture_report
    problems = [problem for problem in report["dag_problems"] if problem["dag_id"] == "ads_two_zones"]
    if not problems:
        # With the provider's cluster policy installed, Airflow itself rejects the DAG at parse time.
        failure = next(f for f in report["import_errors"] if f["file"] == "two_zone_tags.py")
        assert "several zone tags" in failure["detail"]
        return

    (problem,) = problems
    assert "several zone tags" in problem["message"]
    assert problem["file"] == "two_zone_tags.py"
    assert problem["line"] == line_of(FIXTURES / "two_zone_tags.py", 'dag_id="ads_two_zones"')
    assert problem["tasks"] == ["plain"]
    tasks = by_task(report)
    plain = tasks[("ads_two_zones", "plain")]
    assert (plain["outcome"], plain["decision"], plain["zone_origin"]) == (None, None, "error")
    assert "several zone tags" in plain["error"]
    pinned = tasks[("ads_two_zones", "pinned")]  # a task-level zone does not depend on the DAG tags
    assert (pinned["outcome"], pinned["zone"], pinned["zone_origin"]) == ("allow", "ads_optimization", "task")
    assert report["summary"]["not_checked"] == 1 and report["summary"]["dag_problems"] == 1


@pytest.mark.integration
def test_fixture_unknown_zone_is_denied(fixture_report: tuple[int, dict[str, Any]]) -> None:
    tasks = by_task(fixture_report[1])
    if ("ads_unknown_zone", "read_clicks") not in tasks:
        # With the provider's cluster policy installed, an unknown zone may be rejected at parse time.
        failure = next(f for f in fixture_report[1]["import_errors"] if f["file"] == "unknown_zone.py")
        assert "no_such_zone" in failure["detail"]
        return
    task = tasks[("ads_unknown_zone", "read_clicks")]

    assert task["outcome"] == "deny"
    assert task["zone"] == "no_such_zone"
    assert task["decision"]["findings"][0]["rule"] == "unknown_zone"


@pytest.mark.integration
def test_fixture_exemption_is_counted_and_not_a_sarif_result(
    fixture_report: tuple[int, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(FIXTURES)  # SARIF paths relative to the DAG folder
    task = by_task(fixture_report[1])[("recs_holiday_backfill", "backfill_clicks")]
    assert task["outcome"] == "exempted"
    assert task["decision"]["findings"][0]["exemption"] == "PRIV-1042"
    assert fixture_report[1]["summary"]["exempted"] == 1

    code, out, _ = run(capsys, "check", POLICY, str(FIXTURES), "--format", "sarif")
    results = json.loads(out)["runs"][0]["results"]

    assert code == EXIT_VIOLATIONS
    keys = {
        (result["ruleId"], result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for result in results
    }
    assert ("category_not_allowed", "holiday_backfill.py") not in keys
    assert ("uncheckable_input", "non_asset_inlet.py") in keys
    assert ("category_not_allowed", "mapped.py") in keys
    broken = next(result for result in results if result["ruleId"] == "dag_import_error")
    assert broken["level"] == "error"
    physical = broken["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "broken_import.py"
    assert physical["region"]["startLine"] == line_of(FIXTURES / "broken_import.py", "raise RuntimeError")
    if fixture_report[1]["dag_problems"]:
        annotation = next(result for result in results if result["ruleId"] == "zone_annotation_error")
        assert annotation["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "two_zone_tags.py"


@pytest.mark.integration
def test_fixture_text_lists_problems_and_import_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", POLICY, str(FIXTURES))

    assert code == EXIT_VIOLATIONS
    broken_line = line_of(FIXTURES / "broken_import.py", "raise RuntimeError")
    assert "DAG import errors" in out
    assert f"broken_import.py:{broken_line}  RuntimeError: lake credentials missing at parse time" in out
    assert "rank_shard [mapped]" in out
    assert "exempted by PRIV-1042" in out
    assert re.search(r"1 exempted.*; \d+ import errors?", out.splitlines()[-1])
    assert out.splitlines()[-1].endswith("-> FAILED")


# --- usage errors -------------------------------------------------------------------------------


def test_check_missing_dag_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", POLICY, str(tmp_path / "nowhere"))

    assert code == EXIT_USAGE
    assert out == ""
    assert "not found" in err and "Traceback" not in err


def test_check_dag_folder_that_is_a_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", POLICY, POLICY)

    assert code == EXIT_USAGE
    assert "not a directory" in err


def test_check_invalid_policy_exits_2_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("zones:\n  ads:\n    purpose: ads\n    colour: blue\n", encoding="utf-8")

    code, out, err = run(capsys, "check", str(policy), str(EXAMPLES), "--format", "json")

    assert code == EXIT_USAGE
    assert out == ""
    assert f"{policy}:4" in err and "unknown field 'colour'" in err


# --- progress, noise, console script ------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.integration
def test_progress_on_a_terminal_and_stdout_stays_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(12):
        (tmp_path / f"ads_gen_{number:02}.py").write_text(
            textwrap.dedent(
                f"""\
                import pendulum
                from airflow.sdk import DAG
                from airflow.providers.standard.operators.empty import EmptyOperator
                from airflow_policyzones import zone_tag

                print("chatty DAG file {number}")  # must not end up in the JSON on stdout
                with DAG("ads_gen_{number:02}", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
                         tags=[zone_tag("ads_optimization")]):
                    EmptyOperator(task_id="noop")
                """
            ),
            encoding="utf-8",
        )
    (tmp_path / "zz_broken.py").write_text("from airflow.sdk import DAG\n1 / 0\n", encoding="utf-8")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    code = main(["check", POLICY, str(tmp_path), "--format", "json"])
    out = capsys.readouterr().out

    report = json.loads(out)  # neither Airflow's parse logging nor the DAGs' prints reach stdout
    assert code == EXIT_VIOLATIONS
    assert report["summary"]["tasks"] == 12 and report["summary"]["allow"] == 12
    assert report["import_errors"][0]["message"] == "ZeroDivisionError: division by zero"
    assert report["import_errors"][0]["line"] == 2
    assert "parsing DAG files" in terminal.getvalue()


@pytest.mark.integration
def test_console_script_checks_examples_without_a_metadata_db(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("policyzones")
    assert script.exists(), "the console script is declared in pyproject.toml: reinstall the package"
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    completed = subprocess.run(
        [str(script), "check", POLICY, str(EXAMPLES), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )

    assert completed.returncode == EXIT_VIOLATIONS, completed.stderr
    report = json.loads(completed.stdout)
    non_allow = {
        (task["dag_id"], task["task_id"]): task["outcome"]
        for task in report["tasks"]
        if task["outcome"] != "allow"
    }
    assert non_allow == EXAMPLE_NON_ALLOW
    assert "Traceback" not in completed.stderr
    assert not list(home.rglob("*.db")), "the check must not create or touch a metadata database"


# --- pure helpers -------------------------------------------------------------------------------


def test_every_engine_rule_has_a_sarif_description() -> None:
    assert set(RULE_DESCRIPTIONS) == {rule.value for rule in Rule}
    assert not set(RULE_DESCRIPTIONS) & set(EXTRA_RULES)


def test_task_line_heuristics() -> None:
    source = textwrap.dedent(
        """\
        with DAG(dag_id="d"):
            @task
            def extract():
                ...
            @task(task_id="custom")
            def ignored_name():
                ...
            PythonOperator(
                task_id='load',
            )
            with TaskGroup("grp"):
                transform = make("transform")
        """
    ).splitlines()

    assert task_line(source, task_id="extract") == 3
    assert task_line(source, task_id="extract__2") == 3  # a second call of the same @task function
    assert task_line(source, task_id="custom") == 5
    assert task_line(source, task_id="load") == 9
    assert task_line(source, task_id="grp.transform", label="transform") == 12
    assert task_line(source, task_id="nowhere") == 1
    assert dag_line(source, dag_id="d") == 1
    assert dag_line(["", "@dag(schedule=None)", "def etl():"], dag_id="etl") == 3


def test_import_failure_is_located_from_the_traceback_or_the_message(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text("import airflow\n\n\nboom()\n", encoding="utf-8")
    traceback = (
        "Traceback (most recent call last):\n"
        f'  File "{tmp_path / "x.py"}", line 4, in <module>\n'
        "    boom()\n"
        "NameError: name 'boom' is not defined\n"
    )

    located = _import_failure("x.py", traceback, tmp_path)
    assert (located.file, located.line) == ("x.py", 4)
    assert located.message == "NameError: name 'boom' is not defined"
    short = _import_failure("x.py", "invalid syntax (x.py, line 7)", tmp_path)
    assert short.line == 7
    assert _import_failure("x.py", "AirflowDagCycleException: cycle", tmp_path).line == 1
