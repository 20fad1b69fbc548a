"""Real Airflow metadata databases for the tests: SQLite and PostgreSQL, with real DAG runs.

``prepared_database(backend)`` creates a database once per test process and backend, with the
schema ``airflow db migrate`` creates (Airflow's tables, then every DB manager's: ours comes from
the provider info). ``use_database(url)`` points Airflow's ORM at it for a ``with`` block. DAG
runs and task instances are created the way the scheduler creates them: DAG files parsed by
``DagBag``, synced to the DB, and a run created from the serialized DAG.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

POSTGRES_URL_ENV = "PZ_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
SKIP_POSTGRES_ENV = "PZ_TEST_SKIP_POSTGRES"
CONN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"
JWT_SECRET = "policyzones-test-secret-" + "x" * 64
BUNDLE = "dags-folder"

TEST_POLICY = """\
version: 1
name: service-tests
settings:
  require_zone: false
categories:
  purchase_events: {description: purchases}
  ad_clicks: {description: clicks}
  watch_history: {description: views}
catalog:
  - uri: "s3://lake/raw/purchases/**"
    categories: [purchase_events]
    consented: [ads]
  - uri: "s3://lake/raw/ad_clicks/**"
    categories: [ad_clicks]
    consented: [ads]
  - uri: "s3://lake/raw/mixed/**"
    categories: [purchase_events, ad_clicks]
    consented: [ads, ai]
    origin_zones: [ads]
  - uri: "s3://lake/derived/consented_daily/**"
    categories: [purchase_events]
    consented: [ai]
    aggregated: true
zones:
  ads:
    purpose: ads
    allowed_categories: [purchase_events, ad_clicks]
    members: {files: ["ads/*"]}
  recs:
    purpose: recs
    allowed_categories: [watch_history]
    unlabeled: allow
    members: {tags: ["team:recs"]}
  ai:
    purpose: ai
    allowed_categories: [purchase_events]
    requires_consent: true
    aggregated_only: true
    members: {owners: ["ml-team"]}
  marketing:
    purpose: marketing
    allowed_categories: [ad_clicks]
    mode: dry_run
    members: {dag_ids: ["mkt_*"]}
exemptions:
  - zone: recs
    dag: recs_dag
    asset: "s3://lake/raw/ad_clicks/**"
    reason: approved backfill
    ticket: PRIV-1
    expires: 2099-12-31
"""

_DAG = """\
from airflow.sdk import DAG, task

with DAG({dag_id!r}, schedule=None, tags={tags!r}, default_args={{"owner": {owner!r}}}):
    @task
    def read():
        pass

    @task
    def mapped(x):
        pass

    read()
    mapped.expand(x=[1, 2, 3])
"""

TEST_DAGS: dict[str, dict[str, object]] = {
    # membership by file (zone ads: files ads/*)
    "ads/ads_dag.py": {"dag_id": "ads_dag", "tags": ["ads"], "owner": "ads-team"},
    # membership by tag (zone recs: tags team:recs)
    "recs/recs_dag.py": {"dag_id": "recs_dag", "tags": ["team:recs"], "owner": "recs-team"},
    # membership by owner (zone ai: owners ml-team)
    "ml/ai_dag.py": {"dag_id": "ai_dag", "tags": [], "owner": "ml-team"},
    # membership by dag id (zone marketing: dag_ids mkt_*)
    "mkt/mkt_dag.py": {"dag_id": "mkt_dag", "tags": [], "owner": "mkt-team"},
    # a member of nothing
    "other/impostor.py": {"dag_id": "impostor", "tags": ["team:ads"], "owner": "someone"},
}


def postgres_admin_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)


@contextlib.contextmanager
def postgres_database(prefix: str = "pz_test") -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    admin_url = sa.make_url(postgres_admin_url())
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL is not reachable at {admin_url.render_as_string(hide_password=True)}: set "
            f"{POSTGRES_URL_ENV} to a server the tests may create databases on, or "
            f"{SKIP_POSTGRES_ENV}=1 to skip the PostgreSQL tests ({error})"
        ) from error
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def skip_postgres() -> bool:
    return os.environ.get(SKIP_POSTGRES_ENV, "").lower() in {"1", "true", "yes"}


@contextlib.contextmanager
def use_database(url: str) -> Iterator[None]:
    """Point Airflow's ORM at ``url`` for the ``with`` block, then back at what it was."""
    from airflow import settings

    previous = os.environ.get(CONN_ENV)
    os.environ[CONN_ENV] = url
    settings.configure_vars()
    settings.reconfigure_orm()
    try:
        yield
    finally:
        settings.dispose_orm()
        if previous is None:
            os.environ.pop(CONN_ENV, None)
        else:
            os.environ[CONN_ENV] = previous
        settings.configure_vars()
        settings.configure_orm()


