"""``airflow db migrate`` creates, upgrades and (through ``airflow db-manager``) downgrades our tables.

Each test runs the real ``airflow`` command in a subprocess with a throw-away AIRFLOW_HOME, on
a fresh SQLite file and on a fresh PostgreSQL database. The manager is found through the
provider info's ``db-managers`` (no ``[database] external_db_managers`` needed for migrate).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_policyzones.db.manager import DB_MANAGER, HEAD_REVISION, VERSION_TABLE
from airflow_policyzones.db.models import policyzones_metadata, table_names
from tests.support.airflow_db import backend_params, postgres_database

pytestmark = pytest.mark.integration

FIRST_REVISION = "5c3f0a9d2b71"
LINEAGE_REVISION = "8b1d4e2f7a90"
SOURCES_REVISION = "d3e8a1c6b5f4"
CHAIN_REVISION = "f2a9c4e7b130"
FIRST_TABLES = {"policyzones_decision", "policyzones_decision_input", "policyzones_violation"}
TABLES = FIRST_TABLES | {
    "policyzones_asset_label_event",
    "policyzones_asset_labels",
    "policyzones_reclassification",
    "policyzones_policy_version",
}
BEFORE_HISTORY = TABLES - {"policyzones_policy_version"}
INDEXES = {
    "policyzones_decision": {
        "idx_policyzones_decision_decided_at": ["decided_at"],
        "idx_policyzones_decision_dag_decided_at": ["dag_id", "decided_at"],
        "idx_policyzones_decision_zone_decided_at": ["zone", "decided_at"],
        "idx_policyzones_decision_outcome_decided_at": ["outcome", "decided_at"],
        "idx_policyzones_decision_policy_version": ["policy_version", "decided_at"],
    },
    "policyzones_decision_input": {
        "idx_policyzones_decision_input_decision": ["decision_id"],
        "idx_policyzones_decision_input_category": ["category", "decision_id"],
    },
    "policyzones_violation": {
        "idx_policyzones_violation_decision": ["decision_id"],
        "idx_policyzones_violation_decided_at": ["decided_at"],
        "idx_policyzones_violation_dag_decided_at": ["dag_id", "decided_at"],
        "idx_policyzones_violation_zone_decided_at": ["zone", "decided_at"],
        "idx_policyzones_violation_rule_decided_at": ["rule", "decided_at"],
        "idx_policyzones_violation_observed_deny": ["decision_id"],
    },
}
PARTIAL_INDEX = "idx_policyzones_violation_observed_deny"
CHECKS = {
    "policyzones_decision": {"ck_policyzones_decision_outcome", "ck_policyzones_decision_source"},
    "policyzones_decision_input": set(),
    "policyzones_violation": {"ck_policyzones_violation_outcome"},
}


@pytest.fixture(params=backend_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'airflow.db'}"
    else:
        with postgres_database(prefix="pz_migrate") as url:
            yield url


def airflow(url: str, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(command), *args],
        env={
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def ours(url: str) -> tuple[set[str], list[str]]:
    """Our tables in the database, and the revisions in our version table."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            found = {name for name in names if "policyzones" in name}
            versions = (
                list(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
                if VERSION_TABLE in names
                else []
            )
        return found, versions
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {column["name"] for column in sa.inspect(conn).get_columns(table)}
    finally:
        engine.dispose()


def schema_problems(url: str) -> list[object]:
    """Differences between the database and the ORM, as Alembic's autogenerate sees them."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def include(_: object, name: str | None, type_: str, *args: object) -> bool:
        return type_ != "table" or name in policyzones_metadata.tables

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={"compare_type": True, "include_object": include, "version_table": VERSION_TABLE},
            )
            problems: list[object] = list(compare_metadata(context, policyzones_metadata))
            inspector = sa.inspect(conn)
            for table, indexes in INDEXES.items():
                found = {
                    index["name"]: index["column_names"]
                    for index in inspector.get_indexes(table)
                    if not index.get("duplicates_constraint")  # PostgreSQL: the unique key's index
                }
                if found != indexes:
                    problems.append(("indexes", table, found))
                checks = {check["name"] for check in inspector.get_check_constraints(table)}
                if checks != CHECKS[table]:
                    problems.append(("checks", table, checks))
            unique = inspector.get_unique_constraints("policyzones_decision")
            if [(u["name"], u["column_names"]) for u in unique] != [
                ("policyzones_decision_ti_try_uq", ["dag_id", "task_id", "run_id", "map_index", "try_number"])
            ]:
                problems.append(("unique", unique))
        return problems
    finally:
        engine.dispose()


def index_names(url: str, table: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {str(index["name"]) for index in sa.inspect(conn).get_indexes(table)}
    finally:
        engine.dispose()


def check_partial_index(url: str) -> None:
    """The index on observed denies covers only those rows (its WHERE, as the database reports it)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    query = (
        "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
        if engine.dialect.name == "postgresql"
        else "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name"
    )
    try:
        with engine.connect() as conn:
            definition = str(conn.execute(sa.text(query), {"name": PARTIAL_INDEX}).scalar_one())
    finally:
        engine.dispose()
    normalized = " ".join(definition.replace("::text", "").replace("(", " ").replace(")", " ").split())
    assert "WHERE outcome = 'deny' AND input_source = 'observed'" in normalized, definition


def insert_unchained_records(url: str) -> tuple[int, int]:
    """A decision and its violation as the previous schema held them (no chain columns)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    when = "2026-11-01 10:00:00.000000"
    identity = {"dag_id": "old_dag", "task_id": "read", "run_id": "r1", "map_index": -1, "try_number": 1}
    try:
        with engine.begin() as conn:
            decision = conn.execute(
                sa.text(
                    "INSERT INTO policyzones_decision (dag_id, task_id, run_id, map_index, try_number, zone,"
                    " zone_source, mode, outcome, allowed, policy_version, claims_digest, source, decided_at,"
                    " input_count, finding_count, violation_count) VALUES (:dag_id, :task_id, :run_id,"
                    " :map_index, :try_number, 'ads', 'dag', 'enforce', 'deny', false, 'sha256:old', 'c',"
                    " 'api', :when, 0, 1, 1) RETURNING id"
                ),
                {**identity, "when": when},
            ).scalar_one()
            violation = conn.execute(
                sa.text(
                    "INSERT INTO policyzones_violation (decision_id, dag_id, task_id, run_id, map_index,"
                    " try_number, zone, mode, outcome, rule, rules, reason, remediation, policy_version,"
                    " decided_at) VALUES (:decision, :dag_id, :task_id, :run_id, :map_index, :try_number,"
                    " 'ads', 'enforce', 'deny', 'category_not_allowed', '[\"category_not_allowed\"]',"
                    " 'r', 'f', 'sha256:old', :when) RETURNING id"
                ),
                {**identity, "decision": decision, "when": when},
            ).scalar_one()
        return decision, violation
    finally:
        engine.dispose()


def check_unchained_records(url: str, ids: tuple[int, int]) -> None:
    from sqlalchemy.orm import Session

    from airflow_policyzones.db.chain_verify import verify_records
    from airflow_policyzones.db.models import PolicyZonesDecision, PolicyZonesViolation

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with Session(engine) as session:
            decision = session.get_one(PolicyZonesDecision, ids[0])
            violation = session.get_one(PolicyZonesViolation, ids[1])
            assert (decision.outcome, decision.digest, decision.chain_length) == ("deny", None, None)
            assert (violation.digest, violation.chain_seq) == (None, None)
            report = verify_records(session=session)
        assert report.ok
        assert (report.decisions, report.violations) == (1, 1)
        assert (report.unchained_decisions, report.unchained_violations) == (1, 1)
        assert report.first_chained_id is None
    finally:
        engine.dispose()


def test_the_provider_declares_exactly_these_tables() -> None:
    assert table_names() == TABLES


def test_airflow_discovers_the_db_manager_from_provider_info() -> None:
    from airflow.providers_manager import ProvidersManager

    assert DB_MANAGER in ProvidersManager().db_managers


def test_db_migrate_creates_upgrades_and_downgrades_the_tables(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    airflow(database_url, home, "db", "migrate")
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []

    airflow(database_url, home, "db", "migrate")  # again: nothing to do
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])

    # A deployment on the first release upgrades to the lineage tables.
    downgrade = ("db-manager", "downgrade", DB_MANAGER, "--yes")
    manager = {"AIRFLOW__DATABASE__EXTERNAL_DB_MANAGERS": DB_MANAGER}
    airflow(database_url, home, *downgrade, "--to-revision", FIRST_REVISION, **manager)
    assert ours(database_url) == (FIRST_TABLES | {VERSION_TABLE}, [FIRST_REVISION])
    airflow(database_url, home, "db", "migrate")
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []

    # A deployment on the lineage tables gains the input-source columns, keeping its rows' shape.
    airflow(database_url, home, *downgrade, "--to-revision", LINEAGE_REVISION, **manager)
    assert ours(database_url) == (BEFORE_HISTORY | {VERSION_TABLE}, [LINEAGE_REVISION])
    assert "source" not in columns(database_url, "policyzones_decision_input")
    airflow(database_url, home, "db", "migrate")
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert "source" in columns(database_url, "policyzones_decision_input")
    assert schema_problems(database_url) == []

    # A deployment with recorded decisions gains the policy history and the record chain: its rows
    # stay, without digests, and verification says they were recorded before the chain started.
    airflow(database_url, home, *downgrade, "--to-revision", SOURCES_REVISION, **manager)
    assert ours(database_url) == (BEFORE_HISTORY | {VERSION_TABLE}, [SOURCES_REVISION])
    assert "digest" not in columns(database_url, "policyzones_decision")
    old_ids = insert_unchained_records(database_url)
    airflow(database_url, home, "db", "migrate")
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []
    check_unchained_records(database_url, old_ids)

    # A deployment on the record chain gains the partial index on observed denies, and loses it again.
    airflow(database_url, home, *downgrade, "--to-revision", CHAIN_REVISION, **manager)
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [CHAIN_REVISION])
    assert PARTIAL_INDEX not in index_names(database_url, "policyzones_violation")
    airflow(database_url, home, "db", "migrate")
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []
    check_partial_index(database_url)

    # `airflow db-manager` only runs managers listed in [database] external_db_managers.
    airflow(
        database_url,
        home,
        *("db-manager", "downgrade", DB_MANAGER, "--to-revision", "base", "--yes"),
        AIRFLOW__DATABASE__EXTERNAL_DB_MANAGERS=DB_MANAGER,
    )
    assert ours(database_url) == ({VERSION_TABLE}, [])

    airflow(database_url, home, "db", "migrate")  # a provider installed into an existing deployment
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []


def test_migration_files_create_the_same_schema_as_the_orm(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = airflow(database_url, home, "db", "migrate", "--use-migration-files")
    output = result.stdout + result.stderr
    assert "Running upgrade  -> " + FIRST_REVISION in output
    assert f"Running upgrade {FIRST_REVISION} -> {LINEAGE_REVISION}" in output
    assert f"Running upgrade {LINEAGE_REVISION} -> {SOURCES_REVISION}" in output
    assert f"Running upgrade {SOURCES_REVISION} -> {CHAIN_REVISION}" in output
    assert f"Running upgrade {CHAIN_REVISION} -> {HEAD_REVISION}" in output
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
    assert schema_problems(database_url) == []


def test_downgrade_sql_can_be_printed_without_running_it(database_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    airflow(database_url, home, "db", "migrate")
    result = airflow(
        database_url,
        home,
        *("db-manager", "downgrade", DB_MANAGER, "--to-revision", "base", "--show-sql-only"),
        AIRFLOW__DATABASE__EXTERNAL_DB_MANAGERS=DB_MANAGER,
    )
    assert "DROP TABLE policyzones_violation" in result.stdout
    assert ours(database_url) == (TABLES | {VERSION_TABLE}, [HEAD_REVISION])
