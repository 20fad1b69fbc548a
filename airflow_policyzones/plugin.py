"""The Airflow plugin: the decision service and audit API on the api-server, and the Policy Zones
pages in the Airflow UI (``airflow.plugins`` entry point)."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

from airflow_policyzones.urls import API_VERSION, UI_PREFIX, URL_PREFIX

NAV_ROUTE = "policy-zones"
TASK_INSTANCE_ROUTE = "policy-decision"
DAG_ROUTE = "policy-zones-coverage"


@functools.cache
def _fastapi_app() -> dict[str, Any]:
    from airflow_policyzones.webapp import create_app

    return {
        "app": create_app(),
        "url_prefix": URL_PREFIX,
        "name": f"Policy Zones decision service {API_VERSION}",
    }


def _ui_root() -> str:
    """Where the pages are served, below the path of ``[api] base_url`` (Airflow behind a prefix)."""
    from airflow.configuration import conf

    base_path = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"{base_path}{URL_PREFIX}{UI_PREFIX}"


def external_views() -> list[dict[str, Any]]:
    """A nav entry, a tab on every task instance (its decision) and on every DAG (its coverage)."""
    root = _ui_root()
    return [
        {
            "name": "Policy Zones",
            "href": f"{root}/violations",
            "url_route": NAV_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
            "icon": f"{root}/static/icon.svg",
            "icon_dark_mode": f"{root}/static/icon-dark.svg",
        },
        {
            "name": "Policy decision",
            "href": f"{root}/task-instance?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}"
            "&map_index={MAP_INDEX}",
            "url_route": TASK_INSTANCE_ROUTE,
            "destination": "task_instance",
        },
        {
            "name": "Policy zones",
            "href": f"{root}/coverage?dag_id={{DAG_ID}}",
            "url_route": DAG_ROUTE,
            "destination": "dag",
        },
    ]


class PolicyZonesPlugin(AirflowPlugin):
    """Mounts the decision service and the pages at ``/policyzones``.

    Every Airflow process loads plugins, task processes included, so the FastAPI app is built
    only when the api-server asks for it (``fastapi_apps`` is read there), not at import.
    """

    name = "policyzones"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [_fastapi_app()]

    @property
    def external_views(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return external_views()

    @property
    def fastapi_root_middlewares(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Around the execution API: the decision service's relay, the zone check on connections
        and variables, and no success without a decision."""
        return root_middlewares()


def root_middlewares() -> list[dict[str, Any]]:
    """What the plugin registers as ``fastapi_root_middlewares`` (each wraps the whole api-server
    app, the ``/execution`` mount included; each passes on what is not its own in one comparison)."""
    from airflow_policyzones.api.credentials import CredentialGuard
    from airflow_policyzones.api.relay import DecisionRelay
    from airflow_policyzones.api.success_guard import SuccessGuard

    return [
        {"middleware": DecisionRelay, "args": [], "kwargs": {}, "name": "policyzones decision relay"},
        {"middleware": CredentialGuard, "args": [], "kwargs": {}, "name": "policyzones credentials"},
        {"middleware": SuccessGuard, "args": [], "kwargs": {}, "name": "policyzones undecided success"},
    ]
