"""The SQL conformance corpus (tests/unit/policy/sql_corpus) against ``tables_in_sql``.

Every case states exactly what the analysis reports (reads, writes, read and written locations)
or that it refuses with a ``SqlParseError`` whose message carries a fix.
"""

from __future__ import annotations

import pytest

from airflow_policyzones.policy.sql import SqlParseError, tables_in_sql
from tests.unit.policy.sql_corpus import Case, corpus

CORPUS: dict[str, list[Case]] = corpus()


def _params() -> list[object]:
    params: list[object] = []
    for dialect, cases in CORPUS.items():
        for index, case in enumerate(cases, 1):
            params.append(pytest.param(dialect, case, id=f"{dialect}-{index:03d}-{case.slug()}"))
    return params


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


@pytest.mark.parametrize(("dialect", "case"), _params())
def test_corpus_case(dialect: str, case: Case) -> None:
    if case.refuses:
        with pytest.raises(SqlParseError) as raised:
            tables_in_sql(case.sql, dialect=dialect)
        assert "fix" in str(raised.value)
        return
    result = tables_in_sql(case.sql, dialect=dialect)
    got = {
        "reads": result.reads,
        "writes": result.writes,
        "read_locations": frozenset(getattr(result, "read_locations", frozenset())),
        "written_locations": frozenset(getattr(result, "written_locations", frozenset())),
    }
    expected = {
        "reads": _names(case.reads),
        "writes": _names(case.writes),
        "read_locations": _names(case.read_locations),
        "written_locations": _names(case.written_locations),
    }
    assert got == expected


def test_corpus_size() -> None:
    sizes = {dialect: len(cases) for dialect, cases in CORPUS.items()}
    assert sum(sizes.values()) >= 600, sizes
    assert sum(1 for size in sizes.values() if size >= 35) >= 10, sizes


def test_corpus_has_no_duplicates() -> None:
    pairs = [(dialect, case.sql) for dialect, cases in CORPUS.items() for case in cases]
    duplicates = {pair for pair in pairs if pairs.count(pair) > 1}
    assert not duplicates, sorted(duplicates)
