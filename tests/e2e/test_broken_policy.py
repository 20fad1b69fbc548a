"""End to end: a broken policy file fails the checks closed, never the deployment.

On a real deployment (PostgreSQL; LocalExecutor and CeleryExecutor) the policy file is replaced
with invalid YAML while a run is in flight, then fixed; then it is deleted, then restored. While
it is broken every DAG stays listed, parsed without import errors and triggerable; every task
that needs a decision fails with a retryable error naming the file, line and fix, and its body
does not run; once the file is fixed the retries run by themselves and are decided under the new
version. The health endpoint and the dag-processor's record say what happened.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment import Deployment, postgres_database

pytestmark = pytest.mark.e2e

POLICY_V1 = """\
version: 1
categories:
  purchase_events: {description: What a user bought}
catalog:
  - uri: "s3://lake/raw/purchases/**"
    categories: [purchase_events]
    consented: [ads]
zones:
  ads:
    purpose: ads
    allowed_categories: [purchase_events]
    members: {dag_ids: ["pz_*"]}
"""
POLICY_V2 = POLICY_V1.replace("purpose: ads\n", "purpose: ads\n    description: fixed after a typo\n")
POLICY_V3 = POLICY_V1.replace("purpose: ads\n", "purpose: ads\n    description: restored after deletion\n")
INVALID_YAML = POLICY_V1.replace(
    "    allowed_categories: [purchase_events]", "    allowed_categories: [purchase_events"
)

DAG_TEMPLATE = """\
from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, task

from airflow_policyzones import zone_tag


def evidence(name: str) -> None:
    folder = Path(os.environ["POLICYZONES_EVIDENCE_DIR"])
    (folder / name).touch()


with DAG(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    tags={tags},
    default_args={{"retries": 60, "retry_delay": timedelta(seconds=2)}},
):

    @task
    def first() -> None:
        evidence("{dag_id}.first")
        time.sleep({sleep})

    @task(inlets={inlets})
    def read(ti=None) -> None:
        evidence(f"{dag_id}.read.{{ti.try_number}}")

    first() >> read()
"""


def _dag(dag_id: str, *, zoned: bool, sleep: int) -> str:
    return DAG_TEMPLATE.format(
        dag_id=dag_id,
        tags="[zone_tag('ads')]" if zoned else "[]",
        inlets="[Asset('s3://lake/raw/purchases/daily')]" if zoned else "[]",
        sleep=sleep,
    )


@pytest.fixture(scope="module", params=["LocalExecutor", "CeleryExecutor"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    executor: str = request.param
    root = tmp_path_factory.mktemp(f"broken-policy-{executor}")
    dags = root / "dags"
    dags.mkdir()
    (dags / "pz_zoned.py").write_text(_dag("pz_zoned", zoned=True, sleep=15))
    (dags / "pz_unzoned.py").write_text(_dag("pz_unzoned", zoned=False, sleep=0))
    policy = root / "policy" / "policy.yaml"
    policy.parent.mkdir()
    policy.write_text(POLICY_V1)
    evidence = root / "evidence"
    evidence.mkdir()
    with postgres_database() as url:
        instance = Deployment(
            home=root / "home",
            dags_folder=dags,
            db_url=url,
            policy_file=policy,
            executor=executor,
            extra_env={
                "POLICYZONES_EVIDENCE_DIR": str(evidence),
                "AIRFLOW__POLICYZONES__REQUEST_RETRIES": "0",
            },
        )
        instance.evidence = evidence  # type: ignore[attr-defined]
        try:
            instance.start()
            yield instance
        finally:
            instance.stop()


def _health(deployment: Deployment) -> dict[str, Any]:
    with urllib.request.urlopen(f"{deployment.base_url}/policyzones/api/v1/health", timeout=10) as response:
        return dict(json.loads(response.read()))


def _until(what: str, check: Callable[[], Any], *, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1)
    raise TimeoutError(f"{what} after {timeout}s (last: {last!r})")


def _ti(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    return deployment.task_instances(dag_id, run_id).get((task_id, -1), {})


def _recorded_states(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The dag-processor's record in each DAG's latest serialized version, as the api-server reads it."""
    return {
        group_dag: group
        for group in _health(deployment)["dag_processor"]
        for group_dag in group["example_dag_ids"]
    }


