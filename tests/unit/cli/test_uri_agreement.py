"""``explain``, ``check`` and the run time label one input the same way, whichever way the catalog
pattern and the input spell a postgres URI (Airflow stores ``postgres://db/...`` as
``postgres://db:5432/...``).

Run time is the engine as the api-server gets it (``config.get_engine``) deciding on the URI the
worker sends: the inlet's ``Asset(uri).uri``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset

from airflow_policyzones import config
from airflow_policyzones.cli.main import EXIT_OK, EXIT_VIOLATIONS, main
from airflow_policyzones.policy import InputRef, TaskContext

pytestmark = pytest.mark.integration

PATTERNS = [
    "postgres://db/warehouse/raw/*",
    "postgres://db:5432/warehouse/raw/*",
    "postgresql://db/warehouse/raw/purchases",
    "postgres://db/warehouse/**",
]
INPUTS = {
    # input as written → whether it is the table the patterns name
    "postgres://db/warehouse/raw/purchases": True,
    "postgres://db:5432/warehouse/raw/purchases": True,
    "postgresql://DB/warehouse/raw/purchases/": True,
    "postgres://db:6543/warehouse/raw/purchases": False,  # another server: not this catalog entry
    "postgres://db/warehouse/curated/purchases": None,  # only the '**' pattern names it
}
LABELS = {
    "categories": ["purchase_events"],
    "consented": [],
    "aggregated": False,
    "origins": [],
    "reclassified_by": [],
}


def write_policy(folder: Path, pattern: str) -> Path:
    policy = folder / "policy.yaml"
    policy.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            categories: {{purchase_events: {{}}}}
            catalog:
              - {{uri: "{pattern}", categories: [purchase_events]}}
            zones:
              ads: {{purpose: ads, allowed_categories: [purchase_events], members: {{dag_ids: ["*"]}}}}
            """
        ),
        encoding="utf-8",
    )
    return policy


def write_dags(folder: Path) -> dict[str, str]:
    """One task per input, its inlet the input as written; task id by input."""
    folder.mkdir()
    task_ids = {uri: f"read_{position}" for position, uri in enumerate(INPUTS)}
    tasks = "\n".join(
        f"    PythonOperator(task_id={task_id!r}, python_callable=print, inlets=[Asset({uri!r})])"
        for uri, task_id in task_ids.items()
    )
    (folder / "readers.py").write_text(
        textwrap.dedent(
            """\
            import pendulum
            from airflow.providers.standard.operators.python import PythonOperator
            from airflow.sdk import DAG, Asset

            from airflow_policyzones import zone_tag

            with DAG("readers", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                     tags=[zone_tag("ads")]):
            """
        )
        + tasks
        + "\n",
        encoding="utf-8",
    )
    return task_ids


def expected(pattern: str, uri: str) -> bool:
    matches = INPUTS[uri]
    if matches is None:
        return pattern.endswith("/**")
    return matches


@pytest.mark.parametrize("pattern", PATTERNS)
def test_explain_check_and_run_time_agree_on_both_spellings(
    pattern: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path, pattern)
    task_ids = write_dags(tmp_path / "dags")

    code = main(["check", str(policy), str(tmp_path / "dags"), "--format", "json"])
    out, err = capsys.readouterr()
    assert code in (EXIT_OK, EXIT_VIOLATIONS), err
    assert "warning" not in err, err
    checked = {task["task_id"]: task for task in json.loads(out)["tasks"]}
    engine = config.get_engine(str(policy))

    for uri in INPUTS:
        labelled = expected(pattern, uri)
        outcome = "allow" if labelled else "deny"
        rules = [] if labelled else ["unlabeled_input"]

        code = main(
            ["explain", str(policy), "--zone", "ads", "--dag-id", "readers", "--input", uri, "--json"]
        )
        explained: dict[str, Any] = json.loads(capsys.readouterr().out)
        task = checked[task_ids[uri]]
        run_time = engine.check(
            task=TaskContext(dag_id="readers", task_id=task_ids[uri]),
            zone="ads",
            inputs=[InputRef.asset(Asset(uri).uri)],  # what the worker sends: the inlet's stored URI
        )

        where = f"pattern {pattern!r}, input {uri!r}"
        assert (code == EXIT_OK) is labelled, where
        assert explained["outcome"] == task["outcome"] == run_time.outcome.value == outcome, where
        assert [f["rule"] for f in explained["findings"]] == rules, where
        assert [f["rule"] for f in task["decision"]["findings"]] == rules, where
        assert [finding.rule.value for finding in run_time.findings] == rules, where
        labels = LABELS if labelled else None
        assert explained["inputs"][0]["labels"] == task["inputs"][0]["labels"] == labels, where
        assert explained["inputs"][0]["input"] == task["inputs"][0]["input"], where


def test_validate_names_a_pattern_airflow_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(tmp_path, "postgres://db/warehouse/raw")

    code = main(["validate", str(policy)])
    out, err = capsys.readouterr()

    assert code == EXIT_OK, err
    text = out + err
    assert (
        f"{policy}:4:6: warning in catalog[0].uri: pattern 'postgres://db/warehouse/raw' can never match"
        in text
    )
    assert "must contain database, schema, and table names" in text
    assert "fix: write it in a form Airflow accepts for postgres:// assets" in text
