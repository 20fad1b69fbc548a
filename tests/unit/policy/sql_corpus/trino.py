"""Trino conformance cases: catalog.schema.table names, UNNEST, CALL and table functions."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.segment FROM hive.sales.orders o JOIN postgresql.crm.customers c ON c.id = o.cust_id",
        reads="hive.sales.orders postgresql.crm.customers",
        note="cross catalog join",
    ),
    Case(
        'SELECT * FROM "iceberg"."Raw"."Purchases"',
        reads="iceberg.raw.purchases",
        note="quoted names",
    ),
    Case(
        "SELECT * FROM iceberg.sales.orders WHERE dt = ? AND region = ?",
        reads="iceberg.sales.orders",
        note="qmark parameters",
    ),
    Case(
        "SELECT o.id, t.sku FROM iceberg.sales.orders o CROSS JOIN UNNEST(o.skus) AS t (sku)",
        reads="iceberg.sales.orders",
        note="cross join unnest",
    ),
    Case(
        "SELECT d FROM UNNEST(sequence(DATE '2024-01-01', DATE '2024-01-31', INTERVAL '1' DAY)) AS t (d)",
        note="unnest sequence",
    ),
    Case(
        """SELECT c.id, (SELECT count(*) FROM iceberg.sales.orders o WHERE o.cust_id = c.id) AS n
FROM iceberg.crm.customers c""",
        reads="iceberg.crm.customers iceberg.sales.orders",
        note="scalar subquery",
    ),
    Case(
        """SELECT region, sum(amount) FROM iceberg.sales.orders GROUP BY region
HAVING sum(amount) > (SELECT avg(total) FROM iceberg.mart.region_totals)""",
        reads="iceberg.sales.orders iceberg.mart.region_totals",
        note="having subquery",
    ),
    Case(
        """SELECT id FROM iceberg.raw.a
UNION ALL SELECT id FROM iceberg.raw.b
EXCEPT SELECT id FROM iceberg.raw.c""",
        reads="iceberg.raw.a iceberg.raw.b iceberg.raw.c",
        note="set operations",
    ),
    Case(
        """SELECT cust_id, amount,
       lag(amount) OVER (PARTITION BY cust_id ORDER BY ts) AS prev,
       approx_percentile(amount, 0.5) OVER (PARTITION BY cust_id) AS med
FROM iceberg.sales.orders""",
        reads="iceberg.sales.orders",
        note="window functions",
    ),
    Case(
        "SELECT * FROM iceberg.sales.orders FOR TIMESTAMP AS OF TIMESTAMP '2024-01-01 00:00:00 UTC'",
        reads="iceberg.sales.orders",
        note="time travel",
    ),
    Case(
        'SELECT * FROM iceberg.sales."orders$snapshots"',
        reads="iceberg.sales.orders$snapshots",
        note="metadata table",
    ),
    Case(
        """WITH recent AS (SELECT * FROM iceberg.sales.orders WHERE dt >= current_date - INTERVAL '7' DAY)
SELECT * FROM recent""",
        reads="iceberg.sales.orders",
        note="cte",
    ),
    Case(
        """WITH "Recent" AS (SELECT * FROM iceberg.sales.orders)
SELECT * FROM recent""",
        reads="iceberg.sales.orders",
        note="quoted cte case insensitive",
    ),
    Case(
        """WITH RECURSIVE t (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 10)
SELECT n FROM t""",
        note="recursive cte reads nothing",
    ),
    Case(
        """WITH orders AS (SELECT * FROM iceberg.staging.orders)
SELECT * FROM orders JOIN iceberg.sales.orders s USING (id)""",
        reads="iceberg.staging.orders iceberg.sales.orders",
        note="qualified table beside cte",
    ),
    Case(
        "INSERT INTO iceberg.mart.daily SELECT date(ts), sum(amount) FROM iceberg.sales.orders GROUP BY 1",
        reads="iceberg.sales.orders",
        writes="iceberg.mart.daily",
        note="insert select",
    ),
    Case(
        "INSERT INTO iceberg.mart.fx VALUES (current_date, (SELECT max(rate) FROM iceberg.ref.fx_rates))",
        reads="iceberg.ref.fx_rates",
        writes="iceberg.mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        """MERGE INTO iceberg.mart.customers t
USING (SELECT * FROM iceberg.staging.customers) s
ON t.id = s.id
WHEN MATCHED THEN UPDATE SET email = s.email
WHEN NOT MATCHED THEN INSERT (id, email) VALUES (s.id, s.email)""",
        reads="iceberg.mart.customers iceberg.staging.customers",
        writes="iceberg.mart.customers",
        note="merge",
    ),
    Case(
        "UPDATE iceberg.mart.customers SET tier = 'gold' WHERE id IN (SELECT cust_id FROM iceberg.mart.top)",
        reads="iceberg.mart.customers iceberg.mart.top",
        writes="iceberg.mart.customers",
        note="update with subquery",
    ),
    Case(
        "DELETE FROM iceberg.mart.events WHERE dt < DATE '2023-01-01'",
        reads="iceberg.mart.events",
        writes="iceberg.mart.events",
        note="delete",
    ),
    Case(
        """CREATE TABLE iceberg.mart.orders_clean
