"""The tables a SQL script reads and writes, so that SQL tasks are checked against what they run.

A SQL task's declared inlets are a claim; its rendered SQL is what the database executes. This
module parses that SQL with sqlglot in the connection's dialect and names the tables it reads
(inputs to check) and writes (outputs that get propagated labels), normalized like
:meth:`InputRef.table` so that catalog ``table`` patterns match them.

Semantics, statement by statement, in script order:

* Reads: every table a statement names outside a write position: ``FROM``/``JOIN``, subqueries,
  ``USING``, ``MERGE ... USING``, ``LIKE``/``CLONE`` sources. ``SELECT *`` over a view reads the
  view (its name is what the catalog and propagation label; views are not expanded).
* Writes: targets of ``INSERT``, ``CREATE TABLE/VIEW`` (also ``AS SELECT``), ``SELECT ... INTO``,
  ``UPDATE``, ``DELETE``, ``MERGE``, ``TRUNCATE``, ``COPY ... FROM``, ``ALTER`` and
  ``REFRESH MATERIALIZED VIEW``. ``UPDATE``, ``DELETE``, ``MERGE`` and upserts (``ON CONFLICT`` /
  ``ON DUPLICATE KEY``) also *read* their target: they read the rows they change, so the zone
  must be allowed to read it. A plain ``INSERT`` does not read its target.
* CTE names are not tables (scoped as SQL scopes them: a CTE is visible in the query's body, in
  later CTEs and, when ``RECURSIVE``, in itself; a qualified name is never a CTE).
* Temporary tables (``TEMP``/``TEMPORARY``/``VOLATILE``, T-SQL ``#name``, ``SELECT INTO TEMP``,
  Spark ``CACHE TABLE``) created in the script hold only what the script put there: reading them
  later is not an external read, and they are not outputs (they vanish with the session). They
  are listed in :attr:`SqlTables.temporary`.
* A permanent table or view the script creates (without ``IF NOT EXISTS``) is an output, and
  reading it later in the script is not an external read either. With ``IF NOT EXISTS`` it may
  hold older data, so later reads count. ``DROP`` ends that: a later read of the name counts.
* Administrative statements (``USE``, ``SET``, ``GRANT``, ``DROP``, ``ANALYZE``, ``DESCRIBE``,
  transactions, ...) read and write nothing. Unqualified names are reported as written: ``USE``
  and ``search_path`` are not resolved, so catalog patterns must cover names as tasks write them.
* SQL that is empty, whitespace or comments only (e.g. Jinja that rendered to nothing) runs
  nothing: an empty result with ``statements == 0`` (:attr:`SqlTables.empty`), not an error.
* SQL that sqlglot cannot parse, and statements whose effect it cannot see (``CALL``, ``EXEC``,
  ``DO``, ``EXPLAIN``, any statement sqlglot keeps as an opaque command), raise
  :class:`SqlParseError`: nobody can tell what they read, so they fail closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from airflow_policyzones.policy.engine import InputRef
from airflow_policyzones.policy.patterns import normalize_table

if TYPE_CHECKING:
    from collections.abc import Sequence


class SqlParseError(ValueError):
    """The SQL could not be analyzed: the message names the dialect, the first problem and a fix."""

    def __init__(
        self, message: str, *, dialect: str | None, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.dialect = dialect
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class SqlTables:
    """What one SQL script reads and writes: normalized table names (see the module docstring)."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    temporary: frozenset[str] = frozenset()
    """Temporary tables the script creates and uses; neither inputs nor outputs."""
    statements: int = 0
    """Statements that do something; 0 when the SQL is empty or only comments."""

    @property
    def empty(self) -> bool:
        return self.statements == 0

    @property
    def inputs(self) -> tuple[InputRef, ...]:
        return tuple(InputRef.table(name) for name in sorted(self.reads))

    @property
    def outputs(self) -> tuple[InputRef, ...]:
        return tuple(InputRef.table(name) for name in sorted(self.writes))


