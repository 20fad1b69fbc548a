"""A real Airflow deployment for end-to-end tests: api-server, scheduler, dag-processor and
triggerer as separate processes on PostgreSQL, with LocalExecutor or CeleryExecutor.

Nothing is mocked: DAGs are parsed by the dag-processor, tasks run in real task-runner
processes that cannot touch the metadata DB, and decisions reach the api-server over HTTP.
Health, parsing, triggering and runs go through the api-server with the deployment driver that
``make demo`` uses too (scripts/deploy/); tests read the rest from the metadata DB.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from scripts.deploy.client import Api, Deadline
from scripts.deploy.driver import Driver

VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
POSTGRES_ADMIN_URL = os.environ.get(
    "PZ_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PZ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database(prefix: str = "pz_e2e") -> Iterator[str]:
    """A fresh PostgreSQL database for one deployment, dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@dataclass
class Deployment:
    """One Airflow deployment in its own AIRFLOW_HOME."""

    home: Path
    dags_folder: Path
    db_url: str
    policy_file: Path | None
    executor: str = "LocalExecutor"
    enforcement: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    api_login: tuple[str, str] | None = None
    """The user the driver logs in as; ``None``: a token without credentials (all admins)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    driver: Driver | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AIRFLOW__") and key != "AIRFLOW_HOME"
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-" + secrets.token_hex(16),
                "AIRFLOW__API__SECRET_KEY": "e2e-" + secrets.token_hex(16),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.db_url.replace("+psycopg2", ""),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
                "AIRFLOW__POLICYZONES__ENABLED": str(self.enforcement),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
        )
        if self.policy_file is not None:
            env["AIRFLOW__POLICYZONES__POLICY_FILE"] = str(self.policy_file)
        env.update(self.extra_env)
        return env

    def airflow(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AIRFLOW, *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=check
        )

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        self.airflow("db", "migrate", timeout=600)
        services = {
            "api-server": ["api-server", "--port", str(self.port)],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "triggerer": ["triggerer"],
        }
        if self.executor == "CeleryExecutor":
            services["celery-worker"] = ["celery", "worker", "--concurrency", "8"]
        environment = self.env()
        # Task code runs in the Celery worker: it gets no key that signs execution tokens (tasks
        # reach the decision service through their supervisor). LocalExecutor tasks are forked
        # from the scheduler, which needs the key: `policyzones doctor` reports that.
        worker_environment = {**environment, "AIRFLOW__API_AUTH__JWT_SECRET": ""}
        for name, args in services.items():
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, *args],
                env=worker_environment if name == "celery-worker" else environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.driver = Driver(
            Api(self.base_url), say=lambda line: print(line, flush=True), check_alive=self._check_alive
        )
        self.wait_healthy()
        if self.api_login is None:
            self.driver.login_all_admins(deadline=Deadline(60))
        else:
            self.driver.login(*self.api_login, deadline=Deadline(60))

    def _driver(self) -> Driver:
        assert self.driver is not None, "the deployment is not started"
        return self.driver

    def wait_healthy(self, timeout: float = 180) -> None:
        self._driver().wait_healthy(deadline=Deadline(timeout))

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.home / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if self.driver is not None:
            self.driver.api.close()
            self.driver = None

    # --- DAGs and runs ---------------------------------------------------------------------------

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.db_url)

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 180) -> None:
        """Until the dag-processor has parsed every one of ``dag_ids``."""
        self._driver().wait_for_dags(dict.fromkeys(sorted(dag_ids), ""), deadline=Deadline(timeout))

    def import_errors(self) -> dict[str, str]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT filename, stacktrace FROM import_error")).all()
        finally:
            engine.dispose()
        return {str(filename): str(trace) for filename, trace in rows}

    def trigger(self, dag_id: str, *, conf: dict[str, Any] | None = None) -> str:
        run_id = f"e2e__{dag_id}__{secrets.token_hex(3)}"
        return self._driver().trigger(dag_id, run_id=run_id, conf=conf, deadline=Deadline(300))

    def wait_for_runs(self, runs: dict[str, str], timeout: float = 300) -> dict[str, str]:
        """Wait until every (dag_id → run_id) run is finished; returns dag_id → state."""
        return self._driver().wait_for_runs(runs, deadline=Deadline(timeout))

    def wait_for_asset_runs(self, dag_ids: set[str], timeout: float = 300) -> dict[str, tuple[str, str]]:
        """Wait until each asset-scheduled DAG has a finished run; dag_id → (run_id, state)."""
        deadline = Deadline(timeout)
        runs = self._driver().asset_triggered_runs(sorted(dag_ids), deadline=deadline)
        states = self._driver().wait_for_runs(runs, deadline=deadline)
        return {dag_id: (run_id, states[dag_id]) for dag_id, run_id in runs.items()}

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict[str, Any]]:
        """(task_id, map_index) → state, try_number, start/end dates."""
        engine = self.engine()
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT task_id, map_index, state, try_number, start_date, end_date "
                        "FROM task_instance WHERE dag_id = :d AND run_id = :r"
                    ),
                    {"d": dag_id, "r": run_id},
                ).mappings()
                return {(row["task_id"], row["map_index"]): dict(row) for row in rows}
        finally:
            engine.dispose()

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        engine = self.engine()
        try:
            with engine.connect() as connection:
                return [dict(row) for row in connection.execute(sa.text(sql), params).mappings()]
        finally:
            engine.dispose()


def copy_dags(source: Path, target: Path, *, files: list[str] | None = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in {".py", ".yaml"} and (files is None or path.name in files):
            shutil.copy(path, target / path.name)
    return target
