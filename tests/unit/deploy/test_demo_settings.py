"""The demo's Airflow settings and environment (scripts/localdemo/settings.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from scripts.localdemo.settings import (
    DemoPaths,
    airflow_settings,
    clean_environment,
    load_or_create_secret,
    write_env_file,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_settings_use_absolute_paths_in_the_demo_dir(tmp_path: Path) -> None:
    paths = DemoPaths(tmp_path / ".demo")
    settings = airflow_settings(paths=paths, port=8123, jwt_secret="secret")
    assert settings["AIRFLOW_HOME"] == str(paths.home)
    assert settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{paths.home}/airflow.db"
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__POLICYZONES__POLICY_FILE"):
        assert Path(settings[key]).is_absolute() and Path(settings[key]).exists(), key
    assert settings["AIRFLOW__POLICYZONES__POLICY_FILE"] == str(REPO_ROOT / "dags_examples" / "policy.yaml")
    assert settings["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO_ROOT / "dags_examples")
    assert settings["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
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