_CONNECTION_DIALECTS: dict[str, str] = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "google_cloud_platform": "bigquery",
    "gcpbigquery": "bigquery",
    "redshift": "redshift",
    "trino": "trino",
    "presto": "presto",
    "athena": "athena",
    "mssql": "tsql",
    "azure_synapse": "tsql",
    "fabric": "fabric",
    "oracle": "oracle",
    "databricks": "databricks",
    "duckdb": "duckdb",
    "hive_cli": "hive",
    "hiveserver2": "hive",
    "hive_metastore": "hive",
    "spark": "spark",
    "spark_sql": "spark",
    "spark_connect": "spark",
    "clickhouse": "clickhouse",
    "teradata": "teradata",
    "exasol": "exasol",
    "drill": "drill",
    "druid": "druid",
    "doris": "doris",
    "starrocks": "starrocks",
    "materialize": "materialize",
    "risingwave": "risingwave",
    "dremio": "dremio",
}


def dialect_for_connection(conn_type: str | None) -> str | None:
    """The sqlglot dialect for an Airflow connection type; ``None`` (sqlglot's default) if unknown.

    Generic types (``jdbc``, ``odbc``, ``generic``) say nothing about the database behind them.
    """
    if conn_type is None:
        return None
    return _CONNECTION_DIALECTS.get(conn_type.strip().lower().replace("-", "_"))


# Statements whose table names are neither data read nor data written.
_ADMIN: tuple[type[exp.Expr], ...] = tuple(
    kind
    for kind in (
        getattr(exp, name, None)
        for name in (
            "Use",
            "Set",
            "Drop",
            "Grant",
            "Revoke",
            "Describe",
            "Comment",
            "Analyze",
            "Uncache",
            "Pragma",
            "Show",
            "Transaction",
            "Commit",
            "Rollback",
        )
    )
    if isinstance(kind, type)
)
# Opaque commands (sqlglot's fallback) that move no data.
_HARMLESS_COMMANDS = frozenset({"SHOW", "VACUUM", "RESET", "DISCARD", "CHECKPOINT", "LOCK", "SET", "USE"})
_REFRESH = re.compile(r"^\s*MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?(?P<name>[^\s;(]+)", re.IGNORECASE)
_TOKEN = re.compile(r"<Token token_type: TokenType\.(?P<type>\w+), text: (?P<text>.*?), line: .*?>")
_FIX = (
    "correct the SQL; if the database accepts it, check the dialect (it follows the connection type, "
    "see dialect_for_connection). SQL whose tables cannot be read is not run in an enforce zone"
)


@dataclass(slots=True)
class _Target:
    table: exp.Table
    reads: bool = False
    """The statement also reads the target's rows (UPDATE, DELETE, MERGE, upserts)."""
    effect: Literal["write", "temporary", "none"] = "write"
    """``none``: the name is no data (an index, a function, a schema...)."""
    creates: bool = False
    """The statement creates the table with only what the script puts in it."""


def tables_in_sql(sql: str, *, dialect: str | None) -> SqlTables:
    """The tables ``sql`` (the *rendered* SQL, possibly several statements) reads and writes.

    Raises :class:`SqlParseError` for an unknown dialect, SQL sqlglot cannot parse, and
    statements whose tables cannot be known (module docstring).
    """
    if not sql.strip():
        return SqlTables()
    statements = _parse(sql, dialect)
    reads: set[str] = set()
    writes: set[str] = set()
    temporary: set[str] = set()
    local: set[str] = set()  # names whose content, from here on, only this script determined
    count = 0
    for position, statement in enumerate(statements, 1):
        if statement is None or isinstance(statement, exp.Semicolon):
            continue
        count += 1
        if isinstance(statement, exp.Command):
            name = _refreshed(statement, sql=sql, dialect=dialect, position=position)
            if name is not None:
                writes.add(name)
            continue
        if isinstance(statement, exp.Execute):
            raise _opaque(statement, dialect=dialect, position=position)
        if isinstance(statement, _ADMIN):
            if isinstance(statement, exp.Drop):
                local.difference_update(_name(table) for table in statement.find_all(exp.Table))
            continue
        targets = list(_targets(statement))
        skip = {id(target.table) for target in targets}
        for table in statement.find_all(exp.Table):
            if id(table) in skip or not _is_named(table) or _is_cte_reference(table):
                continue
            name = _name(table)
            if name not in local:
                reads.add(name)
        for target in targets:
            name = _name(target.table)
            if target.reads and name not in local:
                reads.add(name)
        for target in targets:
            name = _name(target.table)
            if target.effect == "temporary":
                temporary.add(name)
                local.add(name)
            elif target.effect == "write" and not (name in temporary and name in local):
                writes.add(name)
                if target.creates:
                    local.add(name)
    return SqlTables(
        reads=frozenset(reads),
        writes=frozenset(writes),
        temporary=frozenset(temporary),
        statements=count,
    )


