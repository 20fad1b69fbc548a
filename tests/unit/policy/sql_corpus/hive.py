"""Hive conformance cases: INSERT OVERWRITE, multi-inserts, partitions and ${hiveconf:...}."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.name FROM sales.orders o JOIN crm.customers c ON (c.id = o.cust_id) WHERE "
        "o.dt = '2024-01-01'",
        reads="sales.orders crm.customers",
        note="partition filtered join",
    ),
    Case(
        "SELECT /*+ MAPJOIN(c) */ o.id, c.name FROM sales.orders o JOIN ref.countries c ON c.code = "
        "o.country",
        reads="sales.orders ref.countries",
        note="mapjoin hint",
    ),
    Case(
        "SELECT o.id, item FROM sales.orders o LATERAL VIEW explode(o.items) t AS item",
        reads="sales.orders",
        note="lateral view explode",
    ),
    Case(
        "SELECT u.id, k, v FROM raw.users u LATERAL VIEW OUTER explode(u.attrs) a AS k, v",
        reads="raw.users",
        note="lateral view outer map",
    ),
    Case(
        """SELECT region, SUM(amount) AS total FROM sales.orders GROUP BY region
HAVING SUM(amount) > 1000""",
        reads="sales.orders",
        note="group by having",
    ),
    Case(
        """SELECT * FROM sales.orders o
WHERE o.cust_id IN (SELECT id FROM crm.customers WHERE country = 'DE')
  AND EXISTS (SELECT 1 FROM sales.payments p WHERE p.order_id = o.id)""",
        reads="sales.orders crm.customers sales.payments",
        note="in and exists subqueries",
    ),
    Case(
        """SELECT id FROM staging.orders_a
UNION ALL
SELECT id FROM staging.orders_b""",
        reads="staging.orders_a staging.orders_b",
        note="union all",
    ),
    Case(
        """SELECT cust_id, amount,
       RANK() OVER (PARTITION BY cust_id ORDER BY amount DESC) AS rk
FROM sales.orders""",
        reads="sales.orders",
        note="window rank",
    ),
    Case(
        "SELECT * FROM (SELECT cust_id, COUNT(*) AS n FROM sales.orders GROUP BY cust_id) t WHERE n > 5",
        reads="sales.orders",
        note="derived table",
    ),
    Case(
        "SELECT * FROM sales.orders TABLESAMPLE (BUCKET 1 OUT OF 16 ON cust_id)",
        reads="sales.orders",
        note="bucket sample",
    ),
    Case(
        """WITH recent AS (SELECT * FROM sales.orders WHERE dt >= '2024-01-01')
SELECT cust_id, COUNT(*) FROM recent GROUP BY cust_id""",
        reads="sales.orders",
        note="cte",
    ),
    Case(
        """WITH Orders AS (SELECT * FROM staging.orders)
SELECT * FROM orders""",
        reads="staging.orders",
        note="cte name case insensitive",
    ),
    Case(
        """WITH orders AS (SELECT * FROM staging.orders)
SELECT * FROM sales.orders WHERE id IN (SELECT id FROM orders)""",
        reads="staging.orders sales.orders",
        note="qualified table beside same named cte",
    ),
    Case(
        """INSERT OVERWRITE TABLE mart.daily_sales PARTITION (dt = '2024-01-01')
