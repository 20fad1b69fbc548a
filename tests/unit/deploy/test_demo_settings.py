"""The demo's Airflow settings and environment (scripts/localdemo/settings.py), and what
``policyzones doctor`` finds in the environment of its celery worker (none) and its other services."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.demo_summary import DEFAULT_DEMO_DB_URL
from scripts.localdemo.settings import (
    COMPONENTS,
    DEMO_DATABASE,
    WITHHELD_FROM_TASKS,
    DemoPaths,
    airflow_settings,
    clean_environment,
    database_url,
    load_or_create_secret,
    task_environment,
    write_env_file,
)
from tests.support.doctor import findings, run_doctor

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_settings_use_absolute_paths_in_the_demo_dir(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / ".demo")
    settings = airflow_settings(paths=paths, port=8123, jwt_secret="secret")
    assert settings["AIRFLOW_HOME"] == str(paths.home)
    assert settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"postgresql+psycopg2://postgres@127.0.0.1:5432/{DEMO_DATABASE}"
    )
    assert settings["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://127.0.0.1:6379/")
    assert settings["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("redis://127.0.0.1:6379/")
    assert settings["AIRFLOW__CELERY__BROKER_URL"] != settings["AIRFLOW__CELERY__RESULT_BACKEND"]
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__POLICYZONES__POLICY_FILE"):
        assert Path(settings[key]).is_absolute() and Path(settings[key]).exists(), key
    assert settings["AIRFLOW__POLICYZONES__POLICY_FILE"] == str(REPO_ROOT / "dags_examples" / "policy.yaml")
    assert settings["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags_examples")
    assert settings["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert settings["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert settings["AIRFLOW__API_AUTH__JWT_SECRET"] == "secret"
    assert settings["POLICYZONES_EVIDENCE_DIR"] == str(paths.root / "evidence")
    assert settings["POLICYZONES_DEMO_DATA_DIR"] == str(paths.root / "data")


def test_clean_environment_drops_the_callers_airflow_settings(tmp_path: Path) -> None:
    settings = {"AIRFLOW_HOME": "/demo", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    caller = {
        "AIRFLOW_HOME": "/home/me/airflow",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://prod",
        "HOME": "/home/me",
        "PATH": "/usr/bin",
    }
    env, dropped = clean_environment(caller, settings)
    assert dropped == ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert env["AIRFLOW_HOME"] == "/demo" and env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["HOME"] == "/home/me"
    assert env["PATH"].split(os.pathsep) == [str(Path(sys.executable).parent), "/usr/bin"]


def test_secret_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret"
    first = load_or_create_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first


def test_env_file_is_private_and_sourceable(tmp_path: Path) -> None:
    path = tmp_path / "demo.env"
    write_env_file(path, {"AIRFLOW_HOME": "/a b/it's", "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'set -a; . "{path}"; set +a; printf "%s|%s" "$AIRFLOW_HOME" "$AIRFLOW__CORE__LOAD_EXAMPLES"',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "/a b/it's|False"


def test_the_audit_script_reads_the_demos_database_by_default() -> None:
    assert database_url() == DEFAULT_DEMO_DB_URL


def test_only_the_celery_worker_runs_tasks() -> None:
    assert [c.name for c in COMPONENTS if c.runs_tasks] == ["celery-worker"]
    assert next(c for c in COMPONENTS if c.runs_tasks).command == ("celery", "worker")


def test_the_task_environment_withholds_the_jwt_secret_and_the_database(tmp_path: Path) -> None:
    settings = airflow_settings(paths=DemoPaths(tmp_path / ".demo"), port=8080, jwt_secret="secret")
    env, _ = clean_environment({"PATH": "/usr/bin", "HOME": "/home/me"}, settings)
    tasks = task_environment(env)
    assert set(WITHHELD_FROM_TASKS) == {
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    }
    # Blanked: airflow.cfg in the Airflow home holds a generated secret the variable must override.
    assert tasks["AIRFLOW__API_AUTH__JWT_SECRET"] == ""
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in tasks
    assert {k: v for k, v in tasks.items() if k not in WITHHELD_FROM_TASKS} == {
        k: v for k, v in env.items() if k not in WITHHELD_FROM_TASKS
    }
    assert not [k for k in tasks if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]
    assert not tasks["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+")
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "secret", "the services' environment is unchanged"


@pytest.fixture(scope="module")
def demo_environments(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The environments ``make demo`` starts its services and its celery worker with."""
    paths = DemoPaths(tmp_path_factory.mktemp("doctor") / ".demo")
    paths.home.mkdir(parents=True)
    settings = airflow_settings(paths=paths, port=8080, jwt_secret="s" * 64)
    env, _ = clean_environment({}, settings)
    return {"services": env, "celery-worker": task_environment(env)}


def test_the_doctor_finds_nothing_where_the_demos_tasks_run(
    demo_environments: dict[str, dict[str, str]],
) -> None:
    result = run_doctor(demo_environments["celery-worker"], "worker")
    assert (result.returncode, findings(result)) == (0, []), result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "no weakness found"


def test_the_doctor_finds_nothing_in_the_demos_api_server(
    demo_environments: dict[str, dict[str, str]],
) -> None:
    result = run_doctor(demo_environments["services"], "api-server")
    assert (result.returncode, findings(result)) == (0, []), result.stdout + result.stderr


def test_the_demos_services_environment_would_be_a_weakness_where_tasks_run(
    demo_environments: dict[str, dict[str, str]],
) -> None:
    """The control: the same check on the scheduler's environment (what LocalExecutor tasks got)."""
    result = run_doctor(demo_environments["services"], "worker")
    assert result.returncode == 1, result.stdout + result.stderr
    assert findings(result) == ["jwt_secret_visible", "metadata_db_visible"]
