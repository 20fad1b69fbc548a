"""Blind tasks (successful tries without a single known read), over HTTP and called directly.

The module parses DAGs of its own (``blind_*``, ``mkt_blind``: no other test decides on them) and
records decisions through the real service on real task instances, then finishes their tries as
Airflow does (``success`` or ``failed``; a cleared try moves to ``task_instance_history``). Reads
become known in every way the provider knows: declared inlets, SQL reads (checked ones and an
undeclared table), an uncheckable inlet and a read a hook reported while the body ran.
"""

from __future__ import annotations

import json
import random
import textwrap
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.db.audit import BLIND_EXPLANATION
from airflow_policyzones.db.audit_filters import MAX_BLIND_LIMIT
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import DecisionRequest, DecisionResponse, ObservationRequest
from tests.support.airflow_db import Prepared, create_run, reparsed, sync_dags
from tests.unit.api.test_read_api import auth, bearer, client, ok

pytestmark = pytest.mark.integration

__all__ = ["auth", "client"]

API = "/api/v1"
PURCHASES = "s3://lake/raw/purchases/daily"
CLICKS = "s3://lake/raw/ad_clicks/2026"
READABLE = {"blind_ads", "blind_plain", "mkt_blind"}
OUR_DAGS = READABLE | {"blind_hidden"}

_TASKS = """
from airflow.sdk import DAG, Asset, task

with DAG({dag_id!r}, schedule=None, tags={tags!r}, default_args={{"owner": "someone"}}):
    for task_id in {task_ids!r}:
        inlets = [Asset(uri) for uri in {inlets!r}.get(task_id, [])]
        task(task_id=task_id, inlets=inlets)(lambda: None)()
"""
_DAG_FILES = {
    # ads admits files ads/*
    "ads/blind_ads.py": (
        "blind_ads", ["policyzone:ads"], ["quiet", "mixed", "reader", "observed", "failed", "retried"]
    ),
    # marketing (dry_run) admits dag ids mkt_*: findings are recorded and the task runs
    "mkt/mkt_blind.py": ("mkt_blind", ["policyzone:marketing"], ["quiet", "undeclared", "uncheckable"]),
    "other/blind_plain.py": ("blind_plain", [], ["quiet"]),
    "other/blind_hidden.py": ("blind_hidden", [], ["quiet"]),
}  # fmt: skip


@dataclass(frozen=True)
class Try:
    """One try to record: what the worker claims, what hooks report, how the try ends."""

    dag_id: str
    task_id: str
    minute: int
    inputs: list[str] = field(default_factory=list)
    sql_reads: list[dict[str, str]] = field(default_factory=list)
    uncheckable: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    state: str = "success"

    @property
    def zone(self) -> str | None:
        return {"blind_ads": "ads", "mkt_blind": "marketing"}.get(self.dag_id)


SQL_FILE = {"namespace": "asset", "name": CLICKS}
UNKNOWN_TABLE = {"namespace": "table", "name": "warehouse.unknown"}
NO_DATA = "inlet File('/tmp/x') names no checkable data"
PLAN: dict[str, Try] = {
    "quiet_1": Try("blind_ads", "quiet", 0),
    "quiet_2": Try("blind_ads", "quiet", 5),
    "mixed_reads_1": Try("blind_ads", "mixed", 1, inputs=[PURCHASES]),
    "mixed_blind": Try("blind_ads", "mixed", 2),
    "mixed_reads_2": Try("blind_ads", "mixed", 3, inputs=[CLICKS]),
    "reader": Try("blind_ads", "reader", 1, inputs=[PURCHASES], sql_reads=[SQL_FILE]),
    "observed": Try("blind_ads", "observed", 1, observed=[PURCHASES]),
    "failed": Try("blind_ads", "failed", 1, state="failed"),
    "running": Try("blind_ads", "failed", 2, state="running"),
    "undeclared": Try("mkt_blind", "undeclared", 1, sql_reads=[UNKNOWN_TABLE]),
    "uncheckable": Try("mkt_blind", "uncheckable", 1, uncheckable=[NO_DATA]),
    "mkt_quiet": Try("mkt_blind", "quiet", 4),
    "plain_quiet": Try("blind_plain", "quiet", 4),
    "hidden_quiet": Try("blind_hidden", "quiet", 4),
}  # fmt: skip


