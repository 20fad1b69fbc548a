#!/usr/bin/env python3
"""``make demo`` / ``make demo-stop``: the example DAGs on a real, local Airflow 3 deployment.

``up`` initialises an isolated Airflow home under ``.demo/`` (SQLite, LocalExecutor,
SimpleAuthManager), runs ``airflow db migrate``, starts the same components as
``docker-compose.yml`` (api-server, scheduler, dag-processor, triggerer) in the background, waits
until they are healthy, unpauses and triggers every example DAG through the REST API, waits for
the runs, and prints what happened: each task's final state next to what the policy predicts
(``policyzones check``), then the decisions and violations recorded in the metadata database
(``scripts/demo_summary.py``). The UI stays up at http://localhost:8080.

``stop`` stops exactly the processes ``up`` started: their process groups, recorded in
``.demo/pids/`` with each process's start time, so a recycled pid is never signalled.

Standard library only at import time, so ``stop`` and ``status`` run with any Python 3.10+.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

try:  # imported as the package `scripts` (tests) or run as a script (sys.path[0] is scripts/)
    from scripts.demo_summary import format_table
except ImportError:  # pragma: no cover - depends on how the script is started
    from demo_summary import format_table  # type: ignore[no-redef,import-not-found]

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_DIR = REPO_ROOT / "dags_examples"
POLICY_FILE = DAGS_DIR / "policy.yaml"
DEMO_DIR = REPO_ROOT / ".demo"
SUMMARY_SCRIPT = Path(__file__).resolve().parent / "demo_summary.py"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEMO_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
PLUGIN_HEALTH_PATH = "/policyzones/api/v1/health"
EVIDENCE_ENV = "POLICYZONES_EVIDENCE_DIR"
DATA_ENV = "POLICYZONES_DEMO_DATA_DIR"

OBSERVED_READS: Mapping[tuple[str, str], str] = {
    ("recs_purchase_export", "rank_from_purchase_export"): "exports/purchases/daily.csv",
}
"""Example tasks that declare no inlets and read a file of the demo's data folder through
``ObjectStoragePath`` (``(dag_id, task_id) -> path``): ``policyzones check`` sees no input for them
(it knows what DAGs declare), so what the policy says about them is its decision on the file they
read (``policyzones explain``), which their read gets while they run."""
CREDENTIAL_USES: Mapping[tuple[str, str], tuple[str, str]] = {
    ("recs_purchase_warehouse", "rank_from_purchase_warehouse"): ("connection", "purchases_warehouse"),
}
"""Example tasks that ask Airflow for a connection or variable (``(dag_id, task_id) -> (kind, id)``):
the api-server serves it or refuses it by the policy's ``connections:``/``variables:`` sections
(``policyzones explain --connection``), before the task can read anything."""
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
PURCHASES_EXPORT = "user_id,item_id,amount_cents\n1001,sku-17,1299\n1002,sku-4,499\n1001,sku-9,2450\n"
"""The export ``make demo`` writes for them (the policy catalogs ``exports/purchases`` as purchases)."""

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Component:
    """One Airflow service: the same sub-command the matching docker-compose service runs."""

    name: str
    command: tuple[str, ...]
    compose_service: str


COMPONENTS: tuple[Component, ...] = (
    Component("api-server", ("api-server",), "airflow-apiserver"),
    Component("scheduler", ("scheduler",), "airflow-scheduler"),
    Component("dag-processor", ("dag-processor",), "airflow-dag-processor"),
    Component("triggerer", ("triggerer",), "airflow-triggerer"),
)

COMPOSE_ONLY_SERVICES: Mapping[str, str] = {
    "postgres": "the demo uses an embedded SQLite database",
    "redis": "Celery's broker; the demo's LocalExecutor needs none",
    "airflow-init": "the demo runs `airflow db migrate` itself before starting the services",
    "airflow-worker": "`celery worker`; the demo's LocalExecutor runs tasks inside the scheduler",
    "airflow-cli": "a debug-profile container for `airflow` commands; natively: source .demo/demo.env",
}
"""docker-compose services with no native counterpart, and why (checked by the compose test)."""

COMPOSE_ONLY_SETTINGS: Mapping[str, str] = {
    "AIRFLOW__CELERY__BROKER_URL": "CeleryExecutor only",
    "AIRFLOW__CELERY__RESULT_BACKEND": "CeleryExecutor only",
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


class DemoError(Exception):
    """An expected failure: printed as a message (no traceback), then exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------------------- output


