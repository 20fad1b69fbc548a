"""The SQL conformance corpus: per dialect, SQL scripts and what ``tables_in_sql`` must report.

Each dialect module (named after the sqlglot dialect) holds ``CASES: list[Case]``. The expected
values follow ``docs/sql-analysis.md``: lower-cased table names, locations exactly as reported
(``s3://b/k`` as written, absolute paths as ``file:///abs/path``), or a refusal
(``SqlParseError``) where the spec says the SQL cannot be analyzed.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

DIALECTS: tuple[str, ...] = (
    "postgres",
    "mysql",
    "snowflake",
    "bigquery",
    "databricks",
    "spark",
    "hive",
    "tsql",
    "redshift",
    "trino",
    "oracle",
    "duckdb",
    "sqlite",
)


@dataclass(frozen=True)
class Case:
    """One SQL script and its expected analysis (space-separated names; empty means none)."""

    sql: str
    reads: str = ""
    writes: str = ""
    read_locations: str = ""
    written_locations: str = ""
    refuses: bool = False
    note: str = ""

    def slug(self) -> str:
        """A short id fragment from the note, for readable test ids."""
        text = re.sub(r"[^a-z0-9]+", "-", self.note.lower()).strip("-")
        return text[:48].rstrip("-") or "case"


def corpus() -> dict[str, list[Case]]:
    """Every dialect module's cases, keyed by sqlglot dialect name."""
    collected: dict[str, list[Case]] = {}
    for dialect in DIALECTS:
        try:
            module = importlib.import_module(f"{__name__}.{dialect}")
        except ModuleNotFoundError:
            continue
        collected[dialect] = list(module.CASES)
    return collected
