"""Databricks SQL conformance cases: Unity Catalog names, IDENTIFIER(), COPY INTO and Delta."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.segment FROM main.sales.orders o JOIN main.crm.customers c ON c.id = o.cust_id",
        reads="main.sales.orders main.crm.customers",
        note="three level names",
    ),
    Case("SELECT * FROM `main`.`Raw`.`Purchases`", reads="main.raw.purchases", note="backquoted mixed case"),
    Case(
        "SELECT * FROM IDENTIFIER('main.raw.purchases') WHERE amount > :min_amount",
        reads="main.raw.purchases",
        note="identifier literal with parameter",
    ),
    Case(
        """SELECT cust_id, amount FROM main.sales.orders
QUALIFY ROW_NUMBER() OVER (PARTITION BY cust_id ORDER BY ts DESC) = 1""",
        reads="main.sales.orders",
        note="qualify",
    ),
    Case(
        "SELECT o.id, item FROM main.sales.orders o LATERAL VIEW explode(o.items) t AS item",
        reads="main.sales.orders",
        note="lateral view explode",
    ),
    Case(
        """SELECT c.id, (SELECT MAX(ts) FROM main.sales.orders o WHERE o.cust_id = c.id) AS last_ts
FROM main.crm.customers c""",
        reads="main.crm.customers main.sales.orders",
        note="scalar subquery",
    ),
    Case(
        """SELECT region, SUM(amount) FROM main.sales.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM main.mart.region_totals)""",
        reads="main.sales.orders main.mart.region_totals",
        note="having subquery",
    ),
    Case(
        "SELECT id FROM main.raw.a UNION SELECT id FROM main.raw.b INTERSECT SELECT id FROM main.raw.c",
        reads="main.raw.a main.raw.b main.raw.c",
        note="union intersect",
    ),
    Case(
        "SELECT * FROM delta.`s3://acme-lake/orders` TIMESTAMP AS OF '2024-01-01'",
        read_locations="s3://acme-lake/orders",
        note="delta path",
    ),
    Case(
        "SELECT * FROM json.`/Volumes/main/raw/landing/events.json`",
        read_locations="file:///Volumes/main/raw/landing/events.json",
        note="volume path is absolute",
    ),
    Case(
        "SELECT * FROM main.sales.orders WHERE day = ? AND region = :region",
        reads="main.sales.orders",
        note="positional and named markers",
    ),
    Case(
        """WITH Recent AS (SELECT * FROM main.sales.orders WHERE day >= current_date() - 7)
SELECT * FROM recent""",
        reads="main.sales.orders",
        note="case insensitive cte",
    ),
    Case(
        """WITH orders AS (SELECT * FROM main.staging.orders)
SELECT * FROM orders o JOIN main.sales.orders s USING (id)""",
        reads="main.staging.orders main.sales.orders",
        note="cte shadowing a qualified name",
    ),
    Case(
        """WITH RECURSIVE tree (id, parent_id) AS (
  SELECT id, parent_id FROM main.ref.categories WHERE parent_id IS NULL
  UNION ALL
  SELECT c.id, c.parent_id FROM main.ref.categories c JOIN tree t ON c.parent_id = t.id
)
SELECT * FROM tree""",
        reads="main.ref.categories",
        note="recursive cte",
    ),
    Case(
        "INSERT INTO main.mart.daily SELECT to_date(ts), SUM(amount) FROM main.sales.orders GROUP BY 1",
        reads="main.sales.orders",
        writes="main.mart.daily",
        note="insert select",
    ),
    Case(
        "INSERT INTO main.mart.daily BY NAME SELECT day, total FROM main.staging.daily",
        reads="main.staging.daily",
        writes="main.mart.daily",
        note="insert by name",
    ),
    Case(
        "INSERT INTO main.mart.daily REPLACE WHERE day = '2024-01-01' SELECT * FROM main.staging.daily",
        reads="main.staging.daily",
        writes="main.mart.daily",
        note="insert replace where",
    ),
    Case(
        "INSERT OVERWRITE main.mart.latest SELECT * FROM main.raw.snapshot",
        reads="main.raw.snapshot",
        writes="main.mart.latest",
        note="insert overwrite",
    ),
    Case(
        """MERGE INTO main.mart.customers t
USING main.staging.customers s
ON t.id = s.id
WHEN MATCHED THEN UPDATE SET *
WHEN NOT MATCHED THEN INSERT *
WHEN NOT MATCHED BY SOURCE THEN DELETE""",
        reads="main.mart.customers main.staging.customers",
        writes="main.mart.customers",
        note="merge with not matched by source",
    ),
    Case(
        "UPDATE main.mart.customers SET tier = 'gold' WHERE id IN (SELECT cust_id FROM main.mart.top)",
        reads="main.mart.customers main.mart.top",
        writes="main.mart.customers",
        note="update with subquery",
    ),
    Case(
        "DELETE FROM main.mart.events WHERE user_id IN (SELECT user_id FROM main.privacy.erasures)",
        reads="main.mart.events main.privacy.erasures",
        writes="main.mart.events",
        note="delete with subquery",
    ),
    Case(
        """CREATE OR REPLACE TABLE main.mart.orders_clean
