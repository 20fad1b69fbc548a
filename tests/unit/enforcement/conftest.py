"""Fixtures of the enforcement tests: the fixture DAG folders and settings switched on purpose."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airflow_policyzones.enforcement.settings import EnforcementSettings, reload_settings

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "enforcement"
POLICY = FIXTURES / "policy.yaml"
POLICY_REQUIRE_ZONE = FIXTURES / "policy_require_zone.yaml"

ConfigureSettings = Callable[..., EnforcementSettings]


@pytest.fixture
def configure() -> Iterator[ConfigureSettings]:
    """Set ``[policyzones]`` options through the environment and re-read the settings.

    Enforcement reads its settings once per process (so that DAG files cannot change them);
    tests change them on purpose with :func:`reload_settings`, and everything is put back after.
    """
    saved = dict(os.environ)

    def apply(**options: object) -> EnforcementSettings:
        for key, value in options.items():
            os.environ[f"AIRFLOW__POLICYZONES__{key.upper()}"] = str(value)
        return reload_settings()

    try:
        yield apply
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reload_settings()
