"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_policyzones import __version__


def get_provider_info() -> dict[str, Any]:
    """Provider info, validated against Airflow's ``provider_info.schema.json`` by the tests."""
    return {
        "package-name": "airflow-provider-policyzones",
        "name": "Policy Zones",
        "description": "Purpose limitation for Airflow tasks: every task runs in a policy zone, and its "
        "declared inputs are checked against the zone's policy before it runs.",
        "versions": [__version__],
        # Airflow >= 3.2 runs these from `airflow db migrate` (ProvidersManager.db_managers).
        "db-managers": ["airflow_policyzones.db.manager.PolicyZonesDBManager"],
        # The entry point `airflow.plugins` loads the plugin; provider-info plugins are listed too
        # (as providers/edge3 does) so that `airflow providers plugins` shows where it comes from.
        "plugins": [{"name": "policyzones", "plugin-class": "airflow_policyzones.plugin.PolicyZonesPlugin"}],
        "config": {
            "policyzones": {
                "description": "Policy Zones: purpose limitation for Airflow tasks.\n",
                "options": {
                    "policy_file": {
                        "description": "Path of the zone policy (YAML). Validate it with "
                        "``policyzones validate``. When enforcement is on and the file is missing or "
                        "invalid, tasks fail closed: they do not run.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/policy/policy.yaml",
                        "default": "",
                    },
                    "enabled": {
                        "description": "Check every task against its zone before it runs. Turn off "
                        "only to measure the overhead or in an emergency: no decision is recorded then.\n",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "True",
                    },
                },
            }
        },
    }
