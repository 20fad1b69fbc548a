"""The Airflow plugin that mounts the decision service on the api-server (``airflow.plugins``)."""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_policyzones.api.schema import API_VERSION


@functools.cache
def _fastapi_app() -> dict[str, Any]:
    from airflow_policyzones.api.app import URL_PREFIX, create_app

    return {
        "app": create_app(),
        "url_prefix": URL_PREFIX,
        "name": f"Policy Zones decision service {API_VERSION}",
    }


class PolicyZonesPlugin(AirflowPlugin):
    """Mounts the decision service at ``/policyzones``.

    Every Airflow process loads plugins, task processes included, so the FastAPI app is built
    only when the api-server asks for it (``fastapi_apps`` is read there), not at import.
    """

    name = "policyzones"

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [_fastapi_app()]
