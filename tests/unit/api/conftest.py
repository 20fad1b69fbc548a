from __future__ import annotations

from tests.support.db_fixtures import backend, engine, policy_path
from tests.unit.api.test_read_api import auth, client

__all__ = ["auth", "backend", "client", "engine", "policy_path"]
