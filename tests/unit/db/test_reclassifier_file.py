"""A reclassifier is bound to its DAG file: the api-server grants its pass only to tries of the DAG
version Airflow parsed from the file the policy names (``dag_file``), whatever the worker says.

Real metadata databases (SQLite and PostgreSQL): the legitimate file and a second file defining
the same dag_id are parsed and serialized as the dag-processor does, one after the other (as the
DAG's file location flips between them), and a run is created from each version.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path

import pytest

from airflow_policyzones.db.propagation import recorded_dag_files
from airflow_policyzones.policy import PolicyEngine
from airflow_policyzones.policy.loader import load_policy_bytes
from airflow_policyzones.policy.models import Reclassifier
from tests.support.airflow_db import TEST_POLICY, Prepared, create_run, sync_dags
from tests.unit.db.test_propagation import _session, write
from tests.unit.db.test_service import PURCHASES, decide, request_for

pytestmark = pytest.mark.integration

DAG_ID = "rcl_dag"
LEGIT = "ads/rcl_dag.py"
COPY = "ads/rcl_copy.py"
OUTPUT = "s3://lake/derived/rcl/part-0"


def policy(dag_file: str | None) -> PolicyEngine:
    bound = f"\n    dag_file: {dag_file}" if dag_file else ""
    text = TEST_POLICY.replace(
        "exemptions:",
        f"""reclassifiers:
  ads_consent_filter:
    zone: ads
    dag_id: {DAG_ID}
    task_id: read{bound}
    outputs: {{consented: [ai], aggregated: true}}
flows:
  - {{from: ads, to: ai, via: [ads_consent_filter]}}
exemptions:""",
    )
    return PolicyEngine(load_policy_bytes(text.encode(), source="bound.yaml"))


def parse(relative: str) -> None:
    """``relative`` defines DAG_ID: parsed and serialized as the dag-processor does."""
    folder = Path(tempfile.mkdtemp(prefix="policyzones-rcl-"))
    path = folder / relative
    path.parent.mkdir(parents=True)
    path.write_text(
        textwrap.dedent(
            f"""\
            from airflow.sdk import DAG, Asset, task

            from airflow_policyzones.db.verification import record_task_zones
            from airflow_policyzones.zones import set_zone

            with DAG({DAG_ID!r}, schedule=None, tags=["ads"]) as dag:
                @task(inlets=[Asset({PURCHASES!r})], outlets=[Asset({OUTPUT!r})])
                def read():
                    pass

                set_zone(read(), zone="ads")
                record_task_zones(dag)  # what the cluster policy records in the dag-processor
            """
        )
    )
    sync_dags(folder, expected={DAG_ID})


def reclassified_by(engine: PolicyEngine, run_id: str) -> str | None:
    decision = decide(engine, request_for(DAG_ID, run_id, zone="ads", inputs=[PURCHASES]), parse=False)
    assert decision.outcome == "allow", decision.findings
    return write(engine, DAG_ID, run_id, [OUTPUT]).reclassifier


def test_the_pass_goes_only_to_the_dag_parsed_from_the_bound_file(backend: Prepared) -> None:
    bound = policy(LEGIT)
    parse(LEGIT)
    legit_run = create_run(DAG_ID)
    parse(COPY)  # the second file wins the next parse: the DAG's file flips to it
    copy_run = create_run(DAG_ID)
    with _session() as session:
        files = {
            run_id: recorded_dag_files(session, dag_id=DAG_ID, task_id="read", run_id=run_id, map_index=-1)
            for run_id in (legit_run, copy_run)
        }
    # Same structure: Airflow keeps one DAG version (still naming the first file), but the DAG's
    # file, which a worker is sent to load, is now the copy's.
    assert files == {legit_run: (LEGIT, COPY), copy_run: (LEGIT, COPY)}

    assert reclassified_by(bound, copy_run) is None, "the copy's outputs keep the raw purchase labels"
    parse(LEGIT)  # the legitimate file parsed again: its DAG's file is its own
    assert reclassified_by(bound, legit_run) == "ads_consent_filter"
    # Unbound, the dag and task ids alone decide: the copy gets the pass (why dag_file matters).
    parse(COPY)
    unbound_run = create_run(DAG_ID)
    assert reclassified_by(policy(None), unbound_run) == "ads_consent_filter"
    parse(LEGIT)  # leave the DAG where it belongs


@pytest.mark.parametrize(
    "dag_file", ["/abs/rcl.py", "../rcl.py", "ads//rcl.py", "ads/./rcl.py", "ads\\rcl.py"]
)
def test_dag_file_must_be_relative_to_the_dag_folder(dag_file: str) -> None:
    with pytest.raises(ValueError, match="not a path relative to the DAG folder"):
        Reclassifier.model_validate(
            {"zone": "ads", "dag_id": "d", "task_id": "t", "dag_file": dag_file, "outputs": {}}
        )
    assert (
        Reclassifier.model_validate(
            {"zone": "ads", "dag_id": "d", "task_id": "t", "dag_file": "./ads/rcl.py", "outputs": {}}
        ).dag_file
        == "ads/rcl.py"
    )