def _parse(sql: str, dialect: str | None) -> Sequence[exp.Expr | None]:
    label = _dialect_label(dialect)
    if dialect is not None:
        try:
            sqlglot.Dialect.get_or_raise(dialect)
        except ValueError:
            known = ", ".join(sorted(d.value for d in sqlglot.Dialects if d.value))
            raise SqlParseError(
                f"unknown SQL dialect {dialect!r}\n"
                f"    fix: use one of {known}, or None for sqlglot's default",
                dialect=dialect,
            ) from None
    jinja = ""
    if "{{" in sql or "{%" in sql:
        jinja = "\n    (the SQL still contains Jinja: pass the rendered SQL)"
    try:
        return sqlglot.parse(sql, read=dialect)
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        line = first.get("line")
        column = first.get("col")
        description = _TOKEN.sub(_token_text, str(first.get("description") or error)).strip()
        near = f"{first.get('start_context', '')}{first.get('highlight', '')}".strip()
        where = f" at line {line}, column {column}" if line is not None else ""
        near_text = f" near {near[-60:]!r}" if near else ""
        raise SqlParseError(
            f"cannot parse the SQL as {label}{where}: {description}{near_text}{jinja}\n    fix: {_FIX}",
            dialect=dialect,
            line=line if isinstance(line, int) else None,
            column=column if isinstance(column, int) else None,
        ) from None
    except TokenError as error:
        raise SqlParseError(
            f"cannot parse the SQL as {label}: {error} (an unterminated string, quote or comment?)"
            f"{jinja}\n    fix: {_FIX}",
            dialect=dialect,
        ) from None


def _dialect_label(dialect: str | None) -> str:
    return f"{dialect} SQL" if dialect else "SQL (sqlglot's default dialect: the connection type is unknown)"


def _token_text(match: re.Match[str]) -> str:
    return "end of input" if match["type"] == "SENTINEL" else repr(match["text"])


def _opaque(statement: exp.Expr, *, dialect: str | None, position: int) -> SqlParseError:
    text = " ".join(statement.sql(dialect=dialect).split())
    return SqlParseError(
        f"statement {position} ({text[:60]!r}) runs code whose tables cannot be read from the SQL "
        f"({_dialect_label(dialect)})\n    fix: inline the queries it runs into the task's SQL, or move it "
        "to a task whose inputs are declared as inlets and reviewed",
        dialect=dialect,
    )


def _refreshed(statement: exp.Command, *, sql: str, dialect: str | None, position: int) -> str | None:
    """The view a ``REFRESH MATERIALIZED VIEW`` writes; ``None`` for a harmless command; else raise."""
    keyword = str(statement.this).strip().upper()
    rest = statement.expression.name if isinstance(statement.expression, exp.Expression) else ""
    if keyword == "REFRESH":
        match = _REFRESH.match(rest)
        if match is not None:
            try:
                table = exp.to_table(match["name"], dialect=dialect)
            except (ParseError, TokenError):
                table = None
            if table is not None and _is_named(table):
                return _name(table)
    elif keyword in _HARMLESS_COMMANDS:
        return None
    raise _opaque(statement, dialect=dialect, position=position)


