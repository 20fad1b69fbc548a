"""The tables and files a SQL script reads and writes, so that SQL tasks are checked against what they run.

A SQL task's declared inlets are a claim; its rendered SQL is what the database executes. This
module parses that SQL with sqlglot in the connection's dialect and names every table (and file)
it reads (inputs to check) and writes (outputs that get propagated labels).

The rule: :func:`tables_in_sql` either names every table and file the SQL reads and writes, or
raises :class:`SqlParseError`. Silently empty is never an answer. It is an allow-list: every node
of every statement is walked, and a node that could name data (a table reference, a statement, a
command, a function in a table position, a comment the database executes) is either of a kind
handled below (``_Script._HANDLERS`` and the helpers they call) or the statement is refused with
its dialect, line, column and a fix. Value expressions (columns, literals, operators, functions
of values) read nothing. ``docs/sql-analysis.md`` states the semantics statement by statement,
and ``tests/unit/policy/sql_corpus/`` holds the conformance cases; a construct is supported by
adding it to the handlers here and cases there.

The module stays whole (over 600 lines): it is one allow-list walker, a handler per sqlglot node
kind that can name data, all sharing one ``_Script`` state (what was read and written, the names
the script itself made, the CTEs in scope); split across modules, the handlers and the refusal of
every kind they do not handle could no longer be read and checked in one place.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NoReturn

import sqlglot
from sqlglot import Token, TokenType, exp
from sqlglot.dialects.mysql import MySQL
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
    """What one SQL script reads and writes (``docs/sql-analysis.md``).

    Table names are lower-cased and dotted as the SQL writes them (``schema.table``); locations
    are URIs (``s3://bucket/key``, ``file:///abs/path``).
    """

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()
    read_locations: frozenset[str] = frozenset()
    """Files and object-store URIs the SQL reads (``COPY ... FROM``, ``read_parquet(...)``...)."""
    written_locations: frozenset[str] = frozenset()
    """Files and object-store URIs the SQL writes (``COPY ... TO``, ``UNLOAD``...)."""
    temporary: frozenset[str] = frozenset()
    """Temporary tables the script creates and uses; neither inputs nor outputs."""
    statements: int = 0
    """Statements that do something; 0 when the SQL is empty or only comments."""
    scope: frozenset[tuple[str, ...]] = field(default=frozenset(), compare=False, repr=False)
    """Tables whose content, after this SQL, only this session put there (temporary tables and
    tables it created), under the dialect's name rules: pass the result as ``after=`` when
    analyzing what the same database session runs next."""
    scope_temporary: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """The temporary tables among them."""

    @property
    def empty(self) -> bool:
        return self.statements == 0

    @property
    def inputs(self) -> tuple[InputRef, ...]:
        """Tables as ``table`` inputs, then locations as ``asset`` inputs, each sorted."""
        return tuple(InputRef.table(name) for name in sorted(self.reads)) + tuple(
            InputRef.asset(uri) for uri in sorted(self.read_locations)
        )

    @property
    def outputs(self) -> tuple[InputRef, ...]:
        return tuple(InputRef.table(name) for name in sorted(self.writes)) + tuple(
            InputRef.asset(uri) for uri in sorted(self.written_locations)
        )


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


def tables_in_sql(sql: str, *, dialect: str | None, after: SqlTables | None = None) -> SqlTables:
    """Every table and file ``sql`` (the *rendered* SQL, possibly several statements) reads and writes.

    ``after``: the analysis of SQL the same database session ran before (statements a hook runs
    one at a time), so that reading a temporary table created earlier is not an external read.

    Raises :class:`SqlParseError` for an unknown dialect, SQL sqlglot cannot parse, and any
    statement whose tables cannot all be named (module docstring; ``docs/sql-analysis.md``).
    """
    if not sql.strip():
        if after is None:
            return SqlTables()
        return SqlTables(scope=after.scope, scope_temporary=after.scope_temporary)
    glot = _dialect(dialect)
    prepared = _prepared(sql, dialect=dialect, glot=glot)
    _refuse_jinja(prepared, dialect=dialect, glot=glot)
    statements = _parse(prepared, dialect)
    script = _Script(dialect=dialect, glot=glot)
    if after is not None:
        script.local.update(after.scope)
        script.session_temporary.update(after.scope_temporary)
    for position, statement in enumerate(statements, 1):
        if statement is None or isinstance(statement, exp.Semicolon):
            continue
        script.statement(statement, position=position)
    return script.result()


# --- reading the text ---------------------------------------------------------------------------

_FIX = (
    "correct the SQL; if the database accepts it, check the dialect (it follows the connection type, "
    "see dialect_for_connection). SQL whose tables cannot be read is not run in an enforce zone"
)
_TOKEN = re.compile(r"<Token token_type: TokenType\.(?P<type>\w+), text: (?P<text>.*?), line: .*?>")
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!(?:\d{5,6})?")  # MySQL /*! */, MariaDB also /*M! */
_FILE_EXTENSION = re.compile(
    r"\.(?:csv|tsv|txt|parquet|json|jsonl|ndjson|orc|avro|xlsx)(?:\.gz|\.zst)?$", re.I
)


def _dialect(dialect: str | None) -> sqlglot.Dialect:
    try:
        return sqlglot.Dialect.get_or_raise(dialect)
    except ValueError:
        known = ", ".join(sorted(d.value for d in sqlglot.Dialects if d.value))
        raise SqlParseError(
            f"unknown SQL dialect {dialect!r}\n    fix: use one of {known}, or None for sqlglot's default",
            dialect=dialect,
        ) from None


def _prepared(sql: str, *, dialect: str | None, glot: sqlglot.Dialect) -> str:
    """``sql`` with what the database would execute made visible to the parser, offsets unchanged.

    * MySQL and MariaDB run the content of ``/*! ... */`` and ``/*!50000 ... */`` comments (also
      assumed when the dialect is unknown): the comment markers become spaces, the content stays.
    * Driver placeholders ``%s`` and ``%(name)s`` that the dialect's tokenizer reads as a modulo
      become ``?`` (a bind parameter reads nothing; in a table position it is refused later).
    """
    executable = ("/*!" in sql or "/*M!" in sql) and (dialect is None or isinstance(glot, MySQL))
    pyformat = "%s" in sql or "%(" in sql
    numbered = dialect == "oracle" and _NUMBERED_BIND.search(sql) is not None
    if not (executable or pyformat or numbered):
        return sql
    try:
        tokens = glot.tokenize(sql)
    except TokenError:
        return sql  # the parser reports it with its location
    text = list(sql)
    if executable:
        ends = [-1, *(token.end for token in tokens)]
        gaps = zip(ends, [*(token.start for token in tokens), len(sql)], strict=True)
        for after, before in gaps:
            gap = sql[after + 1 : before]
            for match in _EXECUTABLE_COMMENT.finditer(gap):
                close = gap.find("*/", match.end())
                if close < 0:
                    continue
                for index in (*range(match.start(), match.end()), close, close + 1):
                    text[after + 1 + index] = " "
    for index, token in enumerate(tokens):
        end = _bind_parameter_end(tokens, index) if token.token_type in _BIND_STARTS else None
        if end is not None:
            text[token.start : end + 1] = ["?"] + [" "] * (end - token.start)
    return "".join(text)


_JINJA = re.compile(r"\{\{|\{%|\{#")
_BIND_STARTS = frozenset({TokenType.MOD, TokenType.COLON})
_NUMBERED_BIND = re.compile(r":\d")


def _bind_parameter_end(tokens: Sequence[Token], index: int) -> int | None:
    """Where a ``%s``, ``%(name)s`` or (Oracle) ``:1`` bind parameter starting at ``index`` ends."""
    token = tokens[index]
    following = tokens[index + 1 : index + 5]
    if not following or following[0].start != token.end + 1:
        return None
    first = following[0]
    if token.token_type == TokenType.COLON:
        before = tokens[index - 1].token_type if index else None
        return first.end if first.token_type == TokenType.NUMBER and before != TokenType.NUMBER else None
    if first.token_type == TokenType.VAR and first.text == "s":
        return first.end
    types = [t.token_type for t in following]
    adjacent = all(a.end + 1 == b.start for a, b in itertools.pairwise(following))
    if (
        types[:4] == [TokenType.L_PAREN, TokenType.VAR, TokenType.R_PAREN, TokenType.VAR]
        and following[3].text == "s"
        and adjacent
    ):
        return following[3].end
    return None


def _refuse_jinja(sql: str, *, dialect: str | None, glot: sqlglot.Dialect) -> None:
    """Jinja left in the SQL (outside comments) means it was not rendered: what the analysis
    would read is not what will run."""
    if _JINJA.search(sql) is None:
        return
    try:
        tokens = glot.tokenize(sql)
    except TokenError:
        return  # the parser reports it, with the Jinja hint
    starts = [token.start for token in tokens]
    for match in _JINJA.finditer(sql):
        index = bisect.bisect_right(starts, match.start()) - 1
        if index >= 0 and tokens[index].start <= match.start() <= tokens[index].end:
            break  # in a token (code, a string, a name), not in a comment between tokens
    else:
        return
    line = sql.count("\n", 0, match.start()) + 1
    column = match.start() - (sql.rfind("\n", 0, match.start()) + 1) + 1
    raise SqlParseError(
        f"cannot analyze the SQL as {_dialect_label(dialect)} at line {line}, column {column}: "
        f"{sql[match.start() : match.start() + 40]!r}\n"
        "    (the SQL still contains Jinja: pass the rendered SQL)\n"
        "    fix: render the SQL before it is checked (operators render their templated fields first; "
        "a hook call needs the rendered string)",
        dialect=dialect,
        line=line,
        column=column,
    )


def _parse(sql: str, dialect: str | None) -> Sequence[exp.Expr | None]:
    label = _dialect_label(dialect)
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
    except RecursionError:
        raise SqlParseError(
            f"cannot parse the SQL as {label}: it nests too deeply{jinja}\n"
            "    fix: split the statement (e.g. into CTEs or several statements)",
            dialect=dialect,
        ) from None


def _dialect_label(dialect: str | None) -> str:
    return f"{dialect} SQL" if dialect else "SQL (sqlglot's default dialect: the connection type is unknown)"


def _token_text(match: re.Match[str]) -> str:
    return "end of input" if match["type"] == "SENTINEL" else repr(match["text"])


# --- what is understood ---------------------------------------------------------------------------

# Functions in a table position that produce rows from their arguments and read no table.
_ROW_FUNCTIONS: tuple[type[exp.Expr], ...] = tuple(
    kind
    for kind in (
        getattr(exp, name, None)
        for name in (
            "Unnest",
            "Explode",
            "Inline",
            "Stack",
            "GenerateSeries",
            "ExplodingGenerateSeries",
            "GenerateDateArray",
            "GenerateTimestampArray",
            "Sequence",
            "JSONTable",
            "XMLTable",
            "Flatten",
            "Values",
            "Subquery",
        )
    )
    if isinstance(kind, type)
)
_ROW_FUNCTION_NAMES = frozenset(
    {
        "generate_series",
        "generate_subscripts",
        "unnest",
        "range",
        "json_each",
        "json_each_text",
        "jsonb_each",
        "jsonb_each_text",
        "json_array_elements",
        "json_array_elements_text",
        "jsonb_array_elements",
        "jsonb_array_elements_text",
        "json_tree",
        "json_to_recordset",
        "jsonb_to_recordset",
        "json_populate_recordset",
        "jsonb_populate_recordset",
        "regexp_split_to_table",
        "string_split",
        "split_to_table",
        "flatten",
        "generator",
        "explode",
        "explode_outer",
        "posexplode",
        "posexplode_outer",
        "inline",
        "inline_outer",
        "stack",
        "sequence",
        "openjson",
    }
)
# Functions in a table position that read the files named by their first argument.
_FILE_READERS: tuple[type[exp.Expr], ...] = (exp.ReadCSV, exp.ReadParquet)
_FILE_READER_NAMES = frozenset(
    {
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "parquet_scan",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_ndjson",
        "read_ndjson_auto",
        "read_ndjson_objects",
        "read_text",
        "read_blob",
        "read_xlsx",
        "delta_scan",
        "iceberg_scan",
    }
)
# Spark SQL reads a file when a table is qualified by its format: parquet.`s3://bucket/key`.
_SPARK_FILE_FORMATS = frozenset(
    {"parquet", "csv", "json", "orc", "avro", "text", "delta", "binaryfile", "iceberg"}
)
_SPARK_DIALECTS = frozenset({"spark", "spark2", "databricks", "hive"})
# Functions that run SQL text, reach another server, or read files by themselves, wherever they are.
_OPAQUE_FUNCTIONS = frozenset(
    {
        "dblink",
        "dblink_exec",
        "dblink_open",
        "dblink_send_query",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "table_to_xml",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "schema_to_xml",
        "database_to_xml",
        "pg_read_file",
        "pg_read_binary_file",
        "lo_import",
        "lo_export",
        "lo_get",
        "load_file",
        "openquery",
        "opendatasource",
        "openrowset",
        "openxml",
        "result_scan",
        "xp_cmdshell",
        "sys_exec",
        "sys_eval",
        "external_query",
        "query",
        "system$stream_has_data",
        "ts_stat",
        "ts_rewrite",
        "schema_to_xml_and_xmlschema",
        "database_to_xml_and_xmlschema",
        "schema_to_xmlschema",
        "database_to_xmlschema",
        "lo_open",
        "loread",
        "getxml",
        "getxmltype",
        "bfilename",
        "httpuritype",
        "readfile",
        "writefile",
        "load_extension",
        "java_method",
        "reflect",
    }
)
# Table-free statements: their direct object (``this``, ``tables``, ``securable``) is no data read.
_OBJECT_ARGS = ("this", "tables", "securable", "expressions")
_ADMIN: tuple[type[exp.Expr], ...] = tuple(
    kind
    for kind in (
        getattr(exp, name, None) for name in ("Use", "Grant", "Revoke", "Comment", "Analyze", "Uncache")
    )
    if isinstance(kind, type)
)
_NOTHING: tuple[type[exp.Expr], ...] = tuple(
    kind
    for kind in (
        getattr(exp, name, None)
        for name in ("Pragma", "Show", "Transaction", "Commit", "Rollback", "Heredoc", "EndStatement", "Hint")
    )
    if isinstance(kind, type)
)
_DATA_KINDS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "DYNAMIC TABLE", "EXTERNAL TABLE"})
_CODE_KINDS = frozenset({"FUNCTION", "PROCEDURE", "MACRO", "TRIGGER", "RULE"})
# Opaque commands (sqlglot's fallback) that move no data whatever follows them.
_HARMLESS_COMMANDS = frozenset(
    {"SHOW", "VACUUM", "RESET", "DISCARD", "CHECKPOINT", "LOCK", "LISTEN", "UNLISTEN"}
)
# Commands that set session state: harmless while what follows is a plain value.
_SETTING_COMMANDS = frozenset({"SET", "USE"})
_QUERY_TOKENS = frozenset(
    {TokenType.L_PAREN, TokenType.SELECT, TokenType.FROM, TokenType.WITH, TokenType.TABLE, TokenType.VALUES}
)
_DEFINES_CODE = re.compile(r"^\s*(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\b", re.IGNORECASE)
_REFRESH = re.compile(r"^\s*MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?(?P<name>[^\s;(]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Named:
    """A table named by identifiers: ``key`` compares under the dialect's rules, ``name`` is reported."""

    key: tuple[str, ...]
    name: str
    temporary: bool


class _Refused(Exception):
    """A node the analyzer does not understand (turned into a located :class:`SqlParseError`)."""

    def __init__(self, node: exp.Expr, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason
        self.fix = fix


_RUNTIME_NAME_FIX = (
    "name the table literally in the SQL (render it with a Jinja template before the task runs), "
    "so that the zone check can see it"
)


class _Script:
    """Walks a script's statements in order, collecting what they read and write."""

    def __init__(self, *, dialect: str | None, glot: sqlglot.Dialect) -> None:
        self.dialect = dialect
        self.glot = glot
        self.reads: set[str] = set()
        self.writes: set[str] = set()
        self.read_locations: set[str] = set()
        self.written_locations: set[str] = set()
        self.temporary: set[str] = set()
        self.local: set[tuple[str, ...]] = set()  # names whose content, from here on, only the script set
        self.session_temporary: set[str] = set()  # temporary tables earlier SQL of the session made
        self.defined_code: set[str] = set()  # functions and macros the script defines
        self._session_changed = False
        self.statements = 0
        self._stack: list[tuple[exp.Expr, frozenset[str]]] = []
        self._root: exp.Expr | None = None

    def result(self) -> SqlTables:
        return SqlTables(
            reads=frozenset(self.reads),
            writes=frozenset(self.writes),
            read_locations=frozenset(self.read_locations),
            written_locations=frozenset(self.written_locations),
            temporary=frozenset(self.temporary),
            statements=self.statements,
            scope=frozenset(self.local),
            scope_temporary=frozenset(self.temporary | self.session_temporary),
        )

    # --- traversal --------------------------------------------------------------------------------

    def statement(self, statement: exp.Expr, *, position: int) -> None:
        self.statements += 1
        if (  # T-SQL's IF ... BEGIN ... END over several lines parses as IF ... AS END
            isinstance(statement, exp.Alias)
            and isinstance(statement.this, (exp.IfBlock, exp.WhileBlock))
            and statement.alias.upper() == "END"
        ):
            statement = statement.this
        self._root = statement
        try:
            _known_statement(statement)
            self._walk(statement, frozenset())
        except _Refused as refused:
            raise self._error(statement, refused, position=position) from None
        if self._session_changed or isinstance(statement, _SESSION_STATEMENTS):
            # Name resolution or the transaction changed (search_path, USE, ROLLBACK ...): a name
            # the script created may no longer mean that table, so later reads count again.
            self.local.clear()
            self._session_changed = False

    def _walk(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        stack = self._stack
        stack.append((node, ctes))
        handlers = self._HANDLERS
        while stack:
            current, scope = stack.pop()
            handler = handlers.get(type(current))
            if handler is None:
                handler = self._handler_for(type(current))
            handler(self, current, scope)

    @classmethod
    def _handler_for(cls, kind: type[exp.Expr]) -> Callable[[_Script, exp.Expr, frozenset[str]], None]:
        for base in kind.__mro__[1:]:
            handler = cls._HANDLERS.get(base)
            if handler is not None:
                break
        else:
            handler = _Script._children
        cls._HANDLERS[kind] = handler
        return handler

    def _children(self, node: exp.Expr, ctes: frozenset[str], *, skip: Iterable[str] = ()) -> None:
        """Visit ``node``'s children; a ``WITH`` makes its CTEs visible where SQL scopes them."""
        args = node.args
        with_ = args.get("with_")
        if isinstance(with_, exp.With):
            names = [self._key(cte.args["alias"].this) for cte in with_.expressions]
            recursive = bool(with_.args.get("recursive")) or self.dialect in _SELF_REFERENCING_CTE_DIALECTS
            for index, cte in enumerate(with_.expressions):
                visible = names[: index + 1] if recursive else names[:index]
                self._stack.append((cte.this, ctes.union(visible)))
            ctes = ctes.union(names)
        skipped = set(skip)
        for key, value in args.items():
            if key == "with_" or key in skipped or value is None:
                continue
            if isinstance(value, exp.Expr):
                self._stack.append((value, ctes))
            elif isinstance(value, list):
                self._stack.extend((item, ctes) for item in value if isinstance(item, exp.Expr))

    # --- names ------------------------------------------------------------------------------------

    def _key(self, identifier: exp.Expr) -> str:
        """The name as the dialect resolves it (case folding; quoted names kept where it says so).

        The dialect's rule may depend on where the identifier stands, so it is applied in place
        and the written name restored (error messages show the SQL as written)."""
        if not isinstance(identifier, exp.Identifier):
            return identifier.name
        written = identifier.this
        key = self.glot.normalize_identifier(identifier).this
        identifier.args["this"] = written
        return str(key)

    def _named(self, table: exp.Table) -> _Named | None:
        """``table`` as a plain name, or ``None`` when it is not named by identifiers only."""
        parts = table.parts
        if not parts or not all(isinstance(part, exp.Identifier) for part in parts):
            return None
        if any("*" in part.name for part in parts):
            raise _Refused(
                table,
                f"reads {table.sql(dialect=self.dialect)!r}, a wildcard over tables whose names are known "
                "only when the query runs",
                "list the tables the query reads (UNION ALL), so that each one is checked",
            )
        temporary = isinstance(table.this, exp.Identifier) and bool(table.this.args.get("temporary"))
        if self.dialect in _HASH_TEMPORARY_DIALECTS and len(parts) == 1 and table.name.startswith("#"):
            temporary = True
        key = tuple(self._key(part) for part in parts)
        if isinstance(table.this, exp.Identifier) and table.this.args.get("global_"):
            temporary = True
            key = ("##", *key)
        elif temporary:
            key = ("#", *key)  # T-SQL's #t is not the table t
        name = normalize_table(".".join(part.name for part in parts))
        if temporary and not name.startswith("#"):
            name = f"#{name}"
        return _Named(key=key, name=name, temporary=temporary)

    def _resolve(self, table: exp.Table) -> _Named | str | None:
        """A table position: a name, a location URI (``str``), or ``None`` (a row function; visit it)."""
        named = self._named(table)
        if named is not None:
            location = self._file_as_table(table)
            return location if location is not None else named
        source = table.this
        if isinstance(source, exp.DynamicIdentifier) or (
            isinstance(source, exp.Anonymous) and source.name.lower() == "identifier"
        ):
            return self._identifier_function(table, source)
        if isinstance(source, exp.Literal) and source.is_string:
            return self._location(source, source.this)
        if isinstance(source, _FILE_READERS) or (
            isinstance(source, exp.Anonymous) and source.name.lower() in _FILE_READER_NAMES
        ):
            return self._file_reader(source)
        if _is_row_function(source):
            return None
        if isinstance(source, (exp.Placeholder, exp.Parameter, exp.SessionParameter, exp.Var)):
            raise _Refused(
                table,
                f"reads {source.sql(dialect=self.dialect)!r}, a table named by a parameter or variable "
                "whose value is known only when the SQL runs",
                _RUNTIME_NAME_FIX,
            )
        if isinstance(source, exp.Func):
            raise self._unknown_function(table, source)
        raise _Refused(
            table,
            f"reads {table.sql(dialect=self.dialect)[:60]!r}, which is not a plain table name",
            _RUNTIME_NAME_FIX,
        )

    def _identifier_function(self, table: exp.Table, source: exp.Expr) -> _Named:
        argument = (
            source.this if isinstance(source, exp.DynamicIdentifier) else (source.expressions or [None])[0]
        )
        if isinstance(argument, exp.Literal) and argument.is_string:
            try:
                named = self._named(exp.to_table(argument.this, dialect=self.dialect))
            except (ParseError, TokenError):
                named = None
            if named is not None:
                return named
        raise _Refused(
            table,
            f"reads {source.sql(dialect=self.dialect)!r}: the table's name is known only when the SQL runs",
            _RUNTIME_NAME_FIX,
        )

    def _file_as_table(self, table: exp.Table) -> str | None:
        """Spark's ``parquet.`s3://b/k``` and DuckDB's ``FROM 'file.csv'`` read files."""
        this = table.this
        if not isinstance(this, exp.Identifier) or not this.quoted:
            return None
        path = this.name
        if self.dialect in _SPARK_DIALECTS and table.db.lower() in _SPARK_FILE_FORMATS and not table.catalog:
            return self._location(table, path)
        if self.dialect == "duckdb" and not table.db and ("/" in path or _FILE_EXTENSION.search(path)):
            return self._location(table, path)
        return None

    def _file_reader(self, source: exp.Expr) -> str:
        first = source.this if isinstance(source, _FILE_READERS) and source.this is not None else None
        first = first or (source.expressions or [None])[0]
        paths = first.expressions if isinstance(first, exp.Array) else [first]
        locations = [
            self._location(source, path.this)
            for path in paths
            if isinstance(path, exp.Literal) and path.is_string
        ]
        if not locations or len(locations) != len(paths):
            raise _Refused(
                source,
                f"reads files named by {source.sql(dialect=self.dialect)[:60]!r}, known only when it runs",
                "name the files with string literals",
            )
        for location in locations[1:]:
            self.read_locations.add(location)
        return locations[0]

    def _location(self, node: exp.Expr, path: str) -> str:
        path = path.strip()
        if "://" in path:
            return path
        if path.startswith("/"):
            return f"file://{path}"
        raise _Refused(
            node,
            f"uses the location {path!r}, which is not a URI or an absolute path (the database resolves it)",
            "name the location by its full URI (s3://bucket/key) or absolute path",
        )

    # --- reads --------------------------------------------------------------------------------------

    def _table(self, table: exp.Expr, ctes: frozenset[str]) -> None:
        assert isinstance(table, exp.Table)
        resolved = self._resolve(table)
        if isinstance(resolved, str):
            self.read_locations.add(resolved)
        elif resolved is not None:
            self._read(resolved, ctes)
        self._children(table, ctes, skip=("this", "db", "catalog") if resolved is not None else ())

    def _read(self, named: _Named, ctes: frozenset[str]) -> None:
        if len(named.key) == 1 and named.key[0] in ctes and not named.temporary:
            return
        if named.key not in self.local:
            self.reads.add(named.name)

    def _source(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``FROM``, ``JOIN`` and ``LATERAL``: what they read from must be a kind understood here."""
        this = node.this
        if isinstance(this, (exp.Placeholder, exp.Parameter, exp.Var, exp.Literal)):
            raise _Refused(
                node,
                f"reads from {this.sql(dialect=self.dialect)!r}, a name known only when the SQL runs",
                _RUNTIME_NAME_FIX,
            )
        if not (this is None or isinstance(this, _SOURCES) or _is_row_function(this)):
            raise self._unknown_function(node, this)
        self._children(node, ctes)

    def _function(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        name = node.name.lower()
        if name == "set_config":
            self._session_changed = True
        if name in self.defined_code:
            raise _Refused(
                node,
                f"calls {node.name}(), which the script itself defines: what its body reads runs here",
                "inline the function's query into the statement, or define it in another task",
            )
        if name in _OPAQUE_FUNCTIONS:
            raise _Refused(
                node,
                f"calls {node.name}(), which runs SQL text or reads data the SQL does not name",
                "read the data with plain SQL over named tables in the task's own statement",
            )
        self._children(node, ctes)

    def _table_from_rows(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        if not _is_row_function(node.this):
            raise self._unknown_function(node, node.this)
        self._children(node, ctes)

    def _unknown_function(self, node: exp.Expr, function: exp.Expr) -> _Refused:
        return _Refused(
            node,
            f"reads rows from the function {function.sql(dialect=self.dialect)[:60]!r}, which the "
            "analysis cannot tell reads no table (without a dialect, a table hint is also read as a call)",
            "read the data from a named table; if the database is known, set the connection type so the "
            "SQL is read in its dialect; a function known to read nothing can be added to the analyzer's "
            "row functions",
        )

    # --- writes -------------------------------------------------------------------------------------

    def _target(
        self,
        node: object,
        ctes: frozenset[str],
        *,
        reads: bool = False,
        temporary: bool = False,
        creates: bool = False,
    ) -> None:
        """A table or location in write position (``reads``: the statement also reads its rows)."""
        if isinstance(node, exp.Schema):
            node = self._created_identifier(node) or node.this
        if isinstance(node, exp.Directory):
            if isinstance(node.this, exp.Literal) and node.this.is_string:
                self.written_locations.add(self._location(node, node.this.this))
                return
            raise _Refused(node, "writes a directory named only at run time", "name the directory literally")
        if isinstance(node, exp.Literal) and node.is_string:
            self.written_locations.add(self._location(node, node.this))
            return
        if not isinstance(node, exp.Table):
            if node is None:
                return
            assert isinstance(node, exp.Expr)
            raise _Refused(
                node,
                f"writes {node.sql(dialect=self.dialect)[:60]!r}, which is not a plain table name",
                _RUNTIME_NAME_FIX,
            )
        resolved = self._resolve(node)
        self._children(node, ctes, skip=("this", "db", "catalog", "alias"))  # MySQL: UPDATE a JOIN b
        if isinstance(resolved, str):
            self.written_locations.add(resolved)
            return
        if resolved is None:
            raise _Refused(node, "writes into a function", "write into a named table")
        if reads and resolved.key not in self.local:
            self.reads.add(resolved.name)
        if temporary or resolved.temporary:
            self.temporary.add(resolved.name)
            if node is not None and self._is_top(node):
                self.local.add(resolved.key)
            return
        if resolved.key in self.local and (
            resolved.name in self.temporary or resolved.name in self.session_temporary
        ):
            return  # writing the script's own temporary table
        self.writes.add(resolved.name)
        if creates and self._is_top(node):
            self.local.add(resolved.key)

    def _created_identifier(self, schema: exp.Schema) -> exp.Table | None:
        """``CREATE TABLE IDENTIFIER('db.t') AS ...`` parses as a table ``IDENTIFIER`` with a column."""
        table = schema.this
        if not (
            isinstance(table, exp.Table) and len(table.parts) == 1 and table.name.upper() == "IDENTIFIER"
        ):
            return None
        if isinstance(table.this, exp.Identifier) and table.this.quoted:
            return None
        literals = schema.expressions
        if len(literals) == 1 and isinstance(literals[0], exp.Literal) and literals[0].is_string:
            try:
                return exp.to_table(literals[0].this, dialect=self.dialect)
            except (ParseError, TokenError):
                pass
        raise _Refused(schema, "creates a table named only at run time", _RUNTIME_NAME_FIX)

    def _is_top(self, node: exp.Expr) -> bool:
        """Whether ``node`` belongs to the statement itself (not to a block run conditionally)."""
        parent = node.parent
        while parent is not None and parent is not self._root:
            if isinstance(parent, (exp.Block, exp.IfBlock, exp.WhileBlock)):
                return False
            parent = parent.parent
        return True

    def _dml_target(self, statement: exp.Expr, target: exp.Expr | None) -> exp.Expr | None:
        """The table an ``UPDATE``/``DELETE``/``MERGE``/``INSERT`` target names.

        T-SQL/MySQL ``UPDATE a ... FROM t AS a`` and ``DELETE a FROM t AS a``: ``a`` is ``t``. A
        T-SQL target naming the statement's own CTE modifies the one table that CTE reads.
        """
        if not isinstance(target, exp.Table) or len(target.parts) != 1 or target.args.get("alias"):
            return target
        key = self._key(target.this)
        with_ = statement.args.get("with_")
        if self.dialect in _UPDATABLE_CTE_DIALECTS and isinstance(with_, exp.With):
            for cte in with_.expressions:
                if self._key(cte.args["alias"].this) == key:
                    tables = [table for table in cte.this.find_all(exp.Table) if self._named(table)]
                    if len(tables) != 1:
                        raise _Refused(
                            target,
                            f"modifies the CTE {target.name!r}, which does not name exactly one table",
                            "modify the table by its name",
                        )
                    found: exp.Table = tables[0]
                    return found
        for table in statement.find_all(exp.Table):
            alias = table.args.get("alias")
            if (
                table is not target
                and isinstance(alias, exp.TableAlias)
                and alias.this is not None
                and self._key(alias.this) == key
            ):
                return table
        return target

    def _returning(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """T-SQL ``OUTPUT ... INTO t`` writes ``t`` too."""
        into = node.args.get("into")
        if isinstance(into, exp.Identifier):
            self._target(exp.Table(this=into.copy()), ctes)
        elif isinstance(into, exp.Expr):
            self._target(into, ctes)
        self._children(node, ctes, skip=("into",))

    def _upserts(self, node: exp.Expr) -> bool:
        """``ON CONFLICT``/``ON DUPLICATE KEY`` and ``INSERT OR REPLACE`` read the rows they replace."""
        alternative = str(node.args.get("alternative") or "").upper()
        return bool(node.args.get("conflict")) or alternative in ("REPLACE", "UPDATE")

    def _insert(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        if node.args.get("is_function"):
            raise _Refused(node, "inserts into a table function", "insert into a named table")
        if not isinstance(node.parent, exp.When):  # MERGE ... THEN INSERT writes the MERGE's target
            self._target(node.this, ctes, reads=self._upserts(node))
        self._children(node, ctes, skip=("this",))

    def _modify(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``UPDATE``, ``DELETE`` and ``MERGE`` read the rows they change and write their target."""
        targets = node.args.get("tables") if isinstance(node, exp.Delete) else None
        if targets:
            for target in targets:
                self._target(self._dml_target(node, target), ctes, reads=True)
            self._children(node, ctes, skip=("tables",))
            return
        self._target(self._dml_target(node, node.this), ctes, reads=True)
        self._children(node, ctes, skip=("this",))

    def _create(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        kind = str(node.args.get("kind") or "").upper()
        if kind in _CODE_KINDS:
            # Defining code moves no data; calling it is refused (CALL, EXEC, and in this script).
            function = node.this.this if isinstance(node.this, exp.UserDefinedFunction) else node.this
            if isinstance(function, (exp.Table, exp.Identifier)) and function.name and self._body_reads(node):
                self.defined_code.add(function.name.lower())
            return
        if kind not in _DATA_KINDS:
            if kind == "INDEX":
                self._children(node, ctes)
            else:
                self._children(node, ctes, skip=("this",))
            return
        properties = node.args.get("properties")
        props = properties.expressions if isinstance(properties, exp.Properties) else []
        temporary = any(isinstance(prop, (exp.TemporaryProperty, exp.VolatileProperty)) for prop in props)
        if self._external_data(props, writes=node.args.get("expression") is not None):
            # Its rows are the files', not what the script put there: neither local nor temporary.
            self._target(node.this, ctes)
        else:
            self._target(node.this, ctes, temporary=temporary, creates=not node.args.get("exists"))
        self._children(node, ctes, skip=("this",))

    def _body_reads(self, node: exp.Expr) -> bool:
        """Whether a function's or macro's body (parsed, or SQL text) may read a table: calling it
        in the same script is then refused. A body that cannot be read counts as reading."""
        body = node.args.get("expression")
        if isinstance(body, exp.Heredoc) or (isinstance(body, exp.Literal) and body.is_string):
            try:
                parsed = [item for item in sqlglot.parse(body.name, read=self.dialect) if item is not None]
            except (ParseError, TokenError):
                return True
            return any(item.find(exp.Table) is not None for item in parsed)
        return not isinstance(body, exp.Expr) or body.find(exp.Table, exp.Command) is not None

    def _external_data(self, properties: list[exp.Expr], *, writes: bool) -> bool:
        """A table or view over data outside the database (``LOCATION``, ``OPTIONS (path ...)``,
        ``uris``, ``external_location``, ``EXTERNAL``): its locations are read (written, for a
        ``CREATE ... AS`` query); a remote table (``ENGINE=FEDERATED``, ``CONNECTION``) refuses."""
        external = False
        for prop in properties:
            if isinstance(prop, exp.OptionsProperty):
                external = self._external_data(list(prop.expressions), writes=writes) or external
                continue
            if isinstance(prop, exp.ExternalProperty):
                external = True
                continue
            if isinstance(prop, exp.EngineProperty) and prop.name.upper() in ("FEDERATED", "CONNECT"):
                raise _Refused(prop, "creates a table over a remote database", "read the remote data by name")
            if isinstance(prop, exp.LocationProperty):
                value = prop.this
            elif isinstance(prop, exp.Property) and prop.name.lower() in _LOCATION_OPTIONS:
                value = prop.args.get("value")
            elif isinstance(prop, exp.Property) and prop.name.lower() == "connection":
                raise _Refused(
                    prop, "creates a table over a remote connection", "read the remote data by name"
                )
            else:
                continue
            external = True
            values = value.expressions if isinstance(value, exp.Array) else [value]
            for item in values:
                if not (isinstance(item, exp.Literal) and item.is_string):
                    raise _Refused(
                        prop,
                        f"creates a table over {value.sql(dialect=self.dialect)[:60]!r}, a location "
                        "the database resolves",
                        "name the location by its URI (s3://bucket/key) or absolute path",
                    )
                location = self._location(item, item.this)
                (self.written_locations if writes else self.read_locations).add(location)
        return external

    def _into(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        self._target(node.this, ctes, temporary=bool(node.args.get("temporary")), creates=True)

    def _copy(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``COPY``: with ``FROM``/``INTO`` the files are read into ``this``; with ``TO`` written from it."""
        loading = bool(node.args.get("kind"))
        if loading:
            self._target(node.this, ctes)
        else:
            self._copy_end(node.this, ctes, write=False)
        for end in node.args.get("files") or ():
            self._copy_end(end, ctes, write=not loading)
        self._children(node, ctes, skip=("this", "files"))

    def _copy_end(self, end: exp.Expr, ctes: frozenset[str], *, write: bool) -> None:
        if isinstance(end, exp.Identifier) and end.name.upper() in ("STDIN", "STDOUT"):
            return
        if isinstance(end, exp.Literal) and end.is_string:
            location = self._location(end, end.this)
            (self.written_locations if write else self.read_locations).add(location)
        elif write:
            self._target(end, ctes)
        elif isinstance(end, exp.Table) and isinstance(end.this, exp.Var):
            raise _Refused(
                end,
                f"moves files through the stage {end.this.name!r}, whose location the database resolves",
                "name the files by their URI (s3://bucket/key), or load them in a task whose inputs are "
                "declared as inlets",
            )
        elif isinstance(end, (exp.Table, exp.Subquery)):
            self._stack.append((end, ctes))
        else:
            raise _Refused(
                end,
                f"copies from {end.sql(dialect=self.dialect)[:60]!r}, which names no table or file",
                "copy from a named table, a file URI or STDIN",
            )

    def _load_data(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        path = node.args.get("inpath")
        if not (isinstance(path, exp.Literal) and path.is_string):
            raise _Refused(node, "loads files named only at run time", "name the files literally")
        self.read_locations.add(self._location(path, path.this))
        self._target(node.this, ctes)

    def _truncate(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        for table in node.expressions:
            self._target(table, ctes)

    def _alter(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        kind = str(node.args.get("kind") or "TABLE").upper()
        actions = node.args.get("actions") or ()
        if kind not in _DATA_KINDS:
            self._children(node, ctes, skip=("this",))
            return
        moved = any(isinstance(action, (exp.AlterRename, exp.SwapTable)) for action in actions)
        self._target(node.this, ctes, reads=moved)
        for action in actions:
            if isinstance(action, exp.SwapTable):
                self._target(action.this, ctes, reads=True)
            elif isinstance(action, exp.AlterRename):
                renamed = self._named(node.this) if isinstance(node.this, exp.Table) else None
                if renamed is not None:
                    self.local.discard(renamed.key)  # the name no longer means the script's table
                self._target(action.this, ctes)
            else:
                self._stack.append((action, ctes))

    def _cache(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``CACHE TABLE c AS query`` makes a temporary ``c``; ``CACHE TABLE t`` reads ``t``."""
        if node.args.get("expression") is None:
            self._children(node, ctes)
            return
        self._target(node.this, ctes, temporary=True)
        self._children(node, ctes, skip=("this",))

    def _drop(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        for table in node.args.get("tables") or [node.this]:
            named = self._named(table) if isinstance(table, exp.Table) else None
            if named is not None:
                self.local.discard(named.key)

    def _export(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """BigQuery ``EXPORT DATA OPTIONS(uri='gs://...') AS query`` writes the files at ``uri``."""
        options = node.args.get("options")
        uris = [
            prop.args.get("value")
            for prop in (options.expressions if isinstance(options, exp.Properties) else ())
            if isinstance(prop, exp.Property) and prop.name.lower() == "uri"
        ]
        if len(uris) != 1 or not isinstance(uris[0], exp.Literal) or not uris[0].is_string:
            raise _Refused(node, "exports to a location the SQL does not name", "give OPTIONS(uri='...')")
        self.written_locations.add(self._location(node, uris[0].this))
        self._stack.append((node.this, ctes))

    def _block(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """Procedural blocks: each statement in them is analyzed (conditional ones included)."""
        for statement in node.expressions:
            _known_statement(statement)
        self._children(node, ctes)

    # --- statements that move no data ---------------------------------------------------------------

    def _describe(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``DESCRIBE t`` reads no rows; ``EXPLAIN query`` (MySQL's parse) may run the query."""
        if not isinstance(node.this, exp.Table):
            raise _Refused(node, "explains a query, which the database may run", "run the query itself")

    def _refresh(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        """``REFRESH MATERIALIZED VIEW v`` writes ``v``; Spark's ``REFRESH TABLE t`` only drops caches."""
        if str(node.args.get("kind") or "").upper() in ("MATERIALIZED VIEW", "VIEW"):
            self._target(node.this, ctes)

    def _admin(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        self._children(node, ctes, skip=_OBJECT_ARGS)

    def _nothing(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        return

    def _command(self, node: exp.Expr, ctes: frozenset[str]) -> None:
        keyword = " ".join(str(node.this).upper().split())
        expression = node.args.get("expression")
        rest = expression.name if isinstance(expression, exp.Expr) else str(expression or "")
        if keyword in _HARMLESS_COMMANDS or (keyword == "CREATE" and _DEFINES_CODE.match(rest)):
            return
        if keyword in _SETTING_COMMANDS or (keyword == "ALTER" and rest.upper().startswith("SESSION")):
            tokens = self._tokens(rest)
            if tokens and not any(token.token_type in _QUERY_TOKENS for token in tokens):
                self._session_changed = True
                return
        if keyword == "REFRESH":
            match = _REFRESH.match(rest)
            if match is not None:
                try:
                    table = exp.to_table(match["name"], dialect=self.dialect)
                except (ParseError, TokenError):
                    table = None
                if table is not None and self._named(table) is not None:
                    self._target(table, ctes)
                    return
        if keyword == "UNLOAD":
            self._unload(node, rest)
            return
        raise _Refused(node, "runs code whose tables cannot be read from the SQL", "")

    def _tokens(self, text: str) -> list[Token]:
        """The tokens of a command's text in the dialect; none when it does not tokenize."""
        try:
            return self.glot.tokenize(text)
        except TokenError:
            return []

    def _unload(self, node: exp.Expr, rest: str) -> None:
        """Redshift ``UNLOAD ('query') TO 'location' ...``: the quoted query is analyzed too."""
        tokens = self._tokens(rest)
        types = [token.token_type for token in tokens[:5]]
        if types == [
            TokenType.L_PAREN,
            TokenType.STRING,
            TokenType.R_PAREN,
            TokenType.VAR,
            TokenType.STRING,
        ] and (tokens[3].text.upper() == "TO"):
            for statement in _parse(tokens[1].text, self.dialect):
                if statement is not None and not isinstance(statement, exp.Semicolon):
                    self._walk(statement, frozenset())
            self.written_locations.add(self._location(node, tokens[4].text))
            return
        raise _Refused(node, "unloads a query the analysis cannot read", "write UNLOAD ('query') TO 'uri'")

    def _opaque(self, node: exp.Expr, ctes: frozenset[str]) -> NoReturn:
        raise _Refused(node, "runs code whose tables cannot be read from the SQL", "")

    _HANDLERS: ClassVar[dict[type[exp.Expr], Callable[[_Script, exp.Expr, frozenset[str]], None]]] = {
        exp.Table: _table,
        exp.From: _source,
        exp.Join: _source,
        exp.Lateral: _source,
        exp.Anonymous: _function,
        exp.TableFromRows: _table_from_rows,
        exp.Insert: _insert,
        exp.Update: _modify,
        exp.Delete: _modify,
        exp.Merge: _modify,
        exp.Create: _create,
        exp.Into: _into,
        exp.Copy: _copy,
        exp.LoadData: _load_data,
        exp.TruncateTable: _truncate,
        exp.Alter: _alter,
        exp.Cache: _cache,
        exp.Drop: _drop,
        exp.Export: _export,
        exp.Returning: _returning,
        exp.Describe: _describe,
        exp.Refresh: _refresh,
        exp.Block: _block,
        exp.Command: _command,
        exp.Execute: _opaque,
        exp.ExecuteSql: _opaque,
        **dict.fromkeys(_ADMIN, _admin),
        **dict.fromkeys(_NOTHING, _nothing),
    }

    # --- errors -------------------------------------------------------------------------------------

    def _error(self, statement: exp.Expr, refused: _Refused, *, position: int) -> SqlParseError:
        text = " ".join(statement.sql(dialect=self.dialect).split())
        # Some nodes carry no position, and a block the parser could not fill holds none at all
        # (T-SQL 'IF VALUES'): point at the statement.
        line, column = _where(refused.node) if refused.node is not None else (None, None)
        if line is None:
            line, column = _where(statement)
        where = f", at line {line}, column {column}" if line is not None else ""
        fix = refused.fix or (
            "inline the queries it runs into the task's SQL, or move it to a task whose inputs are declared "
            "as inlets and reviewed"
        )
        return SqlParseError(
            f"statement {position} ({text[:60]!r}) {refused.reason} ({_dialect_label(self.dialect)}){where}"
            f"\n    fix: {fix}",
            dialect=self.dialect,
            line=line,
            column=column,
        )


# Statements after which a name the script created may mean another table.
_SESSION_STATEMENTS: tuple[type[exp.Expr], ...] = (
    exp.Set,
    exp.Use,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)
# Table options naming the data's location.
_LOCATION_OPTIONS = frozenset({"path", "paths", "uris", "uri", "url", "location", "external_location"})

# What FROM, JOIN and LATERAL may read from (besides row functions): anything else is refused.
_SOURCES: tuple[type[exp.Expr], ...] = (exp.Table, exp.Subquery, exp.Lateral, exp.TableFromRows, exp.Pivot)

# Dialects where any CTE may name itself (recursive without the RECURSIVE keyword).
_SELF_REFERENCING_CTE_DIALECTS = frozenset({"tsql", "fabric", "oracle", "snowflake", "sqlite", "teradata"})
# Dialects where UPDATE/DELETE/INSERT through a CTE modifies the table under it.
_UPDATABLE_CTE_DIALECTS = frozenset({"tsql", "fabric"})
# Dialects where a name starting with '#' is a session's temporary table.
_HASH_TEMPORARY_DIALECTS = frozenset({"tsql", "fabric", "redshift"})

_STATEMENTS: tuple[type[exp.Expr], ...] = (
    exp.Query,
    exp.Values,
    exp.Summarize,
    exp.Insert,
    exp.MultitableInserts,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Copy,
    exp.LoadData,
    exp.TruncateTable,
    exp.Alter,
    exp.Cache,
    exp.Drop,
    exp.Export,
    exp.Set,
    exp.Declare,
    exp.Install,
    exp.Block,
    exp.IfBlock,
    exp.WhileBlock,
    exp.Command,
    exp.Execute,
    exp.ExecuteSql,
    exp.Describe,
    exp.Refresh,
    exp.Pivot,
    *_ADMIN,
    *_NOTHING,
)


def _known_statement(statement: exp.Expr) -> None:
    """Refuse a statement of a kind the analysis does not handle (the allow-list of statements)."""
    if not isinstance(statement, _STATEMENTS):
        raise _Refused(
            statement,
            f"is a statement the analysis does not know ({type(statement).__name__})",
            "run it in a task whose inputs are declared as inlets and reviewed, or ask the provider's "
            "maintainers to support it",
        )


def _is_row_function(node: object) -> bool:
    """A function in a table position that makes rows from its arguments and reads no table."""
    return isinstance(node, _ROW_FUNCTIONS) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in _ROW_FUNCTION_NAMES
    )


def _where(node: exp.Expr) -> tuple[int | None, int | None]:
    """The line and column of the first token of ``node`` the parser recorded."""
    for child in node.walk():
        meta = child.meta if child._meta else None
        if meta and "line" in meta:
            return int(meta["line"]), int(meta["col"])
    return None, None