def say(message: str = "") -> None:
    print(message, flush=True)


def step(title: str) -> None:
    say()
    say(f"== {title}")


def rel(path: Path) -> str:
    """``path`` relative to the repository when inside it (shorter output)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DemoPaths:
    """Everything ``make demo`` writes lives below one directory (default ``.demo/``)."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "airflow-home"

    @property
    def database(self) -> Path:
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


def sqlite_url(database: Path) -> str:
    return f"sqlite:///{database}"


def airflow_settings(
    *, paths: DemoPaths, port: int, jwt_secret: str, dags_dir: Path = DAGS_DIR, policy: Path = POLICY_FILE
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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{DEMO_USER}:admin",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{local}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqlite_url(paths.database),
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


# --------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessRecord:
    """A started service: enough to find it again, and to be sure it is still the same process."""

    name: str
    pid: int
    pgid: int
    identity: str
    argv: list[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            identity=str(data["identity"]),
            argv=[str(a) for a in data.get("argv", [])],
        )


def parse_proc_stat(stat: str) -> tuple[str, str]:
    """State (field 3) and start time in clock ticks (field 22) from ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    """
    after_name = stat.rsplit(")", 1)[1].split()
    return after_name[0], after_name[19]


def process_identity(pid: int) -> str | None:
    """Something that changes when ``pid`` is reused (its start time); ``None``: not running.

    An exited process that was not reaped yet (a zombie) counts as not running.
    """
    _reap(pid)
    try:
        state, start = parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    else:
        return None if state in {"Z", "X"} else f"start:{start}"
    try:  # no /proc (macOS): ps reports the start time
        out = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return None
    return f"lstart:{out}" if out else None


def write_record(pids_dir: Path, record: ProcessRecord) -> None:
    pids_dir.mkdir(parents=True, exist_ok=True)
    (pids_dir / f"{record.name}.json").write_text(json.dumps(asdict(record), indent=2) + "\n")


def read_records(pids_dir: Path) -> list[ProcessRecord]:
    records = []
    for path in sorted(pids_dir.glob("*.json")) if pids_dir.is_dir() else []:
        try:
            records.append(ProcessRecord.from_json(json.loads(path.read_text())))
        except (ValueError, KeyError, TypeError):
            say(f"  ignoring unreadable pid file {rel(path)}")
            path.unlink(missing_ok=True)
    return records


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (when ``up`` stops what it started)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    """Does any process of the group still exist? (Zombies of orphans are reaped by init.)"""
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _all_exited(records: Sequence[ProcessRecord]) -> bool:
    return all(process_identity(r.pid) is None for r in records)


def _group_gone(pgid: int) -> bool:
    return not group_alive(pgid)


def _signal_leader(record: ProcessRecord, signum: int) -> None:
    if process_identity(record.pid) == record.identity:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_records(pids_dir: Path, *, timeout: float = 20.0) -> int:
    """Stop the recorded services; returns how many were running.

    Each service first gets SIGTERM on its main process only, so it shuts down its own children
    gracefully (signalling a scheduler's executor workers directly makes it wait for them), and a
    second SIGTERM after half of ``timeout`` (the scheduler's "signal again if you don't want to
    wait"); the api-server goes last, because the others talk to it while they stop. Whatever is
    left of a service's process group then gets SIGTERM, and SIGKILL 5 s later. A record whose
    process is gone, or whose pid now belongs to another process, is only removed: nothing else is
    signalled.
    """
    records = read_records(pids_dir)
    live: list[ProcessRecord] = []
    for record in records:
        identity = process_identity(record.pid)
        if identity is None:
            say(f"  {record.name}: not running (pid {record.pid})")
        elif identity != record.identity:
            say(f"  {record.name}: pid {record.pid} now belongs to another process; not touching it")
        else:
            live.append(record)
    waves = [[r for r in live if r.name != "api-server"], [r for r in live if r.name == "api-server"]]
    for wave in waves:
        for record in wave:
            say(f"  {record.name}: stopping (pid {record.pid})")
            _signal_leader(record, signal.SIGTERM)
        if not _wait(functools.partial(_all_exited, wave), timeout / 2):
            # Airflow's scheduler waits for its executor's workers: "Signal again if you don't want to wait."
            for record in wave:
                if process_identity(record.pid) is not None:
                    say(f"  {record.name}: still stopping after {timeout / 2:.0f} s, signalling again")
                    _signal_leader(record, signal.SIGTERM)
            _wait(functools.partial(_all_exited, wave), timeout / 2)
        for record in wave:
            if group_alive(record.pgid):
                if process_identity(record.pid) is not None:
                    say(f"  {record.name}: still running, terminating its process group")
                _signal_group(record.pgid, signal.SIGTERM)
                if not _wait(functools.partial(_group_gone, record.pgid), 5.0):
                    say(f"  {record.name}: killing what is left of its process group")
                    _signal_group(record.pgid, signal.SIGKILL)
                    _wait(functools.partial(_group_gone, record.pgid), 5.0)
    for record in records:
        (pids_dir / f"{record.name}.json").unlink(missing_ok=True)
    return len(live)


def running_components(pids_dir: Path) -> list[ProcessRecord]:
    return [r for r in read_records(pids_dir) if process_identity(r.pid) == r.identity]


# -------------------------------------------------------------------------------------- port


def port_owner(port: int) -> str | None:
    """Best effort (Linux ``/proc``): which process listens on ``port``, e.g. ``pid 12 (nginx)``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                        return f"pid {proc.name} ({cmd.strip()[:120]})"
    return "a process this user cannot inspect"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``port`` (or binding it on ``host`` fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_port_free(host: str, port: int) -> None:
    if not port_in_use(host, port):
        return
    owner = port_owner(port)
    raise DemoError(
        f"port {port} is already in use{f' by {owner}' if owner else ''}.\n"
        f"The demo's api-server (the Airflow UI) needs it. Stop that process, or run the demo on "
        f"another port: make demo DEMO_ARGS='--port {port + 1}'",
        EXIT_USAGE,
    )


# -------------------------------------------------------------------------------------- http


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """A tiny JSON client for the api-server's REST API (urllib: no dependency)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise ApiError(f"{method} {path}: HTTP {error.code} {detail}", error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(f"{method} {path}: {reason}") from None
        return json.loads(raw) if raw else None

    def login(self, username: str, password: str) -> None:
        response = self.call("POST", "/auth/token", {"username": username, "password": password})
        self.token = str(response["access_token"])


# ------------------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expected:
    """What the policy says about one task (from ``policyzones check``: the same engine)."""

    dag_id: str
    task_id: str
    outcome: str
    rules: tuple[str, ...]
    observed: str = ""
    """How it is decided when not before the task runs: ``read observed`` (on what the task reads
    while it runs; it declares nothing) or ``connection asked for`` (when it asks the api-server)."""

    @property
    def state(self) -> str | None:
        """The final task state this outcome should produce."""
        if self.outcome == "deny":
            return "failed"
        if self.outcome in {"allow", "dry_run", "exempted"}:
            return "success"
        return None

    @property
    def label(self) -> str:
        label = f"{self.outcome} ({', '.join(self.rules)})" if self.rules else self.outcome
        return f"{label}, {self.observed}" if self.observed else label


def _rules(decision: Mapping[str, Any]) -> tuple[str, ...]:
    rules: list[str] = []
    for finding in decision.get("findings", []):
        for rule in finding.get("rules") or [finding.get("rule")]:
            if rule and rule not in rules:
                rules.append(str(rule))
    return tuple(rules)


def expected_outcomes(report: Mapping[str, Any]) -> dict[tuple[str, str], Expected]:
    """``(dag_id, task_id) -> Expected`` from a ``policyzones check --format json`` report."""
    expected: dict[tuple[str, str], Expected] = {}
    for task in report.get("tasks", []):
        decision = task.get("decision") or {}
        outcome = str(task.get("outcome") or decision.get("outcome") or "not_checked")
        key = (str(task["dag_id"]), str(task["task_id"]))
        expected[key] = Expected(key[0], key[1], outcome, _rules(decision))
    return expected


def observed_outcomes(
    report: Mapping[str, Any], env: Mapping[str, str], *, data: Path
) -> dict[tuple[str, str], Expected]:
    """What the policy says about the reads of ``OBSERVED_READS`` tasks and the connections of
    ``CREDENTIAL_USES`` tasks: ``policyzones explain`` of the file each reads or the connection it
    asks for, in the zone ``policyzones check`` found for it."""
    zones = {(str(t["dag_id"]), str(t["task_id"])): t.get("zone") for t in report.get("tasks", [])}
    expected: dict[tuple[str, str], Expected] = {}
    asks = {key: ["--input", f"file://{data / rel}"] for key, rel in OBSERVED_READS.items()}
    asks |= {key: [f"--{kind}", name] for key, (kind, name) in CREDENTIAL_USES.items()}
    for (dag_id, task_id), what in asks.items():
        zone = zones.get((dag_id, task_id))
        if not zone:  # not in the DAG folder, or no zone: nothing to ask
            continue
        argv = [sys.executable, "-m", "airflow_policyzones", "explain", str(POLICY_FILE), "--zone", str(zone)]
        argv += ["--dag-id", dag_id, "--task-id", task_id, *what, "--json"]
        proc = subprocess.run(argv, env=dict(env), capture_output=True, text=True)
        try:
            decision: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            raise DemoError(
                f"policyzones explain printed no JSON for {dag_id}.{task_id}:\n{proc.stderr.strip()}"
            ) from None
        expected[(dag_id, task_id)] = Expected(
            dag_id,
            task_id,
            str(decision.get("outcome")),
            _rules(decision),
            observed="read observed" if what[0] == "--input" else f"{what[0][2:]} asked for",
        )
    return expected


def write_data(data: Path) -> None:
    """The files the ``OBSERVED_READS`` tasks read."""
    for relative in OBSERVED_READS.values():
        path = data / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PURCHASES_EXPORT)


