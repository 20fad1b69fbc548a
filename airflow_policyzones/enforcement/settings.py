"""The ``[policyzones]`` settings enforcement runs with, read once per process.

They are read when Airflow loads the ``airflow.policy`` entry point (``import airflow``), which
is before any DAG file is imported: on a worker the task process is forked from a process that
already holds them. A DAG file that sets ``os.environ["AIRFLOW__POLICYZONES__ENABLED"]`` or
calls ``conf.set("policyzones", "policy_file", ...)`` at import time therefore cannot switch
enforcement off or check itself against a policy of its own. (Where a try's decision is made is not
a setting at all: the task asks through its supervisor, see :mod:`.client`.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from airflow_policyzones import config


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforcementSettings:
    """A consistent view of ``[policyzones]``: whether enforcement is on, and the policy file."""

    enabled: bool
    policy_file: str

    @classmethod
    def from_config(cls) -> EnforcementSettings:
        """Read the settings now (this runs while ``import airflow`` loads the entry point)."""
        return cls(enabled=config.enabled(), policy_file=config.policy_file())


_lock = threading.Lock()
_current: EnforcementSettings | None = None


def current_settings() -> EnforcementSettings:
    """The settings of this process, read on first use (normally while Airflow starts)."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = EnforcementSettings.from_config()
    return _current


def reload_settings() -> EnforcementSettings:
    """Read the settings again: for tests and tools that change the configuration on purpose."""
    global _current
    with _lock:
        _current = EnforcementSettings.from_config()
    return _current
