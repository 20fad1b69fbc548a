"""The ``[policyzones]`` settings enforcement runs with, read once per process.

They are read when Airflow loads the ``airflow.policy`` entry point (``import airflow``), which
is before any DAG file is imported: on a worker the task process is forked from a process that
already holds them. A DAG file that sets ``os.environ["AIRFLOW__POLICYZONES__ENABLED"]`` or
calls ``conf.set("policyzones", "api_url", ...)`` at import time therefore cannot switch
enforcement off or point the check at a decision service of its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from airflow_policyzones import config


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforcementSettings:
    """A consistent view of ``[policyzones]``; ``error`` says why it cannot be used (fail closed)."""

    enabled: bool
    policy_file: str
    api_url: str
    request_timeout: float
    request_retries: int
    token_valid_for: int
    error: str | None = None

    @classmethod
    def from_config(cls) -> EnforcementSettings:
        """Read the settings now; a malformed value is kept as ``error`` instead of raising.

        This runs while ``import airflow`` loads the entry point, where an exception would break
        every Airflow command; the hook reports ``error`` as an infrastructure failure instead.
        """
        enabled = config.enabled()
        policy_file = config.policy_file()
        try:
            api_url = config.api_url()
            timeout = config.request_timeout()
            retries = config.request_retries()
            valid_for = config.token_valid_for()
        except Exception as exc:
            return cls(
                enabled=enabled,
                policy_file=policy_file,
                api_url="",
                request_timeout=0.0,
                request_retries=0,
                token_valid_for=0,
                error=f"invalid [policyzones] setting: {exc}",
            )
        problems = []
        if not timeout > 0:
            problems.append(f"request_timeout must be > 0 (got {timeout})")
        if retries < 0:
            problems.append(f"request_retries must be >= 0 (got {retries})")
        if valid_for <= 0:
            problems.append(f"token_valid_for must be > 0 (got {valid_for})")
        if not api_url.startswith(("http://", "https://")):
            problems.append(f"api_url must be an http(s) URL (got {api_url!r})")
        error = "invalid [policyzones] settings: " + "; ".join(problems) if problems else None
        return cls(
            enabled=enabled,
            policy_file=policy_file,
            api_url=api_url,
            request_timeout=timeout,
            request_retries=retries,
            token_valid_for=valid_for,
            error=error,
        )


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
