"""``dag.test()`` end to end, in process, on SQLite: the same hook records through the ORM.

A fresh Airflow home is migrated with ``airflow db migrate`` (Airflow's tables and ours), then
``dag_test_runner.py`` parses ``tests/fixtures/enforcement/dags_run`` with ``DagBag`` and runs the
DAGs with ``dag.test()`` in a subprocess, as ``airflow dags test`` would. Task bodies and the
authors' hooks leave evidence files, so a missing file proves that code never ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.enforcement.conftest import FIXTURES, POLICY
from tests.unit.enforcement.dag_test_runner import MARKER

pytestmark = pytest.mark.integration

RUNNER = Path(__file__).with_name("dag_test_runner.py")
AIRFLOW = Path(sys.executable).with_name("airflow")


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any]
    evidence: set[str]
    log: str

    def ti(self, task_id: str, map_index: int = -1) -> dict[str, Any]:
        for ti in self.result["task_instances"]:
            if (ti["task_id"], ti["map_index"]) == (task_id, map_index):
                return dict(ti)
        raise KeyError((task_id, map_index))

    def decisions(self, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        return [
            row
            for row in self.result["decisions"]
            if (row["task_id"], row["map_index"]) == (task_id, map_index)
        ]


@dataclass(frozen=True)
class Home:
    root: Path
    env: dict[str, str]
    policy: Path

    def run(self, *args: str, phase: str) -> Outcome:
        evidence = self.root / f"evidence-{phase}"
        env = {**self.env, "POLICYZONES_EVIDENCE_DIR": str(evidence)}
        completed = subprocess.run(
            [sys.executable, str(RUNNER), *args],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        log = completed.stdout + completed.stderr
        (self.root / f"{phase}.log").write_text(log)
        lines = [line for line in completed.stdout.splitlines() if line.startswith(MARKER)]
        assert completed.returncode == 0 and lines, f"dag.test() runner failed:\n{log[-5000:]}"
        files = {path.name for path in evidence.iterdir()} if evidence.exists() else set()
        return Outcome(json.loads(lines[-1][len(MARKER) :]), files, log)


def warehouse_home(root: Path, *, dags: Path, warehouse_url: str, **extra_env: str) -> Home:
    """A migrated SQLite Airflow home whose DAGs (``dags``, policy ``dags/policy.yaml``) reach a
    PostgreSQL warehouse through the ``pz_sql`` connection."""
    import sqlalchemy as sa

    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW__")}
    env.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
            "AIRFLOW__POLICYZONES__POLICY_FILE": str(dags / "policy.yaml"),
            "AIRFLOW__POLICYZONES__ENABLED": "True",
            "AIRFLOW_CONN_PZ_SQL": sa.make_url(warehouse_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False),
            **extra_env,
        }
    )
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return Home(root, env, dags / "policy.yaml")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    root = tmp_path_factory.mktemp("dag-test-home")
    policy = root / "policy.yaml"
    shutil.copy(POLICY, policy)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW__", "_AIRFLOW_PARSING_CONTEXT"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(FIXTURES / "dags_run"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
            "AIRFLOW__POLICYZONES__POLICY_FILE": str(policy),
            "AIRFLOW__POLICYZONES__ENABLED": "True",
        }
    )
    migrate = subprocess.run(
        [str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    yield Home(root, env, policy)


@pytest.fixture(scope="module")
def ads(home: Home) -> Outcome:
    return home.run("pz_run_ads", phase="ads")


def test_every_task_was_hooked_by_the_cluster_policy(ads: Outcome) -> None:
    assert ads.result["hooked"] and all(ads.result["hooked"].values()), ads.result["hooked"]


@pytest.mark.parametrize(
    ("task_id", "map_index"),
    [
        ("denied", -1),
        ("denied_mapped", 0),
        ("denied_mapped", 1),
        ("denied_classic_mapped", 0),
        ("denied_author_hook", -1),
        ("denied_override", -1),
    ],
)
def test_denied_tasks_fail_on_the_first_try_and_never_run(ads: Outcome, task_id: str, map_index: int) -> None:
    ti = ads.ti(task_id, map_index)
    assert (ti["state"], ti["try_number"]) == ("failed", 1), ti  # retries=3, yet no retry
    assert not {name for name in ads.evidence if name.startswith(f"{task_id}.")}, ads.evidence
    (decision,) = ads.decisions(task_id, map_index)
    assert (decision["outcome"], bool(decision["allowed"]), decision["source"]) == (
        "deny",
        False,
        "in_process",
    )


def test_the_authors_hook_and_pre_execute_override_never_ran_for_a_denied_task(ads: Outcome) -> None:
    """The check runs first: what the author runs before execute is stopped with the body."""
    assert "denied_author_hook.pre" not in ads.evidence
    assert "denied_override.pre" not in ads.evidence


@pytest.mark.parametrize(
    ("task_id", "map_index", "files"),
    [
        ("allowed", -1, {"allowed.body"}),
        ("allowed_mapped", 0, {"allowed_mapped.1.body"}),
        ("allowed_mapped", 1, {"allowed_mapped.2.body"}),
        ("mapped_in_own_zone", 0, {"mapped_in_own_zone.1.body"}),
        ("allowed_author_hook", -1, {"allowed_author_hook.pre", "allowed_author_hook.body"}),
        ("allowed_override", -1, {"allowed_override.pre", "allowed_override.body"}),
        ("external_python", -1, {"external_python.body"}),
        ("deferrable", -1, set()),
    ],
)
def test_allowed_tasks_succeed_and_ran(ads: Outcome, task_id: str, map_index: int, files: set[str]) -> None:
    ti = ads.ti(task_id, map_index)
    assert (ti["state"], ti["try_number"]) == ("success", 1), ti
    assert files <= ads.evidence
    (decision,) = ads.decisions(task_id, map_index)  # one row per try, also across a deferral
    assert (decision["outcome"], bool(decision["allowed"])) == ("allow", True)


def test_a_mapped_task_is_decided_in_the_zone_set_on_it(ads: Outcome) -> None:
    """Zone ads (the DAG's) would deny watch history; set_zone(zone="recs") on the mapped task allows it."""
    assert ads.decisions("mapped_in_own_zone", 0)[0]["zone"] == "recs"


def test_the_dry_run_task_ran_and_its_violation_was_recorded(ads: Outcome) -> None:
    ti = ads.ti("dry_run")
    assert (ti["state"], ti["try_number"]) == ("success", 1)
    assert "dry_run.body" in ads.evidence
    (decision,) = ads.decisions("dry_run")
    assert (decision["outcome"], bool(decision["allowed"]), decision["zone"]) == (
        "dry_run",
        True,
        "marketing",
    )
    assert "dry-run: would be denied" in ads.log


def test_the_deny_message_reaches_the_task_log(ads: Outcome) -> None:
    assert "ZoneViolation: policyzones: task pz_run_ads.denied (run " in ads.log
    assert "may not run in zone 'ads'" in ads.log
    assert "input s3://lake/raw/watch_history/daily [category_not_allowed]" in ads.log
    assert "fix: add 'watch_history' to zones.ads.allowed_categories" in ads.log


def test_a_policy_broken_after_parsing_fails_closed_with_retries(home: Home, ads: Outcome) -> None:
    """No valid policy, no decision: the task fails with the retryable error and its body never runs."""
    try:
        infra = home.run("--break-policy", str(home.policy), "pz_run_infra", phase="infra")
    finally:
        shutil.copy(POLICY, home.policy)
    ti = infra.ti("needs_a_decision")
    assert (ti["state"], ti["try_number"]) == ("failed", 2), ti  # retries=1: retried once, then failed
    assert "needs_a_decision.body" not in infra.evidence
    assert infra.decisions("needs_a_decision") == []
    assert "DecisionUnavailable: policyzones: could not get a decision (no valid policy)" in infra.log
