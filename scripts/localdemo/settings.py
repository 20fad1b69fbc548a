"""The demo's Airflow: its files (``.demo/``), its components and the environment they run in.

The environment of every Airflow command and service the demo starts is built here, and only
here: :func:`airflow_settings` (the ``AIRFLOW__*`` configuration), :func:`clean_environment`
(the caller's environment without its own Airflow settings, plus those) and
:func:`task_environment` (what the Celery worker, where task code runs, gets of it).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.localdemo.common import DAGS_DIR, DEMO_USER, POLICY_FILE, SIMPLE_AUTH_MANAGER

POSTGRES_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
"""The machine's PostgreSQL (trust auth), as scripts/services.sh starts it and the tests use it."""
DEMO_DATABASE = "policyzones_demo"
"""The demo's metadata database on it (``--reset`` drops and recreates it)."""
BROKER_URL = "redis://127.0.0.1:6379/1"
RESULT_BACKEND = "redis://127.0.0.1:6379/2"
"""Celery's broker and result backend: the machine's Redis (database 0 is the end-to-end tests')."""

EVIDENCE_ENV = "POLICYZONES_EVIDENCE_DIR"
DATA_ENV = "POLICYZONES_DEMO_DATA_DIR"

DEMO_CONNECTIONS: Mapping[str, Mapping[str, Any]] = {
    "purchases_warehouse": {
        "conn_type": "postgres",
        "host": "warehouse.example.internal",
        "schema": "purchases",
        "login": "reader",
        "description": "make demo: the purchases warehouse (only a name; nothing listens there)",
    },
}
"""The connections ``make demo`` stores in the metadata database (``airflow connections import``)."""


@dataclass(frozen=True)
class Component:
    """One Airflow service: the same sub-command the matching docker-compose service runs."""

    name: str
    command: tuple[str, ...]
    compose_service: str
    runs_tasks: bool = False
    """Task code runs in it: it gets :func:`task_environment`, not the services' environment."""


COMPONENTS: tuple[Component, ...] = (
    Component("api-server", ("api-server",), "airflow-apiserver"),
    Component("scheduler", ("scheduler",), "airflow-scheduler"),
    Component("dag-processor", ("dag-processor",), "airflow-dag-processor"),
    Component("triggerer", ("triggerer",), "airflow-triggerer"),
    Component("celery-worker", ("celery", "worker"), "airflow-worker", runs_tasks=True),
)

COMPOSE_ONLY_SERVICES: Mapping[str, str] = {
    "postgres": "the demo uses the machine's PostgreSQL (scripts/services.sh starts it), database "
    f"{DEMO_DATABASE}",
    "redis": "the demo uses the machine's Redis (scripts/services.sh starts it)",
    "airflow-init": "the demo runs `airflow db migrate` itself before starting the services",
    "airflow-cli": "a debug-profile container for `airflow` commands; natively: source .demo/demo.env",
}
"""docker-compose services with no native counterpart, and why (checked by the compose test)."""

WITHHELD_FROM_TASKS: Mapping[str, str] = {
    "AIRFLOW__API_AUTH__JWT_SECRET": "signs execution tokens: the scheduler signs each try's and the "
    "api-server verifies it; a task holding it could sign one for any task instance. Blanked, not "
    "removed: airflow.cfg holds a generated one",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "the metadata database (connections, decisions): the task "
    "supervisor talks to the api-server's execution API only. Removed, so that Airflow's default "
    "applies (an empty SQLite file in the Airflow home): importing Airflow fails on an empty URL",
}
"""What the Celery worker (where task code runs) does not get of the services' environment, and
why; ``policyzones doctor --component worker`` reports a worker that has them."""