WITH (format = 'PARQUET', partitioning = ARRAY['day(ts)'])
AS SELECT * FROM iceberg.sales.orders WHERE amount IS NOT NULL""",
        reads="iceberg.sales.orders",
        writes="iceberg.mart.orders_clean",
        note="ctas with properties",
    ),
    Case(
        "CREATE TABLE IF NOT EXISTS iceberg.mart.targets (region varchar, target double)",
        writes="iceberg.mart.targets",
        note="create table if not exists",
    ),
    Case(
        "CREATE OR REPLACE VIEW iceberg.mart.v_active AS SELECT * FROM iceberg.crm.customers WHERE active",
        reads="iceberg.crm.customers",
        writes="iceberg.mart.v_active",
        note="create view",
    ),
    Case(
        "CREATE MATERIALIZED VIEW iceberg.mart.mv AS SELECT dt, count(*) AS n FROM "
        "iceberg.sales.orders GROUP BY dt",
        reads="iceberg.sales.orders",
        writes="iceberg.mart.mv",
        note="materialized view",
    ),
    Case(
        "REFRESH MATERIALIZED VIEW iceberg.mart.mv",
        writes="iceberg.mart.mv",
        note="refresh materialized view",
    ),
    Case("TRUNCATE TABLE iceberg.staging.orders", writes="iceberg.staging.orders", note="truncate"),
    Case(
        "ALTER TABLE iceberg.mart.targets ADD COLUMN owner varchar",
        writes="iceberg.mart.targets",
        note="alter add column",
    ),
    Case(
        "ALTER TABLE iceberg.mart.orders_tmp RENAME TO iceberg.mart.orders_final",
        reads="iceberg.mart.orders_tmp",
        writes="iceberg.mart.orders_tmp iceberg.mart.orders_final",
        note="rename",
    ),
    Case(
        """CREATE TABLE iceberg.mart.stage AS SELECT * FROM iceberg.raw.feed;
INSERT INTO iceberg.mart.final SELECT * FROM iceberg.mart.stage;
DROP TABLE iceberg.mart.stage;""",
        reads="iceberg.raw.feed",
        writes="iceberg.mart.stage iceberg.mart.final",
        note="created table read later",
    ),
    Case(
        """START TRANSACTION;
DELETE FROM iceberg.mart.daily WHERE d = current_date;
INSERT INTO iceberg.mart.daily SELECT current_date, sum(amount) FROM iceberg.sales.orders;
COMMIT;""",
        reads="iceberg.mart.daily iceberg.sales.orders",
        writes="iceberg.mart.daily",
        note="transaction",
    ),
    Case(
        """USE iceberg.mart;
SET SESSION query_max_run_time = '1h';
DROP TABLE IF EXISTS iceberg.mart.old;""",
        note="session statements",
    ),
    Case(
        "CREATE FUNCTION cents(x double) RETURNS bigint RETURN CAST(x * 100 AS bigint)",
        note="create function",
    ),
    Case("-- nothing\n", note="comment only"),
    Case(
        "CALL iceberg.system.rollback_to_snapshot('mart', 'daily', 123)",
        refuses=True,
        note="call procedure",
    ),
    Case("EXECUTE q USING 1, 'x'", refuses=True, note="execute prepared"),
    Case("EXPLAIN ANALYZE SELECT * FROM iceberg.sales.orders", refuses=True, note="explain analyze"),
    Case(
        "SELECT * FROM TABLE(postgresql.system.query(query => 'SELECT * FROM orders'))",
        refuses=True,
        note="query pass through table function",
    ),
    Case("SELECT * FROM ?", refuses=True, note="parameter in table position"),
    Case(
        "SELECT * FROM iceberg.sales.orders WHERE dt = '{{ ds }}'{{ x }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case(
        "SELECT * FROM iceberg.sales.orders WHERE dt = DATE '2024-01-01' AND",
        refuses=True,
        note="syntax error",
    ),
    Case(
        "PREPARE q FROM SELECT * FROM iceberg.sales.orders WHERE id = ?",
        refuses=True,
        note="prepare is opaque",
    ),
    Case(
        """SELECT o.id, p.total FROM iceberg.sales.orders o
LEFT JOIN (SELECT order_id, sum(amount) AS total FROM iceberg.sales.payments GROUP BY 1) p
  ON p.order_id = o.id""",
        reads="iceberg.sales.orders iceberg.sales.payments",
        note="aggregated derived table",
    ),
    Case(
        """SELECT * FROM iceberg.sales.orders
WHERE cust_id IN (SELECT id FROM iceberg.crm.customers WHERE country IN (SELECT code FROM iceberg.ref.eu))""",
        reads="iceberg.sales.orders iceberg.crm.customers iceberg.ref.eu",
        note="nested in subqueries",
    ),
    Case(
        "SELECT * FROM iceberg.sales.orders o, LATERAL (SELECT * FROM iceberg.sales.items i WHERE "
        "i.oid = o.id)",
        reads="iceberg.sales.orders iceberg.sales.items",
        note="lateral subquery",
    ),
]