@dataclass(frozen=True)
class Seeded:
    decisions: dict[str, DecisionResponse]
    run_ids: dict[str, str]
    at: dict[str, datetime]
    since: datetime
    until: datetime


@pytest.fixture(scope="module")
def our_dags(backend: Prepared, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Parse the module's DAG files and write them to the database, as the dag-processor does
    (without the provider's parse-time checks: the records are what these tests are about)."""
    folder = tmp_path_factory.mktemp("blind_dags")
    for relative, (dag_id, tags, task_ids) in _DAG_FILES.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            textwrap.dedent(_TASKS.format(dag_id=dag_id, tags=tags, task_ids=task_ids, inlets={}))
        )
    sync_dags(folder, expected=OUR_DAGS)
    return OUR_DAGS


@pytest.fixture
def readable(monkeypatch: pytest.MonkeyPatch, auth: dict[str, str], our_dags: set[str]) -> set[str]:
    """Users may read this module's DAGs but ``blind_hidden`` (the auth manager's answer, narrowed)."""
    from airflow.api_fastapi.app import get_auth_manager

    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: set(READABLE))
    return READABLE


def declare(item: Try, run_id: str) -> None:
    """Run ``run_id``'s tries on a version of the item's DAG whose task declares the Asset inlets
    the try claims (the server compares claims with the parsed DAG)."""
    relative, (dag_id, tags, task_ids) = next(
        (relative, spec) for relative, spec in _DAG_FILES.items() if spec[0] == item.dag_id
    )
    source = _TASKS.format(dag_id=dag_id, tags=tags, task_ids=task_ids, inlets={item.task_id: item.inputs})
    reparsed(dag_id, source, run_id=run_id, relative=relative)


def record(
    engine: PolicyEngine, item: Try, *, run_id: str, at: datetime, try_number: int = 1
) -> DecisionResponse:
    """The try's pre-execute decision, then what its hooks report while the body runs; first the
    DAG version the run's tries run on declares what this try claims (its inlets)."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.observed import decide_observed
    from airflow_policyzones.db.service import decide_and_record

    declare(item, run_id)
    identity = {"dag_id": item.dag_id, "task_id": item.task_id, "run_id": run_id, "try_number": try_number}
    request = DecisionRequest.model_validate(
        {
            "task": identity,
            "zone": item.zone,
            "zone_source": "dag" if item.zone else "none",
            "inputs": [{"namespace": "asset", "name": name} for name in item.inputs],
            "sql_reads": item.sql_reads,
            "uncheckable": item.uncheckable,
        }
    )
    with create_session() as session:
        decision = decide_and_record(session=session, engine=engine, request=request, source="api", now=at)
    if item.observed:
        observation = ObservationRequest.model_validate(
            {"task": identity, "inputs": [{"namespace": "asset", "name": name} for name in item.observed]}
        )
        with create_session() as session:
            decide_observed(session=session, engine=engine, request=observation, source="api", now=at)
    return decision


def finish(dag_id: str, run_id: str, task_id: str, state: str) -> None:
    """End the current try as the task runner does."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
            .values(state=state, end_date=datetime.now(timezone.utc))
        )


