"""The checks on connections and variables that DAG files' own code (in the dag-processor) and
triggers (in the triggerer) ask for.

Airflow's own ``DagFileProcessorProcess`` parses each file in a forked child that asks this
process (the dag-processor's place) for connections and variables through Airflow's in-process
execution API, as ``airflow dag-processor`` does; the connection is in the metadata database
(SQLite and PostgreSQL), the DAGs of each file are known from a previous parse.
"""

from __future__ import annotations

import os
import selectors
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_policyzones.enforcement import in_process_credentials
from tests.support.airflow_db import BUNDLE, TEST_POLICY, Prepared, parsed_bag, scoped_env
from tests.support.db_fixtures import backend  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

CREDENTIALS = """\
connections:
  warehouse_raw:
    categories: [purchase_events]
variables:
  "ads_*":
    zones: [ads]
"""

_DAG = """\
import os
from pathlib import Path

from airflow.sdk import DAG, task
from airflow_policyzones.db.verification import record_task_zones
from airflow_policyzones.zones import set_zone

{fetch}

with DAG({dag_id!r}, schedule=None, tags={tags!r}, default_args={{"owner": "someone"}}) as dag:
    @task
    def read():
        pass

    first = read()
    if {task_zone!r} is not None:
        set_zone(first, zone={task_zone!r})
    record_task_zones(dag)
"""

FETCHES = {
    "connection": "from airflow.sdk import BaseHook\nvalue = BaseHook.get_connection({name!r}).password",
    "variable": "from airflow.sdk import Variable\nvalue = Variable.get({name!r})",
}
_WRITE = "\n(Path(os.environ['PZ_PARSE_OUT']) / {dag_id!r}).write_text(str(value))"


