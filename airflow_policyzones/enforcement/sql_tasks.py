"""What a SQL task really reads and writes: its rendered SQL, parsed in its connection's dialect.

A DAG author cannot hide a table behind SQL: the tables and files the statement reads are checked
like inlets (an ``undeclared_input`` violation when nothing labels them), the tables and files it
writes get propagated labels like outlets, and SQL whose reads cannot all be named is refused.
Only for ``SQLExecuteQueryOperator`` and its subclasses (the common.sql provider); sqlglot is
imported only when such a task runs.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import TYPE_CHECKING, Any

from airflow_policyzones.wire import ConnectionTypeRequest, TaskInstanceIdentity

if TYPE_CHECKING:
    from airflow_policyzones.policy.sql import SqlTables

log = logging.getLogger(__name__)


def is_sql_task(task: Any) -> bool:
    """Whether ``task`` is a ``SQLExecuteQueryOperator``; costs nothing for other tasks.

    A task of that class has imported its module already, so the module is looked up rather than
    imported: every other task skips importing the common.sql provider.
    """
    module = sys.modules.get("airflow.providers.common.sql.operators.sql")
    operator = getattr(module, "SQLExecuteQueryOperator", None)
    return operator is not None and isinstance(task, operator)


def rendered_sql(task: Any) -> str:
    """The task's SQL as it will run (templates are rendered before pre-execute hooks run)."""
    sql = getattr(task, "sql", "") or ""
    if isinstance(sql, (list, tuple)):
        return ";\n".join(str(statement) for statement in sql)
    return str(sql)


def connection_type(conn_id: str | None, *, identity: TaskInstanceIdentity | None = None) -> str | None:
    """The conn_type of a task's connection, to parse its SQL in its dialect (None: generic SQL).

    On a worker (``identity`` given, no metadata database) the api-server says it: the try does
    not fetch the connection's credentials before its own decision. Raises
    :class:`~airflow_policyzones.enforcement.errors.DecisionUnavailable` when it cannot answer.
    """
    if not conn_id:
        return None
    from airflow_policyzones.enforcement.hook import orm_available

    if identity is not None and not orm_available():
        return _served_type(conn_id, identity.model_dump_json())
    try:
        from airflow.sdk import BaseHook

        return str(BaseHook.get_connection(conn_id).conn_type or "") or None
    except Exception as error:  # the dialect only sharpens parsing; a missing connection fails later
        log.warning(
            "policyzones: connection %r not found (%s); parsing its SQL as generic SQL", conn_id, error
        )
        return None


@functools.lru_cache(maxsize=16)
def _served_type(conn_id: str, identity: str) -> str | None:
    """Asked once per try: the decision needs it, and the outputs report after the body."""
    from airflow_policyzones.enforcement.client import DecisionClient

    request = ConnectionTypeRequest(task=TaskInstanceIdentity.model_validate_json(identity), conn_id=conn_id)
    return DecisionClient().connection_type(request)


def sql_tables(task: Any, *, identity: TaskInstanceIdentity | None = None) -> SqlTables | None:
    """Tables and files the task's SQL reads and writes; None for tasks that are not SQL operators.

    Raises :class:`~airflow_policyzones.policy.sql.SqlParseError` for SQL that cannot be
    analyzed: enforcement then treats the task as uncheckable, and it does not run.
    """
    if not is_sql_task(task):
        return None
    conn_type = connection_type(getattr(task, "conn_id", None), identity=identity)
    return _tables(rendered_sql(task), conn_type)


@functools.lru_cache(maxsize=16)
def _tables(sql: str, conn_type: str | None) -> SqlTables:
    """Parsed once per try: the decision needs the reads, the outputs report the writes."""
    from airflow_policyzones.policy.sql import dialect_for_connection, tables_in_sql

    return tables_in_sql(sql, dialect=dialect_for_connection(conn_type))
