"""airflow-policyzones: purpose limitation for Apache Airflow 3, after Meta's Policy Zones.

DAG authors use the zone annotations exported here (imported lazily, so that the policy core and
the CLI's ``validate`` and ``explain`` do not pay for importing Airflow)::

    from airflow_policyzones import ZoneGroup, set_zone, zone_tag, zoned
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_ZONE_API = ("ZoneGroup", "set_zone", "zone_tag", "zoned", "ZONE_TAG_PREFIX", "ZoneAnnotationError")

if TYPE_CHECKING:
    from airflow_policyzones.zones import (
        ZONE_TAG_PREFIX,
        ZoneAnnotationError,
        ZoneGroup,
        set_zone,
        zone_tag,
        zoned,
    )

__all__ = [
    "ZONE_TAG_PREFIX",
    "ZoneAnnotationError",
    "ZoneGroup",
    "__version__",
    "set_zone",
    "zone_tag",
    "zoned",
]


def __getattr__(name: str) -> Any:
    if name in _ZONE_API:
        from airflow_policyzones import zones

        return getattr(zones, name)
    raise AttributeError(f"module 'airflow_policyzones' has no attribute {name!r}")