def retry(dag_id: str, run_id: str, task_id: str) -> None:
    """Clear the task instance and queue its next try: the finished try moves to the history."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
        ti.prepare_db_for_next_try(session)
        ti.try_number += 1
        ti.state = "running"
        ti.end_date = None


def seed(engine: PolicyEngine, *, base: datetime) -> Seeded:
    """Record every try of ``PLAN`` (and a cleared, re-run one) from ``base`` on, over an hour."""
    decisions: dict[str, DecisionResponse] = {}
    run_ids: dict[str, str] = {}
    at: dict[str, datetime] = {}
    for name, item in PLAN.items():
        run_ids[name] = create_run(item.dag_id)
        at[name] = base + timedelta(minutes=item.minute)
        decisions[name] = record(engine, item, run_id=run_ids[name], at=at[name])
        finish(item.dag_id, run_ids[name], item.task_id, item.state)
    # A try that succeeded and was cleared (now in the history), and its successful re-run.
    run_id = run_ids["retried_1"] = run_ids["retried_2"] = create_run("blind_ads")
    for try_number, name in enumerate(("retried_1", "retried_2"), 1):
        at[name] = base + timedelta(minutes=5 + try_number)
        decisions[name] = record(
            engine, Try("blind_ads", "retried", 0), run_id=run_id, at=at[name], try_number=try_number
        )
        finish("blind_ads", run_id, "retried", "success")
        if try_number == 1:
            retry("blind_ads", run_id, "retried")
    outcomes = {name: decision.outcome for name, decision in decisions.items()}
    assert outcomes["undeclared"] == outcomes["uncheckable"] == "dry_run"
    assert {decisions["undeclared"].findings[0].rule, decisions["uncheckable"].findings[0].rule} == {
        "undeclared_input",
        "uncheckable_input",
    }
    assert {outcome for name, outcome in outcomes.items() if name not in {"undeclared", "uncheckable"}} == {
        "allow"
    }
    return Seeded(decisions, run_ids, at, base, base + timedelta(hours=1))


@pytest.fixture(scope="module")
def seeded(our_dags: set[str], engine: PolicyEngine) -> Seeded:
    return seed(
        engine, base=datetime(2033, 3, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))
    )


def blind(client: TestClient, token: str, **params: Any) -> Any:
    return ok(client.get(f"{API}/blind", params=params, headers=bearer(token)))


def window(seeded: Seeded, *, since: datetime | None = None) -> dict[str, str]:
    """The seed's hour: tries recorded by other modules on the same DAGs stay out of it."""
    return {"since": iso(since or seeded.since), "until": iso(seeded.until)}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def expected(
    seeded: Seeded, name: str, *, blind_tries: int, tries_with_reads: int, try_number: int = 1
) -> Any:
    item = PLAN.get(name) or Try("blind_ads", "retried", 0)
    run_id = seeded.run_ids[name]
    return {
        "dag_id": item.dag_id,
        "task_id": item.task_id,
        "zone": item.zone,
        "blind_tries": blind_tries,
        "tries_with_reads": tries_with_reads,
        "last_decision_id": seeded.decisions[name].decision_id,
        "last_decided_at": iso(seeded.at[name]),
        "last_try": {
            "dag_id": item.dag_id,
            "run_id": run_id,
            "task_id": item.task_id,
            "map_index": -1,
            "try_number": try_number,
            "ui_path": f"dags/{item.dag_id}/runs/{run_id}/tasks/{item.task_id}",
        },
    }


def listed(report: dict[str, Any]) -> list[str]:
    return [f"{item['dag_id']}.{item['task_id']}" for item in report["items"]]


# --- the report ---------------------------------------------------------------------------------


def test_blind_tasks_are_the_successful_tries_without_a_known_read(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    report = blind(client, auth["viewer"], **window(seeded))

    assert report["since"] == iso(seeded.since)
    # until is exclusive, as for the other lists
    assert blind(client, auth["viewer"], since=iso(seeded.since), until=iso(seeded.since))["items"] == []
    assert (report["limit"], report["truncated"]) == (500, False)
    assert report["explanation"] == BLIND_EXPLANATION
    assert report["items"] == [
        # blind once, with reads twice: it reads data on some paths only
        expected(seeded, "mixed_blind", blind_tries=1, tries_with_reads=2),
        expected(seeded, "quiet_2", blind_tries=2, tries_with_reads=0),
        # the cleared try counts from the history, the last one from the task instance
        expected(seeded, "retried_2", blind_tries=2, tries_with_reads=0, try_number=2),
        expected(seeded, "plain_quiet", blind_tries=1, tries_with_reads=0),
        expected(seeded, "mkt_quiet", blind_tries=1, tries_with_reads=0),
    ]
    # Not listed: declared, SQL and observed reads; findings about an undeclared table and an
    # uncheckable inlet (reads known, though unlabeled); a failed and a running try; an
    # unreadable DAG.


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"zone": "marketing"}, ["mkt_blind.quiet"]),
        ({"zone": "ads"}, ["blind_ads.mixed", "blind_ads.quiet", "blind_ads.retried"]),
        ({"unzoned_only": "true"}, ["blind_plain.quiet"]),
        ({"dag_id": "blind_ads"}, ["blind_ads.mixed", "blind_ads.quiet", "blind_ads.retried"]),
        ({"dag_id": "blind_"}, []),  # exact match
        ({"dag_id": "blind_hidden"}, []),  # not readable
        ({"zone": "recs"}, []),
    ],
)
def test_blind_filters(
    client: TestClient,
    seeded: Seeded,
    auth: dict[str, str],
    readable: set[str],
    params: dict[str, str],
    names: list[str],
) -> None:
    assert listed(blind(client, auth["viewer"], **window(seeded), **params)) == names


