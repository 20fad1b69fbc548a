"""The pre-execute check: the request it builds, how it acts on decisions, and how it chains."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_policyzones.enforcement import hook as hook_module
from airflow_policyzones.enforcement.errors import DecisionUnavailable, UncheckableTask, ZoneViolation
from airflow_policyzones.enforcement.hook import (
    act_on,
    build_request,
    deny_message,
    enforce,
    enforcement_hook_info,
    is_enforcement_hook,
    make_hook,
    obtain_decision,
)
from airflow_policyzones.enforcement.settings import EnforcementSettings
from airflow_policyzones.wire import DecisionRequest, DecisionResponse, TaskInstanceIdentity

PURCHASES = "s3://lake/raw/purchases/daily"
WATCH = "s3://lake/raw/watch_history/daily"


@dataclass
class FakeTI:
    """The identity fields the hook reads from the runtime task instance."""

    dag_id: str = "pz_dag"
    task_id: str = "t"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    map_index: int | None = -1
    try_number: int = 1


def settings(**values: Any) -> EnforcementSettings:
    return EnforcementSettings(**{"enabled": True, "policy_file": "", **values})


def operator(
    *, dag_id: str = "pz_dag", tags: list[str] | None = None, inlets: list[Any] | None = None
) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    with DAG(dag_id, schedule=None, tags=tags or []):
        return PythonOperator(task_id="t", python_callable=print, inlets=inlets or [])


def response(**values: Any) -> DecisionResponse:
    base: dict[str, Any] = {
        "decision_id": 3,
        "outcome": "allow",
        "allowed": True,
        "zone": "ads",
        "mode": "enforce",
        "policy_version": "sha256:" + "cd" * 32,
        "findings": [],
    }
    base.update(values)
    return DecisionResponse.model_validate(base)


FINDING = {
    "rule": "category_not_allowed",
    "rules": ["category_not_allowed", "consent_missing"],
    "input": PURCHASES,
    "reason": f"{PURCHASES} carries category 'purchase_events' that zone 'recs' does not allow",
    "remediation": "add 'purchase_events' to zones.recs.allowed_categories",
}


# --- the request --------------------------------------------------------------------------------


def test_build_request_describes_the_try_and_the_claims() -> None:
    from airflow.sdk import Asset

    from airflow_policyzones import zone_tag

    task = operator(tags=[zone_tag("ads")], inlets=[Asset("S3://LAKE/raw/purchases/daily/"), "raw_string"])
    request = build_request(task=task, ti=FakeTI(map_index=None, try_number=2))

    assert request.task == TaskInstanceIdentity(
        dag_id="pz_dag", task_id="t", run_id=FakeTI.run_id, map_index=-1, try_number=2
    )
    assert (request.zone, request.zone_source) == ("ads", "dag")
    assert [(spec.namespace, spec.name) for spec in request.inputs] == [("asset", PURCHASES)]
    assert len(request.uncheckable) == 1 and "'raw_string'" in request.uncheckable[0]


def test_build_request_uses_the_zone_a_mapped_task_carried() -> None:
    from airflow_policyzones import zone_tag

    request = build_request(task=operator(tags=[zone_tag("ads")]), ti=FakeTI(map_index=3), task_zone="recs")
    assert (request.zone, request.zone_source, request.task.map_index) == ("recs", "task", 3)


def test_an_unzoned_task_asks_with_no_zone() -> None:
    request = build_request(task=operator(), ti=FakeTI())
    assert (request.zone, request.zone_source) == (None, "none")


def test_malformed_annotations_fail_without_retry() -> None:
    from airflow_policyzones import zone_tag

    task = operator(tags=[zone_tag("ads"), zone_tag("recs")])
    with pytest.raises(
        UncheckableTask, match=r"zone annotations of pz_dag\.t are invalid.*several zone tags"
    ):
        build_request(task=task, ti=FakeTI())


def test_a_task_that_cannot_be_described_fails_without_retry() -> None:
    from airflow.sdk import Asset

    task = operator(inlets=[Asset(f"s3://lake/raw/{index}") for index in range(1001)])
    with pytest.raises(UncheckableTask, match="cannot be described to the decision service"):
        build_request(task=task, ti=FakeTI())


# --- acting on the decision ---------------------------------------------------------------------


def request_for(zone: str = "recs", map_index: int = -1) -> DecisionRequest:
    return DecisionRequest.model_validate(
        {
            "task": {
                "dag_id": "pz_dag",
                "task_id": "t",
                "run_id": "r1",
                "map_index": map_index,
                "try_number": 1,
            },
            "zone": zone,
            "inputs": [{"namespace": "asset", "name": PURCHASES}],
        }
    )


def test_a_deny_fails_the_task_naming_inputs_rules_reason_fix_and_policy() -> None:
    denied = response(
        outcome="deny",
        allowed=False,
        zone="recs",
        findings=[
            FINDING,
            {
                "rule": "zone_membership",
                "rules": ["zone_membership"],
                "input": None,
                "reason": "DAG 'pz_dag' is not a member of zone 'recs'",
                "remediation": "add the DAG to zones.recs.members",
            },
        ],
    )
    with pytest.raises(ZoneViolation) as caught:
        act_on(request_for(map_index=2), response=denied)
    message = str(caught.value)
    assert message.startswith(
        "policyzones: task pz_dag.t (run r1, map index 2, try 1) may not run in zone 'recs'"
    )
    assert "body did not run and it is not retried" in message
    assert f"  - input {PURCHASES} [category_not_allowed, consent_missing]: {FINDING['reason']}" in message
    assert f"    fix: {FINDING['remediation']}" in message
    assert "  - the task [zone_membership]: DAG 'pz_dag' is not a member" in message
    assert "policy sha256:" + "cd" * 32 in message and "decision 3" in message
    assert (
        f"`policyzones explain POLICY --zone recs --dag-id pz_dag --task-id t --input {PURCHASES}`" in message
    )
    assert message == deny_message(request_for(map_index=2), response=denied)


def test_allow_is_logged_compactly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=hook_module.__name__):
        act_on(request_for("ads"), response=response(), elapsed=0.0123)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "policyzones: allow pz_dag.t zone=ads inputs=1 policy=sha256:cdcdcdcdcdcd decision=3 (12.3 ms)"
    )


@pytest.mark.parametrize(
    ("outcome", "label"), [("dry_run", "dry-run: would be denied"), ("exempted", "exempted")]
)
def test_dry_run_and_exempted_run_with_warnings(
    caplog: pytest.LogCaptureFixture, outcome: str, label: str
) -> None:
    finding = {**FINDING, "exemption": "PRIV-1" if outcome == "exempted" else None}
    with caplog.at_level(logging.INFO, logger=hook_module.__name__):
        act_on(request_for(), response=response(outcome=outcome, zone="recs", findings=[finding]))
    messages = [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.WARNING for record in caplog.records)
    assert label in messages[0] and "the task runs" in messages[0]
    assert PURCHASES in messages[1] and FINDING["reason"] in messages[1] and "fix:" in messages[1]
    if outcome == "exempted":
        assert "[exempted by PRIV-1]" in messages[1]


# --- where the decision comes from ----------------------------------------------------------------


def test_disabled_enforcement_decides_nothing() -> None:
    context = {"task": operator(), "ti": FakeTI()}
    assert enforce(context, settings=settings(enabled=False)) is None


def test_in_process_without_a_policy_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook_module, "orm_available", lambda: True)
    with pytest.raises(DecisionUnavailable, match=r"could not get a decision \(no valid policy\)"):
        obtain_decision(request_for(), settings=settings(policy_file=""))


def test_without_the_orm_the_service_is_asked_through_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetXCom, XComResult

    sent: list[Any] = []

    class Supervisor:
        def send(self, msg: Any) -> Any:
            sent.append(msg)
            answer = {"status": 200, "body": response(zone="recs").model_dump(mode="json")}
            return XComResult(key=msg.key, value=answer) if isinstance(msg, GetXCom) else None

    monkeypatch.setattr(hook_module, "orm_available", lambda: False)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Supervisor(), raising=False)
    got = obtain_decision(request_for(), settings=settings())
    assert got.decision_id == 3 and [type(msg) for msg in sent] == [GetXCom]


# --- the hook: check first, then the author's hook ------------------------------------------------


def test_make_hook_checks_then_calls_the_authors_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_enforce(context: Any, *, task_zone: str | None = None) -> None:
        calls.append(f"check zone={task_zone}")
        if context.get("deny"):
            raise ZoneViolation("denied")

    def author(context: Any) -> str:
        calls.append("author")
        return "author result"

    monkeypatch.setattr(hook_module, "enforce", fake_enforce)
    hook = make_hook(chained=author, task_zone="recs")
    assert hook({}) == "author result"
    assert calls == ["check zone=recs", "author"]

    calls.clear()
    with pytest.raises(ZoneViolation):
        hook({"deny": True})
    assert calls == ["check zone=recs"]  # the author's hook never ran


def test_a_generator_hook_stays_a_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task runner exhausts generator hooks (they yield asset metadata); chaining keeps that."""
    import inspect

    calls: list[str] = []
    monkeypatch.setattr(hook_module, "enforce", lambda context, *, task_zone=None: calls.append("check"))

    def author(context: Any) -> Any:
        calls.append("author")
        yield "metadata"

    hook = make_hook(chained=author)
    assert inspect.isgeneratorfunction(hook)
    assert calls == []
    assert list(hook({})) == ["metadata"]
    assert calls == ["check", "author"]


