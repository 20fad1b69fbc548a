"""Fixtures for end-to-end tests: one real deployment per executor, shared by its tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import EXAMPLES, REPO_ROOT
from tests.e2e.deployment import Deployment, copy_dags, postgres_database

OBSERVED_DAGS = REPO_ROOT / "tests" / "fixtures" / "e2e" / "observed_reads.py"
"""Tasks reading a PostgreSQL warehouse through hooks, declaring nothing (test_enforcement.py)."""
CREDENTIAL_DAGS = REPO_ROOT / "tests" / "fixtures" / "e2e" / "credentials.py"
"""Tasks asking the api-server for a connection and a variable (test_enforcement.py)."""
CREDENTIAL_TRIGGER = REPO_ROOT / "tests" / "fixtures" / "e2e" / "credential_trigger.py"
"""The trigger the credential DAGs defer to: in the plugins folder, where the triggerer imports it."""
HOSTILE_DAGS = REPO_ROOT / "tests" / "fixtures" / "e2e" / "hostile_dags.py"
"""Tasks whose DAG code drops the zone check in the task process (test_hostile_dags.py)."""
CREDENTIAL_CONNECTION = "warehouse_raw"
CREDENTIAL_VARIABLE = "ads_bid_budget"
CREDENTIAL_VARIABLE_VALUE = "1000"
CONNECTIONS_POLICY = """\
  # Added by the end-to-end deployment: a connection to the warehouse, stored in the metadata DB.
  warehouse_raw:
    catalog: ["raw.purchases"]
"""
VARIABLES_POLICY = """\
  # Added by the end-to-end deployment: Ads Optimization's variables, stored in the metadata DB.
  "ads_*":
    zones: [ads_optimization]
"""
WAREHOUSE_CATALOG = """\
  # Added by the end-to-end deployment: the warehouse the observed-read DAGs query.
  - table: "raw.purchases"
    categories: [purchase_events]
    consented: [ads_optimization]
  - uri: "postgres://warehouse/analytics/raw/purchases"
    categories: [purchase_events]
    consented: [ads_optimization]
"""
WAREHOUSE_TABLES = (
    "CREATE SCHEMA raw",
    "CREATE TABLE raw.purchases (user_id int, amount int)",
    "INSERT INTO raw.purchases VALUES (1, 10), (2, 20), (3, 30)",
)

BURST_TASKS = 60
BURST_DAG = f'''\
"""{BURST_TASKS} mapped task instances in Content Recommendations, each reading purchases: all must be
blocked, each exactly once in the audit tables."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task
from evidence import leave_evidence

from airflow_policyzones import zone_tag

with DAG(
    dag_id="recs_violation_burst",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    tags=[zone_tag("content_recommendations")],
    default_args={{"retries": 2}},
    max_active_tasks={BURST_TASKS},
):

    @task(inlets=[Asset("s3://lake/raw/purchases/daily")])
    def rank(shard: int) -> None:
        leave_evidence(f"recs_violation_burst.rank.{{shard}}")

    rank.expand(shard=list(range({BURST_TASKS})))
'''


BYPASS_DAG = '''\
"""A DAG author gets around the zone check by monkeypatching the provider from the DAG file.

This works: the check runs in the worker process, next to DAG code. What it cannot do is leave a
decision row, so `policyzones audit` reports the try. (Documented in README, "Known limits".)"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator as AirflowEmptyOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker
from airflow.sdk import DAG, Asset, BaseOperator, task
from evidence import leave_evidence

import airflow_policyzones.enforcement.hook as _hook
from airflow_policyzones import zone_tag

_hook.enforce = lambda *args, **kwargs: None


class EmptyOperator(BaseOperator):
    """Named like Airflow's to hide from an audit that goes by class name; it really runs."""

    def execute(self, context):
        leave_evidence("recs_bypass_attempt.named_empty")


class TeamMarker(AirflowEmptyOperator):
    """The scheduler completes it without running it: nothing to check, not an unchecked try."""