def test_the_window_counts_only_tries_decided_in_it(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    later = blind(client, auth["viewer"], **window(seeded, since=seeded.since + timedelta(minutes=5)))
    assert later["items"] == [
        expected(seeded, "quiet_2", blind_tries=1, tries_with_reads=0),
        expected(seeded, "retried_2", blind_tries=2, tries_with_reads=0, try_number=2),
    ]
    # The default window is the last 7 days (the seed, decided in the future, lies in it).
    default = blind(client, auth["viewer"])
    since = datetime.fromisoformat(default["since"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - timedelta(days=7) - since) < timedelta(minutes=1)


def test_a_capped_report_says_so(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    capped = blind(client, auth["viewer"], **window(seeded), limit=2)
    assert (listed(capped), capped["truncated"]) == (["blind_ads.mixed", "blind_ads.quiet"], True)


def test_blind_tasks_of_unreadable_dags_are_hidden(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.utils.session import create_session

    from airflow_policyzones.db.audit_filters import BlindFilters
    from airflow_policyzones.db.audit_queries import blind_report

    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: {"blind_plain"})
    assert listed(blind(client, auth["viewer"], **window(seeded))) == ["blind_plain.quiet"]

    with create_session() as session:
        direct = blind_report(
            session=session,
            readable={"blind_hidden"},
            filters=BlindFilters(since=iso(seeded.since), until=seeded.until),
        )
    assert [(item.dag_id, item.task_id, item.zone) for item in direct.items] == [
        ("blind_hidden", "quiet", None)
    ]
    with create_session() as session:
        assert (
            blind_report(
                session=session,
                readable=set(),
                filters=BlindFilters(since=iso(seeded.since), until=seeded.until),
            ).items
            == []
        )


def test_decided_inputs_say_how_they_became_known(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    def sources(name: str) -> list[tuple[str, str | None]]:
        decision_id = seeded.decisions[name].decision_id
        detail = ok(client.get(f"{API}/decisions/{decision_id}", headers=bearer(auth["viewer"])))
        return [(item["name"], item["source"]) for item in detail["inputs"]]

    assert sources("reader") == [(PURCHASES, "declared"), (CLICKS, "sql")]
    assert sources("observed") == [(PURCHASES, "observed")]
    assert sources("quiet_1") == []


# --- authentication, bad input, OpenAPI ---------------------------------------------------------


def test_anonymous_is_401_and_a_user_without_a_role_403(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get(f"{API}/blind").status_code == 401
    assert client.get(f"{API}/blind", headers=bearer(auth["nobody"])).status_code == 403


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "is neither an ISO date/date-time nor a duration"),
        ({"since": "99999999999d"}, "is neither an ISO date/date-time nor a duration"),
        ({"since": "7" * 65}, None),
        ({"zone": "nowhere"}, "unknown zone 'nowhere'"),
        ({"zone": "ads", "unzoned_only": "true"}, "zone and unzoned_only exclude each other"),
        ({"unzoned_only": "maybe"}, None),
        ({"dag_id": "d" * 251}, None),
        ({"limit": 0}, None),
        ({"limit": MAX_BLIND_LIMIT + 1}, None),
        ({"since": "2033-02-01", "until": "2033-01-01"}, "since is after until"),
        ({"until": "2033-13-01"}, None),
    ],
)
def test_bad_input_is_422(
    client: TestClient, auth: dict[str, str], params: dict[str, Any], message: str | None
) -> None:
    response = client.get(f"{API}/blind", params=params, headers=bearer(auth["viewer"]))
    assert response.status_code == 422, response.text
    if message is not None:
        assert message in json.dumps(response.json()["detail"])


def test_openapi_documents_the_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"][f"{API}/blind"]["get"]
    assert "nothing to decide on" in operation["summary"]
    assert "A separate endpoint rather than a part of `/coverage`" in operation["description"]
    assert {"401", "403", "422"} <= set(operation["responses"])
    assert {"BlindOut", "BlindTaskOut"} <= set(schema["components"]["schemas"])
    assert "source" in schema["components"]["schemas"]["DecisionInputOut"]["properties"]
