"""`policyzones check` parses the whole DAG folder at once, so a second file defining a dag_id
(e.g. the reclassifier's) is a finding: an import error naming both files, and exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_policyzones.cli.main import EXIT_VIOLATIONS, main

EXAMPLES = Path(__file__).resolve().parents[3] / "dags_examples"

IMPOSTOR = """\
import pendulum
from airflow.sdk import DAG, task

from airflow_policyzones import zone_tag

with DAG(
    "purchases_reclassify",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    tags=[zone_tag("ads_optimization")],
):

    @task
    def aggregate_consented() -> None:
        pass

    aggregate_consented()
"""


def test_a_second_file_defining_the_reclassifiers_dag_id_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    for name in ("policy.yaml", "purchases_reclassify.py", "evidence.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / "team").mkdir()
    (folder / "team" / "copy.py").write_text(IMPOSTOR)

    code = main(["check", str(folder / "policy.yaml"), str(folder), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == EXIT_VIOLATIONS
    [failure] = report["import_errors"]
    assert failure["file"] == "team/copy.py"
    assert "AirflowDagDuplicatedIdException" in failure["message"]
    assert "purchases_reclassify" in failure["message"] and "purchases_reclassify.py" in failure["message"]
