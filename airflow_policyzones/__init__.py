"""airflow-policyzones: purpose limitation for Apache Airflow 3, after Meta's Policy Zones."""

from __future__ import annotations

__version__ = "0.1.0"
