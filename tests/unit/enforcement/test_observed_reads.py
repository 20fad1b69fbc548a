"""Reads a task makes through hooks and object storage are decided while it runs (``dag.test()``).

The tasks declare no inlets. Their reads reach the zone check through Airflow's hook lineage
collector: ``PostgresHook`` on a real PostgreSQL database (``pz_sql``) and ``ObjectStoragePath``
on ``file://``. The metadata database is SQLite, decisions are recorded in process (like
``airflow dags test``); evidence files show which task code ran after a hook call returned.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.airflow_db import postgres_database
from tests.unit.enforcement.conftest import FIXTURES
from tests.unit.enforcement.test_dag_test import Outcome, warehouse_home

pytestmark = pytest.mark.integration

HOOK_FIXTURES = FIXTURES / "dags_hooks"
DAGS = [
    "hooksrecs_read",
    "hooksads_spend",
    "hooksrecs_spend_file",
    "hooksrecs_catch",
    "hooksrecs_allowed",
    "hooksrecs_opaque",
    "hooksrecs_nothing",
    "hookstrial_read",
    "hooksads_alias",
    "hooksrecs_launder",
    "hooksrecs_read_copy",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Outcome, Path, Path]]:
    root = tmp_path_factory.mktemp("hooks-home")
    data_dir = root / "data"
    data_dir.mkdir()
    with postgres_database("pz_hookdata") as url:
        data = sa.create_engine(url)
        with data.begin() as connection:
            for ddl in (
                "CREATE TABLE purchases (user_id int, amount int)",
                "CREATE TABLE watch_history (user_id int)",
                "INSERT INTO purchases VALUES (1, 10), (2, 20)",
                "INSERT INTO watch_history VALUES (1)",
                "CREATE TABLE watch_copy (amount int)",
            ):
                connection.execute(sa.text(ddl))
        data.dispose()
        home = warehouse_home(root, dags=HOOK_FIXTURES, warehouse_url=url, POLICYZONES_DATA_DIR=str(data_dir))
        outcome = home.run(*DAGS, phase="hooks")
        yield outcome, root / "airflow.db", data_dir


def state(outcome: Outcome, dag_id: str) -> Any:
    return next(ti["state"] for ti in outcome.result["task_instances"] if ti["dag_id"] == dag_id)


def query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, args).fetchall()


def violations(db: Path, dag_id: str) -> list[tuple[list[str], str | None, str, str | None, str]]:
    rows = query(
        db,
        "SELECT rules, input, outcome, input_source, reason FROM policyzones_violation WHERE dag_id = ?",
        dag_id,
    )
    return [
        (json.loads(rules), value, outcome, source, reason) for rules, value, outcome, source, reason in rows
    ]


def test_a_hook_read_the_zone_may_not_use_stops_inside_the_hook_call(
    run: tuple[Outcome, Path, Path],
) -> None:
    outcome, db, _ = run
    assert state(outcome, "hooksrecs_read") == "failed"
    assert "hooksrecs_read.rows" not in outcome.evidence  # the rows never reached the task's code
    found = violations(db, "hooksrecs_read")
    assert [(rules, value, result, source) for rules, value, result, source, _ in found] == [
        (["category_not_allowed"], "purchases", "deny", "observed")
    ]
    # one try only: a denied read is not retried although the task has retries=1
    tries = [row for row in outcome.result["decisions"] if row["dag_id"] == "hooksrecs_read"]
    assert [(row["try_number"], row["outcome"], row["allowed"]) for row in tries] == [(1, "deny", 0)]
    assert "read data through a hook that zone 'recs' may not use" in outcome.log


def test_what_an_allowed_task_writes_carries_what_it_read_and_a_reader_is_denied_with_the_path(
    run: tuple[Outcome, Path, Path],
) -> None:
    outcome, db, data_dir = run
    assert state(outcome, "hooksads_spend") == "success"
    assert "hooksads_spend.rows" in outcome.evidence
    assert (data_dir / "spend.csv").read_text() == "1,10\n2,20\n"
    spend = f"file://{data_dir}/spend.csv"
    assert query(
        db, "SELECT namespace, name, source FROM policyzones_decision_input WHERE name = 'purchases'"
    )
    events = query(
        db, "SELECT categories, source, dag_id FROM policyzones_asset_label_event WHERE name = ?", spend
    )
    assert [(json.loads(categories), source, dag) for categories, source, dag in events] == [
        (["purchase_events"], "observed", "hooksads_spend")
    ]
    assert state(outcome, "hooksrecs_spend_file") == "failed"
    assert "hooksrecs_spend_file.rows" not in outcome.evidence
    [(rules, value, result, source, reason)] = violations(db, "hooksrecs_spend_file")
    assert (rules, value, result, source) == (
        ["category_not_allowed", "unsanctioned_flow"],
        spend,
        "deny",
        "observed",
    )
    assert f"derived: {spend} (written by hooksads_spend.spend in ads) ← table purchases" in reason


def test_catching_the_refusal_does_not_let_the_try_succeed(run: tuple[Outcome, Path, Path]) -> None:
    outcome, db, _ = run
    assert "hooksrecs_catch.caught" in outcome.evidence  # the code did catch it ...
    assert state(outcome, "hooksrecs_catch") == "failed"  # ... and the try failed before success
    assert [row[:4] for row in violations(db, "hooksrecs_catch")] == [
        (["category_not_allowed"], "purchases", "deny", "observed")
    ]
    assert "the task's code went on after the refusal" in outcome.log


def test_allowed_reads_and_temporary_tables_run_and_are_recorded_as_observed(
    run: tuple[Outcome, Path, Path],
) -> None:
    outcome, db, _ = run
    assert state(outcome, "hooksrecs_allowed") == "success"
    assert "hooksrecs_allowed.rows" in outcome.evidence
    assert violations(db, "hooksrecs_allowed") == []
    rows = query(
        db,
        "SELECT i.namespace, i.name, i.source FROM policyzones_decision_input i "
        "JOIN policyzones_decision d ON d.id = i.decision_id WHERE d.dag_id = 'hooksrecs_allowed'",
    )
    assert rows == [("table", "watch_history", "observed")]  # the temporary table is no input


def test_sql_the_analysis_refuses_stops_the_hook_call(run: tuple[Outcome, Path, Path]) -> None:
    outcome, db, _ = run
    assert state(outcome, "hooksrecs_opaque") == "failed"
    assert "hooksrecs_opaque.rows" not in outcome.evidence
    [(rules, value, result, source, reason)] = violations(db, "hooksrecs_opaque")
    assert (rules, value, result, source) == (["uncheckable_input"], None, "deny", None)
    assert "SQL run through PostgresHook cannot be analyzed" in reason and "runs code" in reason


def test_a_task_that_reads_nothing_observable_has_a_decision_with_no_inputs(
    run: tuple[Outcome, Path, Path],
) -> None:
    outcome, db, _ = run
    assert state(outcome, "hooksrecs_nothing") == "success"
    assert query(
        db, "SELECT input_count, outcome FROM policyzones_decision WHERE dag_id = 'hooksrecs_nothing'"
    ) == [(0, "allow")]


def test_a_dry_run_zone_lets_the_read_proceed_and_records_it(run: tuple[Outcome, Path, Path]) -> None:
    outcome, db, _ = run
    assert state(outcome, "hookstrial_read") == "success"
    assert "hookstrial_read.rows" in outcome.evidence
    assert [row[:4] for row in violations(db, "hookstrial_read")] == [
        (["category_not_allowed"], "purchases", "dry_run", "observed")
    ]
    assert query(
        db, "SELECT outcome, allowed FROM policyzones_decision WHERE dag_id = 'hookstrial_read'"
    ) == [("dry_run", 1)]


def test_an_asset_alias_outlet_resolved_at_run_time_is_labeled(run: tuple[Outcome, Path, Path]) -> None:
    outcome, db, data_dir = run
    assert state(outcome, "hooksads_alias") == "success"
    events = query(
        db,
        "SELECT categories, source FROM policyzones_asset_label_event WHERE name = ?",
        f"file://{data_dir}/aliased.csv",
    )
    assert [(json.loads(categories), source) for categories, source in events] == [
        (["purchase_events"], "alias")
    ]


def test_a_refused_statement_that_already_wrote_leaves_its_output_labeled(
    run: tuple[Outcome, Path, Path],
) -> None:
    outcome, db, _ = run
    assert "hooksrecs_launder.caught" in outcome.evidence
    assert state(outcome, "hooksrecs_launder") == "failed"
    events = query(
        db, "SELECT categories, source FROM policyzones_asset_label_event WHERE name = 'watch_copy'"
    )
    assert [(json.loads(categories), source) for categories, source in events] == [
        (["purchase_events"], "observed")
    ]
    # the copy is purchase data: the next reader in the zone is refused, with where it came from
    assert state(outcome, "hooksrecs_read_copy") == "failed"
    assert "hooksrecs_read_copy.rows" not in outcome.evidence
    [(rules, value, result, source, reason)] = violations(db, "hooksrecs_read_copy")
    assert (rules, value, result, source) == (["category_not_allowed"], "watch_copy", "deny", "observed")
    assert (
        "derived: table watch_copy (written by hooksrecs_launder.launder in recs) ← table purchases" in reason
    )
