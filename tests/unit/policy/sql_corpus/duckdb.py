"""DuckDB conformance cases: file readers, FROM 'path', COPY TO/FROM and table functions."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.segment FROM lake.orders o JOIN lake.customers c ON c.id = o.cust_id",
        reads="lake.orders lake.customers",
        note="join",
    ),
    Case(
        "SELECT * FROM read_parquet('s3://acme-lake/orders/*.parquet') WHERE amount > 0",
        read_locations="s3://acme-lake/orders/*.parquet",
        note="read parquet glob on s3",
    ),
    Case(
        "SELECT * FROM read_csv('/data/landing/orders.csv', header = true, delim = ',')",
        read_locations="file:///data/landing/orders.csv",
        note="read csv absolute path",
    ),
    Case(
        "SELECT * FROM read_json('https://api.acme.com/exports/events.json')",
        read_locations="https://api.acme.com/exports/events.json",
        note="read json over https",
    ),
    Case(
        "SELECT * FROM '/data/landing/customers.parquet'",
        read_locations="file:///data/landing/customers.parquet",
        note="from absolute path string",
    ),
    Case(
        "SELECT COUNT(*) FROM 's3://acme-lake/events/2024-01-01.csv'",
        read_locations="s3://acme-lake/events/2024-01-01.csv",
        note="from s3 string",
    ),
    Case(
        """SELECT o.*, c.name
FROM read_parquet('/data/lake/orders.parquet') o
JOIN lake.customers c ON c.id = o.cust_id""",
        reads="lake.customers",
        read_locations="file:///data/lake/orders.parquet",
        note="file joined to table",
    ),
    Case("FROM lake.orders SELECT id, amount WHERE amount > 100", reads="lake.orders", note="from first"),
    Case("SELECT * FROM range(10) r(i)", note="range"),
    Case("SELECT * FROM generate_series(1, 5) g(i)", note="generate series"),
    Case(
        "SELECT o.id, u.tag FROM lake.orders o, unnest(o.tags) AS u(tag)",
        reads="lake.orders",
        note="unnest",
    ),
    Case(
        "SELECT * FROM lake.orders WHERE id = $1 AND day > ?",
        reads="lake.orders",
        note="placeholders",
    ),
    Case(
        """SELECT c.id, (SELECT COUNT(*) FROM lake.orders o WHERE o.cust_id = c.id) AS n
