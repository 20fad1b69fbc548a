#!/usr/bin/env python3
"""Print the policy decisions and violations recorded in an Airflow metadata database.

Reads the provider's audit tables (``policyzones_decision``, ``policyzones_violation``) with
SQLAlchemy, by reflection, so it needs neither Airflow nor the provider and works against any
deployment's database::

    python scripts/demo_summary.py                                  # the make-demo database
    python scripts/demo_summary.py --db-url postgresql+psycopg2://airflow:airflow@localhost/airflow
    python scripts/demo_summary.py --run-id manual__2026-... --run-id ...

When the tables do not exist (the provider's DB manager has not run), it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DECISION_TABLE = "policyzones_decision"
VIOLATION_TABLE = "policyzones_violation"
DEFAULT_DEMO_DB_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/policyzones_demo"
"""``make demo``'s metadata database (scripts/localdemo/settings.py; a test keeps them equal)."""

Row = Mapping[str, Any]


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns; the last column is not padded."""
    materialized = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in materialized:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) if i < len(cells) - 1 else c for i, c in enumerate(cells)]
        return (indent + "  ".join(padded)).rstrip()

    return [line(headers), *(line(row) for row in materialized)]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def task_name(row: Row) -> str:
    name = f"{row.get('dag_id', '?')}.{row.get('task_id', '?')}"
    map_index = row.get("map_index")
    return name + (f"[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else "")


def format_decisions(rows: Sequence[Row]) -> list[str]:
    """One line per decision: task, try, zone (and where it came from), mode, outcome, violations."""
    table = []
    for row in rows:
        zone = _text(row.get("zone"))
        if row.get("zone_source") not in (None, "", "none"):
            zone += f" ({row['zone_source']})"
        table.append(
            [
                task_name(row),
                _text(row.get("try_number")),
                zone,
                _text(row.get("mode")),
                _text(row.get("outcome")),
                _text(row.get("violation_count")),
                _text(row.get("source")),
            ]
        )
    return format_table(["task", "try", "zone", "mode", "outcome", "violations", "via"], table)


def format_violations(rows: Sequence[Row]) -> list[str]:
    """One line per violation (with how its input became known), then its reason and fix, indented."""
    table = [
        [
            task_name(row),
            _text(row.get("try_number")),
            _text(row.get("zone")),
            _text(row.get("outcome")),
            _text(row.get("rules") or row.get("rule")),
            _text(row.get("input_source")),
            _text(row.get("input")),
        ]
        for row in rows
    ]
    # "known": how the input became known (declared inlet, the SQL of a SQL task, observed while
    # the task ran, an AssetAlias); "-" for findings about the task itself.
    lines = format_table(["task", "try", "zone", "outcome", "rules", "known", "input"], table)
    details = []
    for row in rows:
        if row.get("reason") or row.get("remediation") or row.get("exemption"):
            details.append(f"  {task_name(row)} <- {_text(row.get('input'))}")
            if row.get("reason"):
                details.append(f"      why:  {row['reason']}")
            if row.get("remediation"):
                details.append(f"      fix:  {row['remediation']}")
            if row.get("exemption"):
                details.append(f"      exempted by {row['exemption']}")
    return lines + (["", *details] if details else [])


def count_by(rows: Sequence[Row], column: str) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        key = _text(row.get(column))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in sorted(counts.items())) or "none"


NO_DECISIONS_NOTE = (
    "No decision was recorded for these runs: the tasks' enforcement hook never called the "
    "decision service. Is the provider's cluster policy installed (entry point `airflow.policy`) "
    "and `[policyzones] enabled` true?"
)


def missing_tables_note(missing: Iterable[str]) -> str:
    names = ", ".join(sorted(missing))
    return (
        f"No {names} table in this metadata database yet: the provider's DB manager has not created "
        "it. Either this checkout does not ship the decision service yet, or `airflow db migrate` "
        "ran before the provider was installed (run it again)."
    )


def default_db_url() -> str:
    return os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or DEFAULT_DEMO_DB_URL


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (``None`` for other databases or in-memory SQLite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def fetch(url: str, run_ids: Sequence[str], limit: int) -> tuple[list[Row], list[Row], set[str]]:
    """Decisions and violations (for ``run_ids``, else the latest ``limit``) and missing tables."""
    from sqlalchemy import MetaData, Table, create_engine, inspect, select

    engine = create_engine(url)
    try:
        existing = set(inspect(engine).get_table_names())
        missing = {DECISION_TABLE, VIOLATION_TABLE} - existing
        results: dict[str, list[Row]] = {DECISION_TABLE: [], VIOLATION_TABLE: []}
        metadata = MetaData()
        with engine.connect() as conn:
            for name in (DECISION_TABLE, VIOLATION_TABLE):
                if name in missing:
                    continue
                table = Table(name, metadata, autoload_with=conn)
                query = select(table)
                if run_ids and "run_id" in table.c:
                    query = query.where(table.c.run_id.in_(list(run_ids)))
                order = [
                    table.c[c] for c in ("dag_id", "task_id", "map_index", "try_number", "id") if c in table.c
                ]
                rows: list[Row]
                if not run_ids and "id" in table.c:
                    query = query.order_by(table.c.id.desc()).limit(limit)
                    rows = [dict(r._mapping) for r in conn.execute(query)]
                    rows.reverse()
                else:
                    rows = [dict(r._mapping) for r in conn.execute(query.order_by(*order))]
                results[name] = rows
    finally:
        engine.dispose()
    return results[DECISION_TABLE], results[VIOLATION_TABLE], missing


def render(
    decisions: Sequence[Row],
    violations: Sequence[Row],
    missing: Iterable[str],
    *,
    scope: str,
    filtered: bool = False,
) -> list[str]:
    """The report; ``filtered``: rows were selected by run id (so none at all is suspicious)."""
    missing = set(missing)
    if DECISION_TABLE in missing:
        return ["  " + missing_tables_note(missing)]
    lines = [f"  decisions {scope}: {len(decisions)} ({count_by(decisions, 'outcome')})"]
    if decisions:
        lines += format_decisions(decisions)
    elif filtered:
        lines.append("  " + NO_DECISIONS_NOTE)
    lines.append("")
    if VIOLATION_TABLE in missing:
        lines.append("  " + missing_tables_note({VIOLATION_TABLE}))
        return lines
    lines.append(f"  violations {scope}: {len(violations)} ({count_by(violations, 'outcome')})")
    if violations:
        lines += format_violations(violations)
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo_summary.py",
        description="Print the policy decisions and violations recorded in an Airflow metadata database.",
    )
    parser.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL of the metadata database (default: $AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, "
        "else the make-demo database)",
    )
    parser.add_argument(
        "--run-id", action="append", default=[], help="only these DAG runs (repeatable; default: latest)"
    )
    parser.add_argument("--limit", type=int, default=50, help="without --run-id: the latest N rows (50)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = args.db_url or default_db_url()
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        print(f"  no database at {path}: run `make demo` first", flush=True)
        return 1
    try:
        decisions, violations, missing = fetch(url, args.run_id, args.limit)
    except ImportError as error:
        print(f"  cannot read the database: {error} (run this with the project's .venv/bin/python)")
        return 1
    except Exception as error:  # a database error: say what failed, no traceback
        print(f"  cannot read the database: {type(error).__name__}: {str(error).splitlines()[0]}")
        return 1
    scope = "for the demo's runs" if args.run_id else f"(latest {args.limit})"
    for line in render(decisions, violations, missing, scope=scope, filtered=bool(args.run_id)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
