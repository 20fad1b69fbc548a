"""Zone coverage, the decisions export and unchecked tries, over HTTP and called directly.

The module parses DAGs of its own (ids ``cov_*``, which no other test decides on) into the
shared test database and restricts what the users may read to them, so every answer can be
compared in full: a DAG with a zone tag, one without, one whose zone the policy does not know,
one its zone does not admit, one with two zone tags; a task decided in another zone through
``set_zone``, tasks never run, and a task id a spreadsheet would take for a formula.
"""

from __future__ import annotations

import csv
import io
import json
import random
import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_policyzones.db.audit_filters import MAX_UNCHECKED_LIMIT
from airflow_policyzones.db.exports import DECISION_EXPORT_COLUMNS
from airflow_policyzones.db.service import Source
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.wire import DecisionRequest, DecisionResponse
from tests.support.airflow_db import TEST_POLICY, Prepared, create_run, reparsed, sync_dags
from tests.unit.api.test_read_api import auth, bearer, client, ok

pytestmark = pytest.mark.integration

__all__ = ["auth", "client"]

API = "/api/v1"
PURCHASES = "s3://lake/raw/purchases/daily"
CLICKS = "s3://lake/raw/ad_clicks/2026"
OUR_DAGS = {"cov_ads", "cov_lost", "cov_outsider", "cov_plain", "cov_two_tags"}

_DAG_FILES = {
    # a member of its tag's zone (ads admits files ads/*); one task in another zone via set_zone.
    # The tasks that read declare their inlets, and the task zones are recorded as the cluster
    # policy records them (the server compares what a try claims with them).
    "ads/cov_ads.py": """
        from airflow.sdk import DAG, Asset, task
        from airflow_policyzones.db.verification import record_task_zones
        from airflow_policyzones.zones import set_zone, zone_tag

        with DAG(
            "cov_ads", schedule=None, tags=[zone_tag("ads")], default_args={"owner": "ads-team"}
        ) as dag:
            @task(inlets=[Asset("s3://lake/raw/purchases/daily")])
            def read():
                pass

            @task
            def side():
                pass

            @task
            def never():
                pass

            @task(task_id="-cmd", inlets=[Asset("s3://lake/raw/ad_clicks/2026")])
            def formula():
                pass

            read()
            set_zone(side(), zone="recs")
            never()
            formula()
            record_task_zones(dag)
        """,
    # no zone tag, and the test policy has no default zone
    "other/cov_plain.py": """
        from airflow.sdk import DAG, task

        with DAG("cov_plain", schedule=None, default_args={"owner": "someone"}):
            @task
            def read():
                pass

            @task
            def idle():
                pass

            read()
            idle()
        """,
    # tagged into a zone whose members it is not (ai admits the owner ml-team)
    "other/cov_outsider.py": """
        from airflow.sdk import DAG, task

        with DAG("cov_outsider", schedule=None, tags=["policyzone:ai"], default_args={"owner": "someone"}):
            @task
            def read():
                pass

            read()
        """,
    # tagged into a zone the policy does not define
    "other/cov_lost.py": """
        from airflow.sdk import DAG, task

        with DAG("cov_lost", schedule=None, tags=["policyzone:nowhere"], default_args={"owner": "someone"}):
            @task
            def read():
                pass

            read()
        """,
    # two zone tags: no default zone (the cluster policy reports it as an import error when on)
    "other/cov_two_tags.py": """
        from airflow.sdk import DAG, task

        with DAG(
            "cov_two_tags", schedule=None, tags=["policyzone:ads", "policyzone:recs"],
            default_args={"owner": "someone"},
        ):
            @task
            def read():
                pass

            read()
        """,
}


# cov_ads as it was before: ``read`` ran in recs (set_zone) and declared no inlets.
_COV_ADS_BEFORE = """
    from airflow.sdk import DAG, task
    from airflow_policyzones.db.verification import record_task_zones
    from airflow_policyzones.zones import set_zone, zone_tag

    with DAG("cov_ads", schedule=None, tags=[zone_tag("ads")], default_args={"owner": "ads-team"}) as dag:
        @task
        def read():
            pass

        set_zone(read(), zone="recs")
        record_task_zones(dag)
    """


