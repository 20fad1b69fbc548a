"""SQL that ``tables_in_sql`` under-reports: found in a security review (DAG author's view).

Each case is SQL the database runs to read (or write) data, for which the analysis returns
normally *without* naming it. The rule (``docs/sql-analysis.md``) is "every table and file, or
SqlParseError", so each case passes when the analysis either names ``must`` (in ``reads`` /
``read_locations``, or for ``kind="write"`` in ``writes`` / ``written_locations``) or refuses.
``must=None``: the SQL names nothing the analysis could report, so only a refusal is right.

Each case was a silent under-report when it was found; they are kept as regression cases.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from airflow_policyzones.policy.sql import SqlParseError, tables_in_sql


@dataclass(frozen=True)
class Bypass:
    dialect: str
    sql: str
    must: str | None
    reason: str
    kind: str = "read"


# Names the script created (or temporary tables) are kept as "local" for the rest of the script,
# but the name can stop meaning that table: the session's name resolution changes, the table is
# renamed or rolled back, or (T-SQL) '#t' and 't' are taken for the same name.
_LOCAL_NAME = [
    Bypass(
        "postgres",
        "CREATE TABLE purchases (id int); SET search_path TO raw; SELECT * FROM purchases",
        "purchases",
        "SET search_path re-points a name created earlier in the script",
    ),
    Bypass(
        "postgres",
        "CREATE TEMP TABLE purchases (id int); SET search_path TO public, pg_temp; SELECT * FROM purchases",
        "purchases",
        "pg_temp after public in search_path: the temp table no longer shadows public.purchases",
    ),
    Bypass(
        "postgres",
        "CREATE TEMP TABLE purchases (id int); SELECT set_config('search_path', 'public, pg_temp', false); "
        "SELECT * FROM purchases",
        "purchases",
        "set_config() changes search_path from a SELECT",
    ),
    Bypass(
        "mysql",
        "CREATE TABLE purchases (id int); USE raw; SELECT * FROM purchases",
        "purchases",
        "USE changes the default database after the script created the name",
    ),
    Bypass(
        "tsql",
        "CREATE TABLE purchases (id int); USE raw; SELECT * FROM purchases",
        "purchases",
        "USE changes the database after the script created the name",
    ),
    Bypass(
        "snowflake",
        "CREATE TABLE purchases (id int); USE SCHEMA raw; SELECT * FROM purchases",
        "purchases",
        "USE SCHEMA changes the schema after the script created the name",
    ),
    Bypass(
        "postgres",
        "CREATE TEMP TABLE purchases (x int); ALTER TABLE purchases RENAME TO junk; SELECT * FROM purchases",
        "purchases",
        "ALTER TABLE ... RENAME does not end the local name (confirmed end to end on PostgreSQL)",
    ),
    Bypass(
        "mysql",
        "CREATE TEMPORARY TABLE purchases (x int); ALTER TABLE purchases RENAME TO junk; "
        "SELECT * FROM purchases",
        "purchases",
        "ALTER TABLE ... RENAME does not end the local name",
    ),
    Bypass(
        "postgres",
        "BEGIN; CREATE TEMP TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE; the name is still taken as local (confirmed end to end)",
    ),
    Bypass(
        "redshift",
        "BEGIN; CREATE TEMP TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE",
    ),
    Bypass(
        "sqlite",
        "BEGIN; CREATE TEMP TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE",
    ),
    Bypass(
        "duckdb",
        "BEGIN; CREATE TEMP TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE",
    ),
    Bypass(
        "snowflake",
        "BEGIN; CREATE TEMPORARY TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE",
    ),
    Bypass(
        "tsql",
        "BEGIN TRANSACTION; CREATE TABLE purchases (x int); ROLLBACK; SELECT * FROM purchases",
        "purchases",
        "ROLLBACK undoes the CREATE",
    ),
    Bypass(
        "tsql",
        "CREATE TABLE #purchases (x int); SELECT * FROM purchases",
        "purchases",
        "#purchases (temporary) and purchases (dbo) are different tables but get the same key",
    ),
    Bypass(
        "tsql",
        "SELECT 1 AS x INTO #purchases; SELECT * FROM purchases",
        "purchases",
        "SELECT INTO #purchases shadows the real purchases in the analysis only",
    ),
    Bypass(
        "fabric",
        "CREATE TABLE #purchases (x int); SELECT * FROM purchases",
        "purchases",
        "#purchases and purchases get the same key",
    ),
    Bypass(
        "tsql",
        "CREATE TABLE ##purchases (x int); SELECT * FROM purchases",
        "purchases",
        "global temporary ##purchases is taken for purchases (also reported as a write of purchases)",
    ),
    Bypass(
        "spark",
        "CACHE TABLE raw.purchases; SELECT * FROM raw.purchases",
        "raw.purchases",
        "CACHE TABLE t (no AS) caches the existing table; the analysis takes t for a new temporary",
    ),
    Bypass(
        "databricks",
        "CACHE TABLE raw.purchases; SELECT * FROM raw.purchases",
        "raw.purchases",
        "CACHE TABLE t (no AS) caches the existing table; the analysis takes t for a new temporary",
    ),
]

# Tables created over existing data (a location, a remote server): the created name is local, so
# reading it reads nothing as far as the analysis is concerned, and the location is never reported.
_EXTERNAL = [
    Bypass(
        "spark",
        "CREATE TABLE t USING parquet LOCATION '/data/purchases'; SELECT * FROM t",
        "file:///data/purchases",
        "table over an existing location",
    ),
    Bypass(
        "spark",
        "CREATE TEMPORARY VIEW v USING csv OPTIONS (path '/data/purchases.csv'); SELECT * FROM v",
        "file:///data/purchases.csv",
        "temporary view over a file (OPTIONS path)",
    ),
    Bypass(
        "databricks",
        "CREATE TABLE t LOCATION 's3://b/raw/purchases'; SELECT * FROM t",
        "s3://b/raw/purchases",
        "table over an existing location",
    ),
    Bypass(
        "hive",
        "CREATE EXTERNAL TABLE t (a int) LOCATION 's3://b/raw/purchases'; SELECT * FROM t",
        "s3://b/raw/purchases",
        "external table",
    ),
    Bypass(
        "bigquery",
        "CREATE EXTERNAL TABLE d.t OPTIONS (format='CSV', uris=['gs://b/purchases.csv']); SELECT * FROM d.t",
        "gs://b/purchases.csv",
        "external table",
    ),
    Bypass(
        "snowflake",
        "CREATE EXTERNAL TABLE t LOCATION=@s/purchases FILE_FORMAT=(TYPE=CSV); SELECT * FROM t",
        None,
        "external table over a stage (stages are refused elsewhere)",
    ),
    Bypass(
        "trino",
        "CREATE TABLE t (a int) WITH (external_location = 's3://b/raw/purchases', format='PARQUET'); "
        "SELECT * FROM t",
        "s3://b/raw/purchases",
        "Hive connector external_location",
    ),
    Bypass(
        "redshift",
        "CREATE EXTERNAL TABLE spectrum.t (a int) STORED AS PARQUET LOCATION 's3://b/raw/purchases/'; "
        "SELECT * FROM spectrum.t",
        "s3://b/raw/purchases/",
        "Spectrum external table",
    ),
    Bypass(
        "mysql",
        "CREATE TABLE t (x int) ENGINE=FEDERATED CONNECTION='mysql://u@h/raw/purchases'; SELECT * FROM t",
        None,
        "FEDERATED table reads a remote table",
    ),
]

# Built-in functions in a value position that run SQL text or read data the SQL does not name.
_FUNCTIONS = [
    Bypass(
        "postgres",
        "SELECT ts_stat('SELECT to_tsvector(amount::text) FROM raw.purchases')",
        "raw.purchases",
        "ts_stat() runs its argument as a query",
    ),
    Bypass(
        "postgres",
        "SELECT ts_rewrite('a'::tsquery, "
        "'SELECT amount::text::tsquery, user_id::text::tsquery FROM raw.purchases')",
        "raw.purchases",
        "ts_rewrite(query, text) runs its second argument as a query",
    ),
    Bypass(
        "postgres",
        "SELECT schema_to_xml_and_xmlschema('raw', true, false, '')",
        None,
        "dumps every table of a schema (schema_to_xml is refused, this variant is not)",
    ),
    Bypass(
        "postgres",
        "SELECT database_to_xml_and_xmlschema(true, false, '')",
        None,
        "dumps every table of the database (database_to_xml is refused, this variant is not)",
    ),
    Bypass(
        "postgres",
        "SELECT loread(lo_open(16384, 262144), 1000000)",
        None,
        "reads a large object (lo_get is refused, lo_open+loread is not)",
    ),
    Bypass(
        "oracle",
        "SELECT DBMS_XMLGEN.GETXML('SELECT * FROM raw.purchases') FROM dual",
        "raw.purchases",
        "DBMS_XMLGEN.GETXML runs its argument as a query",
    ),
    Bypass(
        "oracle",
        "SELECT SYS.DBMS_XMLGEN.GETXML('SELECT * FROM raw.purchases') FROM dual",
        "raw.purchases",
        "DBMS_XMLGEN.GETXML, schema-qualified",
    ),
    Bypass(
        "oracle",
        "SELECT XMLTYPE(DBMS_XMLQUERY.GETXML('select * from raw.purchases')) FROM dual",
        "raw.purchases",
        "DBMS_XMLQUERY.GETXML runs its argument as a query",
    ),
    Bypass(
        "oracle",
        "SELECT * FROM XMLTABLE('/ROWSET/ROW' "
        "PASSING XMLTYPE(DBMS_XMLGEN.GETXML('SELECT * FROM raw.purchases')) COLUMNS a INT PATH 'A')",
        "raw.purchases",
        "DBMS_XMLGEN.GETXML inside XMLTABLE (a row function) in FROM",
    ),
    Bypass(
        "oracle",
        "SELECT DBMS_LOB.SUBSTR(BFILENAME('D', 'purchases.csv'), 100, 1) FROM dual",
        None,
        "BFILENAME reads a server file",
    ),
    Bypass(
        "oracle",
        "SELECT HTTPURITYPE('http://x/p').getclob() FROM dual",
        None,
        "HTTPURITYPE reads from the network",
    ),
    Bypass("sqlite", "SELECT readfile('/data/purchases.csv')", None, "fileio readfile() reads a file"),
    Bypass("sqlite", "SELECT load_extension('/tmp/x.so')", None, "loads native code"),
    Bypass(
        "spark",
        "SELECT java_method('java.nio.file.Files', 'readString', '/data/purchases.csv')",
        None,
        "java_method/reflect call arbitrary JVM code (here: read a file)",
    ),
]

# MariaDB runs the content of /*M! ... */ and /*M!100100 ... */ (connection types mariadb -> mysql).
_EXECUTABLE_COMMENTS = [
    Bypass(
        "mysql",
        "SELECT 1 /*M! , (SELECT count(*) FROM raw.purchases) */",
        "raw.purchases",
        "MariaDB executable comment /*M! */ is read as a plain comment",
    ),
    Bypass(
        "mysql",
        "SELECT 1 /*M!100100 , (SELECT count(*) FROM raw.purchases) */",
        "raw.purchases",
        "MariaDB versioned executable comment /*M!NNNNNN */",
    ),
    Bypass(
        "mysql",
        "INSERT INTO t SELECT 1 /*M! FROM raw.purchases */",
        "raw.purchases",
        "MariaDB executable comment hides the FROM",
    ),
]

# Functions defined in the same script and called in a value position. Documented limit
# ("what a function's body reads is not seen"), but here the body is in the script being analyzed.
_SAME_SCRIPT_CODE = [
    Bypass(
        "postgres",
        "CREATE FUNCTION f() RETURNS bigint AS $$ SELECT sum(amount) FROM raw.purchases $$ LANGUAGE sql; "
        "SELECT f()",
        "raw.purchases",
        "documented limit: SQL function defined and called in one script",
    ),
    Bypass(
        "bigquery",
        "CREATE TEMP FUNCTION f() AS ((SELECT sum(amount) FROM raw.purchases)); SELECT f()",
        "raw.purchases",
        "documented limit: temporary function defined and called in one script",
    ),
    Bypass(
        "duckdb",
        "CREATE MACRO m() AS (SELECT sum(amount) FROM raw.purchases); SELECT m()",
        "raw.purchases",
        "documented limit: macro defined and called in one script",
    ),
]

# Writes that are not reported.
_WRITES = [
    Bypass(
        "tsql",
        "INSERT INTO t OUTPUT inserted.a INTO audit_log SELECT a FROM s",
        "audit_log",
        "OUTPUT ... INTO writes a second table",
        kind="write",
    ),
    Bypass(
        "tsql",
        "UPDATE t SET a = 1 OUTPUT inserted.a INTO audit_log",
        "audit_log",
        "OUTPUT ... INTO writes a second table",
        kind="write",
    ),
    Bypass(
        "sqlite",
        "SELECT writefile('/tmp/x', (SELECT group_concat(amount) FROM raw.purchases))",
        "file:///tmp/x",
        "fileio writefile() writes a file",
        kind="write",
    ),
]

BYPASSES = _LOCAL_NAME + _EXTERNAL + _FUNCTIONS + _EXECUTABLE_COMMENTS + _SAME_SCRIPT_CODE + _WRITES


def _params() -> list[object]:
    return [
        pytest.param(case, id=f"{case.dialect}-{index:02d}-{case.kind}")
        for index, case in enumerate(BYPASSES, 1)
    ]


@pytest.mark.parametrize("case", _params())
def test_sql_names_what_it_touches_or_is_refused(case: Bypass) -> None:
    try:
        result = tables_in_sql(case.sql, dialect=case.dialect)
    except SqlParseError:
        return  # a refusal is always a correct answer
    if case.kind == "write":
        named = result.writes | result.written_locations
    else:
        named = result.reads | result.read_locations
    assert case.must is not None and case.must in named, (
        f"{case.dialect}: {case.sql!r} {case.kind}s {case.must or 'data it cannot name'} "
        f"but the analysis returned reads={sorted(result.reads)} writes={sorted(result.writes)} "
        f"read_locations={sorted(result.read_locations)} written_locations={sorted(result.written_locations)}"
    )


def test_cases_are_unique() -> None:
    """Guards the table itself."""
    assert len(BYPASSES) == len({(case.dialect, case.sql) for case in BYPASSES})
