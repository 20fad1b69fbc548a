"""Pytest fixtures over :mod:`tests.support.airflow_db`, imported by the conftests that need them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_policyzones.policy import PolicyEngine
from tests.support.airflow_db import TEST_POLICY, Prepared, backend_params, prepared_database, use_database


@pytest.fixture(scope="module", params=backend_params())
def backend(request: pytest.FixtureRequest) -> Iterator[Prepared]:
    """Each test module runs once on SQLite and once on PostgreSQL, against real Airflow tables."""
    prepared = prepared_database(request.param)
    with use_database(prepared.url):
        yield prepared


@pytest.fixture(scope="session")
def policy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(TEST_POLICY)
    return path


@pytest.fixture(scope="session")
def engine(policy_path: Path) -> PolicyEngine:
    return PolicyEngine.from_file(policy_path)