@dataclass(frozen=True)
class Seeded:
    """The decisions recorded by the module, by name, and the window they were decided in."""

    decisions: dict[str, DecisionResponse]
    at: dict[str, datetime]
    since: datetime
    until: datetime


@pytest.fixture(scope="module")
def our_dags(backend: Prepared, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Parse the module's DAG files and write them to the database, as the dag-processor does
    (without the provider's parse-time checks: the records are what these tests are about)."""
    folder = tmp_path_factory.mktemp("coverage_dags")
    for relative, source in _DAG_FILES.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    sync_dags(folder, expected=OUR_DAGS)
    return OUR_DAGS


@pytest.fixture
def readable(monkeypatch: pytest.MonkeyPatch, auth: dict[str, str], our_dags: set[str]) -> set[str]:
    """Users may read only this module's DAGs (the auth manager's answer, narrowed)."""
    from airflow.api_fastapi.app import get_auth_manager

    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: set(our_dags))
    return our_dags


def _decide(
    *,
    engine: PolicyEngine,
    dag_id: str,
    task_id: str,
    zone: str | None,
    zone_source: str,
    inputs: list[str],
    now: datetime | None = None,
    run_id: str | None = None,
    source: Source = "api",
) -> DecisionResponse:
    from airflow.utils.session import create_session

    from airflow_policyzones.db.service import decide_and_record

    request = DecisionRequest.model_validate(
        {
            "task": {
                "dag_id": dag_id,
                "task_id": task_id,
                "run_id": run_id or create_run(dag_id),
                "try_number": 1,
            },
            "zone": zone,
            "zone_source": zone_source,
            "inputs": [{"namespace": "asset", "name": name} for name in inputs],
        }
    )
    with create_session() as session:
        return decide_and_record(session=session, engine=engine, request=request, source=source, now=now)


@pytest.fixture(scope="module")
def seeded(auth: dict[str, str], our_dags: set[str], engine: PolicyEngine) -> Seeded:
    """Seven decisions: ``ads_read_new`` is recorded first but decided later; ``side_again`` is
    decided at the same instant as ``side``, and recorded after it (the higher id wins the tie)."""
    base = datetime(2032, 6, 1, tzinfo=timezone.utc) + timedelta(minutes=random.randrange(10**6))
    # ``ads_read_old`` ran on an earlier version of cov_ads, the others on the current one.
    reparsed("cov_ads", _COV_ADS_BEFORE, relative="ads/cov_ads.py")
    old_run = create_run("cov_ads")
    reparsed("cov_ads", _DAG_FILES["ads/cov_ads.py"], relative="ads/cov_ads.py")
    plan: list[tuple[str, dict[str, Any], int]] = [
        ("ads_read_new", {"dag_id": "cov_ads", "task_id": "read", "zone": "ads", "zone_source": "dag",
                          "inputs": [PURCHASES]}, 2),
        ("ads_read_old", {"dag_id": "cov_ads", "task_id": "read", "zone": "recs", "zone_source": "task",
                          "inputs": [], "run_id": old_run}, 0),
        ("side", {"dag_id": "cov_ads", "task_id": "side", "zone": "recs", "zone_source": "task",
                  "inputs": []}, 1),
        ("side_again", {"dag_id": "cov_ads", "task_id": "side", "zone": "recs", "zone_source": "task",
                        "inputs": []}, 1),
        ("cmd", {"dag_id": "cov_ads", "task_id": "-cmd", "zone": "ads", "zone_source": "dag",
                 "inputs": [CLICKS]}, 3),
        ("plain_read", {"dag_id": "cov_plain", "task_id": "read", "zone": None, "zone_source": "none",
                        "inputs": []}, 4),
        # A decision for a task the DAG does not have (recorded in process, where no task
        # instance is checked): exported, but no task of the coverage report.
        ("formula", {"dag_id": "cov_plain", "task_id": "=cmd", "zone": None, "zone_source": "none",
                     "inputs": [], "run_id": "manual__formula", "source": "in_process"}, 5),
    ]  # fmt: skip
    decisions: dict[str, DecisionResponse] = {}
    at: dict[str, datetime] = {}
    for name, spec, minute in plan:
        at[name] = base + timedelta(minutes=minute)
        decisions[name] = _decide(engine=engine, now=at[name], **spec)
    assert {name: d.outcome for name, d in decisions.items()} == {
        "ads_read_new": "allow",
        "ads_read_old": "deny",
        "side": "deny",
        "side_again": "deny",
        "cmd": "allow",
        "plain_read": "allow",
        "formula": "allow",
    }
    assert [f.rule for f in decisions["side"].findings] == ["zone_membership"]
    return Seeded(decisions, at, base, base + timedelta(hours=1))


def last(seeded: Seeded, name: str, *, zone: str | None, zone_source: str, outcome: str) -> dict[str, Any]:
    decision = seeded.decisions[name]
    return {
        "decision_id": decision.decision_id,
        "zone": zone,
        "zone_source": zone_source,
        "outcome": outcome,
        "decided_at": seeded.at[name].isoformat().replace("+00:00", "Z"),
        "policy_version": decision.policy_version,
    }


def never(task_id: str, zone: str | None) -> dict[str, Any]:
    return {"task_id": task_id, "zone": zone, "zone_basis": "dag_default", "last_decision": None}


def decided(task_id: str, zone: str | None, last_decision: dict[str, Any]) -> dict[str, Any]:
    return {"task_id": task_id, "zone": zone, "zone_basis": "decision", "last_decision": last_decision}


def expected_dags(seeded: Seeded) -> dict[str, dict[str, Any]]:
    """Every DAG of the module as the unfiltered report shows it (with the test policy)."""
    dag = {"zone_tag_problem": None}
    return {
        "cov_ads": dag
        | {
            "dag_id": "cov_ads",
            "relative_fileloc": "ads/cov_ads.py",
            "tags": ["policyzone:ads"],
            "default_zone": "ads",
            "default_zone_source": "tag",
            "membership": "member",
            "tasks": [
                decided("-cmd", "ads", last(seeded, "cmd", zone="ads", zone_source="dag", outcome="allow")),
                never("never", "ads"),
                decided(
                    "read",
                    "ads",
                    last(seeded, "ads_read_new", zone="ads", zone_source="dag", outcome="allow"),
                ),
                decided(
                    "side",
                    "recs",
                    last(seeded, "side_again", zone="recs", zone_source="task", outcome="deny"),
                ),
            ],
        },
        "cov_lost": dag
        | {
            "dag_id": "cov_lost",
            "relative_fileloc": "other/cov_lost.py",
            "tags": ["policyzone:nowhere"],
            "default_zone": "nowhere",
            "default_zone_source": "tag",
            "membership": "unknown_zone",
            "tasks": [never("read", "nowhere")],
        },
        "cov_outsider": dag
        | {
            "dag_id": "cov_outsider",
            "relative_fileloc": "other/cov_outsider.py",
            "tags": ["policyzone:ai"],
            "default_zone": "ai",
            "default_zone_source": "tag",
            "membership": "not_member",
            "tasks": [never("read", "ai")],
        },
        "cov_plain": dag
        | {
            "dag_id": "cov_plain",
            "relative_fileloc": "other/cov_plain.py",
            "tags": [],
            "default_zone": None,
            "default_zone_source": "none",
            "membership": None,
            "tasks": [
                never("idle", None),
                decided(
                    "read", None, last(seeded, "plain_read", zone=None, zone_source="none", outcome="allow")
                ),
            ],
        },
        "cov_two_tags": {
            "dag_id": "cov_two_tags",
            "relative_fileloc": "other/cov_two_tags.py",
            "tags": ["policyzone:ads", "policyzone:recs"],
            "default_zone": None,
            "default_zone_source": "none",
            "zone_tag_problem": "DAG 'cov_two_tags' has several zone tags (policyzone:ads, policyzone:recs): "
            "keep one DAG default zone and put other tasks in a ZoneGroup or use set_zone()",
            "membership": None,
            "tasks": [never("read", None)],
        },
    }


def coverage(client: TestClient, token: str, **params: Any) -> Any:
    return ok(client.get(f"{API}/coverage", params=params, headers=bearer(token)))


# --- coverage -----------------------------------------------------------------------------------


def test_coverage_lists_every_readable_dag_and_task_with_its_zone(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str], engine: PolicyEngine
) -> None:
    report = coverage(client, auth["viewer"])

    assert report["policy_version"] == engine.version
    assert report["policy_error"] is None
    assert report["dags"] == list(expected_dags(seeded).values())
    assert report["summary"] == {
        "dags": 5,
        "tasks": 9,
        "tasks_per_zone": {"ads": 3, "ai": 1, "nowhere": 1, "recs": 1},
        "unzoned_tasks": 3,
        "never_decided_tasks": 5,
    }


