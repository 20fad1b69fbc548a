"""The SQL checked is the SQL that runs: a SQL task's statements are pinned at its zone check.

The zone check of a ``SQLExecuteQueryOperator`` decides on the task's rendered SQL (and the
dialect of its connection) before the body runs. Author code still runs between the check and
the body: the ``pre_execute=`` hook chained after the check, an operator's own ``pre_execute()``,
``on_execute_callback``. Any of them could assign ``task.sql`` (or ``task.conn_id``) after the
check, so that the database runs something else than what was decided.

After an allowed check, :func:`pin_checked_sql` records the SQL and the connection id that were
checked. Every statement a ``DbApiHook`` sends through ``_run_command`` (what ``DbApiHook.run``
does for each statement) is compared with them *before* it reaches the database: a statement
that is not the checked SQL, one of its list items or one of the statements the hook splits it
into, or a hook on another connection, raises :class:`SqlChangedAfterCheck`. The statement is
never sent, and the try fails without retry (it is a ``BaseException``: an ``except Exception``
in the task's code does not swallow it, and :func:`refused_statement` makes the try fail after
the body even then).

Only the try of a SQL task is pinned; other tasks' hooks are decided read by read
(:mod:`.observation`). A hook that bypasses ``DbApiHook._run_command`` is not compared, but what
its statements read is still decided by the observed-read path before their rows reach the task.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.exceptions import AirflowTaskTerminated

from airflow_policyzones.wire import TaskInstanceIdentity

_SHOWN = 200
"""Characters of a statement shown in the failure message."""


class SqlChangedAfterCheck(AirflowTaskTerminated):
    """A SQL task tried to run SQL (or use a connection) other than what its zone check decided:
    the statement was not sent to the database, and the try fails without retry."""


@dataclass(slots=True, kw_only=True)
class PinnedSql:
    """What the zone check of the running SQL task decided on."""

    task: TaskInstanceIdentity
    sql: str | tuple[str, ...]
    """``task.sql`` as checked: one string, or the list of statements."""
    conn_id: str | None
    _allowed: dict[type, frozenset[str]] = field(default_factory=dict)
    refused: str | None = None
    """The message of the first refused statement, for :func:`refused_statement`."""

    def allowed(self, hook: Any) -> frozenset[str]:
        """The statements the checked SQL may be sent as by ``hook``: whole, per list item, or as
        the hook splits it (``split_statements``), each normalized."""
        key = type(hook)
        found = self._allowed.get(key)
        if found is None:
            items = [self.sql] if isinstance(self.sql, str) else list(self.sql)
            statements = {normalized(item) for item in items}
            split = getattr(hook, "split_sql_string", None)
            if callable(split):
                for item in items:
                    for strip in (False, True):
                        try:
                            statements.update(normalized(part) for part in split(item, strip_semicolon=strip))
                        except Exception:  # a split that fails yields nothing more to allow
                            continue
            found = self._allowed[key] = frozenset(statements)
        return found


def normalized(statement: object) -> str:
    """A statement without surrounding whitespace and trailing semicolons (how hooks vary)."""
    return str(statement).strip().rstrip(";").strip()


_pinned: PinnedSql | None = None
"""The pin of the try running in this process (a task process runs one try; ``dag.test()`` runs
its tries one after the other, each check replacing the pin)."""


def unpin() -> None:
    """No SQL is pinned: called at the start of every check, SQL task or not."""
    global _pinned
    _pinned = None


def pin_checked_sql(task: Any, *, identity: TaskInstanceIdentity) -> PinnedSql | None:
    """Pin ``task``'s SQL and connection as they are now (right after its check decided on them);
    ``None`` and nothing pinned for a task that is not a SQL operator."""
    global _pinned
    from airflow_policyzones.enforcement.sql_tasks import is_sql_task

    unpin()
    if not is_sql_task(task):
        return None
    _guard_run_command()
    sql = getattr(task, "sql", "") or ""
    checked: str | tuple[str, ...] = (
        tuple(str(item) for item in sql) if isinstance(sql, (list, tuple)) else str(sql)
    )
    conn_id = getattr(task, "conn_id", None)
    _pinned = PinnedSql(task=identity, sql=checked, conn_id=str(conn_id) if conn_id else None)
    return _pinned


def refused_statement() -> str | None:
    """The message of a statement refused in this try, if any (the try must not succeed)."""
    return _pinned.refused if _pinned is not None else None


def check_statement(hook: Any, statement: object) -> None:
    """Raise :class:`SqlChangedAfterCheck` unless ``statement`` run through ``hook`` is the
    pinned SQL on the pinned connection (nothing pinned: nothing to compare)."""
    pinned = _pinned
    if pinned is None:
        return
    problem = None
    conn_id = _hook_conn_id(hook)
    if pinned.conn_id is not None and conn_id is not None and conn_id != pinned.conn_id:
        problem = (
            f"it ran on connection {conn_id!r}, but its SQL was checked for connection {pinned.conn_id!r}"
        )
    elif normalized(statement) not in pinned.allowed(hook):
        problem = (
            f"it ran the statement {_shown(statement)}, which is not the SQL its check decided on "
            f"({_shown(pinned.sql if isinstance(pinned.sql, str) else '; '.join(pinned.sql))})"
        )
    if problem is None:
        return
    task = pinned.task
    message = (
        f"policyzones: task {task.dag_id}.{task.task_id} (run {task.run_id}, try {task.try_number}) "
        f"changed its SQL after its zone check: {problem}. Something assigned task.sql or task.conn_id "
        "after the check (a pre_execute hook, the operator's pre_execute() or an on_execute_callback); "
        "the statement was not sent to the database, and the task fails without retry. Set the SQL "
        "in the operator's arguments (templates are rendered before the check)."
    )
    if pinned.refused is None:
        pinned.refused = message
    raise SqlChangedAfterCheck(message)


def _hook_conn_id(hook: Any) -> str | None:
    name = getattr(hook, "conn_name_attr", None)
    value = getattr(hook, name, None) if isinstance(name, str) and name else None
    return str(value) if value else None


def _shown(sql: object) -> str:
    text = " ".join(str(sql).split())
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def _guard_run_command() -> None:
    """Make ``DbApiHook._run_command`` compare each statement with the pin before sending it.
    Once per process; only when a SQL task runs (the common.sql provider is imported then)."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    original = DbApiHook.__dict__.get("_run_command")
    if original is None or getattr(original, "_policyzones_pinned", False):
        return
    DbApiHook._run_command = _guarded(original)


def _guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _run_command(hook: Any, cur: Any, sql_statement: Any, parameters: Any = None) -> Any:
        check_statement(hook, sql_statement)
        return original(hook, cur, sql_statement, parameters)

    _run_command._policyzones_pinned = True  # type: ignore[attr-defined]
    return _run_command
