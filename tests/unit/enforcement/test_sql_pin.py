"""The SQL checked is the SQL that runs: author code that changes a SQL task's SQL or connection
after the zone check (a ``pre_execute=`` hook, the operator's ``pre_execute()``, an
``on_execute_callback``) fails the try, and the changed statement never reaches the database.

``dag.test()`` in a fresh process (metadata in SQLite, recorded in process); the data lives in a
fresh PostgreSQL database behind the ``pz_sql`` connection (``pz_sql_other``: the same database
under another connection id). Every swapped statement would write a row to ``recs_audit``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.support.airflow_db import postgres_database
from tests.unit.enforcement.conftest import FIXTURES
from tests.unit.enforcement.test_dag_test import Outcome, warehouse_home

pytestmark = pytest.mark.integration

SWAPPED = {
    "sqlrecs_swap_pre_execute": "INSERT INTO recs_audit VALUES ('pre_execute')",
    "sqlrecs_swap_callback": "INSERT INTO recs_audit VALUES ('on_execute_callback')",
    "sqlrecs_swap_operator": "INSERT INTO recs_audit VALUES ('operator_pre_execute')",
    "sqlrecs_swap_caught": "INSERT INTO recs_audit VALUES ('caught')",
}
UNCHANGED = ["sqlrecs_split_statements", "sqlrecs_statement_list"]
DAGS = [*SWAPPED, "sqlrecs_swap_connection", *UNCHANGED]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Outcome, list[str]]]:
    root = tmp_path_factory.mktemp("sql-pin-home")
    with postgres_database("pz_sqlpin") as url:
        data = sa.create_engine(url)
        with data.begin() as connection:
            for ddl in ("CREATE TABLE watch_history (user_id int)", "CREATE TABLE recs_audit (zone text)"):
                connection.execute(sa.text(ddl))
        other = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        home = warehouse_home(
            root, dags=FIXTURES / "dags_sql_swap", warehouse_url=url, AIRFLOW_CONN_PZ_SQL_OTHER=other
        )
        result = home.run(*DAGS, phase="sqlpin")
        with data.connect() as connection:
            rows = connection.execute(sa.text("SELECT zone FROM recs_audit ORDER BY zone")).scalars().all()
        data.dispose()
        yield result, list(rows)


def task_instance(result: Outcome, dag_id: str) -> dict[str, object]:
    return next(ti for ti in result.result["task_instances"] if ti["dag_id"] == dag_id)


def decisions(result: Outcome, dag_id: str) -> list[tuple[int, str]]:
    return [
        (row["try_number"], row["outcome"]) for row in result.result["decisions"] if row["dag_id"] == dag_id
    ]


@pytest.mark.parametrize("dag_id", sorted(SWAPPED))
def test_sql_changed_after_the_check_never_reaches_the_database(
    outcome: tuple[Outcome, list[str]], dag_id: str
) -> None:
    result, rows = outcome
    ti = task_instance(result, dag_id)
    assert (ti["state"], ti["try_number"]) == ("failed", 1), "fails at once, without retry"
    # The check decided on the SQL it saw (allowed in recs); the swapped statement was refused.
    assert decisions(result, dag_id) == [(1, "allow")]
    how = SWAPPED[dag_id].split("'")[1]
    assert how not in rows
    assert "changed its SQL after its zone check" in result.log
    assert (
        f"it ran the statement {SWAPPED[dag_id]!r}, which is not the SQL its check decided on" in result.log
    )


def test_the_message_names_the_task_the_try_and_both_statements(outcome: tuple[Outcome, list[str]]) -> None:
    result, _ = outcome
    line = next(
        line
        for line in result.log.splitlines()
        if "sqlrecs_swap_pre_execute.run_sql" in line and "changed its SQL" in line
    )
    assert "try 1) changed its SQL after its zone check" in line
    assert "'SELECT * FROM watch_history'" in line
    assert "the statement was not sent to the database, and the task fails without retry" in line


def test_a_caught_refusal_still_fails_the_try(outcome: tuple[Outcome, list[str]]) -> None:
    result, _ = outcome
    assert "the task's code went on after the refusal; the try fails all the same" in result.log


def test_a_connection_changed_after_the_check_is_refused(outcome: tuple[Outcome, list[str]]) -> None:
    result, rows = outcome
    ti = task_instance(result, "sqlrecs_swap_connection")
    assert (ti["state"], ti["try_number"]) == ("failed", 1)
    assert "connection" not in rows
    assert (
        "it ran on connection 'pz_sql_other', but its SQL was checked for connection 'pz_sql'" in result.log
    )


@pytest.mark.parametrize("dag_id", UNCHANGED)
def test_unchanged_sql_runs_however_the_hook_sends_it(
    outcome: tuple[Outcome, list[str]], dag_id: str
) -> None:
    result, rows = outcome
    assert task_instance(result, dag_id)["state"] == "success"
    assert decisions(result, dag_id) == [(1, "allow")]
    prefix = "split" if dag_id == "sqlrecs_split_statements" else "list"
    assert [row for row in rows if row.startswith(prefix)] == [f"{prefix}-1", f"{prefix}-2"]


def test_checked_rows_are_the_only_rows(outcome: tuple[Outcome, list[str]]) -> None:
    _, rows = outcome
    assert rows == ["list-1", "list-2", "split-1", "split-2"]