@pytest.fixture(scope="module", autouse=True)
def _setup(backend: Prepared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:  # noqa: F811
    """A policy restricting the warehouse connection and the ``ads_*`` variables; both stored in
    the metadata database (not the environment: the child would read that itself)."""
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from airflow_policyzones.enforcement.settings import reload_settings

    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(TEST_POLICY + CREDENTIALS)
    with create_session() as session:
        for conn_id in ("warehouse_raw", "open_data"):
            if session.query(Connection).filter(Connection.conn_id == conn_id).first() is None:
                session.add(
                    Connection(conn_id=conn_id, conn_type="postgres", host="h", password=f"{conn_id}-pw")
                )
    Variable.set("ads_budget", "1000")
    with scoped_env(AIRFLOW__POLICYZONES__POLICY_FILE=str(policy), AIRFLOW__POLICYZONES__ENABLED="True"):
        reload_settings()
        yield
    reload_settings()


@pytest.fixture(autouse=True)
def _installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check as ``airflow dag-processor`` installs it, taken out again after the test."""
    from airflow.dag_processing.processor import DagFileProcessorProcess

    monkeypatch.setattr(DagFileProcessorProcess, "_handle_request", DagFileProcessorProcess._handle_request)
    in_process_credentials.install("dag-processor")
    in_process_credentials.install("dag-processor")  # idempotent: one wrapper


@dataclass
class Parsed:
    dags: set[str]
    import_errors: dict[str, str]
    received: dict[str, str]
    log: str


def _file(
    root: Path, relative: str, *, dag_id: str, tags: list[str], task_zone: str | None, fetch: str
) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(_DAG.format(dag_id=dag_id, tags=tags, task_zone=task_zone, fetch=fetch)))
    return path


def _known(root: Path, relative: str, **dag: Any) -> None:
    """What a previous parse recorded: the file without its fetch, parsed and written to the DB."""
    from airflow.dag_processing.dagbag import sync_bag_to_db

    bag = parsed_bag(_file(root, relative, fetch="", **dag), root=root)
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, BUNDLE, None)


def _parse(root: Path, relative: str, out: Path) -> Parsed:
    """One run of Airflow's DAG file processor on ``relative``, answered by this process."""
    import structlog
    from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI
    from airflow.dag_processing.processor import DagFileProcessorProcess
    from airflow.sdk.api.client import Client
    from airflow.sdk.log import logging_processors

    client = Client(base_url=None, token="", dry_run=True, transport=InProcessExecutionAPI().transport)
    client.base_url = "http://in-process.invalid./"  # type: ignore[assignment]
    log_path = out / f"{uuid.uuid4().hex}.log"
    with log_path.open("ab") as handle, scoped_env(PZ_PARSE_OUT=str(out)):
        logger = structlog.wrap_logger(
            structlog.BytesLogger(handle),
            processors=logging_processors(json_output=True),
            logger_name="processor",
        ).bind()
        process = DagFileProcessorProcess.start(
            id=uuid.uuid4(),
            path=root / relative,
            bundle_path=root,
            bundle_name=BUNDLE,
            dag_file_rel_path=relative,
            callbacks=[],
            selector=selectors.DefaultSelector(),
            logger=logger,
            logger_filehandle=handle,
            client=client,
        )
        deadline = time.monotonic() + 120
        while not process.is_ready:
            assert time.monotonic() < deadline, "the DAG file processor did not finish"
            process._service_subprocess(max_wait_time=0.5)
    result = process.parsing_result
    assert result is not None, log_path.read_text()
    return Parsed(
        dags={dag.dag_id for dag in result.serialized_dags},
        import_errors={str(key): str(value) for key, value in (result.import_errors or {}).items()},
        received={path.name: path.read_text() for path in out.iterdir() if not path.suffix},
        log=log_path.read_text(),
    )


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "bundle", tmp_path / "out"
    out.mkdir()
    return root, out


def _case(
    folder: tuple[Path, Path],
    *,
    zone_dir: str,
    tags: list[str],
    kind: str = "connection",
    name: str = "warehouse_raw",
    task_zone: str | None = None,
    known: bool = True,
) -> tuple[Parsed, str]:
    root, out = folder
    dag_id = f"pz_parse_{uuid.uuid4().hex[:10]}"
    relative = f"{zone_dir}/{dag_id}.py"
    dag = {"dag_id": dag_id, "tags": tags, "task_zone": task_zone}
    if known:
        _known(root, relative, **dag)
    fetch = FETCHES[kind].format(name=name) + _WRITE.format(dag_id=dag_id)
    _file(root, relative, fetch=fetch, **dag)
    return _parse(root, relative, out), dag_id


ADS = {"zone_dir": "ads", "tags": ["policyzone:ads"]}
RECS = {"zone_dir": "recs", "tags": ["policyzone:recs", "team:recs"]}


def test_a_file_whose_dags_may_use_the_connection_gets_it(folder: tuple[Path, Path]) -> None:
    parsed, dag_id = _case(folder, **ADS)  # type: ignore[arg-type]
    assert parsed.import_errors == {}
    assert parsed.dags == {dag_id}
    assert parsed.received == {dag_id: "warehouse_raw-pw"}


def test_a_file_whose_dag_may_not_use_it_never_gets_it(folder: tuple[Path, Path]) -> None:
    parsed, _ = _case(folder, **RECS)  # type: ignore[arg-type]

    assert parsed.received == {}
    (error,) = parsed.import_errors.values()
    assert "Access denied for connection 'warehouse_raw'" in error
    assert "policyzones" in parsed.log and "'recs'" in parsed.log and "purchase_events" in parsed.log
    assert "fix:" in parsed.log


@pytest.mark.parametrize(
    ("kind", "name", "case", "served"),
    [
        ("connection", "WAREHOUSE_RAW", RECS, False),  # any spelling is the same connection
        ("connection", "open_data", RECS, True),  # not restricted
        ("variable", "ads_budget", ADS, True),
        ("variable", "ads_budget", RECS, False),
    ],
)
def test_connections_and_variables(
    folder: tuple[Path, Path], kind: str, name: str, case: dict[str, Any], served: bool
) -> None:
    parsed, dag_id = _case(folder, kind=kind, name=name, **case)
    assert (dag_id in parsed.received) is served, parsed
    assert (parsed.import_errors == {}) is served, parsed.import_errors


def test_a_task_in_another_zone_makes_the_file_refused(folder: tuple[Path, Path]) -> None:
    """The file's code builds every task: an ads DAG whose task is set in zone recs is refused
    what recs may not use (the file could hand it to that task)."""
    parsed, _ = _case(folder, zone_dir="ads", tags=["policyzone:ads", "team:recs"], task_zone="recs")
    assert parsed.received == {}
    assert parsed.import_errors and "'recs'" in parsed.log


def test_a_file_with_no_known_dag_gets_nothing_restricted(folder: tuple[Path, Path]) -> None:
    parsed, _ = _case(folder, **ADS, known=False)  # type: ignore[arg-type]
    assert parsed.received == {}
    assert parsed.import_errors
    assert "no DAG Airflow knows yet" in parsed.log and "inside a task" in parsed.log


def test_a_policy_that_does_not_load_refuses(folder: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nzones: [\n")
    with scoped_env(AIRFLOW__POLICYZONES__POLICY_FILE=str(broken)):
        parsed, _ = _case(folder, **ADS)  # type: ignore[arg-type]
    assert parsed.received == {}
    assert "the zone policy does not load here" in parsed.log


def test_disabled_enforcement_serves_everything(folder: tuple[Path, Path]) -> None:
    with scoped_env(AIRFLOW__POLICYZONES__ENABLED="False"):
        parsed, dag_id = _case(folder, **RECS)  # type: ignore[arg-type]
    assert parsed.received == {dag_id: "warehouse_raw-pw"}


def test_the_mechanism_on_this_airflow_version() -> None:
    """What the check relies on: the dag-processor answers its child's requests in
    ``DagFileProcessorProcess._handle_request``, which knows the file; Airflow's secrets lookup in
    the child refuses, without falling back, on ``PERMISSION_DENIED``."""
    import inspect

    from airflow.dag_processing.processor import DagFileProcessorProcess
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend

    fields = {field.name for field in DagFileProcessorProcess.__attrs_attrs__}  # type: ignore[attr-defined]
    assert {"bundle_name", "dag_file_rel_path"} <= fields
    assert "PERMISSION_DENIED" in inspect.getsource(ExecutionAPISecretsBackend._raise_if_authz_denied)


@pytest.mark.parametrize(
    ("command", "checked"),
    [("dag-processor", "True False"), ("triggerer", "False True"), ("scheduler", "False False")],
)
def test_airflow_installs_it_when_the_command_loads_the_cluster_policy(command: str, checked: str) -> None:
    """``import airflow`` in ``airflow dag-processor`` / ``airflow triggerer`` loads the cluster
    policy, which wraps that component's request handler before any child starts; other commands
    are left alone."""
    import subprocess
    import sys

    probe = (
        f"import sys; sys.argv = ['airflow', {command!r}]\n"
        "import airflow\n"
        "from airflow.dag_processing.processor import DagFileProcessorProcess as D\n"
        "from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor as T\n"
        "print(*(getattr(c._handle_request, '__policyzones_checked__', False) for c in (D, T)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True, env=os.environ
    )
    assert done.stdout.strip().splitlines()[-1] == checked, done.stderr[-2000:]