SELECT cust_id, SUM(amount) FROM sales.orders WHERE dt = '2024-01-01' GROUP BY cust_id""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="insert overwrite static partition",
    ),
    Case(
        """SET hive.exec.dynamic.partition = true;
SET hive.exec.dynamic.partition.mode = nonstrict;
INSERT OVERWRITE TABLE mart.daily_sales PARTITION (dt)
SELECT cust_id, SUM(amount), dt FROM sales.orders GROUP BY cust_id, dt;""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="dynamic partition insert",
    ),
    Case(
        "INSERT INTO TABLE mart.events_log SELECT * FROM raw.events WHERE dt = '2024-01-01'",
        reads="raw.events",
        writes="mart.events_log",
        note="insert into table",
    ),
    Case(
        """FROM raw.events e
INSERT OVERWRITE TABLE mart.clicks PARTITION (dt = '2024-01-01') SELECT e.id, e.url WHERE e.kind = 'click'
INSERT OVERWRITE TABLE mart.views PARTITION (dt = '2024-01-01') SELECT e.id, e.url WHERE e.kind = 'view'""",
        reads="raw.events",
        writes="mart.clicks mart.views",
        note="multi insert",
    ),
    Case(
        "INSERT INTO TABLE mart.kv VALUES ('a', 1), ('b', 2)",
        writes="mart.kv",
        note="insert values",
    ),
    Case(
        """CREATE TABLE mart.orders_orc STORED AS ORC
AS SELECT * FROM sales.orders WHERE dt >= '2024-01-01'""",
        reads="sales.orders",
        writes="mart.orders_orc",
        note="ctas stored as orc",
    ),
    Case(
        """CREATE TABLE IF NOT EXISTS mart.targets (region STRING, target DOUBLE)
PARTITIONED BY (dt STRING) STORED AS PARQUET""",
        writes="mart.targets",
        note="create partitioned table",
    ),
    Case(
        "CREATE VIEW mart.v_de AS SELECT * FROM crm.customers WHERE country = 'DE'",
        reads="crm.customers",
        writes="mart.v_de",
        note="create view",
    ),
    Case(
        "INSERT OVERWRITE DIRECTORY '/exports/daily/2024-01-01' SELECT * FROM mart.daily_sales WHERE "
        "dt = '2024-01-01'",
        reads="mart.daily_sales",
        written_locations="file:///exports/daily/2024-01-01",
        note="insert overwrite directory",
    ),
    Case(
        """INSERT OVERWRITE LOCAL DIRECTORY '/tmp/export'
ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\t'
SELECT * FROM mart.daily_sales""",
        reads="mart.daily_sales",
        written_locations="file:///tmp/export",
        note="insert overwrite local directory",
    ),
    Case(
        "INSERT OVERWRITE DIRECTORY 's3a://acme-exports/daily' SELECT * FROM mart.daily_sales",
        reads="mart.daily_sales",
        written_locations="s3a://acme-exports/daily",
        note="insert overwrite directory on s3a",
    ),
    Case(
        "TRUNCATE TABLE staging.orders PARTITION (dt = '2024-01-01')",
        writes="staging.orders",
        note="truncate partition",
    ),
    Case(
        "ALTER TABLE mart.daily_sales ADD IF NOT EXISTS PARTITION (dt = '2024-01-02')",
        writes="mart.daily_sales",
        note="add partition",
    ),
    Case(
        "ALTER TABLE mart.daily_sales DROP IF EXISTS PARTITION (dt = '2023-01-01')",
        writes="mart.daily_sales",
        note="drop partition",
    ),
    Case(
        "ALTER TABLE mart.orders_tmp RENAME TO mart.orders_final",
        reads="mart.orders_tmp",
        writes="mart.orders_tmp mart.orders_final",
        note="rename",
    ),
    Case(
        """CREATE TEMPORARY TABLE tmp_ids AS SELECT id FROM staging.customers WHERE dt = '2024-01-01';
INSERT OVERWRITE TABLE mart.customers_changed SELECT c.* FROM crm.customers c JOIN tmp_ids t ON
t.id = c.id;""",
        reads="staging.customers crm.customers",
        writes="mart.customers_changed",
        note="temporary table",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM raw.feed;
INSERT OVERWRITE TABLE mart.final SELECT * FROM mart.stage;""",
        reads="raw.feed",
        writes="mart.stage mart.final",
        note="created table read later",
    ),
    Case(
        """USE mart;
ANALYZE TABLE mart.daily_sales PARTITION (dt = '2024-01-01') COMPUTE STATISTICS;
DESCRIBE FORMATTED mart.daily_sales;
DROP TABLE IF EXISTS mart.old_sales;""",
        note="admin statements",
    ),
    Case("CREATE TEMPORARY FUNCTION to_cents AS 'com.acme.hive.ToCents'", note="create temporary function"),
    Case("-- nothing here\n", note="comment only"),
    Case("SELECT * FROM ${hiveconf:src_table}", refuses=True, note="hiveconf table"),
    Case(
        "INSERT OVERWRITE TABLE mart.daily PARTITION (dt = '${hiveconf:dt}') SELECT * FROM ${src}",
        refuses=True,
        note="variable source table",
    ),
    Case("SELECT * FROM sales.${hivevar:suffix}", refuses=True, note="hivevar in table name"),
    Case("MSCK REPAIR TABLE raw.events", refuses=True, note="msck repair"),
    Case("ADD JAR hdfs:///libs/udfs.jar", refuses=True, note="add jar"),
    Case("EXPLAIN SELECT * FROM sales.orders", refuses=True, note="explain"),
    Case(
        "SELECT * FROM sales.orders WHERE dt = '{{ ds }}' AND {{ params.cond }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case("SELECT FROM WHERE sales.orders", refuses=True, note="syntax error"),
    Case(
        "SELECT * FROM sales.orders o LATERAL VIEW acme_unpack(o.blob) t AS x",
        refuses=True,
        note="unknown udtf",
    ),
    Case(
        """SELECT o.id, c.total FROM sales.orders o
JOIN (SELECT cust_id, SUM(amount) AS total FROM sales.orders GROUP BY cust_id) c ON c.cust_id = o.cust_id
LEFT SEMI JOIN crm.vip v ON v.id = o.cust_id""",
        reads="sales.orders crm.vip",
        note="left semi join",
    ),
    Case(
        "INSERT INTO TABLE mart.fx SELECT current_date(), MAX(rate) FROM ref.fx_rates",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="insert aggregate",
    ),
    Case(
        """FROM (SELECT * FROM raw.events WHERE dt = '2024-01-01') e
INSERT INTO TABLE mart.errors SELECT e.id WHERE e.level = 'error'
INSERT INTO TABLE mart.warnings SELECT e.id WHERE e.level = 'warn'""",
        reads="raw.events",
        writes="mart.errors mart.warnings",
        note="multi insert from subquery",
    ),
]