COMPOSE_ONLY_SETTINGS: Mapping[str, str] = {
    "AIRFLOW__CORE__FERNET_KEY": "kept as in Airflow's compose file; the demo's airflow.cfg generates one",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "the scheduler container's healthcheck polls it",
    "AIRFLOW__API__SECRET_KEY": "containers must share it (log requests to Celery workers); the demo's "
    "services share one airflow.cfg",
}
DEMO_ONLY_SETTINGS: Mapping[str, str] = {
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "the demo logs in with SimpleAuthManager; compose "
    "uses FAB users created by airflow-init",
}
"""The ``AIRFLOW__*`` settings only one deployment sets, and why (checked by the compose test)."""


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoPaths:
    """Everything ``make demo`` writes lives below one directory (default ``.demo/``)."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def sqlite_leftover(self) -> Path:
        """The SQLite database the demo used before it ran on PostgreSQL (removed when found)."""
        return self.home / "airflow.db"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def jwt_secret(self) -> Path:
        return self.root / "jwt_secret"

    @property
    def env_file(self) -> Path:
        return self.root / "demo.env"

    @property
    def runs_file(self) -> Path:
        return self.root / "last-runs.json"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"


def database_url(name: str = DEMO_DATABASE) -> str:
    """A database of the machine's PostgreSQL (``postgres``: where databases are created)."""
    return f"{POSTGRES_SERVER}/{name}"


def airflow_settings(
    *,
    paths: DemoPaths,
    port: int,
    jwt_secret: str,
    database: str = DEMO_DATABASE,
    dags_dir: Path = DAGS_DIR,
    policy: Path = POLICY_FILE,
) -> dict[str, str]:
    """The demo's Airflow configuration, as environment variables (absolute paths throughout).

    docker-compose.yml sets the same ``AIRFLOW__*`` keys, except those in
    ``COMPOSE_ONLY_SETTINGS`` / ``DEMO_ONLY_SETTINGS``; tests/unit/deploy checks it.
    """
    local = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW_HOME": str(paths.home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir.resolve()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{DEMO_USER}:admin",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{local}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url(database),
        "AIRFLOW__CELERY__BROKER_URL": BROKER_URL,
        # Not a `db+` URL: the workers would hold the metadata database's credentials.
        "AIRFLOW__CELERY__RESULT_BACKEND": RESULT_BACKEND,
        "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
        "AIRFLOW__POLICYZONES__ENABLED": "True",
        "AIRFLOW__POLICYZONES__POLICY_FILE": str(policy.resolve()),
        # The example tasks drop a file here when their body runs (dags_examples/evidence.py).
        EVIDENCE_ENV: str(paths.evidence),
        # What the example tasks read through object storage (OBSERVED_READS).
        DATA_ENV: str(paths.data),
    }


def clean_environment(
    environ: Mapping[str, str], settings: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The environment for the services: the caller's, minus its Airflow settings, plus ours.

    Returns the environment and the names of the caller's ``AIRFLOW*`` variables that were dropped,
    so a user's own Airflow configuration cannot leak into (or break) the demo.
    """
    dropped = sorted(k for k in environ if k.startswith("AIRFLOW") and k not in settings)
    env = {k: v for k, v in environ.items() if not k.startswith("AIRFLOW")}
    env.update(settings)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]) if env.get("PATH") else bin_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env, dropped


def task_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The Celery worker's environment: the services' ``env`` without ``WITHHELD_FROM_TASKS``."""
    task_env = {k: v for k, v in env.items() if k != "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"}
    task_env["AIRFLOW__API_AUTH__JWT_SECRET"] = ""
    return task_env


def load_or_create_secret(path: Path) -> str:
    """The demo's ``[api_auth] jwt_secret``: created once (mode 0600), then reused."""
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def write_env_file(path: Path, settings: Mapping[str, str]) -> None:
    """``set -a; . .demo/demo.env; set +a`` points the ``airflow`` CLI at the demo (mode 0600)."""
    lines = ["# make demo: source with `set -a; . .demo/demo.env; set +a` to use the airflow CLI"]
    lines += [f"{key}={shell_quote(value)}" for key, value in sorted(settings.items())]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
