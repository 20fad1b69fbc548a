from __future__ import annotations

from tests.support.db_fixtures import backend, engine, policy_path

__all__ = ["backend", "engine", "policy_path"]
