"""The plugin: found through ``airflow.plugins``, mounted by Airflow's own api-server app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import JWT_SECRET, Prepared, create_run, parsed_as
from tests.support.db_fixtures import backend, engine, policy_path

__all__ = ["backend", "engine", "policy_path"]  # fixtures of the metadata database tests


def test_importing_the_plugin_does_not_build_the_app() -> None:
    """Every Airflow process loads plugins (task processes too): the app is built on demand."""
    code = (
        "import sys\n"
        "import airflow_policyzones.plugin as plugin\n"
        "assert 'airflow_policyzones.webapp' not in sys.modules, 'app imported'\n"
        "assert 'fastapi' not in sys.modules, 'fastapi imported'\n"
        "apps = plugin.PolicyZonesPlugin().fastapi_apps\n"
        "assert [app['url_prefix'] for app in apps] == ['/policyzones']\n"
        "assert plugin.PolicyZonesPlugin().fastapi_apps[0]['app'] is apps[0]['app']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.integration
def test_airflow_loads_the_plugin_once_with_its_app() -> None:
    from airflow import plugins_manager

    info = [
        p for p in plugins_manager.get_plugin_info({"fastapi_apps", "source"}) if p["name"] == "policyzones"
    ]
    assert len(info) == 1, info
    assert "airflow_policyzones.plugin:PolicyZonesPlugin" in str(info[0]["source"])
    assert [app["url_prefix"] for app in info[0]["fastapi_apps"]] == ["/policyzones"]
    apps, _ = plugins_manager.get_fastapi_plugins()
    assert [app["url_prefix"] for app in apps if app["url_prefix"] == "/policyzones"] == ["/policyzones"]


@pytest.mark.integration
def test_airflows_api_server_app_serves_the_decision_service(
    backend: Prepared, engine: PolicyEngine, policy_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import create_app

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy_path))
    run_id = create_run("ads_dag")
    parsed_as("ads_dag", run_id, zone="ads", inlets=["s3://lake/raw/purchases/x"])
    from airflow_policyzones.enforcement.client import DecisionClient
    from airflow_policyzones.wire import DecisionRequest, TaskInstanceIdentity
    from tests.support.supervisor import TaskSupervisor, task_instance_id

    task = TaskInstanceIdentity(dag_id="ads_dag", task_id="read", run_id=run_id, map_index=-1, try_number=1)
    request = DecisionRequest.model_validate(
        {
            "task": task.model_dump(),
            "zone": "ads",
            "inputs": [{"namespace": "asset", "name": "s3://lake/raw/purchases/x"}],
        }
    )

    with TestClient(create_app(apps="all")) as client:
        health = client.get("/policyzones/api/v1/health")
        assert health.status_code == 200, health.text
        assert health.json()["policy_version"] == engine.version

        supervisor = TaskSupervisor.of_try(client, ti_id=task_instance_id(task.dag_id, run_id))
        assert DecisionClient(comms=supervisor).decide(request).outcome == "allow"
