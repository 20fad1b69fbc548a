"""The pure core imports nothing from Airflow: the CLI and the api-server path rely on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE_POLICY = Path(__file__).resolve().parents[3] / "dags_examples" / "policy.yaml"

PROGRAM = """
import json, sys
from airflow_policyzones.policy import InputRef, Outcome, PolicyEngine, TaskContext, load_policy

engine = PolicyEngine(load_policy(sys.argv[1]))
allowed = engine.check(
    task=TaskContext(dag_id="ads_optimization_daily", task_id="rank"),
    zone="ads_optimization",
    inputs=[InputRef.asset("s3://lake/raw/purchases/x"), InputRef.table("warehouse.raw.purchases")],
)
denied = engine.check(
    task=TaskContext(dag_id="recs_content_ranking", task_id="rank"),
    zone="content_recommendations",
    inputs=[InputRef.asset("s3://lake/raw/purchases/x")],
)
assert allowed.outcome is Outcome.ALLOW, allowed
assert denied.outcome is Outcome.DENY, denied
print(json.dumps(sorted(name for name in sys.modules if name == "airflow" or name.startswith("airflow."))))
"""


def test_core_decides_without_importing_airflow() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(EXAMPLE_POLICY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_airflow_would_be_detected() -> None:
    """The check above is not vacuous: the same probe sees Airflow once something imports it."""
    probe = (
        "import sys, json, airflow.sdk\n"
        "print(json.dumps(sorted(n for n in sys.modules if n == 'airflow' or n.startswith('airflow.'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "airflow" in json.loads(result.stdout.strip().splitlines()[-1])