CLUSTER BY (cust_id)
AS SELECT * FROM main.sales.orders WHERE amount IS NOT NULL""",
        reads="main.sales.orders",
        writes="main.mart.orders_clean",
        note="ctas",
    ),
    Case(
        "CREATE TABLE main.mart.orders_dev SHALLOW CLONE main.sales.orders",
        reads="main.sales.orders",
        writes="main.mart.orders_dev",
        note="shallow clone reads the source",
    ),
    Case(
        "CREATE OR REPLACE VIEW main.mart.v_active AS SELECT * FROM main.crm.customers WHERE active",
        reads="main.crm.customers",
        writes="main.mart.v_active",
        note="create view",
    ),
    Case(
        "CREATE TABLE IDENTIFIER('main.mart.copy') AS SELECT * FROM IDENTIFIER('main.sales.orders')",
        reads="main.sales.orders",
        writes="main.mart.copy",
        note="identifier literal target",
    ),
    Case("TRUNCATE TABLE main.staging.orders", writes="main.staging.orders", note="truncate"),
    Case(
        "ALTER TABLE main.mart.daily SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')",
        writes="main.mart.daily",
        note="alter set properties",
    ),
    Case(
        """COPY INTO main.raw.orders
FROM 's3://acme-landing/orders/'
FILEFORMAT = PARQUET
COPY_OPTIONS ('mergeSchema' = 'true')""",
        writes="main.raw.orders",
        read_locations="s3://acme-landing/orders/",
        note="copy into from s3",
    ),
    Case(
        """CREATE OR REPLACE TEMPORARY VIEW changed AS
SELECT id FROM main.staging.customers WHERE ts > :since;
DELETE FROM main.mart.customers WHERE id IN (SELECT id FROM changed);""",
        reads="main.staging.customers main.mart.customers",
        writes="main.mart.customers",
        note="temporary view script",
    ),
    Case(
        """DECLARE VARIABLE max_day DATE DEFAULT (SELECT MAX(day) FROM main.mart.daily);
INSERT INTO main.mart.daily SELECT day, SUM(amount) FROM main.sales.orders WHERE day > max_day
GROUP BY day;""",
        reads="main.mart.daily main.sales.orders",
        writes="main.mart.daily",
        note="declare variable with subquery",
    ),
    Case(
        "SET VAR n = (SELECT COUNT(*) FROM main.staging.orders)",
        reads="main.staging.orders",
        note="set variable from subquery",
    ),
    Case(
        """USE CATALOG main;
USE SCHEMA mart;
ANALYZE TABLE main.mart.daily COMPUTE STATISTICS;
DESCRIBE HISTORY main.mart.daily;""",
        note="session statements read nothing",
    ),
    Case(
        """CREATE TABLE main.mart.stage AS SELECT * FROM main.raw.feed;
INSERT INTO main.mart.final SELECT * FROM main.mart.stage;
DROP TABLE main.mart.stage;""",
        reads="main.raw.feed",
        writes="main.mart.stage main.mart.final",
        note="created table read later",
    ),
    Case(
        "CREATE FUNCTION main.mart.net(amount DOUBLE, tax DOUBLE) RETURNS DOUBLE RETURN amount - tax",
        note="create sql function",
    ),
    Case("-- placeholder task\n/* intentionally empty */", note="comment only"),
    Case("SELECT * FROM IDENTIFIER(:source_table)", refuses=True, note="identifier named marker"),
    Case(
        "SELECT * FROM IDENTIFIER(:catalog || '.raw.purchases')",
        refuses=True,
        note="identifier concatenation",
    ),
    Case("SELECT * FROM IDENTIFIER(?)", refuses=True, note="identifier positional marker"),
    Case("SELECT * FROM ${env}_sales.orders", refuses=True, note="variable substitution"),
    Case("OPTIMIZE main.mart.daily ZORDER BY (day)", refuses=True, note="optimize is opaque"),
    Case(
        "CREATE OR REPLACE TABLE main.mart.orders_bak DEEP CLONE main.sales.orders",
        refuses=True,
        note="deep clone is opaque to sqlglot",
    ),
    Case(
        "EXECUTE IMMEDIATE 'SELECT * FROM main.sales.orders'",
        refuses=True,
        note="execute immediate",
    ),
    Case(
        """BEGIN
  INSERT INTO main.mart.x SELECT * FROM main.raw.x;
END""",
        refuses=True,
        note="compound block",
    ),
    Case(
        "SELECT * FROM read_files('s3://acme-landing/events/', format => 'json')",
        refuses=True,
        note="unknown table function",
    ),
    Case(
        "SELECT * FROM main.sales.orders WHERE day = '{{ ds }}'{{ suffix }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case("SELECT * FROM main.sales.orders WHERE", refuses=True, note="syntax error"),
    Case(
        "SELECT * FROM csv.`landing/orders.csv`",
        refuses=True,
        note="relative file path",
    ),
]