def _version(text: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _break_then_fix(
    deployment: Deployment,
    *,
    policy: Path,
    valid_before: str,
    break_policy: Callable[[], object],
    fixed: str,
    expect_in_log: str,
) -> None:
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    run_id = deployment.trigger("pz_zoned")
    # In flight: the first task has been decided under the valid policy and its body is running.
    _until("first task's body running", (evidence / "pz_zoned.first").exists)
    break_policy()

    # The task that needs a decision fails closed and is up for retry; its body never runs.
    _until(
        "read up for retry",
        lambda: (
            (ti := _ti(deployment, "pz_zoned", run_id, "read")).get("state") == "up_for_retry"
            and ti["try_number"] >= 2
        ),
    )
    assert not list(evidence.glob("pz_zoned.read.*")), "no body may run while the policy is broken"
    log = _task_log(deployment, "pz_zoned", run_id, "read")
    assert "policyzones: could not get a decision (the decision service answered HTTP 503)" in log
    assert "The task did not run; it is retried if it has retries left." in log
    assert expect_in_log in log

    # The dag-processor re-parses with the broken policy: no DAG disappears, no import error.
    _until(
        "the dag-processor records the broken policy",
        lambda: (
            {dag: state["loaded"] for dag, state in _recorded_states(deployment).items()}
            == {"pz_zoned": False, "pz_unzoned": False}
        ),
    )
    assert deployment.import_errors() == {}
    dags = deployment.query("SELECT dag_id, is_stale FROM dag ORDER BY dag_id")
    assert [(d["dag_id"], d["is_stale"]) for d in dags] == [("pz_unzoned", False), ("pz_zoned", False)]
    health = _health(deployment)
    assert health["policy"] == "invalid" and health["policy_version"] is None
    assert any("every task that needs a decision fails closed" in problem for problem in health["problems"])
    assert any(
        "The dag-processor could not load the zone policy" in problem for problem in health["problems"]
    )

    # Still triggerable; a DAG in no zone fails closed too (without a policy nothing is known).
    unzoned_run = deployment.trigger("pz_unzoned")
    _until(
        "unzoned task up for retry",
        lambda: _ti(deployment, "pz_unzoned", unzoned_run, "first").get("state") == "up_for_retry",
    )
    assert not (evidence / "pz_unzoned.first").exists()

    # Fixed: the retries run by themselves and are decided under the new version.
    policy.write_text(fixed)
    states = deployment.wait_for_runs({"pz_zoned": run_id, "pz_unzoned": unzoned_run}, timeout=300)
    assert states == {"pz_zoned": "success", "pz_unzoned": "success"}
    read = _ti(deployment, "pz_zoned", run_id, "read")
    assert read["try_number"] >= 2
    assert sorted(path.name for path in evidence.glob("pz_zoned.read.*")) == [
        f"pz_zoned.read.{read['try_number']}"
    ]
    decisions = deployment.query(
        "SELECT task_id, try_number, outcome, policy_version FROM policyzones_decision WHERE run_id = :r",
        r=run_id,
    )
    by_task = {(d["task_id"], d["try_number"]): d for d in decisions}
    assert by_task[("first", 1)]["policy_version"] == _version(valid_before)  # decided before the break
    assert by_task[("read", read["try_number"])]["outcome"] == "allow"
    assert by_task[("read", read["try_number"])]["policy_version"] == _version(fixed)
    assert [key for key in by_task if key[0] == "read"] == [("read", read["try_number"])], (
        "the failed tries recorded nothing: no decision was made for them"
    )
    unzoned = deployment.query(
        "SELECT task_id, try_number, policy_version FROM policyzones_decision WHERE run_id = :r",
        r=unzoned_run,
    )
    assert {d["policy_version"] for d in unzoned} == {_version(fixed)}
    assert max(d["try_number"] for d in unzoned if d["task_id"] == "first") >= 2
    for path in evidence.glob("pz_*"):
        path.unlink()

    # The dag-processor catches up: same version everywhere, nothing to warn about.
    _until("health ok", lambda: _health(deployment)["policy"] == "ok")
    assert {state["version"] for state in _recorded_states(deployment).values()} == {_version(fixed)}


def test_invalid_then_missing_policy_fail_tasks_closed_and_runs_resume(deployment: Deployment) -> None:
    deployment.wait_for_dags({"pz_zoned", "pz_unzoned"})
    assert deployment.import_errors() == {}
    policy = deployment.policy_file
    assert policy is not None
    _until("health ok", lambda: _health(deployment)["policy"] == "ok")
    assert _health(deployment)["policy_version"] == _version(POLICY_V1)

    _break_then_fix(
        deployment,
        policy=policy,
        valid_before=POLICY_V1,
        break_policy=lambda: policy.write_text(INVALID_YAML),
        fixed=POLICY_V2,
        expect_in_log="invalid YAML",
    )
    _break_then_fix(
        deployment,
        policy=policy,
        valid_before=POLICY_V2,
        break_policy=policy.unlink,
        fixed=POLICY_V3,
        expect_in_log="policy file not found",
    )


def _task_log(deployment: Deployment, dag_id: str, run_id: str, task_id: str) -> str:
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.rglob("*.log")))