FROM lake.customers c WHERE c.id IN (SELECT cust_id FROM lake.vip)""",
        reads="lake.customers lake.orders lake.vip",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT region, SUM(amount) FROM lake.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM lake.region_totals)""",
        reads="lake.orders lake.region_totals",
        note="having subquery",
    ),
    Case(
        "SELECT id FROM lake.a UNION ALL BY NAME SELECT id FROM lake.b EXCEPT SELECT id FROM lake.c",
        reads="lake.a lake.b lake.c",
        note="union by name",
    ),
    Case(
        """SELECT *, row_number() OVER (PARTITION BY cust_id ORDER BY ts DESC) AS rn
FROM lake.orders QUALIFY rn = 1""",
        reads="lake.orders",
        note="qualify",
    ),
    Case("PIVOT lake.orders ON region USING SUM(amount)", reads="lake.orders", note="pivot statement"),
    Case(
        """WITH recent AS (SELECT * FROM lake.orders WHERE ts > now() - INTERVAL 7 DAY)
SELECT * FROM Recent""",
        reads="lake.orders",
        note="cte case insensitive",
    ),
    Case(
        """WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5)
SELECT * FROM t JOIN lake.days d ON d.n = t.n""",
        reads="lake.days",
        note="recursive cte",
    ),
    Case(
        """WITH orders AS (SELECT * FROM read_parquet('/data/staging/orders.parquet'))
SELECT * FROM orders JOIN lake.orders l USING (id)""",
        reads="lake.orders",
        read_locations="file:///data/staging/orders.parquet",
        note="cte over a file",
    ),
    Case(
        "INSERT INTO lake.daily SELECT ts::DATE, SUM(amount) FROM lake.orders GROUP BY 1",
        reads="lake.orders",
        writes="lake.daily",
        note="insert select",
    ),
    Case(
        "INSERT INTO lake.orders SELECT * FROM read_parquet('s3://acme-landing/orders/2024-01-01/*.parquet')",
        writes="lake.orders",
        read_locations="s3://acme-landing/orders/2024-01-01/*.parquet",
        note="insert from parquet",
    ),
    Case(
        """INSERT INTO lake.customers SELECT * FROM lake.staging_customers
ON CONFLICT (id) DO UPDATE SET email = excluded.email""",
        reads="lake.staging_customers lake.customers",
        writes="lake.customers",
        note="upsert on conflict",
    ),
    Case(
        "INSERT OR REPLACE INTO lake.customers SELECT * FROM lake.staging_customers",
        reads="lake.staging_customers lake.customers",
        writes="lake.customers",
        note="insert or replace is an upsert",
    ),
    Case(
        "UPDATE lake.customers SET segment = s.segment FROM lake.segments s WHERE customers.id = s.id",
        reads="lake.customers lake.segments",
        writes="lake.customers",
        note="update from",
    ),
    Case(
        "DELETE FROM lake.events WHERE user_id IN (SELECT user_id FROM lake.erasures)",
        reads="lake.events lake.erasures",
        writes="lake.events",
        note="delete with subquery",
    ),
    Case(
        "CREATE OR REPLACE TABLE lake.orders AS SELECT * FROM read_csv('/data/landing/orders.csv')",
        writes="lake.orders",
        read_locations="file:///data/landing/orders.csv",
        note="ctas from csv",
    ),
    Case(
        "CREATE VIEW lake.v_big AS SELECT * FROM lake.orders WHERE amount > 1000",
        reads="lake.orders",
        writes="lake.v_big",
        note="create view",
    ),
    Case("TRUNCATE lake.staging_orders", writes="lake.staging_orders", note="truncate"),
    Case(
        "ALTER TABLE lake.orders ADD COLUMN loaded_at TIMESTAMP",
        writes="lake.orders",
        note="alter add column",
    ),
    Case(
        "COPY lake.daily TO '/exports/daily.parquet' (FORMAT PARQUET)",
        reads="lake.daily",
        written_locations="file:///exports/daily.parquet",
        note="copy table to file",
    ),
    Case(
        "COPY (SELECT * FROM lake.orders WHERE amount > 1000) TO 's3://acme-exports/big.csv' (HEADER)",
        reads="lake.orders",
        written_locations="s3://acme-exports/big.csv",
        note="copy query to s3",
    ),
    Case(
        "COPY lake.orders FROM '/data/landing/orders.csv' (HEADER)",
        writes="lake.orders",
        read_locations="file:///data/landing/orders.csv",
        note="copy from file",
    ),
    Case(
        """CREATE TEMP TABLE stage AS SELECT * FROM read_parquet('/data/in/orders.parquet');
DELETE FROM lake.orders WHERE id IN (SELECT id FROM stage);
INSERT INTO lake.orders SELECT * FROM stage;""",
        reads="lake.orders",
        writes="lake.orders",
        read_locations="file:///data/in/orders.parquet",
        note="temp table from file",
    ),
    Case(
        """CREATE TABLE lake.stage AS SELECT * FROM lake.raw_feed;
INSERT INTO lake.final SELECT * FROM lake.stage;""",
        reads="lake.raw_feed",
        writes="lake.stage lake.final",
        note="created table read later",
    ),
    Case(
        """SET threads = 4;
SET s3_region = 'eu-west-1';
DESCRIBE lake.orders;
DROP TABLE IF EXISTS lake.old;""",
        note="settings read nothing",
    ),
    Case(
        """BEGIN TRANSACTION;
DELETE FROM lake.daily WHERE d = current_date;
INSERT INTO lake.daily SELECT current_date, SUM(amount) FROM lake.orders;
COMMIT;""",
        reads="lake.daily lake.orders",
        writes="lake.daily",
        note="transaction",
    ),
    Case("-- nothing\n", note="comment only"),
    Case("SELECT * FROM read_parquet('landing/orders.parquet')", refuses=True, note="relative parquet path"),
    Case("SELECT * FROM 'orders.csv'", refuses=True, note="relative from string"),
    Case("COPY lake.daily TO 'daily.parquet' (FORMAT PARQUET)", refuses=True, note="copy to relative path"),
    Case("SELECT * FROM read_parquet(?)", refuses=True, note="location parameter"),
    Case("SELECT * FROM read_csv($path)", refuses=True, note="location variable"),
    Case("SELECT * FROM glob('/data/landing/*')", refuses=True, note="unknown table function"),
    Case("SELECT * FROM lake.orders WHERE d = '{{ ds }}' {{ more }}", refuses=True, note="unrendered jinja"),
    Case("SELECT * FROM lake.orders WHERE", refuses=True, note="syntax error"),
    Case("EXPLAIN ANALYZE SELECT * FROM lake.orders", refuses=True, note="explain analyze"),
    Case("CALL lake.reload()", refuses=True, note="call"),
]
