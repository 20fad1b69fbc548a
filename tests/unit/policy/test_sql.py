"""SQL-derived inputs and outputs: which tables a rendered SQL script reads and writes (sqlglot)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import airflow_policyzones.policy
from airflow_policyzones.policy import InputRef
from airflow_policyzones.policy.sql import SqlParseError, SqlTables, dialect_for_connection, tables_in_sql


def names(text: str) -> frozenset[str]:
    return frozenset(text.split())


@pytest.mark.parametrize(
    ("dialect", "sql", "reads", "writes", "temporary", "statements"),
    [
        # plain reads, qualified and quoted names
        pytest.param("postgres", "SELECT * FROM raw.purchases", "raw.purchases", "", "", 1, id="select"),
        pytest.param(
            "postgres",
            'SELECT * FROM "Warehouse"."Raw"."Purchases" AS p',
            "warehouse.raw.purchases",
            "",
            "",
            1,
            id="catalog-schema-qualified-quoted",
        ),
        pytest.param(
            "snowflake", "SELECT * FROM DB.RAW.PURCHASES", "db.raw.purchases", "", "", 1, id="folded"
        ),
        pytest.param(
            "bigquery", "SELECT * FROM `proj.ds.events`", "proj.ds.events", "", "", 1, id="bigquery"
        ),
        pytest.param("tsql", "SELECT * FROM [db].[dbo].[t]", "db.dbo.t", "", "", 1, id="tsql-brackets"),
        pytest.param("tsql", "SELECT * FROM srv.db.dbo.t", "srv.db.dbo.t", "", "", 1, id="tsql-four-parts"),
        pytest.param(
            "postgres",
            "SELECT * FROM a WHERE id IN (SELECT id FROM b) AND EXISTS (SELECT 1 FROM c JOIN d ON true)",
            "a b c d",
            "",
            "",
            1,
            id="subqueries",
        ),
        pytest.param("postgres", "SELECT * FROM t1 UNION SELECT * FROM t2", "t1 t2", "", "", 1, id="union"),
        pytest.param(
            "postgres",
            "SELECT * FROM analytics.purchases_v",
            "analytics.purchases_v",
            "",
            "",
            1,
            id="select-star-over-a-view-reads-the-view",
        ),
        pytest.param(
            "postgres",
            "CREATE VIEW mart.v AS SELECT * FROM raw.purchases; SELECT * FROM mart.v",
            "raw.purchases",
            "mart.v",
            "",
            2,
            id="view-created-then-read-in-the-script",
        ),
        pytest.param("postgres", "SELECT * FROM generate_series(1, 3)", "", "", "", 1, id="table-function"),
        # CTEs
        pytest.param(
            "postgres",
            "WITH p AS (SELECT * FROM raw.purchases) SELECT * FROM p",
            "raw.purchases",
            "",
            "",
            1,
            id="cte-is-not-a-table",
        ),
        pytest.param(
            "postgres",
            "WITH purchases AS (SELECT * FROM raw.purchases) "
            "SELECT * FROM purchases JOIN raw.purchases r ON true",
            "raw.purchases",
            "",
            "",
            1,
            id="qualified-name-is-never-a-cte",
        ),
        pytest.param(
            "postgres",
            "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
            "b",
            "",
            "",
            1,
            id="later-sibling-cte-is-not-visible",
        ),
        pytest.param(
            "postgres",
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
            "",
            "",
            "",
            1,
            id="recursive-cte",
        ),
        pytest.param(
            "postgres",
            "SELECT * FROM (WITH x AS (SELECT * FROM src) SELECT * FROM x) s JOIN x ON true",
            "src x",
            "",
            "",
            1,
            id="cte-visible-only-in-its-query",
        ),
        pytest.param(
            "postgres",
            "WITH t AS (SELECT 1) SELECT * FROM t; SELECT * FROM t",
            "t",
            "",
            "",
            2,
            id="cte-not-visible-in-the-next-statement",
        ),
        pytest.param(
            "postgres",
            "WITH dst AS (SELECT * FROM src) INSERT INTO dst SELECT * FROM dst",
            "src",
            "dst",
            "",
            1,
            id="insert-target-named-like-a-cte-is-a-table",
        ),
        # writes
        pytest.param(
            "postgres", "INSERT INTO t SELECT * FROM s", "s", "t", "", 1, id="insert-does-not-read-target"
        ),
        pytest.param("postgres", "INSERT INTO t VALUES (1)", "", "t", "", 1, id="insert-values"),
        pytest.param(
            "postgres",
            "INSERT INTO t (a) SELECT a FROM s ON CONFLICT (a) DO UPDATE SET a = 1",
            "s t",
            "t",
            "",
            1,
            id="upsert-reads-target",
        ),
        pytest.param(
            "mysql",
            "INSERT INTO t (a) SELECT a FROM s ON DUPLICATE KEY UPDATE a = 1",
            "s t",
            "t",
            "",
            1,
            id="mysql-upsert-reads-target",
        ),
        pytest.param(
            "postgres",
            "UPDATE t SET x = s.x FROM s WHERE t.id = s.id",
            "s t",
            "t",
            "",
            1,
            id="update-reads-target",
        ),
        pytest.param(
            "postgres", "DELETE FROM t USING s WHERE t.id = s.id", "s t", "t", "", 1, id="delete-reads-target"
        ),
        pytest.param(
            "postgres",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET x = s.x",
            "s t",
            "t",
            "",
            1,
            id="merge-reads-target",
        ),
        pytest.param("postgres", "TRUNCATE t, u", "", "t u", "", 1, id="truncate"),
        pytest.param("postgres", "COPY raw.events FROM STDIN", "", "raw.events", "", 1, id="copy-from-stdin"),
        pytest.param("postgres", "COPY t TO STDOUT", "t", "", "", 1, id="copy-to-reads"),
        pytest.param("postgres", "SELECT * INTO archive FROM src", "src", "archive", "", 1, id="select-into"),
        pytest.param("snowflake", "CREATE TABLE t CLONE s", "s", "t", "", 1, id="clone"),
        pytest.param("postgres", "ALTER TABLE t RENAME TO u", "t", "t u", "", 1, id="rename"),
        pytest.param(
            "postgres",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mart.v",
            "",
            "mart.v",
            "",
            1,
            id="refresh-view",
        ),
        # temporary and script-local tables
        pytest.param(
            "postgres",
            "CREATE TEMP TABLE stage AS SELECT * FROM raw.purchases; "
            "INSERT INTO mart.daily SELECT * FROM stage",
            "raw.purchases",
            "mart.daily",
            "stage",
            2,
            id="temp-table-read-later-is-not-an-input",
        ),
        pytest.param(
            "postgres",
            "CREATE TEMP TABLE t AS SELECT 1; INSERT INTO t SELECT * FROM s",
            "s",
            "",
            "t",
            2,
            id="writing-a-temp-table-is-no-output",
        ),
        pytest.param(
            "postgres",
            "SELECT * FROM stage; CREATE TEMP TABLE stage AS SELECT 1",
            "stage",
            "",
            "stage",
            2,
            id="read-before-the-temp-table-exists-is-external",
        ),
        pytest.param(
            "tsql",
            "SELECT * INTO #tmp FROM dbo.src; SELECT * FROM #tmp",
            "dbo.src",
            "",
            "#tmp",
            2,
            id="tsql-hash-temp",
        ),
        pytest.param(
            "snowflake",
            "CREATE OR REPLACE TEMPORARY TABLE t AS SELECT * FROM db.s.src; "
            "INSERT INTO db.s.dst SELECT * FROM t",
            "db.s.src",
            "db.s.dst",
            "t",
            2,
            id="snowflake-temporary",
        ),
        pytest.param(
            "teradata",
            "CREATE VOLATILE TABLE v AS (SELECT * FROM src) WITH DATA; SELECT * FROM v",
            "src",
            "",
            "v",
            2,
            id="teradata-volatile",
        ),
        pytest.param(
            "spark",
            "CACHE TABLE c AS SELECT * FROM src; INSERT INTO out SELECT * FROM c",
            "src",
            "out",
            "c",
            2,
            id="spark-cache-table",
        ),
        pytest.param(
            "postgres",
            "CREATE TABLE stg AS SELECT * FROM a; INSERT INTO f SELECT * FROM stg; DROP TABLE stg",
            "a",
            "f stg",
            "",
            3,
            id="staging-table-created-by-the-script",
        ),
        pytest.param(
            "postgres",
            "CREATE TABLE stg AS SELECT * FROM a; DROP TABLE stg; SELECT * FROM stg",
            "a stg",
            "stg",
            "",
            3,
            id="read-after-drop-is-external",
        ),
        pytest.param(
            "postgres",
            "CREATE TABLE IF NOT EXISTS acc (id INT); INSERT INTO acc SELECT * FROM src; SELECT * FROM acc",
            "acc src",
            "acc",
            "",
            3,
            id="if-not-exists-may-hold-older-data",
        ),
        # several statements, administrative statements
        pytest.param(
            "postgres",
            "SELECT 1; SELECT * FROM a;; INSERT INTO b SELECT * FROM c;",
            "a c",
            "b",
            "",
            3,
            id="multiple-statements",
        ),
        pytest.param(
            "mysql",
            "USE db; SET @x = 1; GRANT SELECT ON t TO u; DROP TABLE IF EXISTS old; "
            "ANALYZE TABLE t; BEGIN; COMMIT",
            "",
            "",
            "",
            7,
            id="administrative-statements-move-no-data",
        ),
        pytest.param(
            "snowflake", "USE SCHEMA db.s; DESCRIBE TABLE t; SHOW TABLES", "", "", "", 3, id="snowflake-admin"
        ),
        pytest.param("postgres", "VACUUM t", "", "", "", 1, id="harmless-command"),
        pytest.param("postgres", "CREATE INDEX i ON t (x)", "t", "", "", 1, id="index-reads-its-table"),
    ],
)
def test_tables_in_sql(
    dialect: str, sql: str, reads: str, writes: str, temporary: str, statements: int
) -> None:
    assert tables_in_sql(sql, dialect=dialect) == SqlTables(
        reads=names(reads), writes=names(writes), temporary=names(temporary), statements=statements
    )


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("", id="empty"),
        pytest.param("  \n\t ", id="whitespace"),
        pytest.param("-- {% if params.backfill %} rendered to nothing\n", id="line-comment"),
        pytest.param("/* nothing to do today */", id="block-comment"),
        pytest.param(" ; ; ", id="semicolons"),
    ],
)
def test_sql_that_renders_to_nothing_runs_nothing(sql: str) -> None:
    result = tables_in_sql(sql, dialect="postgres")
    assert result == SqlTables()
    assert result.empty
    assert result.inputs == ()


def test_tables_as_input_refs() -> None:
    result = tables_in_sql(
        'INSERT INTO Mart."Daily" SELECT * FROM raw.b JOIN raw.a ON true', dialect="postgres"
    )
    assert result.inputs == (InputRef.table("raw.a"), InputRef.table("raw.b"))
    assert result.outputs == (InputRef("table", "mart.daily"),)
    assert not result.empty


@pytest.mark.parametrize(
    ("dialect", "sql", "expected"),
    [
        pytest.param(
            "postgres",
            "SELECT * FROM",
            "cannot parse the SQL as postgres SQL at line 1, column 13: Expected table name but got end of "
            "input near 'SELECT * FROM'",
            id="truncated",
        ),
        pytest.param(
            "postgres",
            "SELECT 'abc",
            "cannot parse the SQL as postgres SQL: Error tokenizing 'SELECT 'ab' (an unterminated string, "
            "quote or comment?)",
            id="unterminated-string",
        ),
        pytest.param(
            None,
            "SELEC * FROM t",
            "cannot parse the SQL as SQL (sqlglot's default dialect: the connection type is unknown)",
            id="default-dialect",
        ),
        pytest.param(
            "postgres",
            "SELECT * FROM {{ params.table }}",
            "(the SQL still contains Jinja: pass the rendered SQL)",
            id="unrendered-jinja",
        ),
        pytest.param(
            "postgres",
            "SELECT 1; CALL refresh_everything()",
            "statement 2 ('CALL refresh_everything()') runs code whose tables cannot be read from the SQL "
            "(postgres SQL)",
            id="call",
        ),
        pytest.param("tsql", "EXEC sp_load", "statement 1 ('EXECUTE sp_load') runs code", id="exec"),
        pytest.param(
            "postgres", "DO $$ BEGIN END $$", "statement 1 ('DO $$ BEGIN END $$') runs code", id="do"
        ),
        pytest.param("postgres", "EXPLAIN ANALYZE DELETE FROM t", "runs code", id="explain"),
        pytest.param("nope", "SELECT 1", "unknown SQL dialect 'nope'", id="unknown-dialect"),
        pytest.param(
            "snowflake",
            "COPY INTO raw.events FROM @stage",
            "statement 1 ('COPY INTO raw.events FROM @stage') moves files through the stage '@stage', "
            "whose location the database resolves (snowflake SQL), at line 1",
            id="stage",
        ),
    ],
)
def test_sql_that_cannot_be_analyzed_fails_closed(dialect: str | None, sql: str, expected: str) -> None:
    with pytest.raises(SqlParseError) as caught:
        tables_in_sql(sql, dialect=dialect)
    message = str(caught.value)
    assert expected in message
    assert "\n    fix: " in message
    assert caught.value.dialect == dialect


def test_parse_error_carries_its_location() -> None:
    with pytest.raises(SqlParseError) as caught:
        tables_in_sql("SELECT 1;\nSELECT * FROM t WHERE", dialect="postgres")
    assert (caught.value.line, caught.value.column) == (2, 21)
    assert str(caught.value).endswith(
        "fix: correct the SQL; if the database accepts it, check the dialect (it follows the connection "
        "type, see dialect_for_connection). SQL whose tables cannot be read is not run in an enforce zone"
    )


@pytest.mark.parametrize(
    ("conn_type", "dialect"),
    [
        ("postgres", "postgres"),
        ("mysql", "mysql"),
        ("sqlite", "sqlite"),
        ("snowflake", "snowflake"),
        ("bigquery", "bigquery"),
        ("google_cloud_platform", "bigquery"),
        ("redshift", "redshift"),
        ("trino", "trino"),
        ("presto", "presto"),
        ("mssql", "tsql"),
        ("oracle", "oracle"),
        ("databricks", "databricks"),
        ("duckdb", "duckdb"),
        ("hiveserver2", "hive"),
        ("spark_sql", "spark"),
        ("clickhouse", "clickhouse"),
        (" Postgres ", "postgres"),
        ("jdbc", None),
        ("odbc", None),
        (None, None),
    ],
)
def test_dialect_for_connection(conn_type: str | None, dialect: str | None) -> None:
    assert dialect_for_connection(conn_type) == dialect
    if dialect is not None:  # every mapped dialect is one sqlglot knows
        assert tables_in_sql("SELECT * FROM t", dialect=dialect).reads == {"t"}


def test_every_mapped_dialect_is_known_to_sqlglot() -> None:
    from airflow_policyzones.policy.sql import _CONNECTION_DIALECTS

    for conn_type, dialect in _CONNECTION_DIALECTS.items():
        assert tables_in_sql("SELECT 1", dialect=dialect).statements == 1, conn_type


def test_sql_names_are_exported_and_sqlglot_is_imported_on_first_use() -> None:
    """DAG parsing and workers import the core; only a SQL check should pay for importing sqlglot."""
    program = (
        "import sys, airflow_policyzones.policy as core\n"
        "before = 'sqlglot' in sys.modules\n"
        "tables = core.tables_in_sql('SELECT * FROM t', dialect=core.dialect_for_connection('postgres'))\n"
        "print(before, 'sqlglot' in sys.modules, sorted(tables.reads), core.SqlParseError.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "['t']", "SqlParseError"]
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        _ = airflow_policyzones.policy.nothing_here  # type: ignore[attr-defined]
