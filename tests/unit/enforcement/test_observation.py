"""The observer's own logic: what it asks the decision service, when, and what it refuses.

Decisions come from the real policy engine over the observed-read fixture policy (the service
adds recording, tested end to end in ``test_observed_reads.py``); the engine is called through a
counting adapter so that every round trip the worker would make is visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from airflow_policyzones.enforcement.errors import (
    DecisionUnavailable,
    ObservationUnavailable,
    ObservedReadDenied,
    ZoneViolation,
)
from airflow_policyzones.enforcement.observation import Observer, reconcile
from airflow_policyzones.policy import PolicyEngine, TaskContext
from airflow_policyzones.policy.engine import InputRef
from airflow_policyzones.wire import (
    MAX_INPUTS,
    DecisionRequest,
    DecisionResponse,
    ObservationRequest,
    TaskInstanceIdentity,
)
from tests.unit.enforcement.conftest import FIXTURES

POLICY = FIXTURES / "dags_hooks" / "policy.yaml"


class EngineService:
    """The decision service's answer for observed reads, from the real engine, counted."""

    def __init__(self, *, dag_id: str, zone: str) -> None:
        self.engine = PolicyEngine.from_file(POLICY)
        self.dag_id = dag_id
        self.zone = zone
        self.requests: list[ObservationRequest] = []
        self.down = False

    def __call__(self, request: ObservationRequest) -> DecisionResponse:
        self.requests.append(request)
        if self.down:
            raise DecisionUnavailable("the api-server is unreachable")
        refs = [
            InputRef.asset(i.name) if i.namespace == "asset" else InputRef.table(i.name)
            for i in request.inputs
        ]
        labeled = self.engine.label(refs)
        decision = self.engine.decide(
            task=TaskContext(dag_id=self.dag_id, task_id="t"),
            zone=self.zone,
            inputs=[item for item in labeled if item.labels is not None],
            uncheckable=request.uncheckable,
            undeclared=[item.ref for item in labeled if item.labels is None],
            now=datetime.now(timezone.utc),
        )
        return DecisionResponse(
            decision_id=1,
            outcome=decision.outcome.value,
            allowed=decision.allowed,
            zone=decision.zone,
            mode=decision.mode,
            policy_version=decision.policy_version,
            findings=[finding.to_dict() for finding in decision.findings],
        )


def observer_for(service: EngineService) -> Observer:
    request = DecisionRequest(
        task=TaskInstanceIdentity(dag_id=service.dag_id, task_id="t", run_id="r", try_number=1),
        zone=service.zone,
    )
    return Observer(request=request, decide=service)


@pytest.fixture
def recs() -> Iterator[EngineService]:
    yield EngineService(dag_id="hooksrecs_x", zone="recs")


@pytest.fixture
def trial() -> Iterator[EngineService]:
    yield EngineService(dag_id="hookstrial_x", zone="recs_trial")


def postgres_hook() -> object:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook("pz_sql")  # built, never connected: the observer needs its conn_type only


def test_reads_decided_in_this_try_cost_no_round_trip(recs: EngineService) -> None:
    observer = observer_for(recs)
    hook = postgres_hook()
    for _ in range(50):
        observer.sql(hook, "SELECT user_id FROM watch_history WHERE user_id = %s")
    observer.sql(hook, "SELECT count(*) FROM watch_history")
    assert len(recs.requests) == 1
    assert [(i.namespace, i.name) for i in recs.requests[0].inputs] == [("table", "watch_history")]
    assert observer.observed == 51
    reconcile(observer)  # nothing denied: the try may succeed


def test_a_denied_read_is_refused_again_without_asking_and_fails_the_try_at_reconcile(
    recs: EngineService,
) -> None:
    observer = observer_for(recs)
    hook = postgres_hook()
    for _ in range(3):  # the task's code catches the refusal and tries again
        with pytest.raises(ObservedReadDenied) as refused:
            observer.sql(hook, "SELECT * FROM purchases")
    assert len(recs.requests) == 1
    assert "category_not_allowed" in str(refused.value) and "(observed)" in str(refused.value)
    with pytest.raises(ZoneViolation, match="the task's code went on after the refusal"):
        reconcile(observer)


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        pytest.param(
            lambda o: o.input_asset(None, described="scheme='mysql'"), "names no asset", id="no-uri"
        ),
        pytest.param(lambda o: o.sql(postgres_hook(), "CALL load_everything()"), "runs code", id="call"),
        pytest.param(lambda o: o.sql(postgres_hook(), "SELECT * FROM {{ params.t }}"), "Jinja", id="jinja"),
        pytest.param(lambda o: o.sql(postgres_hook(), "SELEC * FROM"), "cannot parse", id="garbage"),
        pytest.param(
            lambda o: o.input_asset("s3://lake/unknown/x", described=""),
            "undeclared_input",
            id="uncatalogued",
        ),
    ],
)
def test_reads_that_cannot_be_named_fail_closed_in_an_enforce_zone(
    recs: EngineService, report: object, expected: str
) -> None:
    observer = observer_for(recs)
    with pytest.raises(ObservedReadDenied) as refused:
        report(observer)  # type: ignore[operator]
    assert expected in str(refused.value)