@dataclass(frozen=True)
class Prepared:
    """A metadata database with Airflow's and our schema and the test DAGs parsed into it."""

    backend: str
    url: str
    dags_folder: Path


_prepared: dict[str, Prepared] = {}
_cleanup = contextlib.ExitStack()
atexit.register(_cleanup.close)


def prepared_database(backend: str) -> Prepared:
    """Created once per test process and backend (schema as ``airflow db migrate`` makes it)."""
    if backend in _prepared:
        return _prepared[backend]
    from airflow.utils import db

    root = Path(tempfile.mkdtemp(prefix=f"policyzones-{backend}-"))
    if backend == "sqlite":
        url = f"sqlite:///{root / 'airflow.db'}"
    elif backend == "postgres":
        url = _cleanup.enter_context(postgres_database())
    else:
        raise ValueError(backend)
    folder = root / "dags"
    write_dags(folder)
    with use_database(url):
        db.initdb()
        sync_dags(folder)
    _prepared[backend] = Prepared(backend, url, folder)
    return _prepared[backend]


@contextlib.contextmanager
def statements_run() -> Iterator[list[str]]:
    """The SQL statements Airflow's engine runs inside the block (the api-server's middlewares and
    routes included), whitespace collapsed and lower case, in order."""
    from airflow import settings

    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()).lower())

    sa.event.listen(settings.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(settings.engine, "before_cursor_execute", record)


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables for a ``with`` block, then restore what was there."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_dags(folder: Path) -> None:
    for relative, spec in TEST_DAGS.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(_DAG.format(**spec)))


def parsed_bag(path: Path, *, root: Path) -> Any:
    """``path`` (a DAG file or folder in the bundle at ``root``) parsed by ``DagBag`` without the
    provider's parse-time checks (enforcement reads its settings once per process, hence the
    reload): these tests are about what the server records, and the shared database then holds no
    policy version recorded by a parse."""
    from airflow.dag_processing.dagbag import DagBag

    from airflow_policyzones.enforcement.settings import reload_settings

    try:
        with scoped_env(AIRFLOW__POLICYZONES__ENABLED="False"):
            reload_settings()
            return DagBag(dag_folder=path, bundle_path=root, bundle_name=BUNDLE)
    finally:
        reload_settings()


def sync_dags(folder: Path, *, expected: set[str] | None = None) -> None:
    """Parse ``folder`` with DagBag and write the DAGs to the DB, as the dag-processor does;
    ``expected``: the DAG ids it must hold (default: those of ``write_dags``)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = parsed_bag(folder, root=folder)
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dags) == (expected or {str(spec["dag_id"]) for spec in TEST_DAGS.values()})
    sync_bag_to_db(bag, BUNDLE, None)


def create_run(dag_id: str, *, try_number: int = 1) -> str:
    """A new DAG run whose task instances are running at ``try_number``; returns its run_id."""
    from airflow._shared.timezones import timezone
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    run_id = f"manual__{uuid.uuid4().hex}"
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
        assert dag is not None, dag_id
        dag.create_dagrun(
            run_id=run_id,
            run_after=timezone.utcnow(),
            run_type=DagRunType.MANUAL,
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        session.flush()
        # What the scheduler does when it queues a try: bump try_number, mark it running.
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .values(try_number=try_number, state=TaskInstanceState.RUNNING)
        )
    return run_id


BACKENDS = ["sqlite", "postgres"]


def backend_params() -> list[object]:
    """``sqlite`` and ``postgres`` (skipped only when PZ_TEST_SKIP_POSTGRES is set)."""
    import pytest

    return [
        "sqlite",
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(skip_postgres(), reason=f"{SKIP_POSTGRES_ENV} is set"),
        ),
    ]


_PARSED_AS_DAG = """\
from airflow.sdk import DAG, Asset, task

from airflow_policyzones.db.verification import record_task_zones
from airflow_policyzones.zones import set_zone

