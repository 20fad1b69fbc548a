"""Cost of the SQL analysis against sqlglot's parse of the same script (docs/sql-analysis.md).

A realistic 300-statement PostgreSQL script (CTE-heavy SELECTs with joins, windows and
subqueries, ``INSERT ... SELECT``, ``MERGE``, ``UPDATE`` and ``DELETE`` with subqueries, CTAS,
temporary tables created, read and dropped) is, in the same run and interleaved (the order
alternates every round):

* parsed: ``sqlglot.parse(script, read="postgres")`` — the floor any sqlglot-based analysis pays;
* analyzed: ``tables_in_sql(script, dialect="postgres")`` — parse plus the walk that names every
  table and location.

Garbage is collected before and collection paused during each timed call, so a collection never
lands in one condition only. The target: analysis at most 1.3 x the parse.

Run with ``python -m benchmarks.bench_sql`` (part of ``make bench``). The last line is
``sql_parse_median_ms=<n> sql_analysis_median_ms=<n> sql_analysis_ratio=<n> sql_analysis_target=1.3``.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import sqlglot

from airflow_policyzones.policy.sql import SqlTables, tables_in_sql

SEED = 20260101
STATEMENTS = 300
ROUNDS = 15
WARMUP = 2
TARGET_RATIO = 1.3
DIALECT = "postgres"

RAW = [f"raw.{name}" for name in ("purchases", "users", "sessions", "products", "refunds", "clicks")]
STAGE = [f"stage.{name}" for name in ("orders", "events", "carts", "payments")]
MART = [f"mart.{name}" for name in ("daily_revenue", "user_ltv", "product_stats", "funnel", "cohorts")]


def _cte_select(rng: random.Random, n: int) -> str:
    a, b, c = rng.sample(RAW + STAGE, 3)
    return f"""WITH base_{n} AS (
    SELECT u.user_id, u.country, p.amount, p.created_at
    FROM {a} AS p
    JOIN {b} AS u ON u.user_id = p.user_id
    WHERE p.created_at >= DATE '2026-01-01' AND p.amount > {rng.randint(0, 50)}
), ranked_{n} AS (
    SELECT user_id, country, amount,
           ROW_NUMBER() OVER (PARTITION BY country ORDER BY amount DESC) AS rk,
           SUM(amount) OVER (PARTITION BY user_id) AS total
    FROM base_{n}
), extra_{n} AS (
    SELECT user_id, COUNT(*) AS visits
    FROM {c}
    WHERE user_id IN (SELECT user_id FROM base_{n})
    GROUP BY user_id
    HAVING COUNT(*) > (SELECT {rng.randint(1, 9)})
)
SELECT r.country, r.user_id, r.total, COALESCE(e.visits, 0) AS visits,
       CASE WHEN r.total > 1000 THEN 'high' WHEN r.total > 100 THEN 'mid' ELSE 'low' END AS tier,
       (SELECT MAX(amount) FROM base_{n} AS x WHERE x.user_id = r.user_id) AS top_amount
FROM ranked_{n} AS r
LEFT JOIN extra_{n} AS e ON e.user_id = r.user_id
WHERE r.rk <= {rng.randint(5, 100)}
ORDER BY r.total DESC
LIMIT 500"""


def _insert_select(rng: random.Random, n: int) -> str:
    a, b = rng.sample(RAW, 2)
    target = rng.choice(MART + STAGE)
    return f"""INSERT INTO {target} (user_id, day, amount, n)
SELECT p.user_id, CAST(p.created_at AS DATE) AS day, SUM(p.amount), COUNT(DISTINCT p.id)
FROM {a} AS p
WHERE EXISTS (SELECT 1 FROM {b} AS q WHERE q.user_id = p.user_id AND q.kind = 'k{n}')
  AND p.created_at < NOW() - INTERVAL '{rng.randint(1, 30)} days'
GROUP BY p.user_id, CAST(p.created_at AS DATE)"""


def _merge(rng: random.Random, n: int) -> str:
    source = rng.choice(STAGE)
    target = rng.choice(MART)
    return f"""MERGE INTO {target} AS t
USING (
    SELECT user_id, SUM(amount) AS amount
    FROM {source}
    WHERE batch_id = {n}
    GROUP BY user_id
) AS s ON t.user_id = s.user_id
WHEN MATCHED AND s.amount = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET amount = t.amount + s.amount, updated_at = NOW()
WHEN NOT MATCHED THEN INSERT (user_id, amount, updated_at) VALUES (s.user_id, s.amount, NOW())"""


def _update(rng: random.Random, n: int) -> str:
    target = rng.choice(MART)
    a, b = rng.sample(RAW, 2)
    return f"""UPDATE {target} AS m