@pytest.mark.parametrize(
    ("params", "listed", "summary"),
    [
        (
            {"zone": "ads"},
            {"cov_ads": ["-cmd", "never", "read"]},
            {
                "dags": 1,
                "tasks": 3,
                "tasks_per_zone": {"ads": 3},
                "unzoned_tasks": 0,
                "never_decided_tasks": 1,
            },
        ),
        (
            {"zone": "recs"},
            {"cov_ads": ["side"]},
            {
                "dags": 1,
                "tasks": 1,
                "tasks_per_zone": {"recs": 1},
                "unzoned_tasks": 0,
                "never_decided_tasks": 0,
            },
        ),
        (
            {"zone": "marketing"},
            {},
            {"dags": 0, "tasks": 0, "tasks_per_zone": {}, "unzoned_tasks": 0, "never_decided_tasks": 0},
        ),
        (
            {"unzoned_only": "true"},
            {"cov_plain": ["idle", "read"], "cov_two_tags": ["read"]},
            {"dags": 2, "tasks": 3, "tasks_per_zone": {}, "unzoned_tasks": 3, "never_decided_tasks": 2},
        ),
        (
            {"dag_id": "cov_outsider"},
            {"cov_outsider": ["read"]},
            {
                "dags": 1,
                "tasks": 1,
                "tasks_per_zone": {"ai": 1},
                "unzoned_tasks": 0,
                "never_decided_tasks": 1,
            },
        ),
        (
            {"dag_id": "cov_plain", "unzoned_only": "true"},
            {"cov_plain": ["idle", "read"]},
            {"dags": 1, "tasks": 2, "tasks_per_zone": {}, "unzoned_tasks": 2, "never_decided_tasks": 1},
        ),
        # dag_id is an exact match, not a substring
        (
            {"dag_id": "cov_"},
            {},
            {"dags": 0, "tasks": 0, "tasks_per_zone": {}, "unzoned_tasks": 0, "never_decided_tasks": 0},
        ),
    ],
)
def test_coverage_filters(
    client: TestClient,
    seeded: Seeded,
    auth: dict[str, str],
    readable: set[str],
    params: dict[str, str],
    listed: dict[str, list[str]],
    summary: dict[str, Any],
) -> None:
    report = coverage(client, auth["viewer"], **params)

    assert {dag["dag_id"]: [task["task_id"] for task in dag["tasks"]] for dag in report["dags"]} == listed
    assert report["summary"] == summary
    everything = expected_dags(seeded)
    for dag in report["dags"]:
        full = everything[dag["dag_id"]]
        assert dag == full | {"tasks": [t for t in full["tasks"] if t["task_id"] in listed[dag["dag_id"]]]}


