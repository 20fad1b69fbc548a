"""Ways a DAG file's own code, run by Airflow's ``DagFileProcessorProcess``, still reads (or
changes) a connection or variable its DAGs' zones may not use, and what held. The same real
dag-processor child, in-process execution API and metadata databases (SQLite and PostgreSQL) as
``test_in_process_credentials``; a file in ``recs/`` whose DAG is a member of ``recs`` only.

Each test that shows an open hole is marked ``xfail(strict=True)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.db_fixtures import backend  # noqa: F401 - the fixture
from tests.unit.enforcement.test_in_process_credentials import (  # noqa: F401 - the autouse fixtures
    _WRITE,
    FETCHES,
    RECS,
    Parsed,
    _file,
    _installed,
    _known,
    _parse,
    _setup,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def parse_folder(tmp_path: Path) -> tuple[Path, Path]:
    root, out = tmp_path / "bundle", tmp_path / "out"
    out.mkdir()
    return root, out


def _run(parse_folder: tuple[Path, Path], fetch: str, *, dag_id: str) -> Parsed:
    """Parse ``recs/<dag_id>.py`` (known from a previous parse as a recs DAG) whose top-level code
    runs ``fetch``, which leaves what it obtained in ``value``."""
    root, out = parse_folder
    relative = f"recs/{dag_id}.py"
    dag = {"dag_id": dag_id, "tags": RECS["tags"], "task_zone": None}
    _known(root, relative, **dag)
    _file(root, relative, fetch=fetch + _WRITE.format(dag_id=dag_id), **dag)
    return _parse(root, relative, out)


_FROM_THE_DATABASE = """\
import gc

import sqlalchemy as sa
from airflow.configuration import conf
from cryptography.fernet import Fernet, MultiFernet

# Airflow replaced the URL in the child's configuration and environment; the parent's engine,
# copied by the fork, still holds it.
_QUERY = sa.text("SELECT password, is_encrypted FROM connection WHERE conn_id = 'warehouse_raw'")
_found = None
for _url in {e.url for e in gc.get_objects() if issubclass(type(e), sa.engine.Engine)}:
    if _found is None and not _url.drivername.startswith("airflow-db-not-allowed"):
        _engine = sa.create_engine(_url)
        try:
            with _engine.connect() as _db:
                _found = _db.execute(_QUERY).one()
        except Exception:
            pass
        _engine.dispose()
_password, _encrypted = _found
_keys = [Fernet(key.encode()) for key in conf.get("core", "fernet_key").split(",") if key]
value = MultiFernet(_keys).decrypt(_password.encode()).decode() if _encrypted else _password
"""


@pytest.mark.xfail(
    strict=True,
    reason="the forked child that runs a DAG file's code holds the dag-processor's memory (its "
    "SQLAlchemy engine, URL and password included) and the Fernet key: Airflow's "
    "block_orm_access only replaces the URL in the configuration and environment",
)
def test_a_dag_file_cannot_read_a_restricted_connection_from_the_metadata_database(
    parse_folder: tuple[Path, Path],
) -> None:
    parsed = _run(parse_folder, _FROM_THE_DATABASE, dag_id="pz_red_db_read")
    assert "warehouse_raw-pw" not in parsed.received.values(), parsed.received


def test_a_dag_file_cannot_overwrite_a_restricted_variable(parse_folder: tuple[Path, Path]) -> None:
    from airflow.models.variable import Variable

    Variable.set("ads_budget", "1000")
    try:
        fetch = 'from airflow.sdk import Variable\nVariable.set("ads_budget", "0")\nvalue = "set"'
        parsed = _run(parse_folder, fetch, dag_id="pz_red_var_put")
        after = Variable.get("ads_budget", default_var=None)
    finally:
        Variable.set("ads_budget", "1000")
    assert after == "1000", (after, parsed.import_errors)


# --- what held ----------------------------------------------------------------------------------------


_ASYNC = """\
import asyncio
from airflow.sdk import BaseHook