def test_hooks_are_recognised_by_identity() -> None:
    hook = make_hook()
    assert is_enforcement_hook(hook) and enforcement_hook_info(hook) == (None, None)
    assert not is_enforcement_hook(print) and not is_enforcement_hook(None) and not is_enforcement_hook([])
    assert enforcement_hook_info(make_hook(chained=hook, task_zone="ads")) == (None, "ads")


# --- end to end through the supervisor and the real api-server -----------------------------------


@pytest.fixture(scope="module")
def api_server() -> Any:
    """Airflow's api-server app (execution API and plugins) over a migrated SQLite database."""
    import os

    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    from tests.support.airflow_db import JWT_SECRET, TEST_POLICY, prepared_database, use_database

    prepared = prepared_database("sqlite")
    policy = prepared.dags_folder.parent / "policy.yaml"
    policy.write_text(TEST_POLICY)
    saved = dict(os.environ)
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET  # the api-server's; the task holds none
    os.environ["AIRFLOW__POLICYZONES__POLICY_FILE"] = str(policy)
    try:
        with use_database(prepared.url), TestClient(create_app(apps="all")) as client:
            yield client
    finally:
        purge_cached_app()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def supervised(api_server: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Run the hook as the task process of a try: ORM blocked, ``SUPERVISOR_COMMS`` speaking for
    that try (its execution token) to the api-server."""
    from airflow.sdk.execution_time import task_runner

    from tests.support.supervisor import TaskSupervisor, task_instance_id

    monkeypatch.setattr(hook_module, "orm_available", lambda: False)

    def become(dag_id: str, run_id: str) -> None:
        monkeypatch.setattr(
            task_runner,
            "SUPERVISOR_COMMS",
            TaskSupervisor.of_try(api_server, ti_id=task_instance_id(dag_id, run_id)),
            raising=False,
        )

    return become


def run_context(dag_id: str, run_id: str, inlets: list[str]) -> dict[str, Any]:
    from airflow.sdk import Asset

    from airflow_policyzones import zone_tag

    task = operator(dag_id=dag_id, tags=[zone_tag("recs")], inlets=[Asset(uri) for uri in inlets])
    task.task_id = "read"
    return {"task": task, "ti": FakeTI(dag_id=dag_id, task_id="read", run_id=run_id)}


@pytest.mark.integration
def test_through_the_supervisor_the_hook_denies_and_allows(
    supervised: Callable[[str, str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's path: ORM blocked, the try asks through its supervisor, the service decides for
    the try the execution token names."""
    from tests.support.airflow_db import create_run, parsed_as

    monkeypatch.setattr(hook_module, "current_settings", lambda: settings())
    author_calls: list[str] = []
    hook = make_hook(chained=lambda context: author_calls.append(context["ti"].run_id))

    denied_run = create_run("recs_dag")
    parsed_as("recs_dag", denied_run, zone="recs", inlets=[PURCHASES])  # as the dag-processor saw it
    supervised("recs_dag", denied_run)
    with pytest.raises(ZoneViolation) as caught:
        hook(run_context("recs_dag", denied_run, [PURCHASES]))
    message = str(caught.value)
    assert f"input {PURCHASES} [category_not_allowed]" in message and "fix:" in message
    assert author_calls == []

    allowed_run = create_run("recs_dag")
    parsed_as("recs_dag", allowed_run, zone="recs", inlets=["s3://lake/unknown/but/unlabeled_allow"])
    supervised("recs_dag", allowed_run)
    hook(run_context("recs_dag", allowed_run, ["s3://lake/unknown/but/unlabeled_allow"]))
    assert author_calls == [allowed_run]

    # Same try again (a resumed deferral): the recorded decision comes back, nothing new is written.
    again = enforce(run_context("recs_dag", allowed_run, ["s3://lake/unknown/but/unlabeled_allow"]))
    assert again is not None and again.already_recorded


@pytest.mark.integration
def test_a_token_of_no_task_instance_fails_closed(supervised: Callable[[str, str], None]) -> None:
    supervised("recs_dag", "manual__never_created")
    with pytest.raises(DecisionUnavailable, match=r"could not get a decision"):
        enforce(run_context("recs_dag", "manual__never_created", []), settings=settings())


@pytest.mark.integration
def test_a_recorded_decision_does_not_cover_different_claims(supervised: Callable[[str, str], None]) -> None:
    from tests.support.airflow_db import create_run, parsed_as

    run_id = create_run("recs_dag")
    parsed_as("recs_dag", run_id, zone="recs", inlets=[PURCHASES])
    supervised("recs_dag", run_id)
    # The try's code asks first claiming no inputs: the claims differ from the parsed DAG, so that
    # is denied (and recorded for those claims).
    with pytest.raises(ZoneViolation, match="claims_differ_from_parsed_dag"):
        enforce(run_context("recs_dag", run_id, []), settings=settings())
    # Asked again with what the task declares, it never runs on the stored answer.
    with pytest.raises(DecisionUnavailable, match=r"HTTP 409.*different claims"):
        enforce(run_context("recs_dag", run_id, [PURCHASES]), settings=settings())


def test_hooks_survive_copy_and_pickle_as_the_same_check() -> None:
    import copy
    import pickle

    plain = make_hook()
    assert copy.copy(plain) is plain and copy.deepcopy(plain) is plain
    assert pickle.loads(pickle.dumps(plain)) is plain  # the shared hook stays shared
    zoned = make_hook(task_zone="ads")
    assert enforcement_hook_info(pickle.loads(pickle.dumps(zoned))) == (None, "ads")
    with pytest.raises(AttributeError, match="immutable"):
        zoned.task_zone = "recs"  # type: ignore[attr-defined]
