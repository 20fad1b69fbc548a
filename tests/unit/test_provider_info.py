"""The provider installs like any Airflow provider: entry points, schema-valid info, config."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
import pytest

from airflow_policyzones.provider_info import get_provider_info


def test_provider_info_validates_against_airflows_schema() -> None:
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_points_are_registered() -> None:
    providers = {ep.value for ep in entry_points(group="apache_airflow_provider")}
    assert "airflow_policyzones.provider_info:get_provider_info" in providers
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("policyzones") == "airflow_policyzones.cli.main:main"


@pytest.mark.integration
def test_airflow_discovers_the_provider_and_its_config_section() -> None:
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-policyzones" in manager.providers
    assert conf.get("policyzones", "policy_file") == ""
    assert conf.getboolean("policyzones", "enabled") is True
