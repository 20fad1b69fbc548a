"""Cluster policy registered through the ``airflow.policy`` entry point (being written)."""

from __future__ import annotations
