"""SQL tasks are checked against the tables their rendered SQL really reads, with ``dag.test()``
on a real PostgreSQL connection (the SQL runs when it is allowed).

The metadata database is SQLite (in-process recording, like ``airflow dags test``); the data
lives in a fresh PostgreSQL database behind the ``pz_sql`` connection.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.airflow_db import postgres_database
from tests.unit.enforcement.conftest import FIXTURES
from tests.unit.enforcement.test_dag_test import Outcome, warehouse_home

pytestmark = pytest.mark.integration

SQL_FIXTURES = FIXTURES / "dags_sql"
DAGS = [
    "sqlads_build",
    "sqlrecs_rank",
    "sqlrecs_undeclared",
    "sqlrecs_broken",
    "sqlrecs_templated",
    "sqlrecs_allowed",
    "sqlrecs_quoted_cte",
    "sqlads_quoted_cte",
]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Outcome, Path]]:
    root = tmp_path_factory.mktemp("sql-home")
    with postgres_database("pz_sqldata") as url:
        data = sa.create_engine(url)
        with data.begin() as connection:
            for ddl in (
                "CREATE TABLE purchases (user_id int, amount int)",
                "CREATE TABLE segments (user_id int)",
                "CREATE TABLE secrets (user_id int)",
                "CREATE TABLE watch_history (user_id int)",
                "CREATE TABLE recs_audit (zone text)",
                "INSERT INTO purchases VALUES (1), (2)",
            ):
                connection.execute(sa.text(ddl))
        home = warehouse_home(root, dags=SQL_FIXTURES, warehouse_url=url)
        result = home.run(*DAGS, phase="sql")
        with data.connect() as connection:
            segments = connection.execute(sa.text("SELECT count(*) FROM segments")).scalar()
            audit = connection.execute(sa.text("SELECT zone FROM recs_audit ORDER BY zone")).scalars().all()
        data.dispose()
        result.result["segments_rows"] = segments
        result.result["audit_rows"] = list(audit)
        yield result, root / "airflow.db"


def violations(db: Path) -> dict[str, tuple[list[str], str | None, str]]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT dag_id, rules, input, reason FROM policyzones_violation").fetchall()
    return {dag_id: (json.loads(rules), value, reason) for dag_id, rules, value, reason in rows}


def state(result: Outcome, dag_id: str) -> Any:
    return next(ti["state"] for ti in result.result["task_instances"] if ti["dag_id"] == dag_id)


def test_an_allowed_sql_task_runs_and_its_written_table_carries_the_labels(
    outcome: tuple[Outcome, Path],
) -> None:
    result, db = outcome
    assert state(result, "sqlads_build") == "success"
    assert result.result["segments_rows"] == 2
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT namespace, name, categories, origins FROM policyzones_asset_labels "
            "WHERE name = 'segments'"
        ).fetchall()
    assert rows == [("table", "segments", '["purchase_events"]', '["ads"]')]


@pytest.mark.parametrize(
    ("dag_id", "rules", "input_name"),
    [
        ("sqlrecs_rank", ["category_not_allowed", "unsanctioned_flow"], "segments"),
        ("sqlrecs_undeclared", ["undeclared_input"], "secrets"),
        ("sqlrecs_broken", ["uncheckable_input"], None),
        ("sqlrecs_templated", ["category_not_allowed"], "purchases"),
        # WITH "Purchases" AS (...) SELECT ... FROM purchases: the quoted CTE is another name
        ("sqlrecs_quoted_cte", ["category_not_allowed"], "purchases"),
    ],
)
def test_sql_reads_are_checked(
    outcome: tuple[Outcome, Path], dag_id: str, rules: list[str], input_name: str | None
) -> None:
    result, db = outcome
    assert state(result, dag_id) == "failed"
    found_rules, found_input, reason = violations(db)[dag_id]
    assert (found_rules, found_input) == (rules, input_name)
    if dag_id == "sqlrecs_broken":
        assert "cannot be analyzed" in reason and "postgres" in reason
    if dag_id == "sqlrecs_rank":
        assert reason.endswith(
            "derived: table segments (written by sqlads_build.run_sql in ads) ← table purchases"
        )


def test_a_quoted_cte_does_not_hide_the_table_it_spells_differently(outcome: tuple[Outcome, Path]) -> None:
    """``WITH "Purchases" AS (SELECT -1 AS amount) SELECT amount FROM purchases`` reads the table
    ``purchases`` in PostgreSQL: content_recommendations is denied and its body never ran (no audit
    row from recs), while the same SQL in ads, which may read purchases, ran and wrote its row."""
    result, db = outcome
    tasks = {ti["dag_id"]: ti for ti in result.result["task_instances"]}
    assert tasks["sqlrecs_quoted_cte"]["task_id"] == "content_recommendations"
    assert state(result, "sqlrecs_quoted_cte") == "failed"
    rules, input_name, _ = violations(db)["sqlrecs_quoted_cte"]
    assert (rules, input_name) == (["category_not_allowed"], "purchases")
    assert state(result, "sqlads_quoted_cte") == "success"
    assert "sqlads_quoted_cte" not in violations(db)
    assert result.result["audit_rows"] == ["ads"]


def test_sql_that_reads_only_allowed_tables_runs(outcome: tuple[Outcome, Path]) -> None:
    result, db = outcome
    assert state(result, "sqlrecs_allowed") == "success"
    assert "sqlrecs_allowed" not in violations(db)


def test_denied_sql_tasks_never_retry(outcome: tuple[Outcome, Path]) -> None:
    result, _ = outcome
    tries = {ti["dag_id"]: ti["try_number"] for ti in result.result["task_instances"]}
    assert all(tries[dag_id] == 1 for dag_id in DAGS), tries


def test_other_tasks_never_import_sqlglot() -> None:
    """sqlglot costs ~0.1 s to import: a worker running a non-SQL task must not pay it."""
    code = (
        "import sys\n"
        "from airflow.sdk import DAG, Asset\n"
        "from airflow.providers.standard.operators.python import PythonOperator\n"
        "from airflow_policyzones.enforcement.hook import _sql_reads, declared_outputs\n"
        "with DAG('d', schedule=None):\n"
        "    t = PythonOperator(task_id='t', python_callable=print, outlets=[Asset('s3://x/y')])\n"
        "assert declared_outputs(t)[0].name == 's3://x/y'\n"
        "from airflow_policyzones.wire import TaskInstanceIdentity as I\n"
        "ti = I(dag_id='d', task_id='t', run_id='r', try_number=1)\n"
        "assert _sql_reads(t, where='d.t', identity=ti) == ([], [])\n"
        "print('sqlglot' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"
