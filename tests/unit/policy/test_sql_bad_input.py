"""Bad input to the SQL analysis: it answers or raises ``SqlParseError`` naming a fix, never worse.

docs/sql-analysis.md: SQL sqlglot cannot parse, an unknown dialect and Jinja left unrendered
refuse (``SqlParseError``, whose message names the dialect, where, and a fix); empty and
comment-only SQL is an empty result with ``statements == 0``; nothing a task can hand over
(binary garbage, random token soup, deep nesting, a 5 MB script) makes the analysis raise
anything else or hang.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_policyzones.policy.sql import SqlParseError, SqlTables, tables_in_sql
from tests.unit.policy.sql_corpus import DIALECTS


def refusal(sql: str, dialect: str | None) -> SqlParseError:
    with pytest.raises(SqlParseError) as caught:
        tables_in_sql(sql, dialect=dialect)
    assert "fix:" in str(caught.value), str(caught.value)
    return caught.value


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELEC user_id FROM WHERE",
        "SELECT * FROM purchases WHERE (user_id = 1",
        "SELECT 'unterminated FROM purchases",
        "INSERT INTO FROM purchases",
        "IF VALUES",  # T-SQL parses a block with no statement in it (found by the property test)
    ],
)
def test_unparseable_sql_is_refused_with_the_dialect_and_a_fix(dialect: str, sql: str) -> None:
    error = refusal(sql, dialect)
    assert dialect in str(error)
    assert error.dialect == dialect


def test_a_parse_error_says_where() -> None:
    error = refusal("SELECT user_id\nFROM purchases\nWHERE user_id = = 1", "postgres")
    assert error.line == 3
    assert error.column is not None
    assert "line 3" in str(error)


@pytest.mark.parametrize("dialect", ["nosuchdb", "postgresql ", "Snow Flake"])
def test_an_unknown_dialect_is_refused_naming_the_known_ones(dialect: str) -> None:
    error = refusal("SELECT * FROM purchases", dialect)
    assert "dialect" in str(error)
    assert "postgres" in str(error)  # the fix lists the dialects to choose from


@pytest.mark.parametrize("dialect", [*DIALECTS, None])
@pytest.mark.parametrize(
    "sql",
    ["", "   \n\t  ", "-- nothing to run", "/* nothing */", "-- a\n/* b\n c */\n  -- d\n", "/* x */ -- y"],
)
def test_empty_and_comment_only_sql_is_an_empty_result(dialect: str | None, sql: str) -> None:
    result = tables_in_sql(sql, dialect=dialect)
    assert result.statements == 0
    assert result.empty
    assert (result.reads, result.writes, result.temporary) == (frozenset(), frozenset(), frozenset())
    assert (result.read_locations, result.written_locations) == (frozenset(), frozenset())


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM purchases WHERE ds = {{ ds }}",
        "SELECT * FROM purchases WHERE ds = '{{ ds }}'",
        "SELECT * FROM {{ params.table }}",
        "{% if params.full %}SELECT * FROM purchases{% endif %}",
        "INSERT INTO segments SELECT user_id FROM purchases WHERE ds = '{{ds}}'",
    ],
)
@pytest.mark.parametrize("dialect", ["postgres", "snowflake", "bigquery", "tsql", None])
def test_unrendered_jinja_is_refused_mentioning_jinja(sql: str, dialect: str | None) -> None:
    error = refusal(sql, dialect)
    assert "jinja" in str(error).lower()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT * FROM " + "(SELECT * FROM " * 600 + "purchases" + ") AS x" * 600,
    ],
)
def test_sql_nested_too_deeply_is_refused_not_a_recursion_error(sql: str) -> None:
    refusal(sql, "postgres")


def _answers_or_refuses(sql: str, dialect: str | None) -> None:
    try:
        result = tables_in_sql(sql, dialect=dialect)
    except SqlParseError as error:
        assert "fix:" in str(error), str(error)
        return
    assert isinstance(result, SqlTables)
    assert result.statements >= 0


_DIALECT_OR_NONE = st.sampled_from([*DIALECTS, None])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw=st.binary(max_size=400),
    decoding=st.sampled_from(["replace", "latin-1"]),
    dialect=_DIALECT_OR_NONE,
)
def test_binary_garbage_is_answered_or_refused(raw: bytes, decoding: str, dialect: str | None) -> None:
    sql = raw.decode("latin-1") if decoding == "latin-1" else raw.decode("utf-8", errors="replace")
    _answers_or_refuses(sql, dialect)


_WORDS = (
    "SELECT FROM WHERE WITH AS JOIN ON UNION INSERT INTO VALUES UPDATE SET DELETE MERGE USING WHEN "
    "MATCHED THEN CREATE TABLE TEMP LATERAL UNNEST COPY TO EXEC CALL BEGIN END IF ( ) , ; . * = 1 "
    "purchases raw.purchases `t` [t] $1 %s :p ? @v ${x} /*! */ {{ }} '"
)
_SPECIALS = ["'s3://b/k'", "'x'", '"Purchases"', "-- c\n", "/* c */", "/*+ hint */", "\n", "\x00"]
_TOKENS = st.sampled_from(_WORDS.split() + _SPECIALS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens=st.lists(_TOKENS, max_size=40), dialect=_DIALECT_OR_NONE)
def test_sql_token_soup_is_answered_or_refused(tokens: list[str], dialect: str | None) -> None:
    _answers_or_refuses(" ".join(tokens), dialect)


def test_a_five_megabyte_script_has_a_defined_result() -> None:
    """~2,000 statements, 5 MB (mostly string literals, so sqlglot tokenizes rather than parses
    most of it: about a second; 5 MB of short statements would take sqlglot alone half a minute)."""
    statements = []
    size = 0
    while size < 5_000_000:
        n = len(statements)
        payload = f"payload {n} " * 200
        statement = (
            f"INSERT INTO mart.wr_{n % 100} SELECT a.c1, '{payload}' "
            f"FROM raw.tb_{n % 500} AS a JOIN raw.tb_{(n + 1) % 500} AS b ON a.c1 = b.c1 "
            f"WHERE a.c1 > (SELECT max(c1) FROM raw.tb_{(n + 2) % 500}) /* statement {n} */;\n"
        )
        statements.append(statement)
        size += len(statement)
    sql = "".join(statements)
    assert len(sql) >= 5_000_000
    start = time.perf_counter()
    result = tables_in_sql(sql, dialect="postgres")
    elapsed = time.perf_counter() - start
    assert result.statements == len(statements)
    assert result.reads == frozenset(f"raw.tb_{i}" for i in range(500))
    assert result.writes == frozenset(f"mart.wr_{i}" for i in range(100))
    assert elapsed < 60, f"{elapsed:.1f} s for {len(sql) / 1e6:.1f} MB"
