"""What the policy says should happen to each example task, and whether it did.

``policyzones check`` (and ``policyzones explain`` for what is decided while a task runs) gives
the expected outcome of every task; the runs' task instances give what happened; the summary
puts them side by side.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.demo_summary import format_table
from scripts.localdemo.common import DAGS_DIR, EXIT_USAGE, PLUGIN_HEALTH_PATH, POLICY_FILE, DemoError

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
PURCHASES_EXPORT = "user_id,item_id,amount_cents\n1001,sku-17,1299\n1002,sku-4,499\n1001,sku-9,2450\n"
"""The export ``make demo`` writes for them (the policy catalogs ``exports/purchases`` as purchases)."""


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


def format_doctor(label: str, returncode: int, stdout: str, stderr: str) -> tuple[list[str], int]:
    """What ``policyzones doctor`` said, under ``label``, and how many weaknesses that counts (a
    doctor that failed counts as one: it ruled nothing out)."""
    lines = stdout.strip().splitlines()
    if returncode in (0, 1) and lines:
        # The last line sums up; before it, each weakness is `code: what` then `    fix: how`.
        weaknesses = sum(not line.startswith(" ") for line in lines[:-1])
        return [f"{label} {lines[-1]}", *(f"    {line}" for line in lines[:-1])], weaknesses or returncode
    tail = (stderr.strip() or stdout.strip() or "(no output)").splitlines()[-15:]
    return [f"{label} FAILED (exit {returncode})", *(f"    | {line}" for line in tail)], 1


def mismatch_hint(plugin_status: str) -> str:
    if plugin_status == "missing":
        return (
            "The decision service is not installed in this checkout yet (the api-server has no "
            f"{PLUGIN_HEALTH_PATH}), so nothing blocks a task: every task ran."
        )
    return "See the decisions below, the task logs in the UI, and .demo/logs/ for why."