def dag_files(report: Mapping[str, Any]) -> dict[str, str]:
    """``dag_id -> file`` (relative to the DAG folder) of every DAG in a check report."""
    return {str(t["dag_id"]): str(t.get("file", "")) for t in report.get("tasks", [])}


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (``2026-01-01T00:00:00.123Z``) as an aware datetime; ``None`` if absent."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_progress(
    dag_files: Mapping[str, str],
    dags: Sequence[Mapping[str, Any]],
    import_errors: Sequence[Mapping[str, Any]],
    *,
    since: datetime,
) -> tuple[set[str], dict[str, str]]:
    """Which expected DAGs were parsed ``since`` a moment, and which failed to import (``dag -> file``)."""
    parsed = set()
    for dag in dags:
        last_parsed = parse_time(dag.get("last_parsed_time"))
        if (
            dag.get("dag_id") in dag_files
            and not dag.get("is_stale")
            and last_parsed is not None
            and last_parsed >= since
        ):
            parsed.add(str(dag["dag_id"]))
    failed = {}
    for error in import_errors:
        when = parse_time(error.get("timestamp"))
        filename = str(error.get("filename") or "")
        if when is None or when < since or not filename:
            continue
        for dag_id, file in dag_files.items():
            if dag_id not in parsed and file and filename.endswith(file):
                failed[dag_id] = file
    return parsed, failed


