"""``policyzones doctor``: what weakens zone enforcement in this deployment, each with its fix.

Reads this host's Airflow configuration and process environment (run it with the environment the
workers and the api-server have) and changes nothing. Connections and variables are checked by the
api-server only when a task asks the execution API for them; anything a task can read without
asking — an ``AIRFLOW_CONN_*`` variable, a secrets backend configured on workers, the metadata
database, the JWT secret that signs execution tokens — goes around the check.

Run where tasks run (``--component worker``, the default) every check applies. The api-server
needs the JWT secret and the metadata database itself, and a connection in its own environment is
served through the checked execution API, so there (``--component api-server``, which is what the
Zones page of the UI shows) only the checks that concern it apply: a secrets backend configured for
workers in a shared configuration, enforcement switched off, a policy that does not load. The
dag-processor and the triggerer (``--component dag-processor`` / ``triggerer``) run DAG authors'
code in child processes (DAG files, triggers) that look connections and variables up in their own
environment and secrets backends before they ask their parent, where the check is: those are
findings there; the JWT secret and the database they need themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Component = Literal["worker", "api-server", "dag-processor", "triggerer"]
COMPONENTS: tuple[Component, ...] = ("worker", "api-server", "dag-processor", "triggerer")


@dataclass(frozen=True, slots=True)
class Weakness:
    """One finding of the doctor."""

    code: str
    message: str
    fix: str

    def format(self) -> str:
        return f"{self.code}: {self.message}\n    fix: {self.fix}"


def _conf(section: str, key: str) -> str:
    from airflow.configuration import conf

    return str(conf.get(section, key, fallback="") or "")


def diagnose(*, environ: Mapping[str, str] | None = None, component: Component = "worker") -> list[Weakness]:
    """Every weakness found in ``environ`` (default: this process's) and Airflow's configuration,
    for a host running ``component`` (see the module docstring for what each checks)."""
    env = os.environ if environ is None else environ
    runs_dag_code = component != "api-server"
    found = _task_environment(env) if runs_dag_code else []
    backend = _conf("workers", "secrets_backend") or (_conf("secrets", "backend") if runs_dag_code else "")
    if backend:
        found.append(
            Weakness(
                "worker_secrets_backend",
                f"a secrets backend is configured where tasks run ({backend}): tasks look connections "
                "and variables up there before the execution API, so the zone check does not see them",
                "configure the backend on the api-server only ([secrets] backend there; unset "
                "[workers] secrets_backend / [secrets] backend on workers)",
            )
        )
    if component == "worker":
        found += _task_credentials()
    return found + _enforcement()


def _task_environment(env: Mapping[str, str]) -> list[Weakness]:
    """Connections and variables a task reads from its own environment."""
    found: list[Weakness] = []
    conns = sorted(key for key in env if key.startswith("AIRFLOW_CONN_"))
    if conns:
        found.append(
            Weakness(
                "env_connections",
                f"connections defined as environment variables ({', '.join(conns)}): a task reads them "
                "from its own environment without asking the api-server, so no zone check applies",
                "define them only on the api-server (its environment or the metadata database) and "
                "remove them from workers' environments",
            )
        )
    variables = sorted(key for key in env if key.startswith("AIRFLOW_VAR_"))
    if variables:
        found.append(
            Weakness(
                "env_variables",
                f"variables defined as environment variables ({', '.join(variables)}): tasks read them "
                "without asking the api-server",
                "define them on the api-server only",
            )
        )
    return found


def _task_credentials() -> list[Weakness]:
    """Keys and URLs that open Airflow itself to code holding them."""
    found: list[Weakness] = []
    if _conf("api_auth", "jwt_secret"):
        found.append(
            Weakness(
                "jwt_secret_visible",
                "[api_auth] jwt_secret is visible here: code holding it can sign an execution token "
                "for any task instance, and ask for connections in another try's name",
                "give workers their tokens from the scheduler only: keep jwt_secret (or the private "
                "key) on the api-server and scheduler, out of worker environments and airflow.cfg",
            )
        )
    sql_conn = _conf("database", "sql_alchemy_conn")
    if sql_conn and not sql_conn.startswith("sqlite"):
        found.append(
            Weakness(
                "metadata_db_visible",
                "the metadata database URL is visible here: code holding it reads connections (and "
                "the decisions) straight from the database",
                "do not give workers [database] sql_alchemy_conn (LocalExecutor tasks inherit the "
                "scheduler's environment: run the scheduler without it in the task environment, or "
                "use a remote executor)",
            )
        )
    result_backend = _conf("celery", "result_backend")
    if result_backend.startswith("db+"):
        found.append(
            Weakness(
                "celery_result_backend_db",
                "the Celery result backend is a database URL with credentials, visible to workers",
                "use a result backend whose credentials do not open the metadata database",
            )
        )
    return found


def _enforcement() -> list[Weakness]:
    """Whether the check runs at all here."""
    from airflow_policyzones import config

    found: list[Weakness] = []

    if not config.enabled():
        found.append(
            Weakness(
                "enforcement_disabled",
                "[policyzones] enabled is false: no zone check runs, connections are served to all",
                "set [policyzones] enabled = True (AIRFLOW__POLICYZONES__ENABLED=True)",
            )
        )
    try:
        config.get_engine()
    except Exception as error:
        found.append(
            Weakness(
                "policy_invalid",
                "the policy does not load here: " + " ".join(str(error).splitlines()[:2]),
                "run 'policyzones validate <file>' and fix what it reports",
            )
        )
    return found