def test_in_a_dry_run_zone_reads_proceed_and_thousands_of_paths_stay_bounded(trial: EngineService) -> None:
    observer = observer_for(trial)
    for index in range(MAX_INPUTS + 500):
        observer.input_asset(f"file:///lake/part-{index}.csv", described="")
    # one request per new input up to the bound, then one saying the rest cannot be checked
    assert len(trial.requests) == MAX_INPUTS + 1
    assert any("more than 1000 distinct inputs" in problem for problem in trial.requests[-1].uncheckable)
    assert len(observer.allowed) <= MAX_INPUTS + 1
    reconcile(observer)


def test_a_temporary_table_belongs_to_its_database_session_only(recs: EngineService) -> None:
    observer = observer_for(recs)
    hook = postgres_hook()
    hook.conn = object()  # type: ignore[attr-defined]  # what PostgresHook.get_conn() keeps: one session
    observer.sql(hook, "CREATE TEMP TABLE recent AS SELECT user_id FROM watch_history")
    observer.sql(hook, "SELECT count(*) FROM recent")  # the session's own temporary table
    assert [[i.name for i in r.inputs] for r in recs.requests] == [["watch_history"]]
    hook.conn = object()  # type: ignore[attr-defined]  # the next run() opens a new connection
    with pytest.raises(ObservedReadDenied, match="undeclared_input"):
        observer.sql(hook, "SELECT count(*) FROM recent")  # another session: a table named recent
    unknown = postgres_hook()  # a hook that keeps no connection: each statement stands alone
    observer.sql(unknown, "CREATE TEMP TABLE recent2 AS SELECT user_id FROM watch_history")
    with pytest.raises(ObservedReadDenied, match="undeclared_input"):
        observer.sql(unknown, "SELECT count(*) FROM recent2")


def test_sql_that_is_not_text_or_read_in_a_claimed_dialect_fails_closed(recs: EngineService) -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Connection

    observer = observer_for(recs)
    observer.sql(postgres_hook(), b"SELECT user_id FROM watch_history")  # bytes are decoded
    assert [i.name for i in recs.requests[-1].inputs] == ["watch_history"]
    with pytest.raises(ObservedReadDenied, match="is not text"):
        observer.sql(postgres_hook(), object())

    class ClaimsMySql(PostgresHook):
        conn_type = "mysql"  # '#' starts a comment in MySQL, not in PostgreSQL

    lying = ClaimsMySql("pz_sql")
    lying._connection = Connection(conn_id="pz_sql", conn_type="postgres")
    with pytest.raises(ObservedReadDenied, match="its class says connection type 'mysql'"):
        observer.sql(lying, "SELECT 0 # 0, amount FROM purchases")


def test_what_hooks_write_becomes_outputs_bounded(recs: EngineService) -> None:
    observer = observer_for(recs)
    observer.sql(postgres_hook(), "CREATE TABLE mart.daily AS SELECT * FROM watch_history")
    for index in range(MAX_INPUTS + 10):
        observer.output_asset(f"file:///out/{index}.csv")
    specs = observer.output_specs()
    assert specs[0].model_dump() == {"namespace": "table", "name": "mart.daily", "source": "observed"}
    assert len(specs) == MAX_INPUTS


def test_no_decision_stops_the_read_retryably_and_the_try_fails_closed(recs: EngineService) -> None:
    recs.down = True
    observer = observer_for(recs)
    with pytest.raises(ObservationUnavailable, match="unreachable"):
        observer.sql(postgres_hook(), "SELECT * FROM watch_history")
    with pytest.raises(DecisionUnavailable, match="could not be checked"):
        reconcile(observer)


def test_a_task_that_reads_nothing_observable_asks_nothing(recs: EngineService) -> None:
    observer = observer_for(recs)
    reconcile(observer)
    assert recs.requests == [] and observer.observed == 0


def test_an_error_while_observing_stops_the_hook_call_instead_of_letting_it_through(
    recs: EngineService,
) -> None:
    from airflow.providers.common.sql.hooks.lineage import send_sql_hook_lineage

    from airflow_policyzones.enforcement.observation import observe_try

    observer = observer_for(recs)
    observe_try(observer)
    try:
        # a file name beyond what one request may carry: building the request fails
        with pytest.raises(ObservationUnavailable, match="could not be checked"):
            send_sql_hook_lineage(context=postgres_hook(), sql=f"COPY staging FROM '/data/{'x' * 3100}.csv'")
    finally:
        with pytest.raises(DecisionUnavailable, match="could not be checked"):
            reconcile(observer)  # and the try fails even if the task's code caught it