with DAG(
    dag_id="recs_bypass_attempt",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    tags=[zone_tag("content_recommendations")],
    default_args={"retries": 2},  # a refused success fails the try at once all the same
):

    @task(inlets=[Asset("s3://lake/raw/purchases/daily")])
    def sneak() -> None:
        leave_evidence("recs_bypass_attempt.sneak")

    sneak()  # independent: the api-server fails each bypassing try on its own
    EmptyOperator(task_id="named_empty")
    TeamMarker(task_id="team_marker")
    ExternalTaskMarker(task_id="external_marker", external_dag_id="elsewhere", external_task_id="t")
'''


def add_policy_section(text: str, section: str, entries: str) -> str:
    """``entries`` (indented) added to the policy's top-level ``section``, created if missing."""
    header = f"\n{section}:\n"
    if header in text:
        assert text.count(header) == 1, f"the example policy has several '{section}:' sections"
        return text.replace(header, header + entries)
    return text.rstrip("\n") + f"\n{header}" + entries


def create_warehouse(url: str) -> str:
    """The warehouse tables in the database at ``url``; the URI of an Airflow connection to it."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in WAREHOUSE_TABLES:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module", params=["LocalExecutor", "CeleryExecutor"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """The example DAGs (plus a burst DAG, the observed-read, credential and hostile DAGs) in a real
    deployment on a fresh PostgreSQL database, with a second PostgreSQL database as the data
    warehouse (connection ``warehouse`` in every component's environment, ``warehouse_raw`` in the
    metadata DB), a variable in the metadata DB and a folder as ``file://`` object storage."""
    executor: str = request.param
    with (
        tempfile.TemporaryDirectory(prefix=f"policyzones-e2e-{executor}-") as tmp,
        postgres_database() as url,
        postgres_database("pz_e2e_warehouse") as warehouse_url,
    ):
        root = Path(tmp)
        dags = copy_dags(EXAMPLES, root / "dags")
        (dags / ".airflowignore").write_text((EXAMPLES / ".airflowignore").read_text())
        (dags / "recs_violation_burst.py").write_text(BURST_DAG)
        (dags / "recs_bypass_attempt.py").write_text(BYPASS_DAG)
        (dags / OBSERVED_DAGS.name).write_text(OBSERVED_DAGS.read_text())
        (dags / CREDENTIAL_DAGS.name).write_text(CREDENTIAL_DAGS.read_text())
        (dags / HOSTILE_DAGS.name).write_text(HOSTILE_DAGS.read_text())
        policy = dags / "policy.yaml"
        text = policy.read_text()
        assert text.count("\ncatalog:\n") == 1, "the example policy's catalog moved"
        text = text.replace("\ncatalog:\n", "\ncatalog:\n" + WAREHOUSE_CATALOG)
        text = add_policy_section(text, "connections", CONNECTIONS_POLICY)
        policy.write_text(add_policy_section(text, "variables", VARIABLES_POLICY))
        evidence = root / "evidence"
        evidence.mkdir()
        data = root / "data"
        data.mkdir()
        warehouse = create_warehouse(warehouse_url)
        instance = Deployment(
            home=root / "home",
            dags_folder=dags,
            db_url=url,
            policy_file=policy,
            executor=executor,
            extra_env={
                "POLICYZONES_EVIDENCE_DIR": str(evidence),
                "POLICYZONES_DATA_DIR": str(data),
                "AIRFLOW_CONN_WAREHOUSE": warehouse,
            },
        )
        instance.evidence = evidence  # type: ignore[attr-defined]
        instance.data = data  # type: ignore[attr-defined]
        plugins = instance.home / "plugins"
        plugins.mkdir(parents=True)
        (plugins / CREDENTIAL_TRIGGER.name).write_text(CREDENTIAL_TRIGGER.read_text())
        try:
            instance.start()
            # In the metadata DB, where only the api-server serves them: never in the workers' env.
            instance.airflow("connections", "add", CREDENTIAL_CONNECTION, "--conn-uri", warehouse)
            instance.airflow("variables", "set", CREDENTIAL_VARIABLE, CREDENTIAL_VARIABLE_VALUE)
            yield instance
        finally:
            instance.stop()
