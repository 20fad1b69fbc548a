"""Hostile DAG code on a real deployment: DAG code that removes the zone check in the task process.

The DAGs are tests/fixtures/e2e/hostile_dags.py (Content Recommendations, reading the raw purchases
it may not read, retries=2). Each drops the pre-execute hook after the cluster policy attached it,
at a moment no parse-time check sees: a mapped operator's ``__init__`` (its task instances are
built at run time), ``render_template_fields``, ``prepare_for_execution``, a user-defined macro.

What the provider can and cannot do about it: the check runs in the task process, next to DAG
code, so the body of such a task does run. What it cannot do is succeed. The api-server refuses
success to a try that has no decision allowing it: the try is recorded as failed at once (no
retry, no asset events, nothing downstream), an ``undecided_run`` violation names the try, and
``policyzones audit`` (and the UI's unchecked page, which reads the same query) reports it.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_policyzones.db.models import CREDENTIALS_ONLY
from tests.e2e.deployment import VENV_BIN, Deployment

pytestmark = pytest.mark.e2e

TASK = "read_purchases"
# dag_id -> the map indexes of its task instances (-1: not mapped)
HOSTILE = {
    "recs_hostile_mapped_init": (0, 1),
    "recs_hostile_render_fields": (-1,),
    "recs_hostile_prepare": (-1,),
    "recs_hostile_macro": (-1,),
}


@pytest.fixture(scope="module")
def hostile_runs(deployment: Deployment) -> dict[str, Any]:
    """Every hostile DAG run once: their run ids and states, and when they were triggered."""
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    deployment.wait_for_dags(set(HOSTILE))
    # Nothing in them is refused at parse time: the hooks are in place when the policy looks.
    assert deployment.import_errors() == {}
    runs = {dag_id: deployment.trigger(dag_id) for dag_id in sorted(HOSTILE)}
    return {"started": started, "runs": runs, "states": deployment.wait_for_runs(runs)}


def _evidence_name(dag_id: str, map_index: int) -> str:
    return f"{dag_id}.{TASK}" + (f".{map_index}" if map_index >= 0 else "")


@pytest.mark.parametrize("dag_id", sorted(HOSTILE))
def test_dag_code_that_drops_the_check_runs_its_body_but_the_try_fails_undecided(
    deployment: Deployment, hostile_runs: dict[str, Any], dag_id: str
) -> None:
    run_id = hostile_runs["runs"][dag_id]
    map_indexes = HOSTILE[dag_id]
    assert hostile_runs["states"][dag_id] == "failed"

    instances = deployment.task_instances(dag_id, run_id)
    assert sorted(instances) == [(TASK, index) for index in map_indexes]
    # Failed at try 1 although the task has retries left: a refused success is not retried.
    assert {key: (ti["state"], ti["try_number"]) for key, ti in instances.items()} == {
        (TASK, index): ("failed", 1) for index in map_indexes
    }

    # Honestly: the body ran. The DAG code removed the check in the task process before it could
    # run, and nothing in that process can stop code that runs there first.
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    for index in map_indexes:
        assert (evidence / _evidence_name(dag_id, index)).exists(), f"{dag_id}[{index}]: the body ran"

    # No decision from the check; the api-server recorded why it refused the try's success.
    refused = deployment.query(
        "SELECT v.map_index, v.try_number, v.rule, v.rules, v.outcome, v.zone, v.input, "
        "d.outcome AS decision, d.allowed, d.source, d.claims_digest "
        "FROM policyzones_violation v JOIN policyzones_decision d ON d.id = v.decision_id "
        "WHERE v.dag_id = :d AND v.run_id = :r ORDER BY v.map_index",
        d=dag_id,
        r=run_id,
    )
    assert [
        (row["map_index"], row["try_number"], row["rule"], row["rules"], row["outcome"], row["input"])
        for row in refused
    ] == [(index, 1, "undecided_run", ["undecided_run"], "deny", None) for index in map_indexes]
    assert {
        (row["zone"], row["decision"], row["allowed"], row["source"], row["claims_digest"]) for row in refused
    } == {("content_recommendations", "deny", False, "api", CREDENTIALS_ONLY)}
    decisions = deployment.query(
        "SELECT map_index, try_number FROM policyzones_decision WHERE dag_id = :d AND run_id = :r",
        d=dag_id,
        r=run_id,
    )
    assert sorted((d["map_index"], d["try_number"]) for d in decisions) == [(i, 1) for i in map_indexes]

    api_log = (deployment.home / "api-server.log").read_text(errors="replace")
    assert f"task {dag_id}.{TASK} reported success without a decision" in api_log
    assert "recorded as failed" in api_log


def test_the_audit_reports_every_undecided_hostile_try(
    deployment: Deployment, hostile_runs: dict[str, Any]
) -> None:
    audit = subprocess.run(
        [
            str(VENV_BIN / "policyzones"),
            "audit",
            "--since",
            hostile_runs["started"].isoformat(),
            "--format",
            "json",
        ],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 1, audit.stderr
    unchecked = json.loads(audit.stdout)["unchecked"]
    runs = hostile_runs["runs"]
    # Only these DAGs ran in this module's deployment: every try of theirs, and nothing else.
    assert sorted(
        (u["dag_id"], u["task_id"], u["run_id"], u["map_index"], u["try_number"], u["state"])
        for u in unchecked
    ) == sorted(
        (dag_id, TASK, runs[dag_id], index, 1, "failed")
        for dag_id, indexes in HOSTILE.items()
        for index in indexes
    )


def test_a_celery_task_holds_no_signing_key_and_is_decided_all_the_same(deployment: Deployment) -> None:
    """The provider needs no ``[api_auth] jwt_secret`` where tasks run: a Celery worker has none,
    so task code there cannot mint a token for another try, and its try is still checked (through
    its supervisor). LocalExecutor tasks are forked from the scheduler, which holds the key to sign
    execution tokens: that is visible, and ``policyzones doctor`` reports it."""
    deployment.wait_for_dags({"recs_key_probe"})
    run_id = deployment.trigger("recs_key_probe")
    assert deployment.wait_for_runs({"recs_key_probe": run_id}) == {"recs_key_probe": "success"}
    evidence: Path = deployment.evidence  # type: ignore[attr-defined]
    found = {path.name for path in evidence.glob("recs_key_probe.probe.*")}
    expected = "no_jwt_secret" if deployment.executor == "CeleryExecutor" else "has_jwt_secret"
    assert found == {f"recs_key_probe.probe.{expected}"}
    rows = deployment.query(
        "SELECT outcome, source, try_number FROM policyzones_decision WHERE dag_id = :d AND run_id = :r",
        d="recs_key_probe",
        r=run_id,
    )
    assert rows == [{"outcome": "allow", "source": "api", "try_number": 1}]