with DAG({dag_id!r}, schedule=None, tags={tags!r}, default_args={{"owner": {owner!r}}}) as dag:
    @task(inlets=[Asset(uri) for uri in {read_inlets!r}], outlets=[Asset(uri) for uri in {read_outlets!r}])
    def read():
        pass

    @task(
        inlets=[Asset(uri) for uri in {mapped_inlets!r}],
        outlets=[Asset(uri) for uri in {mapped_outlets!r}],
    )
    def mapped(x):
        pass

    first = read()
    second = mapped.expand(x=[1, 2, 3])
    for zone, item in (({read_zone!r}, first), ({mapped_zone!r}, second)):
        if zone is not None:
            set_zone(item, zone=zone)
    record_task_zones(dag)  # what the cluster policy records in the dag-processor
"""


def parsed_as(
    dag_id: str,
    run_id: str,
    *,
    task_id: str = "read",
    zone: str | None = None,
    inlets: list[str] | tuple[str, ...] = (),
    outlets: list[str] | tuple[str, ...] = (),
) -> None:
    """Make the dag-processor's copy of ``dag_id`` one whose task ``task_id`` runs in ``zone``
    with those Asset inlets and outlets (the other task declares nothing), and run ``run_id``'s
    task instances on that DAG version — as a DAG file changed before the run's tries started.

    The DAG keeps the file, tags and owner of its entry in ``TEST_DAGS`` (membership facts).
    """
    relative, spec = next((path, spec) for path, spec in TEST_DAGS.items() if spec["dag_id"] == dag_id)
    values = {
        "read_inlets": list(inlets) if task_id == "read" else [],
        "read_outlets": list(outlets) if task_id == "read" else [],
        "read_zone": zone if task_id == "read" else None,
        "mapped_inlets": list(inlets) if task_id == "mapped" else [],
        "mapped_outlets": list(outlets) if task_id == "mapped" else [],
        "mapped_zone": zone if task_id == "mapped" else None,
    }
    reparsed(dag_id, _PARSED_AS_DAG.format(**spec, **values), run_id=run_id, relative=relative)


def parsed_with(dag_id: str, run_id: str, *, tags: list[str], read_zone: str | None = None) -> None:
    """Make the dag-processor's copy of ``dag_id`` one with DAG tags ``tags`` (a ``policyzone:``
    tag gives the DAG its zone) and task ``read`` set in ``read_zone``, and run ``run_id``'s task
    instances on it. File and owner as in ``TEST_DAGS``."""
    relative, spec = next((path, spec) for path, spec in TEST_DAGS.items() if spec["dag_id"] == dag_id)
    source = _PARSED_AS_DAG.format(
        **{**spec, "tags": tags},
        read_inlets=[],
        read_outlets=[],
        read_zone=read_zone,
        mapped_inlets=[],
        mapped_outlets=[],
        mapped_zone=None,
    )
    reparsed(dag_id, source, run_id=run_id, relative=relative)


def reparsed(dag_id: str, source: str, *, run_id: str | None = None, relative: str | None = None) -> None:
    """Replace the DAG file Airflow recorded for ``dag_id`` with ``source``, parse it and write it
    to the DB as the dag-processor does (a new DAG version when the DAG changed), and run
    ``run_id``'s task instances (if given) on the DAG's latest version.

    ``relative``: the file's path in the bundle, checked against what Airflow recorded.
    """
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.models.dag_version import DagVersion
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        fileloc, recorded = session.execute(
            sa.select(DagModel.fileloc, DagModel.relative_fileloc).where(DagModel.dag_id == dag_id)
        ).one()
    path = Path(str(fileloc))
    relative = relative or str(recorded)
    assert path.parts[-len(Path(relative).parts) :] == Path(relative).parts, (path, relative)
    path.write_text(textwrap.dedent(source))
    root = path.parents[len(Path(relative).parts) - 1]
    bag = parsed_bag(path, root=root)
    assert not bag.import_errors, bag.import_errors
    assert set(bag.dags) == {dag_id}, set(bag.dags)
    with scoped_env(AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL="0"):
        sync_bag_to_db(bag, BUNDLE, None)
    if run_id is None:
        return
    with create_session() as session:
        version = session.scalar(
            sa.select(DagVersion.id).where(DagVersion.dag_id == dag_id).order_by(DagVersion.created_at.desc())
        )
        session.execute(
            sa.update(TaskInstance)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
            .values(dag_version_id=version)
        )
