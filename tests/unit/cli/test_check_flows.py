"""``policyzones check`` with the static flow analysis: real DAG files, paths in every format.

The fixture (tests/fixtures/cli_flows) is the issue's example: raw purchases are written in Ads
Optimization, a reclassifier makes consented daily aggregates that AI Training may read, AI Training
reading the raw table directly is blocked, and Content Recommendations reading bid features (two
hops from the raw purchases) is blocked, with the path that produces it.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_policyzones.cli.check import CheckResult, check_dag_folder
from airflow_policyzones.cli.main import EXIT_OK, EXIT_VIOLATIONS, main
from airflow_policyzones.policy import PolicyEngine, TaskContext

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
FLOWS = REPO_ROOT / "tests" / "fixtures" / "cli_flows"
POLICY = str(FLOWS / "policy.yaml")
DAGS = FLOWS / "dags"
EXAMPLES = REPO_ROOT / "dags_examples"

RAW = "s3://lake/raw/purchases/daily"
PURCHASES_RAW = "s3://lake/ads/purchases_raw"
FEATURES = "s3://lake/ads/features"
CONSENTED = "s3://lake/derived/purchases_consented_daily"

PATH_CATEGORY = (
    f"{RAW} (catalog) → {PURCHASES_RAW} (ads_optimization: ads_daily.build_raw) → {FEATURES} "
    f"(ads_daily.aggregate) → recs_ranking.rank reads {FEATURES}"
)
PATH_ORIGIN = (
    f"{PURCHASES_RAW} (ads_optimization: ads_daily.build_raw) → {FEATURES} (ads_daily.aggregate) → "
    f"recs_ranking.rank reads {FEATURES}"
)
EXPECTED = {
    ("ads_daily", "build_raw"): ("allow", []),
    ("ads_daily", "aggregate"): ("allow", []),
    ("purchases_reclassify", "aggregate_consented"): ("allow", []),
    ("ai_training_recsys", "train_on_aggregates"): ("allow", []),
    ("ai_training_recsys", "train_on_raw"): (
        "deny",
        ["consent_missing", "not_aggregated", "unsanctioned_flow"],
    ),
    ("recs_ranking", "rank"): ("deny", ["category_not_allowed", "unsanctioned_flow"]),
    ("recs_ranking", "summarize"): ("allow", []),
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def line_of(path: Path, needle: str) -> int:
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    target = tmp_path_factory.mktemp("flows") / "report.json"
    code = main(["check", POLICY, str(DAGS), "--format", "json", "--output", str(target)])
    return code, json.loads(target.read_text(encoding="utf-8"))


def tasks_of(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(task["dag_id"], task["task_id"]): task for task in data["tasks"]}


# --- JSON ---------------------------------------------------------------------------------------


def test_json_decisions_come_from_the_flows(report: tuple[int, dict[str, Any]]) -> None:
    code, data = report
    tasks = tasks_of(data)

    assert code == EXIT_VIOLATIONS
    assert {
        key: (task["outcome"], [rule for f in task["decision"]["findings"] for rule in f["rules"]])
        for key, task in tasks.items()
    } == EXPECTED
    summary = data["summary"]
    assert (summary["tasks"], summary["allow"], summary["deny"], summary["flow_warnings"]) == (7, 5, 2, 1)
    # derived assets carry propagated labels instead of being unlabeled
    train = tasks[("ai_training_recsys", "train_on_raw")]
    assert train["inputs"] == [
        {
            "input": PURCHASES_RAW,
            "namespace": "asset",
            "labels": {
                "categories": ["purchase_events"],
                "consented": ["ads_optimization"],
                "aggregated": False,
                "origins": ["ads_optimization"],
                "reclassified_by": [],
            },
            "propagated": {
                "categories": ["purchase_events"],
                "consented": ["ads_optimization"],
                "aggregated": False,
                "origins": ["ads_optimization"],
                "reclassified_by": [],
            },
        }
    ]
    reclassifier = tasks[("purchases_reclassify", "aggregate_consented")]
    assert reclassifier["reclassifier"] == "purchases_consented_daily"
    assert reclassifier["outputs"] == [{"output": CONSENTED, "namespace": "asset"}]
    allowed = tasks[("ai_training_recsys", "train_on_aggregates")]
    assert allowed["inputs"][0]["labels"] == {
        "categories": ["purchase_events"],
        "consented": ["ai_training"],
        "aggregated": True,
        "origins": ["ads_optimization"],
        "reclassified_by": ["purchases_consented_daily"],
    }
    # a task whose inputs nobody in the folder writes keeps its catalog labels
    assert tasks[("ads_daily", "build_raw")]["inputs"][0]["propagated"] is None


def test_json_paths_of_the_two_hop_flow(report: tuple[int, dict[str, Any]]) -> None:
    rank = tasks_of(report[1])[("recs_ranking", "rank")]
    (finding,) = rank["decision"]["findings"]

    assert finding["input"] == FEATURES
    assert [(path["rule"], path["fact"], path["path"]) for path in finding["paths"]] == [
        ("category_not_allowed", "category 'purchase_events'", PATH_CATEGORY),
        ("unsanctioned_flow", "data from zone 'ads_optimization'", PATH_ORIGIN),
    ]
    assert [
        (step["asset"], step["kind"], step["task"], step["zone"]) for step in finding["paths"][0]["steps"]
    ] == [
        (RAW, "catalog", None, None),
        (PURCHASES_RAW, "propagated", "ads_daily.build_raw", "ads_optimization"),
        (FEATURES, "propagated", "ads_daily.aggregate", "ads_optimization"),
    ]


def test_json_flow_warning(report: tuple[int, dict[str, Any]]) -> None:
    assert report[1]["flow_warnings"] == [
        {
            "kind": "written_by_several_zones",
            "message": (
                "s3://lake/shared/daily_summary is written in zones 'ads_optimization', "
                "'content_recommendations' (by ads_daily.aggregate, recs_ranking.summarize): it carries the "
                "union of their labels, so every reader must be allowed to read what each of them writes"
            ),
            "remediation": "write one asset per zone, or move the writers into one zone",
            "asset": "s3://lake/shared/daily_summary",
            "tasks": ["ads_daily.aggregate", "recs_ranking.summarize"],
            "zones": ["ads_optimization", "content_recommendations"],
        }
    ]


# --- text ---------------------------------------------------------------------------------------


def test_text_shows_the_path_as_indented_lines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", POLICY, str(DAGS))

    assert code == EXIT_VIOLATIONS
    rank_line = line_of(DAGS / "recs_ranking.py", "def rank(")
    block = out[out.index("DENY  recs_ranking.rank") :]
    block = block[: block.index("\n\n")]
    assert block.splitlines() == [
        f"DENY  recs_ranking.rank  (zone content_recommendations, mode enforce)  recs_ranking.py:{rank_line}",
        f"  - category_not_allowed, unsanctioned_flow on {FEATURES}",
        f"    reason: {FEATURES} carries category 'purchase_events' that zone 'content_recommendations' does "
        f"not allow; {FEATURES} carries data from zone 'ads_optimization', and ads_optimization → "
        "content_recommendations is not sanctioned",
        "    fix:    add 'purchase_events' to zones.content_recommendations.allowed_categories if this "
        "purpose may use it, or read a reclassified version of the data; declare the flow (flows: [{from: "
        "ads_optimization, to: content_recommendations, via: [RECLASSIFIER]}]) or add 'ads_optimization' to "
        "zones.content_recommendations.inflows",
        "    path of category 'purchase_events':",
        f"        {RAW} (catalog)",
        f"      → {PURCHASES_RAW} (ads_optimization: ads_daily.build_raw)",
        f"      → {FEATURES} (ads_daily.aggregate)",
        f"      → recs_ranking.rank reads {FEATURES}",
        "    path of data from zone 'ads_optimization':",
        f"        {PURCHASES_RAW} (ads_optimization: ads_daily.build_raw)",
        f"      → {FEATURES} (ads_daily.aggregate)",
        f"      → recs_ranking.rank reads {FEATURES}",
    ]
    assert "DENY  ai_training_recsys.train_on_raw" in out
    assert "    path of user-level rows:" in out
    warnings = out[out.index("Flow warnings") :].splitlines()
    assert warnings[1].startswith(
        "  written_by_several_zones  s3://lake/shared/daily_summary is written in zones"
    )
    assert warnings[2] == "    fix: write one asset per zone, or move the writers into one zone"
    assert warnings[3:5] == [
        f"    ads_daily.aggregate  ads_daily.py:{line_of(DAGS / 'ads_daily.py', 'def aggregate(')}",
        f"    recs_ranking.summarize  recs_ranking.py:{line_of(DAGS / 'recs_ranking.py', 'def summarize(')}",
    ]
    assert out.splitlines()[-1] == (
        "7 tasks: 5 allowed, 2 denied, 0 dry-run, 0 exempted; 0 import errors, 1 flow warning -> FAILED"
    )


# --- SARIF --------------------------------------------------------------------------------------


def test_sarif_path_in_message_related_locations_and_code_flows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(DAGS)
    code, out, _ = run(capsys, "check", POLICY, str(DAGS), "--format", "sarif")

    assert code == EXIT_VIOLATIONS
    (sarif_run,) = json.loads(out)["runs"]
    results = sarif_run["results"]
    assert [(r["ruleId"], r["level"], r["properties"].get("dag_id")) for r in results] == [
        ("consent_missing", "error", "ai_training_recsys"),
        ("category_not_allowed", "error", "recs_ranking"),
        ("written_by_several_zones", "warning", None),
    ]
    rank = results[1]
    assert rank["message"]["text"].endswith(
        f"Path of category 'purchase_events': {PATH_CATEGORY}. Path of data from zone 'ads_optimization': "
        f"{PATH_ORIGIN}."
    )
    assert rank["properties"]["paths"] == [PATH_CATEGORY, PATH_ORIGIN]
    build_raw = line_of(DAGS / "ads_daily.py", "def build_raw(")
    aggregate = line_of(DAGS / "ads_daily.py", "def aggregate(")
    rank_line = line_of(DAGS / "recs_ranking.py", "def rank(")

    def where(location: dict[str, Any]) -> tuple[str, int] | None:
        physical = location.get("physicalLocation")
        if physical is None:
            return None
        return physical["artifactLocation"]["uri"], physical["region"]["startLine"]

    assert [(item["id"], where(item), item["message"]["text"]) for item in rank["relatedLocations"]] == [
        (0, ("ads_daily.py", build_raw), f"ads_daily.build_raw writes {PURCHASES_RAW}"),
        (1, ("ads_daily.py", aggregate), f"ads_daily.aggregate writes {FEATURES}"),
    ]
    flows = rank["codeFlows"]
    assert [flow["message"]["text"] for flow in flows] == [
        "category_not_allowed: category 'purchase_events'",
        "unsanctioned_flow: data from zone 'ads_optimization'",
    ]
    steps = [step["location"] for step in flows[0]["threadFlows"][0]["locations"]]
    assert [(where(step), step["message"]["text"]) for step in steps] == [
        (None, f"{RAW} (catalog)"),
        (
            ("ads_daily.py", build_raw),
            f"{PURCHASES_RAW} (propagated: ads_daily.build_raw, zone ads_optimization)",
        ),
        (("ads_daily.py", aggregate), f"{FEATURES} (propagated: ads_daily.aggregate, zone ads_optimization)"),
        (("recs_ranking.py", rank_line), f"recs_ranking.rank reads {FEATURES}"),
    ]
    warning = results[2]
    assert where(warning["locations"][0]) == ("ads_daily.py", aggregate)
    assert where(warning["relatedLocations"][0]) == (
        "recs_ranking.py",
        line_of(DAGS / "recs_ranking.py", "def summarize("),
    )
    rules = {rule["id"]: rule for rule in sarif_run["tool"]["driver"]["rules"]}
    assert rules["written_by_several_zones"]["defaultConfiguration"] == {"level": "warning"}
    assert rules["category_not_allowed"]["defaultConfiguration"] == {"level": "error"}


# --- catalog-only behaviour kept, awkward graphs --------------------------------------------------


def _catalog_only(engine: PolicyEngine, result: CheckResult) -> dict[tuple[str, str], Any]:
    """What the catalog alone decides for every task that reads nothing the folder writes.

    The policies used here select zone members by dag_id only, so the identity needs no tags.
    """
    written = {ref for task in result.tasks for ref in task.outputs}
    expected = {}
    for task in result.tasks:
        if task.decision is None or written & {item.ref for item in task.inputs}:
            continue
        expected[(task.dag_id, task.task_id)] = engine.check(
            task=TaskContext(dag_id=task.dag_id, task_id=task.task_id, dag_file=task.file),
            zone=task.zone,
            inputs=[item.ref for item in task.inputs],
            uncheckable=task.uncheckable,
        )
    return expected


@pytest.mark.parametrize(
    ("policy", "folder"),
    [
        (EXAMPLES / "policy.yaml", EXAMPLES),
        (EXAMPLES / "policy.yaml", REPO_ROOT / "tests" / "fixtures" / "cli_dags"),
        (Path(POLICY), DAGS),
    ],
    ids=["examples", "cli_dags", "cli_flows"],
)
def test_tasks_reading_only_unwritten_inputs_keep_the_catalog_decision(policy: Path, folder: Path) -> None:
    engine = PolicyEngine.from_file(policy)
    result = check_dag_folder(engine=engine, dag_folder=folder)

    expected = _catalog_only(engine, result)
    got = {
        (task.dag_id, task.task_id): task.decision
        for task in result.tasks
        if (task.dag_id, task.task_id) in expected
    }
    assert len(expected) >= 2
    assert got == expected
    assert result.parse_seconds > 0 and result.flow_seconds > 0
    assert result.seconds >= result.parse_seconds + result.flow_seconds


def test_cycles_and_mapped_writers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two ads tasks feed each other (a cycle across DAGs); a mapped task's outlets are followed."""
    (tmp_path / "ads_cycle.py").write_text(
        textwrap.dedent(
            f"""\
            import pendulum
            from airflow.sdk import DAG, Asset, task
            from airflow_policyzones import zone_tag

            with DAG("ads_cycle", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
                     tags=[zone_tag("ads_optimization")]):
                @task(inlets=[Asset("{RAW}"), Asset("s3://lake/ads/b")], outlets=[Asset("s3://lake/ads/a")])
                def left(): ...

                @task(inlets=[Asset("s3://lake/ads/a")], outlets=[Asset("s3://lake/ads/b")])
                def right(shard): ...

                left()
                right.expand(shard=[1, 2])
            """
        ),
        encoding="utf-8",
    )
    (tmp_path / "recs_reader.py").write_text(
        textwrap.dedent(
            """\
            import pendulum
            from airflow.sdk import DAG, Asset, task
            from airflow_policyzones import zone_tag

            with DAG("recs_reader", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
                     tags=[zone_tag("content_recommendations")]):
                @task(inlets=[Asset("s3://lake/ads/b")])
                def read(): ...

                read()
            """
        ),
        encoding="utf-8",
    )

    code, out, _ = run(capsys, "check", POLICY, str(tmp_path), "--format", "json")

    data = json.loads(out)
    tasks = tasks_of(data)
    assert code == EXIT_VIOLATIONS
    assert {key: task["outcome"] for key, task in tasks.items()} == {
        ("ads_cycle", "left"): "allow",
        ("ads_cycle", "right"): "allow",
        ("recs_reader", "read"): "deny",
    }
    assert tasks[("ads_cycle", "right")]["mapped"] is True
    assert tasks[("ads_cycle", "right")]["outputs"] == [{"output": "s3://lake/ads/b", "namespace": "asset"}]
    (finding,) = tasks[("recs_reader", "read")]["decision"]["findings"]
    assert [path["path"] for path in finding["paths"]] == [
        f"{RAW} (catalog) → s3://lake/ads/a (ads_optimization: ads_cycle.left) → s3://lake/ads/b "
        "(ads_cycle.right) → recs_reader.read reads s3://lake/ads/b",
        "s3://lake/ads/a (ads_optimization: ads_cycle.left) → s3://lake/ads/b (ads_cycle.right) → "
        "recs_reader.read reads s3://lake/ads/b",
    ]
    assert data["flow_warnings"] == []