value = asyncio.run(BaseHook.aget_connection("warehouse_raw")).password
"""


def test_an_async_fetch_is_checked_the_same_way(parse_folder: tuple[Path, Path]) -> None:
    parsed = _run(parse_folder, _ASYNC, dag_id="pz_red_async")
    assert parsed.received == {}
    assert parsed.import_errors and "'recs'" in parsed.log


@pytest.mark.parametrize("name", ["Warehouse_Raw", "warehouse_raw ", "WAREHOU\u017fE_RAW"])
def test_other_spellings_are_checked(parse_folder: tuple[Path, Path], name: str) -> None:
    fetch = FETCHES["connection"].format(name=name)
    parsed = _run(parse_folder, fetch, dag_id=f"pz_red_spell_{abs(hash(name)) % 10**8}")
    assert parsed.received == {}, parsed.received


def test_a_dag_file_that_imports_an_ads_dag_file_is_decided_as_itself(
    parse_folder: tuple[Path, Path],
) -> None:
    """Code of an ads file imported by a recs file runs in the recs file's parse: refused."""
    root, _ = parse_folder
    helper = root / "ads" / "ads_helper.py"
    helper.parent.mkdir(parents=True, exist_ok=True)
    helper.write_text(
        "from airflow.sdk import BaseHook\n\ndef read():\n"
        "    return BaseHook.get_connection('warehouse_raw').password\n"
    )
    fetch = (
        "import importlib.util, pathlib\n"
        "_spec = importlib.util.spec_from_file_location('ads_helper', "
        "pathlib.Path(__file__).parent.parent / 'ads' / 'ads_helper.py')\n"
        "_mod = importlib.util.module_from_spec(_spec)\n_spec.loader.exec_module(_mod)\n"
        "value = _mod.read()"
    )
    parsed = _run(parse_folder, fetch, dag_id="pz_red_import")
    assert parsed.received == {}


def test_a_file_that_adds_a_task_of_another_zone_in_the_same_parse_is_refused(
    parse_folder: tuple[Path, Path],
) -> None:
    """An ads file (ads/, ``policyzone:ads``, also ``team:recs``) known with its task in ``ads``;
    the new version sets the task in ``recs`` and reads the warehouse connection in one parse.
    The parse was served on the zones the file had (ads); its result, which puts a task in recs,
    is not stored: the file fails to import, so the connection never reaches that task."""
    root, out = parse_folder
    dag_id = "pz_red_new_zone"
    relative = f"ads/{dag_id}.py"
    tags = ["policyzone:ads", "team:recs"]
    _known(root, relative, dag_id=dag_id, tags=tags, task_zone=None)
    fetch = FETCHES["connection"].format(name="warehouse_raw") + _WRITE.format(dag_id=dag_id)
    _file(root, relative, dag_id=dag_id, tags=tags, task_zone="recs", fetch=fetch)
    parsed = _parse(root, relative, out)
    assert parsed.dags == set(), parsed
    (error,) = parsed.import_errors.values()
    assert "whose zone 'recs' may not use it" in error and "connection 'warehouse_raw'" in error


@pytest.mark.xfail(
    strict=True,
    reason="the child that runs a DAG file's code looks a connection up in its environment before "
    "it asks the dag-processor: AIRFLOW_CONN_* of the dag-processor's environment is served "
    "unchecked; detected by policyzones doctor --component dag-processor (tests/unit/test_doctor.py)",
)
def test_a_connection_in_the_dag_processors_environment_is_refused_to_a_recs_file(
    parse_folder: tuple[Path, Path],
) -> None:
    from tests.support.airflow_db import scoped_env

    uri = "postgres://reader:env-pw@warehouse/raw"
    with scoped_env(AIRFLOW_CONN_WAREHOUSE_RAW=uri):
        parsed = _run(parse_folder, FETCHES["connection"].format(name="warehouse_raw"), dag_id="pz_red_env")
    assert parsed.received == {}, parsed.received
