"""``policyzones doctor`` in a subprocess, as an operator runs it: a deliberately misconfigured
environment (every weakness it knows) and a clean one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE_POLICY


def _doctor(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__POLICYZONES__POLICY_FILE": str(EXAMPLE_POLICY),
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "airflow_policyzones", "doctor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_clean_environment_has_no_weakness(tmp_path: Path) -> None:
    result = _doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no weakness found" in result.stdout


def test_every_weakness_is_found_with_its_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("zones: [\n")
    result = _doctor(
        tmp_path,
        AIRFLOW_CONN_WAREHOUSE_RAW="postgres://reader:secret@warehouse/db",
        AIRFLOW_VAR_ADS_BUDGET="1000",
        AIRFLOW__SECRETS__BACKEND="airflow.secrets.local_filesystem.LocalFilesystemBackend",
        AIRFLOW__API_AUTH__JWT_SECRET="shared-secret",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://airflow:pw@db/airflow",
        AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql://airflow:pw@db/airflow",
        AIRFLOW__POLICYZONES__ENABLED="False",
        AIRFLOW__POLICYZONES__POLICY_FILE=str(broken),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    codes = [
        match.group(1) for line in result.stdout.splitlines() if (match := re.match(r"([a-z_]+): ", line))
    ]
    assert codes == [
        "env_connections",
        "env_variables",
        "worker_secrets_backend",
        "jwt_secret_visible",
        "metadata_db_visible",
        "celery_result_backend_db",
        "enforcement_disabled",
        "policy_invalid",
    ], result.stdout
    assert result.stdout.count("    fix: ") == 8
    assert "AIRFLOW_CONN_WAREHOUSE_RAW" in result.stdout
    assert "secret@" not in result.stdout  # names, never values
    assert "8 weaknesses found" in result.stdout
    assert "broken.yaml:2" in result.stdout  # the policy's located error


def test_on_the_api_server_only_what_concerns_it_is_reported(tmp_path: Path) -> None:
    """The api-server needs the JWT secret and the database, and serves its own environment's
    connections through the checked execution API: none of that is a finding there."""
    api_server = {
        "AIRFLOW_CONN_WAREHOUSE_RAW": "postgres://reader:secret@warehouse/db",
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__API_AUTH__JWT_SECRET": "shared-secret",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:pw@db/airflow",
    }
    result = _doctor(tmp_path, "--component", "api-server", **api_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no weakness found" in result.stdout

    shared = {
        **api_server,
        "AIRFLOW__WORKERS__SECRETS_BACKEND": "my.Backend",
        "AIRFLOW__POLICYZONES__ENABLED": "False",
    }
    result = _doctor(tmp_path, "--component", "api-server", **shared)
    assert result.returncode == 1
    codes = re.findall(r"^([a-z_]+): ", result.stdout, re.M)
    assert codes == ["worker_secrets_backend", "enforcement_disabled"], result.stdout


def test_where_dag_code_runs_in_children_its_environment_is_reported(tmp_path: Path) -> None:
    """The dag-processor's and the triggerer's children (DAG files, triggers) read connections in
    their own environment before they ask their parent; the JWT secret and the database the
    parents need themselves."""
    environment = {
        "AIRFLOW_CONN_WAREHOUSE_RAW": "postgres://reader:secret@warehouse/db",
        "AIRFLOW__API_AUTH__JWT_SECRET": "shared-secret",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:pw@db/airflow",
    }
    for component in ("dag-processor", "triggerer"):
        result = _doctor(tmp_path, "--component", component, **environment)
        assert result.returncode == 1, result.stdout + result.stderr
        assert re.findall(r"^([a-z_]+): ", result.stdout, re.M) == ["env_connections"], result.stdout
        clean = _doctor(tmp_path, "--component", component, AIRFLOW__API_AUTH__JWT_SECRET="shared-secret")
        assert clean.returncode == 0 and "no weakness found" in clean.stdout, clean.stdout
