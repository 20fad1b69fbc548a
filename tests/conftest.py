"""Test-wide setup: an isolated, throw-away Airflow home before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "dags_examples"
EXAMPLE_POLICY = EXAMPLES / "policy.yaml"

_home = tempfile.mkdtemp(prefix="policyzones-test-airflow-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