SET ltv = (SELECT SUM(p.amount) FROM {a} AS p WHERE p.user_id = m.user_id),
    refunded = r.total
FROM (SELECT user_id, SUM(amount) AS total FROM {b} GROUP BY user_id) AS r
WHERE r.user_id = m.user_id AND m.segment_id = {n}"""


def _delete(rng: random.Random, n: int) -> str:
    target = rng.choice(STAGE)
    source = rng.choice(RAW)
    return f"""DELETE FROM {target}
WHERE user_id IN (SELECT user_id FROM {source} WHERE deleted_at IS NOT NULL)
  AND batch_id < {n}"""


def _ctas(rng: random.Random, n: int) -> str:
    a, b = rng.sample(RAW + STAGE, 2)
    return f"""CREATE TABLE mart.snapshot_{n} AS
WITH src AS (SELECT * FROM {a} WHERE region = 'r{n % 7}')
SELECT s.*, o.status
FROM src AS s
JOIN {b} AS o USING (user_id)"""


def _temp(rng: random.Random, n: int) -> list[str]:
    a = rng.choice(RAW)
    target = rng.choice(MART)
    return [
        f"CREATE TEMP TABLE tmp_{n} AS SELECT user_id, MAX(amount) AS amount FROM {a} GROUP BY user_id",
        f"INSERT INTO {target} (user_id, amount) SELECT user_id, amount FROM tmp_{n} WHERE amount > 0",
        f"DROP TABLE tmp_{n}",
    ]


def build_script(rng: random.Random) -> str:
    makers: list[Callable[[random.Random, int], str]] = [
        _cte_select,
        _cte_select,
        _insert_select,
        _merge,
        _update,
        _delete,
        _ctas,
    ]
    statements: list[str] = []
    while len(statements) < STATEMENTS:
        n = len(statements)
        if rng.random() < 0.1:
            statements.extend(_temp(rng, n))
        else:
            statements.append(rng.choice(makers)(rng, n))
    return ";\n\n".join(statements[:STATEMENTS]) + ";\n"


def _timed(call: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000
    finally:
        gc.enable()


def _check(tables: SqlTables) -> None:
    """The analysis must have answered the script, or the timing means nothing."""
    expected_reads = set(RAW) | set(STAGE)
    if tables.statements != STATEMENTS or not expected_reads <= tables.reads:
        raise SystemExit(
            f"benchmark bug: {tables.statements} statements, reads {sorted(tables.reads)} "
            f"(expected {STATEMENTS} statements reading {sorted(expected_reads)})"
        )
    if not set(MART) <= tables.writes or any(name.startswith("tmp_") for name in tables.writes):
        raise SystemExit(f"benchmark bug: writes {sorted(tables.writes)}")


def main() -> None:
    script = build_script(random.Random(SEED))
    _check(tables_in_sql(script, dialect=DIALECT))
    print(
        f"script: {STATEMENTS} PostgreSQL statements, {len(script) / 1000:.0f} kB; sqlglot "
        f"{version('sqlglot')}; Python {sys.version.split()[0]}; median of {ROUNDS} rounds, interleaved",
        flush=True,
    )

    def parse() -> object:
        return sqlglot.parse(script, read=DIALECT)

    def analyze() -> object:
        return tables_in_sql(script, dialect=DIALECT)

    parse_ms: list[float] = []
    analysis_ms: list[float] = []
    for round_ in range(WARMUP + ROUNDS):
        order = [(parse, parse_ms), (analyze, analysis_ms)]
        if round_ % 2:
            order.reverse()
        for call, samples in order:
            elapsed = _timed(call)
            if round_ >= WARMUP:
                samples.append(elapsed)
    parse_median = statistics.median(parse_ms)
    analysis_median = statistics.median(analysis_ms)
    ratio = analysis_median / parse_median
    print()
    rows = [
        ("sqlglot.parse (median)", f"{parse_median:.1f} ms", "", None),
        ("tables_in_sql (median)", f"{analysis_median:.1f} ms", "", None),
        ("analysis / parse", f"{ratio:.2f} x", f"<= {TARGET_RATIO:g} x", ratio <= TARGET_RATIO),
    ]
    print(f"{'measure':<28}{'value':>12}  {'target':<10}met")
    for name, value, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "NO")
        print(f"{name:<28}{value:>12}  {target:<10}{verdict}")
    print()
    print(
        f"sql_parse_median_ms={parse_median:.1f} sql_analysis_median_ms={analysis_median:.1f} "
        f"sql_analysis_ratio={ratio:.2f} sql_analysis_target={TARGET_RATIO:g}"
    )


if __name__ == "__main__":
    main()