def test_coverage_shows_only_readable_dags(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import get_auth_manager

    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: {"cov_plain", "cov_gone"})

    report = coverage(client, auth["viewer"])
    assert report["dags"] == [expected_dags(seeded)["cov_plain"]]
    assert coverage(client, auth["viewer"], dag_id="cov_ads")["dags"] == []


def test_coverage_without_restriction_includes_the_other_test_dags(
    client: TestClient, seeded: Seeded, auth: dict[str, str]
) -> None:
    # The admin reads every DAG in the database: the shared test DAGs too, untagged and unzoned.
    dags = {dag["dag_id"]: dag for dag in coverage(client, auth["admin"])["dags"]}
    assert OUR_DAGS | {"ads_dag", "recs_dag", "ai_dag", "mkt_dag", "impostor"} <= set(dags)
    assert dags["cov_ads"] == expected_dags(seeded)["cov_ads"]
    assert dags["impostor"]["tags"] == ["team:ads"]
    assert dags["impostor"]["default_zone"] is None
    assert [task["task_id"] for task in dags["impostor"]["tasks"]] == ["mapped", "read"]


def test_coverage_falls_back_to_the_policy_default_zone(
    client: TestClient,
    seeded: Seeded,
    auth: dict[str, str],
    readable: set[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    policy = tmp_path / "default_zone.yaml"
    policy.write_text(
        TEST_POLICY.replace("  require_zone: false\n", "  require_zone: false\n  default_zone: recs\n")
    )
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(policy))

    plain = coverage(client, auth["viewer"], dag_id="cov_plain")["dags"]
    # The never-run task takes the policy's default; the decided one keeps its decision's zone.
    assert plain == [
        expected_dags(seeded)["cov_plain"]
        | {
            "default_zone": "recs",
            "default_zone_source": "policy",
            "membership": "not_member",
            "tasks": [
                never("idle", "recs"),
                decided(
                    "read", None, last(seeded, "plain_read", zone=None, zone_source="none", outcome="allow")
                ),
            ],
        }
    ]


def test_coverage_is_served_when_the_policy_does_not_load(
    client: TestClient,
    seeded: Seeded,
    auth: dict[str, str],
    readable: set[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nzones: [not, a, mapping]\n")
    monkeypatch.setenv("AIRFLOW__POLICYZONES__POLICY_FILE", str(broken))

    report = coverage(client, auth["viewer"])
    assert report["policy_version"] is None
    assert "broken.yaml" in report["policy_error"]
    assert report["dags"] == [dag | {"membership": None} for dag in expected_dags(seeded).values()]
    # Without a policy any zone name is accepted as a filter (the audit stays readable).
    assert [dag["dag_id"] for dag in coverage(client, auth["viewer"], zone="nowhere")["dags"]] == ["cov_lost"]


def test_coverage_called_directly(seeded: Seeded, auth: dict[str, str], our_dags: set[str]) -> None:
    """The UI renders pages from the query layer, without HTTP."""
    from airflow.utils.session import create_session

    from airflow_policyzones.db.audit_filters import CoverageFilters
    from airflow_policyzones.db.coverage import coverage_report

    with create_session() as session:
        report = coverage_report(
            session=session, readable={"cov_ads", "cov_lost"}, filters=CoverageFilters(zone="ads")
        )
    assert report.summary.dags == 1
    assert [task.task_id for dag in report.dags for task in dag.tasks] == ["-cmd", "never", "read"]
    read = report.dags[0].tasks[2]
    assert read.last_decision is not None
    assert read.last_decision.decision_id == seeded.decisions["ads_read_new"].decision_id
    assert read.last_decision.decided_at == seeded.at["ads_read_new"]


# --- export of decisions ------------------------------------------------------------------------


NEWEST_FIRST = ["formula", "plain_read", "cmd", "ads_read_new", "side_again", "side", "ads_read_old"]


def export(client: TestClient, seeded: Seeded, token: str, **params: Any) -> Any:
    window = {"since": seeded.since.isoformat(), "until": seeded.until.isoformat()}
    return client.get(f"{API}/export/decisions", params=window | params, headers=bearer(token))


def test_export_decisions_csv(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    response = export(client, seeded, auth["viewer"], format="csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="policyzones-decisions.csv"'

    lines = list(csv.reader(io.StringIO(response.text)))
    assert tuple(lines[0]) == DECISION_EXPORT_COLUMNS
    rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert [int(row["id"]) for row in rows] == [seeded.decisions[name].decision_id for name in NEWEST_FIRST]
    # Task ids a spreadsheet would evaluate are exported as text.
    assert [row["task_id"] for row in rows] == ["'=cmd", "read", "'-cmd", "read", "side", "side", "read"]
    side = rows[NEWEST_FIRST.index("side")]
    assert side == {
        "id": str(seeded.decisions["side"].decision_id),
        "decided_at": seeded.at["side"].isoformat(),
        "dag_id": "cov_ads",
        "run_id": side["run_id"],
        "task_id": "side",
        "map_index": "-1",
        "try_number": "1",
        "zone": "recs",
        "zone_source": "task",
        "mode": "enforce",
        "outcome": "deny",
        "allowed": "False",
        "input_count": "0",
        "violation_count": "1",
        "policy_version": seeded.decisions["side"].policy_version,
        "source": "api",
    }
    assert side["run_id"].startswith("manual__")
    plain = rows[NEWEST_FIRST.index("plain_read")]
    assert (plain["zone"], plain["mode"], plain["zone_source"], plain["allowed"]) == ("", "", "none", "True")


def test_export_decisions_json_filtered_and_bounded(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str]
) -> None:
    rows = export(client, seeded, auth["viewer"], format="json").json()["rows"]
    assert [row["id"] for row in rows] == [seeded.decisions[name].decision_id for name in NEWEST_FIRST]
    formula = rows[0]
    assert formula == {
        "id": seeded.decisions["formula"].decision_id,
        "decided_at": seeded.at["formula"].isoformat(),
        "dag_id": "cov_plain",
        "run_id": "manual__formula",
        "task_id": "=cmd",
        "map_index": -1,
        "try_number": 1,
        "zone": None,
        "zone_source": "none",
        "mode": None,
        "outcome": "allow",
        "allowed": True,
        "input_count": 0,
        "violation_count": 0,
        "policy_version": seeded.decisions["formula"].policy_version,
        "source": "in_process",
    }

    capped = export(client, seeded, auth["viewer"], format="json", max_rows=2).json()["rows"]
    assert [row["id"] for row in capped] == [row["id"] for row in rows[:2]]
    by_zone = export(client, seeded, auth["viewer"], format="json", zone="recs").json()["rows"]
    assert [row["id"] for row in by_zone] == [
        seeded.decisions[n].decision_id for n in ("side_again", "side", "ads_read_old")
    ]
    by_outcome = export(client, seeded, auth["viewer"], format="json", outcome="deny", task_id="read")
    assert [row["id"] for row in by_outcome.json()["rows"]] == [seeded.decisions["ads_read_old"].decision_id]
    by_category = export(client, seeded, auth["viewer"], format="json", category="ad_clicks").json()["rows"]
    assert [row["id"] for row in by_category] == [seeded.decisions["cmd"].decision_id]


def test_export_decisions_of_readable_dags_only(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import get_auth_manager

    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: {"cov_plain"})
    rows = export(client, seeded, auth["viewer"], format="json").json()["rows"]
    assert [row["id"] for row in rows] == [seeded.decisions[n].decision_id for n in ("formula", "plain_read")]


# --- unchecked tries ----------------------------------------------------------------------------


def _start(dag_id: str, run_id: str, task_id: str, at: datetime) -> None:
    """Record that a try started, as the task runner does (the scheduler created it)."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(
            sa.update(TaskInstance)
            .where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
            )
            .values(start_date=at)
        )


def unchecked(client: TestClient, token: str, **params: Any) -> Any:
    return ok(client.get(f"{API}/unchecked", params=params, headers=bearer(token)))


def listed_tries(page: dict[str, Any]) -> list[tuple[str, str, str, int, int]]:
    return [
        tuple(
            item["task_instance"][key] for key in ("dag_id", "task_id", "run_id", "map_index", "try_number")
        )
        for item in page["items"]
    ]


def test_unchecked_tries_are_listed_until_a_decision_exists(
    client: TestClient, seeded: Seeded, auth: dict[str, str], readable: set[str], engine: PolicyEngine
) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    run_id = create_run("cov_plain")
    _start("cov_plain", run_id, "read", now - timedelta(hours=1))
    _start("cov_plain", run_id, "idle", now - timedelta(days=8))
    read = ("cov_plain", "read", run_id, -1, 1)
    idle = ("cov_plain", "idle", run_id, -1, 1)

    page = unchecked(client, auth["viewer"])  # the last 7 days
    assert listed_tries(page) == [read]
    assert page["truncated"] is False
    assert page["limit"] == 500
    since = datetime.fromisoformat(page["since"].replace("Z", "+00:00"))
    assert abs(now - timedelta(days=7) - since) < timedelta(minutes=1)
    [item] = page["items"]
    assert item == {
        "task_instance": {
            "dag_id": "cov_plain",
            "run_id": run_id,
            "task_id": "read",
            "map_index": -1,
            "try_number": 1,
            "ui_path": f"dags/cov_plain/runs/{run_id}/tasks/read",
        },
        "state": "running",
        "start_date": (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        "operator": "_PythonDecoratedOperator",
    }

    assert listed_tries(unchecked(client, auth["viewer"], since="10d")) == [idle, read]
    iso = (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert listed_tries(unchecked(client, auth["viewer"], since=iso)) == [read]
    capped = unchecked(client, auth["viewer"], since="10d", limit=1)
    assert (listed_tries(capped), capped["truncated"]) == ([idle], True)

    _decide(
        engine=engine,
        dag_id="cov_plain",
        task_id="read",
        zone=None,
        zone_source="none",
        inputs=[],
        run_id=run_id,
    )
    assert listed_tries(unchecked(client, auth["viewer"])) == []
    assert listed_tries(unchecked(client, auth["viewer"], since="10d")) == [idle]


def test_unchecked_tries_of_unreadable_dags_are_hidden(
    client: TestClient, seeded: Seeded, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.utils.session import create_session

    from airflow_policyzones.db.audit_filters import UncheckedQuery
    from airflow_policyzones.db.audit_queries import unchecked_report

    run_id = create_run("cov_outsider")
    _start("cov_outsider", run_id, "read", datetime.now(timezone.utc) - timedelta(minutes=5))
    monkeypatch.setattr(get_auth_manager(), "get_authorized_dag_ids", lambda **_: {"cov_ads"})
    assert listed_tries(unchecked(client, auth["viewer"], since="1h")) == []

    with create_session() as session:
        direct = unchecked_report(
            session=session, readable={"cov_outsider"}, query=UncheckedQuery(since="1h")
        )
    assert [(item.task_instance.dag_id, item.task_instance.run_id) for item in direct.items] == [
        ("cov_outsider", run_id)
    ]
    assert direct.truncated is False


# --- authentication, bad input, OpenAPI ---------------------------------------------------------


PATHS = ["/coverage", "/unchecked", "/export/decisions"]


@pytest.mark.parametrize("path", PATHS)
def test_anonymous_is_401_and_a_user_without_a_role_403(
    client: TestClient, auth: dict[str, str], path: str
) -> None:
    assert client.get(API + path).status_code == 401
    assert client.get(API + path, headers=bearer(auth["nobody"])).status_code == 403


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/coverage", {"zone": "nowhere"}, "unknown zone 'nowhere'"),
        ("/coverage", {"zone": "ads", "unzoned_only": "true"}, "zone and unzoned_only exclude each other"),
        ("/coverage", {"unzoned_only": "maybe"}, None),
        ("/coverage", {"dag_id": "d" * 251}, None),
        ("/unchecked", {"since": "yesterday"}, "is neither an ISO date/date-time nor a duration"),
        ("/unchecked", {"since": "2026-13-01"}, "is neither an ISO date/date-time nor a duration"),
        ("/unchecked", {"since": "99999999999d"}, "is neither an ISO date/date-time nor a duration"),
        ("/unchecked", {"since": "\u00b2d"}, "is neither an ISO date/date-time nor a duration"),
        ("/unchecked", {"since": "7" * 65}, None),
        ("/unchecked", {"limit": 0}, None),
        ("/unchecked", {"limit": MAX_UNCHECKED_LIMIT + 1}, None),
        ("/unchecked", {"limit": 10**12}, None),
        ("/export/decisions", {"format": "xml"}, None),
        ("/export/decisions", {"max_rows": 10**9}, None),
        ("/export/decisions", {"zone": "nowhere"}, "unknown zone 'nowhere'"),
        ("/export/decisions", {"outcome": "maybe"}, None),
        ("/export/decisions", {"since": "2031-13-45T00:00:00"}, None),
    ],
)
def test_bad_input_is_422(
    client: TestClient, auth: dict[str, str], path: str, params: dict[str, Any], message: str | None
) -> None:
    response = client.get(API + path, params=params, headers=bearer(auth["viewer"]))
    assert response.status_code == 422, response.text
    if message is not None:
        assert message in json.dumps(response.json()["detail"])


def test_openapi_documents_the_endpoints(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in PATHS:
        assert paths[API + path]["get"]["summary"], path
    assert "not serialize zones set on tasks" in paths[f"{API}/coverage"]["get"]["description"]
    assert {"CoverageOut", "DagCoverageOut", "TaskCoverageOut", "UncheckedOut"} <= set(
        schema["components"]["schemas"]
    )
    assert set(paths[f"{API}/export/decisions"]["get"]["responses"]["200"]["content"]) == {
        "text/csv",
        "application/json",
    }