def _targets(statement: exp.Expr) -> Iterator[_Target]:
    """The tables in write position, with how the statement treats each."""
    if isinstance(statement, exp.Insert):
        table = _table(statement.this)
        if table is not None:
            yield _Target(table, reads=bool(statement.args.get("conflict")))
    elif isinstance(statement, exp.Create):
        table = _table(statement.this)
        if table is None:
            return
        kind = str(statement.args.get("kind") or "").upper()
        if kind not in ("TABLE", "VIEW"):
            yield _Target(table, effect="none")
            return
        properties = statement.args.get("properties")
        temporary = _is_temporary(table) or (
            isinstance(properties, exp.Properties)
            and any(
                isinstance(prop, (exp.TemporaryProperty, exp.VolatileProperty))
                for prop in properties.expressions
            )
        )
        yield _Target(
            table, effect="temporary" if temporary else "write", creates=not statement.args.get("exists")
        )
    elif isinstance(statement, (exp.Update, exp.Merge)):
        table = _table(statement.this)
        if table is not None:
            yield _Target(table, reads=True)
    elif isinstance(statement, exp.Delete):
        for node in (statement.this, *(statement.args.get("tables") or ())):
            table = _table(node)
            if table is not None:
                yield _Target(table, reads=True)
    elif isinstance(statement, exp.TruncateTable):
        for node in statement.expressions:
            table = _table(node)
            if table is not None:
                yield _Target(table)
    elif isinstance(statement, exp.Copy):
        table = _table(statement.this)
        if table is not None and statement.args.get("kind"):
            yield _Target(table)  # COPY INTO t FROM files; COPY t TO ... is a plain read
    elif isinstance(statement, exp.Alter):
        table = _table(statement.this)
        actions = statement.args.get("actions") or ()
        renames = [action for action in actions if isinstance(action, exp.AlterRename)]
        if table is not None:
            yield _Target(table, reads=bool(renames))
        for action in renames:
            renamed = _table(action.this)
            if renamed is not None:
                yield _Target(renamed)
    elif isinstance(statement, exp.Cache):
        table = _table(statement.this)
        if table is not None:
            yield _Target(table, effect="temporary")
    for into in statement.find_all(exp.Into):
        table = _table(into.this)
        if table is not None:
            temporary = bool(into.args.get("temporary")) or _is_temporary(table)
            yield _Target(table, effect="temporary" if temporary else "write", creates=True)


def _table(node: object) -> exp.Table | None:
    if isinstance(node, exp.Schema):
        node = node.this
    return node if isinstance(node, exp.Table) and _is_named(node) else None


def _is_named(table: exp.Table) -> bool:
    """A table named by identifiers (not a table function, a stage, or a VALUES list)."""
    parts = table.parts
    return bool(parts) and all(isinstance(part, exp.Identifier) for part in parts)


def _is_temporary(table: exp.Table) -> bool:
    return bool(table.this.args.get("temporary")) if isinstance(table.this, exp.Identifier) else False


def _name(table: exp.Table) -> str:
    name = normalize_table(".".join(part.name for part in table.parts))
    return f"#{name}" if _is_temporary(table) else name


def _is_cte_reference(table: exp.Table) -> bool:
    """Whether ``table`` names a CTE visible where it stands (only an unqualified name can)."""
    if len(table.parts) != 1:
        return False
    name = table.name.lower()
    inside: exp.CTE | None = None
    node = table.parent
    while node is not None:
        if isinstance(node, exp.CTE):
            inside = node
        else:
            with_ = next((value for value in node.args.values() if isinstance(value, exp.With)), None)
            if with_ is not None:
                ctes = with_.expressions
                visible = ctes
                if inside is not None and inside.parent is with_:
                    index = next(i for i, cte in enumerate(ctes) if cte is inside)
                    visible = ctes[: index + 1] if with_.args.get("recursive") else ctes[:index]
                if any(cte.alias.lower() == name for cte in visible):
                    return True
        node = node.parent
    return False