def test_what_a_try_wrote_before_it_was_refused_goes_with_the_refusing_request(recs: EngineService) -> None:
    observer = observer_for(recs)
    observer.output_asset("file:///out/early.csv")  # allowed so far: kept for the outputs report
    assert recs.requests == []
    with pytest.raises(ObservedReadDenied):
        observer.sql(postgres_hook(), "INSERT INTO mart.copy SELECT * FROM purchases")
    assert [(o.name, o.source) for o in recs.requests[-1].outputs] == [
        ("file:///out/early.csv", "observed"),
        ("mart.copy", "observed"),
    ]
    observer.output_asset("file:///out/late.csv")  # after the refusal: sent at once
    assert [o.name for o in recs.requests[-1].outputs] == ["file:///out/late.csv"]


# --- a connection or variable the api-server refused ----------------------------------------------------


class RefusingComms:
    """What the task's supervisor answers when the api-server refused the request with 403 (Airflow's
    own client turns the 403 into this; pinned end to end in tests/e2e/test_enforcement.py)."""

    def send(self, msg: object) -> object:
        from airflow.sdk.exceptions import ErrorType
        from airflow.sdk.execution_time.comms import ErrorResponse

        return ErrorResponse(error=ErrorType.PERMISSION_DENIED, detail={"status_code": 403})


def recorded_refusal(service: EngineService, *, kind: str, name: str) -> DecisionResponse:
    """The try's recorded decision after the api-server refused ``name``: the real engine's finding."""
    decision = service.engine.decide_credential(
        kind=kind,  # type: ignore[arg-type]
        name=name,
        task=TaskContext(dag_id=service.dag_id, task_id="t"),
        zone=service.zone,
    )
    return DecisionResponse(
        decision_id=7,
        outcome=decision.outcome.value,
        allowed=decision.allowed,
        zone=decision.zone,
        mode=decision.mode,
        policy_version=decision.policy_version,
        findings=[finding.to_dict() for finding in decision.findings],
        already_recorded=True,
    )


@pytest.fixture
def refusing_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", RefusingComms(), raising=False)


@pytest.mark.parametrize(("kind", "name"), [("connection", "pz_purchases"), ("variable", "ads_budget")])
def test_a_refused_credential_fails_the_try_without_retry_with_the_zone_reason_and_fix(
    recs: EngineService, refusing_supervisor: None, kind: str, name: str
) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSecretsBackendAccessDenied
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    from airflow_policyzones.enforcement.errors import CredentialRefused
    from airflow_policyzones.enforcement.observation import observe_try

    asked: list[str] = []

    def recorded() -> DecisionResponse:
        asked.append(name)
        return recorded_refusal(recs, kind=kind, name=name)

    observer = Observer(request=observer_for(recs).request, decide=recs, recorded=recorded)
    observe_try(observer)
    backend = ExecutionAPISecretsBackend()
    fetch = backend.get_connection if kind == "connection" else backend.get_variable
    try:
        with pytest.raises(CredentialRefused) as refused:
            fetch(name)
        # Still Airflow's "access denied" (no other secrets backend is asked), and no retry.
        assert isinstance(refused.value, AirflowSecretsBackendAccessDenied)
        assert isinstance(refused.value, AirflowFailException)
        message = str(refused.value)
        assert message.startswith(
            f"policyzones: the api-server refused {kind} {name!r} to task hooksrecs_x.t"
        )
        assert f"{kind}:{name} [{kind}_not_allowed" in message
        assert "    fix: " in message
        assert "zone 'recs'" in message
        with pytest.raises(CredentialRefused):
            fetch(name)  # asked again: refused again, explained once
        assert asked == [name]
    finally:
        with pytest.raises(ZoneViolation, match="went on after the refusal"):
            reconcile(observer)  # the task's code caught it: the try fails all the same
    # Outside a try the provider checks, Airflow's own refusal is left as it is.
    with pytest.raises(AirflowSecretsBackendAccessDenied) as plain:
        fetch(name)
    assert not isinstance(plain.value, CredentialRefused)


def test_a_refusal_that_cannot_be_explained_still_fails_the_try(
    recs: EngineService, refusing_supervisor: None
) -> None:
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    from airflow_policyzones.enforcement.errors import CredentialRefused
    from airflow_policyzones.enforcement.observation import observe_try

    def unreachable() -> DecisionResponse:
        raise DecisionUnavailable("the api-server is unreachable")

    observer = Observer(request=observer_for(recs).request, decide=recs, recorded=unreachable)
    observe_try(observer)
    try:
        with pytest.raises(CredentialRefused, match="does not let this task's zone use it"):
            ExecutionAPISecretsBackend().get_connection(conn_id="pz_purchases")
    finally:
        with pytest.raises(ZoneViolation):
            reconcile(observer)