def test_no_flows_no_warnings_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("lake.py", "ads_daily.py", "purchases_reclassify.py"):
        (tmp_path / name).write_text((DAGS / name).read_text(encoding="utf-8"), encoding="utf-8")

    code, out, _ = run(capsys, "check", POLICY, str(tmp_path))

    assert code == EXIT_OK
    assert "Flow warnings" not in out
    assert re.fullmatch(
        r"3 tasks: 3 allowed, 0 denied, 0 dry-run, 0 exempted; 0 import errors -> OK", out.splitlines()[-1]
    )


def test_text_lists_five_paths_per_finding_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_policyzones.cli import report as report_module

    engine = PolicyEngine.from_file(POLICY)
    result = check_dag_folder(engine=engine, dag_folder=DAGS)
    monkeypatch.setattr(report_module, "TEXT_PATHS_PER_FINDING", 1)

    out = report_module.render_text(result)

    block = out[out.index("DENY  recs_ranking.rank") :]
    assert "    path of category 'purchase_events':" in block
    assert "    path of data from zone 'ads_optimization':" not in block
    assert "    ... and 1 more path (--format json lists every one)" in block


def _names(lines: list[str]) -> list[str]:
    words = {word for line in lines for word in re.findall(r"[\w.]+", line)}
    words |= {match for line in lines for match in re.findall(r"""['"]([^'"]*)['"]""", line)}
    return sorted(
        words | {f"{word}__2" for word in list(words)[:50]} | {"grp.transform", 'we"ird', "nowhere"}
    )


@pytest.mark.parametrize(
    "folder",
    [EXAMPLES, REPO_ROOT / "tests" / "fixtures" / "cli_dags", DAGS],
    ids=["examples", "cli_dags", "flows"],
)
def test_the_source_index_finds_the_lines_task_line_finds(folder: Path) -> None:
    from airflow_policyzones.cli.check import SourceIndex, task_line

    sources = [path.read_text(encoding="utf-8").splitlines() for path in sorted(folder.glob("*.py"))]
    sources.append(
        [
            "with DAG(dag_id='d'):",
            "    PythonOperator(task_id='load', other='x')",
            '    op = Op(task_id = "we\\"ird")  # def load(',
            "    @task",
            "    def extract():",
            "    with TaskGroup('grp'):",
            "        transform = make('transform')",
        ]
    )
    for lines in sources:
        index = SourceIndex(lines)
        for name in _names(lines):
            for label in (None, name.rsplit(".", 1)[-1]):
                assert index.task_line(task_id=name, label=label) == task_line(
                    lines, task_id=name, label=label
                ), name