def policy_check(env: Mapping[str, str]) -> dict[str, Any]:
    """Validate the policy and predict every example task's outcome (no server involved)."""
    argv = [sys.executable, "-m", "airflow_policyzones", "check", str(POLICY_FILE), str(DAGS_DIR)]
    proc = subprocess.run([*argv, "--format", "json"], env=dict(env), capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise DemoError(
            f"the example policy does not validate (policyzones check exited {proc.returncode}):\n"
            + (proc.stderr or proc.stdout).strip(),
            EXIT_USAGE,
        )
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise DemoError(f"policyzones check printed no JSON report:\n{proc.stderr.strip()}") from None
    return report


# ------------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class TaskResult:
    dag_id: str
    task_id: str
    map_index: int
    state: str
    try_number: int
    body_ran: bool | None = None
    """Whether the task's body ran (its evidence file exists); ``None``: unknown."""
    max_tries: int | None = None
    """Airflow's ``max_tries``: the retries the task was allowed."""

    @property
    def tries(self) -> str:
        """``1/3``: the try it ended on, of the tries it was allowed."""
        allowed = f"/{self.max_tries + 1}" if self.max_tries is not None else ""
        return f"{self.try_number}{allowed}"


def verdict(result: TaskResult, expected: Expected | None) -> str:
    """``ok``, or why the task's final state is not what the policy predicts."""
    if expected is None or expected.state is None:
        return ""
    if result.state != expected.state:
        return f"MISMATCH: expected {expected.state}"
    if expected.state == "failed" and result.try_number > 1:
        return "MISMATCH: retried (a violation must fail on the first try)"
    if expected.state == "failed" and result.body_ran:
        return "MISMATCH: its body ran"
    return "ok"


def format_task_summary(
    results: Sequence[TaskResult], expected: Mapping[tuple[str, str], Expected]
) -> tuple[list[str], int]:
    """The per-task table and the number of mismatches with the policy's prediction."""
    rows = []
    mismatches = 0
    for r in sorted(results, key=lambda r: (r.dag_id, r.task_id, r.map_index)):
        exp = expected.get((r.dag_id, r.task_id))
        v = verdict(r, exp)
        mismatches += v.startswith("MISMATCH")
        name = f"{r.dag_id}.{r.task_id}" + (f"[{r.map_index}]" if r.map_index >= 0 else "")
        ran = {True: "yes", False: "no", None: "?"}[r.body_ran]
        rows.append([name, r.state, r.tries, ran, exp.label if exp else "-", v])
    headers = ["task", "state", "try", "body ran", "policy says", "verdict"]
    return format_table(headers, rows), mismatches


def mismatch_hint(plugin_status: str) -> str:
    if plugin_status == "missing":
        return (
            "The decision service is not installed in this checkout yet (the api-server has no "
            f"{PLUGIN_HEALTH_PATH}), so nothing blocks a task: every task ran."
        )
    return "See the decisions below, the task logs in the UI, and .demo/logs/ for why."


# ---------------------------------------------------------------------------------------- up


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.paths = DemoPaths(Path(args.demo_dir).resolve())
        self.port: int = args.port
        self.host: str = args.host
        self.url = f"http://localhost:{self.port}"
        self.api = Api(f"http://127.0.0.1:{self.port}")
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
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

    # -- steps

    def prepare(self) -> dict[str, Any]:
        step(f"Preparing an isolated Airflow home in {rel(self.paths.home)}")
        if self.args.reset and self.paths.home.exists():
            say(f"  --reset: removing {rel(self.paths.home)} (database, logs, generated passwords)")
            shutil.rmtree(self.paths.home)
        for directory in (self.paths.home, self.paths.logs, self.paths.pids):
            directory.mkdir(parents=True, exist_ok=True)
        secret = load_or_create_secret(self.paths.jwt_secret)
        self.settings = airflow_settings(paths=self.paths, port=self.port, jwt_secret=secret)
        self.env, dropped = clean_environment(os.environ, self.settings)
        if dropped:
            say(f"  ignoring your own Airflow settings for the demo: {', '.join(dropped)}")
        write_env_file(self.paths.env_file, self.settings)
        write_data(self.paths.data)
        say(f"  DAG folder      {rel(DAGS_DIR)}")
        say(f"  policy          {rel(POLICY_FILE)}")
        say(f"  database        {rel(self.paths.database)} (SQLite), LocalExecutor")
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
            log = self.log_path(component.name).open("wb")
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=self.env,
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
        started = time.monotonic()
        deadline = started + self.args.startup_timeout
        last = ""
        while True:
            self.check_alive()
            try:
                health = self.api.call("GET", "/api/v2/monitor/health")
                status = {
                    name: (health.get(name) or {}).get("status") or "unknown"
                    for name in ("metadatabase", "scheduler", "dag_processor", "triggerer")
                }
                line = ", ".join(f"{name} {value}" for name, value in status.items())
                if all(value == "healthy" for value in status.values()):
                    say(f"  [{time.monotonic() - started:5.1f}s] {line}")
                    break
            except ApiError as error:
                line = f"api-server not answering yet ({error})"
            if line != last:
                say(f"  [{time.monotonic() - started:5.1f}s] {line}")
                last = line
            if time.monotonic() > deadline:
                raise DemoError(
                    f"Airflow was not healthy after {self.args.startup_timeout:.0f} s ({line}). "
                    f"See the logs in {rel(self.paths.logs)}/."
                )
            time.sleep(1.0)
        try:
            health = self.api.call("GET", PLUGIN_HEALTH_PATH) or {}
        except ApiError as error:
            if error.status == 404:
                say(f"  decision service: not installed ({PLUGIN_HEALTH_PATH} is 404)")
                return "missing"
            say(f"  decision service: NOT HEALTHY: {error}")
            return "unhealthy"
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
        started = time.monotonic()
        deadline = started + self.args.startup_timeout
        last = ""
        while True:
            self.check_alive()
            dags = self.api.call("GET", "/api/v2/dags?limit=1000").get("dags", [])
            errors = self.api.call("GET", "/api/v2/importErrors?limit=1000").get("import_errors", [])
            parsed, failed = parse_progress(dag_files, dags, errors, since=self.services_started_at)
            line = f"{len(parsed)}/{len(dag_files)} parsed" + (
                f", {len(failed)} failed to import" if failed else ""
            )
            if line != last:
                say(f"  [{time.monotonic() - started:5.1f}s] {line}")
                last = line
            if len(parsed) + len(failed) == len(dag_files) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        for error in errors:
            if any(str(error.get("filename", "")).endswith(f) for f in failed.values()):
                say(f"  import error in {error.get('filename')}:")
                for text in str(error.get("stack_trace", "")).strip().splitlines()[-8:]:
                    say(f"    {text}")
        missing = sorted(set(dag_files) - set(parsed))
        if not parsed:
            raise DemoError(f"no example DAG was parsed; missing: {', '.join(missing)}")
        if missing:
            say(f"  continuing without: {', '.join(missing)}")
        return sorted(parsed)

    def trigger(self, dag_ids: Sequence[str]) -> dict[str, str]:
        step("Unpausing every example DAG, triggering those that are not scheduled on Assets")
        # Evidence of the previous demo's task bodies would hide a blocked task's body running now.
        if self.paths.evidence.is_dir():
            for old in self.paths.evidence.iterdir():
                old.unlink()
        self.asset_scheduled = []
        for dag_id in dag_ids:
            self.api.call("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": False})
            if self.api.call("GET", f"/api/v2/dags/{dag_id}/details").get("asset_expression"):
                self.asset_scheduled.append(dag_id)
        runs: dict[str, str] = {}
        for dag_id in dag_ids:
            if dag_id in self.asset_scheduled:
                say(f"  {dag_id:<28} runs when the Assets it is scheduled on are updated")
                continue
            run = self.api.call(
                "POST",
                f"/api/v2/dags/{dag_id}/dagRuns",
                {"logical_date": None, "note": "triggered by make demo"},
            )
            runs[dag_id] = str(run["dag_run_id"])
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
        deadline = time.monotonic() + self.args.run_timeout
        runs: dict[str, str] = {}
        while len(runs) < len(self.asset_scheduled):
            self.check_alive()
            for dag_id in self.asset_scheduled:
                if dag_id not in runs:
                    listed = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?run_type=asset_triggered")
                    if listed.get("dag_runs"):
                        runs[dag_id] = str(listed["dag_runs"][0]["dag_run_id"])
                        say(f"  {dag_id:<28} run {runs[dag_id]}")
            if time.monotonic() > deadline:
                missing = sorted(set(self.asset_scheduled) - set(runs))
                raise DemoError(
                    f"no Asset-triggered run of {', '.join(missing)} after {self.args.run_timeout:.0f} s"
                )
            if len(runs) < len(self.asset_scheduled):
                time.sleep(2.0)
        return runs

    def wait_for_runs(self, runs: Mapping[str, str]) -> dict[str, str]:
        step(f"Waiting for {len(runs)} runs to finish (timeout {self.args.run_timeout:.0f} s)")
        started = time.monotonic()
        deadline = started + self.args.run_timeout
        states: dict[str, str] = {}
        last = ""
        while True:
            self.check_alive()
            for dag_id, run_id in runs.items():
                if states.get(dag_id) not in TERMINAL_RUN_STATES:
                    run = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
                    states[dag_id] = str(run.get("state"))
            finished = sum(state in TERMINAL_RUN_STATES for state in states.values())
            line = f"{finished}/{len(runs)} finished: " + ", ".join(f"{d} {s}" for d, s in states.items())
            if line != last:
                say(f"  [{time.monotonic() - started:5.1f}s] {line}")
                last = line
            if finished == len(runs):
                return states
            if time.monotonic() > deadline:
                raise DemoError(
                    f"runs still not finished after {self.args.run_timeout:.0f} s: "
                    + ", ".join(f"{d} {s}" for d, s in states.items() if s not in TERMINAL_RUN_STATES)
                    + f". The services keep running: see {self.url} and {rel(self.paths.logs)}/"
                )
            time.sleep(2.0)

    def task_results(self, runs: Mapping[str, str]) -> list[TaskResult]:
        results = []
        for dag_id, run_id in runs.items():
            listed = self.api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
            for ti in listed.get("task_instances", []):
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

    def run(self) -> int:
        report = self.prepare()
        step("Stopping a previous demo, if one is running")
        if not read_records(self.paths.pids):
            say("  none running")
        stop_records(self.paths.pids)
        ensure_port_free(self.host, self.port)
        self.migrate()
        self.start()
        try:
            plugin_status = self.wait_healthy()
            self.api.login(DEMO_USER, self.password())
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
        self.banner()
        self.print_evidence()
        return EXIT_FAILED if (mismatches and self.args.strict) else EXIT_OK

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


