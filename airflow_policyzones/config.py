"""The ``[policyzones]`` settings and the policy engine built from them (one per policy version).

Every component — dag-processor (cluster policy), worker, api-server, ``dag.test()`` — gets its
engine here, so a policy change is picked up everywhere the same way: when the file changes.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from airflow_policyzones.asset_uris import AirflowUriNormalizer
from airflow_policyzones.policy import PolicyEngine, PolicyError, PolicyIssue

SECTION = "policyzones"


def _conf_get(key: str, fallback: str) -> str:
    from airflow.configuration import conf

    value = conf.get(SECTION, key, fallback=fallback)
    return fallback if value is None else str(value)


def enabled() -> bool:
    return _conf_get("enabled", "True").strip().lower() in {"true", "1", "yes", "on", "t", "y"}


def policy_file() -> str:
    return _conf_get("policy_file", "").strip()


class _EngineCache:
    """Compiles the policy once per file version; recompiles when the file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._engine: PolicyEngine | None = None

    def get(self, path: str) -> PolicyEngine:
        if not path:
            raise PolicyError(
                [
                    PolicyIssue(
                        "no policy configured: [policyzones] policy_file is empty",
                        "set AIRFLOW__POLICYZONES__POLICY_FILE to the policy's path "
                        "(or [policyzones] enabled = False to turn enforcement off)",
                        file="airflow.cfg",
                    )
                ]
            )
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size) if stat else None
        with self._lock:
            if key is not None and key == self._key and self._engine is not None:
                return self._engine
            # Catalog uri patterns in the form Airflow stores asset URIs, as inputs arrive.
            # Raises PolicyError: callers fail closed.
            engine = PolicyEngine.from_file(path, normalize_uri=AirflowUriNormalizer())
            self._key, self._engine = key, engine
            return engine


_cache = _EngineCache()


def get_engine(path: str | None = None) -> PolicyEngine:
    """The compiled engine for ``path`` (default: ``[policyzones] policy_file``)."""
    return _cache.get(path if path is not None else policy_file())
