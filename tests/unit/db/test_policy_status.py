"""Which policy each component has loaded, read back from a real metadata database.

DAGs are parsed by Airflow's ``DagBag`` with the cluster policy on (as in the dag-processor) and
written to the database as the dag-processor writes them; the api-server side reads the record
with the JSON query of :func:`airflow_policyzones.db.policy_status.dag_processor_states` (SQLite and
PostgreSQL).
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_policyzones.db.policy_status import PolicyStatus, policy_status, short
from tests.support.airflow_db import BUNDLE, backend_params, postgres_database, scoped_env, use_database

pytestmark = pytest.mark.integration

POLICY_A = """\
version: 1
zones:
  ads:
    purpose: ads
    members: {dag_ids: ["status_*"]}
"""
POLICY_B = POLICY_A.replace("purpose: ads\n", "purpose: ads\n    description: version B\n")
DAG = """\
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow_policyzones import zone_tag

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), tags=[zone_tag("ads")]):
    EmptyOperator(task_id="t")
"""


def version(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module", params=backend_params())
def database(request: pytest.FixtureRequest) -> Iterator[Path]:
    from airflow.utils import db

    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="policyzones-status-")))
        if request.param == "sqlite":
            url = f"sqlite:///{root / 'airflow.db'}"
        else:
            url = stack.enter_context(postgres_database("pz_status"))
        folder = root / "dags"
        folder.mkdir()
        for dag_id in ("status_one", "status_two"):
            (folder / f"{dag_id}.py").write_text(DAG.format(dag_id=dag_id))
        stack.enter_context(use_database(url))
        db.initdb()
        yield folder


def process(folder: Path, policy: Path) -> None:
    """Parse and store the DAGs as the dag-processor does, with ``policy`` configured."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    from airflow_policyzones.enforcement.settings import reload_settings

    DagBundlesManager().sync_bundles_to_db()
    try:
        with scoped_env(
            AIRFLOW__POLICYZONES__ENABLED="True",
            AIRFLOW__POLICYZONES__POLICY_FILE=str(policy),
            # The dag-processor rewrites a serialized DAG at most this often (default 30 s).
            AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL="0",
        ):
            reload_settings()
            bag = DagBag(dag_folder=folder, bundle_path=folder, bundle_name=BUNDLE)
            assert bag.import_errors == {}, bag.import_errors
            sync_bag_to_db(bag, BUNDLE, None)
    finally:
        reload_settings()


def status(policy: Path) -> PolicyStatus:
    from airflow.utils.session import create_session

    with create_session() as session:
        return policy_status(session=session, policy_file=str(policy))


def test_versions_agree_differ_and_break(database: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(POLICY_A)
    b.write_text(POLICY_B)

    process(database, a)
    same = status(a)
    [group] = same.dag_processor
    assert (group.state is not None, group.dag_count, group.example_dag_ids) == (
        True,
        2,
        ("status_one", "status_two"),
    )
    assert group.state is not None and (group.state.version, group.state.loaded) == (version(POLICY_A), True)
    assert same.api_server.version == version(POLICY_A) and same.problems == [] and same.warnings == []

    # The api-server has the new file; the dag-processor has not parsed with it yet.
    [warning] = status(b).warnings
    assert warning.startswith(
        f"Policy version mismatch: the dag-processor validated 2 DAGs (status_one, status_two) against "
        f"{short(version(POLICY_A))}, the api-server decides with {short(version(POLICY_B))}."
    )

    # The dag-processor parsed with a broken file: DAGs stored, the problem reported once.
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nzones:\n  ads: [\n")
    process(database, broken)
    report = status(b)
    [problem] = report.problems
    assert problem.startswith("The dag-processor could not load the zone policy when it last parsed 2 DAGs")
    assert f"{broken}:4:1: error: invalid YAML" in problem
    assert report.to_dict()["dag_processor"][0]["loaded"] is False

    both_broken = status(broken)
    assert [line.splitlines()[0][:40] for line in both_broken.problems] == [
        "The api-server cannot load the zone poli",
        "The dag-processor could not load the zon",
    ]
    assert both_broken.warnings == []  # the same (broken) file on both sides: same version