# ----------------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    return Demo(args).run()


def cmd_stop(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.demo_dir).resolve())
    say(f"== Stopping the demo services recorded in {rel(paths.pids)}")
    if not read_records(paths.pids):
        say("  nothing to stop")
        return EXIT_OK
    stop_records(paths.pids)
    say("  stopped")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    paths = DemoPaths(Path(args.demo_dir).resolve())
    records = read_records(paths.pids)
    if not records:
        say("demo: not running")
        return EXIT_FAILED
    alive = 0
    for record in records:
        running = process_identity(record.pid) == record.identity
        alive += running
        say(f"  {record.name:<14} pid {record.pid:<8} {'running' if running else 'NOT RUNNING'}")
    return EXIT_OK if alive == len(records) else EXIT_FAILED


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 1-65535: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.py",
        description="Run the example DAGs on a local Airflow 3 (make demo / make demo-stop).",
    )
    parser.add_argument(
        "--demo-dir", default=str(DEMO_DIR), help="where the demo keeps its state (default: .demo/)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,stop,status}")
    up = sub.add_parser("up", help="start Airflow, run every example DAG, print the summary")
    up.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="api-server / UI port (8080)")
    up.add_argument(
        "--host", default=DEFAULT_HOST, help="address the api-server binds (127.0.0.1; 0.0.0.0 for all)"
    )
    up.add_argument(
        "--startup-timeout", type=positive_float, default=240.0, help="seconds to wait for start-up (240)"
    )
    up.add_argument(
        "--run-timeout", type=positive_float, default=300.0, help="seconds to wait for runs (300)"
    )
    up.add_argument("--reset", action="store_true", help="start from an empty Airflow home")
    up.add_argument(
        "--strict", action="store_true", help="exit 1 when a task does not end as the policy says"
    )
    up.set_defaults(handler=cmd_up)
    stop = sub.add_parser("stop", help="stop the services `up` started (and nothing else)")
    stop.set_defaults(handler=cmd_stop)
    status = sub.add_parser("status", help="are the demo's services running?")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DemoError as error:
        say()
        say(f"make demo: error: {error}")
        return error.exit_code
    except ApiError as error:
        say()
        say(f"make demo: error: the api-server answered unexpectedly: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say()
        say("make demo: interrupted. `make demo-stop` stops whatever the demo left running.")
        return EXIT_INTERRUPTED


def _entry() -> NoReturn:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
