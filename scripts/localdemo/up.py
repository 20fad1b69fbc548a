"""``make demo`` itself: prepare, start, wait, trigger, wait, summarise (the :class:`Demo`).

The waits and requests go through the shared deployment driver (scripts/deploy/), which retries
an api-server that answers late until each wait's deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scripts.deploy.client import Api, ApiError, Deadline, WaitTimeout
from scripts.deploy.driver import Driver
from scripts.localdemo.common import (
    DAGS_DIR,
    DEMO_USER,
    EXIT_FAILED,
    EXIT_OK,
    PLUGIN_HEALTH_PATH,
    POLICY_FILE,
    REPO_ROOT,
    SUMMARY_SCRIPT,
    DemoError,
    rel,
    say,
    step,
)
from scripts.localdemo.outcomes import (
    TaskResult,
    dag_files,
    expected_outcomes,
    format_doctor,
    format_task_summary,
    mismatch_hint,
    observed_outcomes,
    policy_check,
    write_data,
)
from scripts.localdemo.processes import (
    ProcessRecord,
    ensure_port_free,
    process_identity,
    read_records,
    stop_records,
    write_record,
)
from scripts.localdemo.services import ensure_services, flush_celery, prepare_database
from scripts.localdemo.settings import (
    BROKER_URL,
    COMPONENTS,
    DEMO_CONNECTIONS,
    DEMO_DATABASE,
    RESULT_BACKEND,
    WITHHELD_FROM_TASKS,
    Component,
    DemoPaths,
    airflow_settings,
    clean_environment,
    database_url,
    load_or_create_secret,
    task_environment,
    write_env_file,
)

WORKER_CONCURRENCY = 4
"""Tasks the Celery worker runs at once (Airflow's default, 16 processes, is a lot for 2 cores)."""


def sqlite_tables(path: Path) -> int:
    """How many tables the SQLite database ``path`` holds (0: none, or no such file)."""
    if not path.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            return int(connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
    except sqlite3.Error:
        return 0


def run_demo(args: argparse.Namespace) -> int:
    """``make demo``: the :class:`Demo`, with the driver's errors said as the demo's."""
    try:
        return Demo(args).run()
    except WaitTimeout as error:
        raise DemoError(str(error)) from None
    except ApiError as error:
        raise DemoError(f"the api-server answered unexpectedly: {error}") from None


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.paths = DemoPaths(Path(args.demo_dir).resolve())
        self.port: int = args.port
        self.host: str = args.host
        self.url = f"http://localhost:{self.port}"
        self.driver = Driver(Api(f"http://127.0.0.1:{self.port}"), say=say, check_alive=self.check_alive)
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self.task_env: dict[str, str] = {}
        self.settings: dict[str, str] = {}
        self.services_started_at = datetime.now(timezone.utc)
        self.asset_scheduled: list[str] = []

    # -- helpers

    def log_path(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace").splitlines()
        except OSError:
            return "  (no log)"
        return "\n".join("  | " + line for line in text[-lines:])

    def check_alive(self) -> None:
        for name, proc in self.started.items():
            code = proc.poll()
            if code is not None:
                raise DemoError(
                    f"{name} exited with code {code} while starting. Last lines of "
                    f"{rel(self.log_path(name))}:\n{self.tail(name)}"
                )

    def airflow(self, *args: str, log_name: str, timeout: float) -> None:
        """Run one ``airflow`` CLI command to completion, its output in ``.demo/logs/``."""
        log = self.log_path(log_name)
        with log.open("wb") as out:
            try:
                proc = subprocess.run(
                    [self.airflow_bin(), *args],
                    cwd=REPO_ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise DemoError(f"`airflow {' '.join(args)}` took more than {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise DemoError(
                f"`airflow {' '.join(args)}` failed (exit {proc.returncode}). Last lines of "
                f"{rel(log)}:\n{self.tail(log_name)}"
            )

    @staticmethod
    def airflow_bin() -> str:
        candidate = Path(sys.executable).parent / "airflow"
        if candidate.exists():
            return str(candidate)
        found = shutil.which("airflow")
        if not found:
            raise DemoError("no `airflow` command next to this Python; run `make demo` (it installs it)")
        return found

    def environment(self, component: Component) -> dict[str, str]:
        """The environment ``component`` runs in: the services', or the tasks' (the worker)."""
        return self.task_env if component.runs_tasks else self.env

    # -- steps

    def prepare(self) -> dict[str, Any]:
        step(f"Preparing an isolated Airflow home in {rel(self.paths.home)}")
        if self.args.reset and self.paths.home.exists():
            say(f"  --reset: removing {rel(self.paths.home)} (configuration, logs, generated passwords)")
            shutil.rmtree(self.paths.home)
        if sqlite_tables(self.paths.sqlite_leftover):
            # The metadata database of a demo that ran on SQLite: the celery worker's database URL
            # is Airflow's default, this file, which must not hold a deployment's connections.
            say(f"  removing {rel(self.paths.sqlite_leftover)} (the SQLite database of an earlier demo)")
        self.paths.sqlite_leftover.unlink(missing_ok=True)
        for directory in (self.paths.home, self.paths.logs, self.paths.pids):
            directory.mkdir(parents=True, exist_ok=True)
        secret = load_or_create_secret(self.paths.jwt_secret)
        self.settings = airflow_settings(paths=self.paths, port=self.port, jwt_secret=secret)
        self.env, dropped = clean_environment(os.environ, self.settings)
        self.task_env = task_environment(self.env)
        if dropped:
            say(f"  ignoring your own Airflow settings for the demo: {', '.join(dropped)}")
        write_env_file(self.paths.env_file, self.settings)
        write_data(self.paths.data)
        say(f"  DAG folder      {rel(DAGS_DIR)}")
        say(f"  policy          {rel(POLICY_FILE)}")
        say(f"  database        {DEMO_DATABASE} (PostgreSQL), CeleryExecutor")
        say(f"  Celery          broker {BROKER_URL}, results {RESULT_BACKEND}")
        say(f"  celery worker   runs the tasks, without {', '.join(sorted(WITHHELD_FROM_TASKS))}")
        say(f"  settings        {rel(self.paths.env_file)}")
        say(f"  data            {rel(self.paths.data)} (files example tasks read through object storage)")

        step("Checking the example policy and DAGs (policyzones check: what should happen)")
        report = policy_check(self.env)
        summary = report.get("summary", {})
        policy = report.get("policy", {})
        for problem in report.get("import_errors", []):
            say(f"  import error in {problem.get('file')}: {problem.get('detail') or problem.get('message')}")
        if not report.get("tasks"):
            raise DemoError(
                "policyzones check found no task to run in the example DAGs (see the import errors above)"
            )
        counts = ", ".join(f"{summary.get(k, 0)} {k}" for k in ("allow", "deny", "dry_run", "exempted"))
        say(
            f"  policy {policy.get('name')} {policy.get('short_version', '')}: "
            f"{summary.get('dags')} DAGs, {summary.get('tasks')} tasks -> {counts}"
        )
        return report

    def prepare_services(self) -> None:
        step("PostgreSQL (metadata database) and Redis (Celery's broker and results)")
        ensure_services()
        if self.args.reset:
            say(
                f"  --reset: dropping the database {DEMO_DATABASE}; "
                f"emptying Redis {BROKER_URL} and {RESULT_BACKEND}"
            )
            flush_celery()
        created = prepare_database(reset=self.args.reset)
        say(f"  database {DEMO_DATABASE} {'created' if created else 'exists'} ({database_url()})")

    def migrate(self) -> None:
        step("airflow db migrate")
        started = time.monotonic()
        self.airflow("db", "migrate", log_name="db-migrate", timeout=self.args.startup_timeout)
        say(f"  done in {time.monotonic() - started:.1f} s (log: {rel(self.log_path('db-migrate'))})")
        connections = self.paths.root / "connections.json"
        connections.write_text(json.dumps(DEMO_CONNECTIONS, indent=2) + "\n")
        step(f"airflow connections import ({', '.join(DEMO_CONNECTIONS)}, in the metadata database)")
        self.airflow(
            "connections",
            "import",
            str(connections),
            "--overwrite",
            log_name="connections-import",
            timeout=self.args.startup_timeout,
        )

    def start(self) -> None:
        step(f"Starting Airflow: {', '.join(c.name for c in COMPONENTS)}")
        self.services_started_at = datetime.now(timezone.utc)
        for component in COMPONENTS:
            argv = [self.airflow_bin(), *component.command]
            if component.name == "api-server":
                argv += ["--host", self.host, "--port", str(self.port)]
            if component.name == "celery-worker":
                argv += ["--concurrency", str(WORKER_CONCURRENCY)]
            log = self.log_path(component.name).open("wb")
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=self.environment(component),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: `stop` signals exactly it
                )
            finally:
                log.close()
            self.started[component.name] = proc
            identity = process_identity(proc.pid) or "unknown"
            write_record(self.paths.pids, ProcessRecord(component.name, proc.pid, proc.pid, identity, argv))
            say(f"  {component.name:<14} pid {proc.pid:<8} log {rel(self.log_path(component.name))}")

    def wait_healthy(self) -> str:
        """Wait for the api-server and every component's heartbeat; returns the plugin's status."""
        step(f"Waiting for the api-server at {self.url} (timeout {self.args.startup_timeout:.0f} s)")
        deadline = Deadline(self.args.startup_timeout)
        try:
            self.driver.wait_healthy(deadline=deadline)
        except WaitTimeout as error:
            raise DemoError(
                f"Airflow was not healthy: {error}. See the logs in {rel(self.paths.logs)}/."
            ) from None
        try:
            health = self.driver.request(
                "GET", PLUGIN_HEALTH_PATH, deadline=deadline, what="the decision service"
            )
        except WaitTimeout as error:
            say(f"  decision service: NOT HEALTHY: {error}")
            return "unhealthy"
        except ApiError as error:
            if error.status == 404:
                say(f"  decision service: not installed ({PLUGIN_HEALTH_PATH} is 404)")
                return "missing"
            say(f"  decision service: NOT HEALTHY: {error}")
            return "unhealthy"
        health = health or {}
        if health.get("policy_error"):
            problem = health["policy_error"]
            say(f"  decision service: the policy does not load, tasks will fail closed: {problem}")
            return "unhealthy"
        say(f"  decision service: {health.get('status', '?')}, policy {health.get('policy_version') or '?'}")
        return "ok"

    def password(self) -> str:
        try:
            passwords = json.loads(self.paths.password_file.read_text())
            return str(passwords[DEMO_USER])
        except (OSError, ValueError, KeyError):
            raise DemoError(
                f"the api-server did not write the {DEMO_USER!r} password to "
                f"{rel(self.paths.password_file)}; see {rel(self.log_path('api-server'))}"
            ) from None

    def wait_for_dags(self, dag_files: Mapping[str, str]) -> list[str]:
        """Wait until every example DAG was parsed by *this* dag-processor (or failed to import).

        DAGs serialized by an earlier demo are already in the database; triggering them before
        the new dag-processor re-parsed their files would run yesterday's version.
        """
        step(f"Waiting for the dag-processor to parse {len(dag_files)} example DAGs")
        progress = self.driver.wait_for_dags(
            dag_files,
            deadline=Deadline(self.args.startup_timeout),
            since=self.services_started_at,
            partial=True,
        )
        missing = sorted(set(dag_files) - progress.parsed)
        if not progress.parsed:
            raise DemoError(f"no example DAG was parsed; missing: {', '.join(missing)}")
        if missing:
            say(f"  continuing without: {', '.join(missing)}")
        return sorted(progress.parsed)

    def trigger(self, dag_ids: Sequence[str]) -> dict[str, str]:
        step("Unpausing every example DAG, triggering those that are not scheduled on Assets")
        # Evidence of the previous demo's task bodies would hide a blocked task's body running now.
        if self.paths.evidence.is_dir():
            for old in self.paths.evidence.iterdir():
                old.unlink()
        deadline = Deadline(self.args.startup_timeout)
        self.asset_scheduled = []
        for dag_id in dag_ids:
            self.driver.unpause(dag_id, deadline=deadline)
            if self.driver.is_asset_scheduled(dag_id, deadline=deadline):
                self.asset_scheduled.append(dag_id)
        runs: dict[str, str] = {}
        for dag_id in dag_ids:
            if dag_id in self.asset_scheduled:
                say(f"  {dag_id:<28} runs when the Assets it is scheduled on are updated")
                continue
            runs[dag_id] = self.driver.trigger(dag_id, deadline=deadline, note="triggered by make demo")
            say(f"  {dag_id:<28} run {runs[dag_id]}")
        self.paths.runs_file.write_text(json.dumps(runs, indent=2) + "\n")
        return runs

    def asset_triggered_runs(self) -> dict[str, str]:
        """The runs the Asset-scheduled DAGs got from their upstream (waits for them to exist)."""
        if not self.asset_scheduled:
            return {}
        step(
            f"Waiting for the {len(self.asset_scheduled)} Asset-scheduled DAGs to be triggered by their data"
        )
        return self.driver.asset_triggered_runs(
            self.asset_scheduled, since=self.services_started_at, deadline=Deadline(self.args.run_timeout)
        )

    def wait_for_runs(self, runs: Mapping[str, str]) -> dict[str, str]:
        step(f"Waiting for {len(runs)} runs to finish (timeout {self.args.run_timeout:.0f} s)")
        try:
            return self.driver.wait_for_runs(runs, deadline=Deadline(self.args.run_timeout))
        except WaitTimeout as error:
            raise DemoError(
                f"{error}. The services keep running: see {self.url} and {rel(self.paths.logs)}/"
            ) from None

    def task_results(self, runs: Mapping[str, str]) -> list[TaskResult]:
        results = []
        deadline = Deadline(self.args.run_timeout)
        for dag_id, run_id in runs.items():
            for ti in self.driver.task_instances(dag_id, run_id, deadline=deadline):
                task_id = str(ti["task_id"])
                results.append(
                    TaskResult(
                        dag_id=dag_id,
                        task_id=task_id,
                        map_index=int(ti.get("map_index", -1)),
                        state=str(ti.get("state")),
                        try_number=int(ti.get("try_number") or 0),
                        body_ran=(self.paths.evidence / f"{dag_id}.{task_id}").exists(),
                        max_tries=int(ti["max_tries"]) if ti.get("max_tries") is not None else None,
                    )
                )
        return results

    def print_decisions(self, runs: Mapping[str, str]) -> None:
        step("Decisions and violations in the metadata database")
        argv = [
            sys.executable,
            str(SUMMARY_SCRIPT),
            "--db-url",
            self.settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        ]
        for run_id in sorted(set(runs.values())):
            argv += ["--run-id", run_id]
        proc = subprocess.run(argv, env=self.env, check=False)
        if proc.returncode != 0:
            say(f"  (the summary script failed with exit code {proc.returncode})")

    def print_evidence(self) -> None:
        """The seed question, answered from the records: is purchase data used to train AI?"""
        step("Evidence: is purchase data used to train AI? (purchase_events x ai_training, since the start)")
        since = self.services_started_at.isoformat(timespec="seconds")
        argv = [sys.executable, "-m", "airflow_policyzones", "evidence", "--category", "purchase_events"]
        argv += ["--zone", "ai_training", "--since", since]
        say(f"  $ policyzones evidence --category purchase_events --zone ai_training --since {since}")
        proc = subprocess.run(argv, env=self.env, cwd=REPO_ROOT, check=False)
        if proc.returncode != 0:
            say(f"  (policyzones evidence failed with exit code {proc.returncode})")

    def print_doctor(self) -> int:
        """``policyzones doctor`` run in each component's exact environment: every check for the
        celery worker, the checks that concern the others (the api-server; the dag-processor and
        triggerer, whose children run DAG code); returns how many weaknesses it found."""
        step("policyzones doctor: what weakens enforcement here (in each component's environment)")
        policyzones = str(Path(sys.executable).parent / "policyzones")
        found = 0
        for component in COMPONENTS:
            if component.runs_tasks:
                checks = "worker"
            elif component.name in ("api-server", "dag-processor", "triggerer"):
                checks = component.name
            else:
                continue
            label = f"  doctor ({component.name.replace('-', ' ')}'s environment, --component {checks}):"
            try:
                proc = subprocess.run(
                    [policyzones, "doctor", "--component", checks],
                    cwd=REPO_ROOT,
                    env=self.environment(component),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=self.args.startup_timeout,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                say(f"{label} DID NOT RUN: {error}")  # not a weakness found, but none ruled out
                found += 1
                continue
            lines, weaknesses = format_doctor(label, proc.returncode, proc.stdout, proc.stderr)
            for line in lines:
                say(line)
            found += weaknesses
        return found

    def run(self) -> int:
        report = self.prepare()
        step("Stopping a previous demo, if one is running")
        if not read_records(self.paths.pids):
            say("  none running")
        stop_records(self.paths.pids)
        ensure_port_free(self.host, self.port)
        self.prepare_services()
        self.migrate()
        self.start()
        try:
            plugin_status = self.wait_healthy()
            self.driver.login(DEMO_USER, self.password(), deadline=Deadline(self.args.startup_timeout))
            expected = expected_outcomes(report) | observed_outcomes(report, self.env, data=self.paths.data)
            dag_ids = self.wait_for_dags(dag_files(report))
        except BaseException:
            say()
            say("Start-up failed: stopping the services this run started.")
            stop_records(self.paths.pids, timeout=15)
            raise
        runs = self.trigger(dag_ids)
        self.wait_for_runs(runs)
        asset_runs = self.asset_triggered_runs()
        if asset_runs:
            self.wait_for_runs(asset_runs)
        runs = {**runs, **asset_runs}
        self.paths.runs_file.write_text(json.dumps(runs, indent=2) + "\n")
        step("Task outcomes (final state, try / tries allowed, did the body run, what the policy says)")
        lines, mismatches = format_task_summary(self.task_results(runs), expected)
        for line in lines:
            say(line)
        if mismatches:
            say()
            say(f"  {mismatches} task(s) did not end as the policy says. {mismatch_hint(plugin_status)}")
        self.print_decisions(runs)
        weaknesses = self.print_doctor()
        if weaknesses:
            say()
            say(
                f"  The doctor found {weaknesses} weakness(es) in the demo's deployment "
                "(above, each with its fix)."
            )
        self.banner()
        self.print_evidence()
        return EXIT_FAILED if ((mismatches or weaknesses) and self.args.strict) else EXIT_OK

    def banner(self) -> None:
        step("Airflow is running")
        say(f"  UI        {self.url}")
        say(f"  login     {DEMO_USER} / {self.password()}")
        say(f"  violations  {self.url}/plugin/policy-zones   (Airflow's nav: Policy Zones)")
        say(f"  zone map    {self.url}/plugin/policy-zones/policyzones/ui/zones")
        say("  a decision  a task instance (recs_content_ranking.rank_from_purchases), tab Policy decision")
        say(f"  logs      {rel(self.paths.logs)}/ (services), {rel(self.paths.home / 'logs')}/ (tasks)")
        say(f"  CLI       set -a; . {rel(self.paths.env_file)}; set +a; airflow dags list")
        say(f"  audit     {rel(Path(sys.executable))} {rel(SUMMARY_SCRIPT)}   (latest decisions, violations)")
        say("  stop      make demo-stop")
