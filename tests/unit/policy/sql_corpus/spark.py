"""Spark SQL conformance cases: multi-inserts, file sources, CACHE TABLE and temporary views."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    # --- reads
    Case(
        "SELECT o.id, c.segment FROM sales.orders o JOIN crm.customers c ON c.id = o.cust_id",
        reads="sales.orders crm.customers",
        note="join",
    ),
    Case(
        "SELECT /*+ BROADCAST(c) */ o.id FROM sales.orders o JOIN ref.countries c ON c.code = o.country",
        reads="sales.orders ref.countries",
        note="broadcast hint",
    ),
    Case(
        "SELECT o.id, item FROM sales.orders o LATERAL VIEW explode(o.items) t AS item",
        reads="sales.orders",
        note="lateral view explode",
    ),
    Case(
        "SELECT o.id, pos, tag FROM sales.orders o LATERAL VIEW OUTER posexplode(o.tags) t AS pos, tag",
        reads="sales.orders",
        note="lateral view outer posexplode",
    ),
    Case(
        """SELECT c.id, (SELECT COUNT(*) FROM sales.orders o WHERE o.cust_id = c.id) AS n
FROM crm.customers c
WHERE c.country IN (SELECT code FROM ref.countries WHERE active)""",
        reads="crm.customers sales.orders ref.countries",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT region, SUM(amount) AS total FROM sales.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM mart.region_totals)""",
        reads="sales.orders mart.region_totals",
        note="having subquery",
    ),
    Case(
        """SELECT id FROM raw.orders_eu
UNION ALL
SELECT id FROM raw.orders_us
EXCEPT
SELECT id FROM raw.orders_test""",
        reads="raw.orders_eu raw.orders_us raw.orders_test",
        note="union all and except",
    ),
    Case(
        """SELECT *, ROW_NUMBER() OVER (PARTITION BY cust_id ORDER BY ts DESC) AS rn,
       LAG(amount, 1) OVER (PARTITION BY cust_id ORDER BY ts) AS prev
FROM sales.orders""",
        reads="sales.orders",
        note="window functions",
    ),
    Case(
        "SELECT * FROM parquet.`/data/lake/orders/`",
        read_locations="file:///data/lake/orders/",
        note="parquet path",
    ),
    Case(
        "SELECT * FROM json.`s3a://acme-landing/events/2024/01/`",
        read_locations="s3a://acme-landing/events/2024/01/",
        note="json on s3a",
    ),
    Case(
        "SELECT o.*, c.name FROM orc.`/warehouse/orders` o JOIN crm.customers c ON c.id = o.cust_id",
        reads="crm.customers",
        read_locations="file:///warehouse/orders",
        note="orc path joined to table",
    ),
    Case(
        "SELECT * FROM delta.`s3://acme-lake/delta/orders` VERSION AS OF 12",
        read_locations="s3://acme-lake/delta/orders",
        note="delta path time travel",
    ),
    Case("SELECT * FROM csv.`landing/orders.csv`", refuses=True, note="relative csv path"),
    Case("SELECT id FROM range(100)", note="range reads nothing"),
    Case(
        "SELECT * FROM VALUES (1, 'EU'), (2, 'US') AS v(id, region) JOIN ref.regions r ON r.code = v.region",
        reads="ref.regions",
        note="inline values",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE day = :day AND region = ?",
        reads="sales.orders",
        note="parameter markers",
    ),
    Case(
        "SELECT * FROM sales.orders PIVOT (SUM(amount) FOR region IN ('EU', 'US'))",
        reads="sales.orders",
        note="pivot",
    ),
    Case(
        "SELECT * FROM sales.orders TABLESAMPLE (10 PERCENT) -- quick look",
        reads="sales.orders",
        note="tablesample",
    ),
    # --- CTEs
    Case(
        """WITH Recent AS (SELECT * FROM sales.orders WHERE day > date_sub(current_date(), 7))
SELECT * FROM RECENT""",
        reads="sales.orders",
        note="cte names are case insensitive",
    ),
    Case(
        """WITH orders AS (SELECT * FROM staging.orders)
SELECT * FROM sales.orders s JOIN orders o ON o.id = s.id""",
        reads="staging.orders sales.orders",
        note="qualified name is not the cte",
    ),
    Case(
        """WITH a AS (SELECT * FROM raw.a), b AS (SELECT * FROM a JOIN raw.b USING (id))
SELECT * FROM b""",
        reads="raw.a raw.b",
        note="chained ctes",
    ),
    Case(
        """WITH `Totals` AS (SELECT cust_id, SUM(amount) AS amt FROM sales.orders GROUP BY cust_id)
SELECT * FROM totals WHERE amt > 100""",
        reads="sales.orders",
        note="backquoted cte name",
    ),
    # --- writes
    Case(
        """INSERT INTO mart.daily_sales
SELECT to_date(created_at), SUM(amount) FROM sales.orders GROUP BY to_date(created_at)""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="insert into select",
    ),
    Case(
        """INSERT OVERWRITE TABLE mart.daily_sales PARTITION (day = '2024-01-01')
SELECT SUM(amount) FROM sales.orders WHERE to_date(created_at) = '2024-01-01'""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="insert overwrite static partition",
    ),
    Case(
        "INSERT INTO mart.orders_copy TABLE sales.orders",
        reads="sales.orders",
        writes="mart.orders_copy",
        note="insert table",
    ),
    Case(
        """FROM sales.orders o
INSERT OVERWRITE TABLE mart.big_orders SELECT o.id, o.amount WHERE o.amount > 1000
INSERT INTO TABLE mart.small_orders SELECT o.id, o.amount WHERE o.amount <= 1000""",
        reads="sales.orders",
        writes="mart.big_orders mart.small_orders",
        note="multi insert from source",
    ),
    Case(
        "INSERT INTO mart.fx VALUES (current_date(), (SELECT MAX(rate) FROM ref.fx_rates))",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        """MERGE INTO mart.customers t
USING (SELECT * FROM staging.customers WHERE op != 'D') s
ON t.id = s.id
WHEN MATCHED THEN UPDATE SET *
WHEN NOT MATCHED THEN INSERT *""",
        reads="mart.customers staging.customers",
        writes="mart.customers",
        note="merge update set star",
    ),
    Case(
        "UPDATE mart.customers SET segment = 'vip' WHERE id IN (SELECT cust_id FROM mart.top_spenders)",
        reads="mart.customers mart.top_spenders",
        writes="mart.customers",
        note="update with subquery",
    ),
    Case(
        "DELETE FROM mart.events WHERE user_id IN (SELECT user_id FROM privacy.erasures)",
        reads="mart.events privacy.erasures",
        writes="mart.events",
        note="delete with subquery",
    ),
    Case(
        """CREATE TABLE mart.orders_clean USING parquet PARTITIONED BY (day)
AS SELECT *, to_date(created_at) AS day FROM sales.orders""",
        reads="sales.orders",
        writes="mart.orders_clean",
        note="ctas using parquet",
    ),
    Case(
        "CREATE OR REPLACE VIEW mart.v_active AS SELECT * FROM crm.customers WHERE active",
        reads="crm.customers",
        writes="mart.v_active",
        note="create view",
    ),
    Case(
        "INSERT OVERWRITE DIRECTORY '/exports/daily' SELECT * FROM mart.daily_sales",
        reads="mart.daily_sales",
        written_locations="file:///exports/daily",
        note="insert overwrite directory",
    ),
    Case(
        "INSERT OVERWRITE LOCAL DIRECTORY '/tmp/daily' ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' "
        "SELECT * FROM mart.daily_sales",
        reads="mart.daily_sales",
        written_locations="file:///tmp/daily",
        note="insert overwrite local directory",
    ),
    Case("TRUNCATE TABLE staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE mart.daily_sales ADD COLUMNS (loaded_at TIMESTAMP)",
        writes="mart.daily_sales",
        note="alter add columns",
    ),
    Case(
        "ALTER TABLE mart.orders_tmp RENAME TO mart.orders_final",
        reads="mart.orders_tmp",
        writes="mart.orders_tmp mart.orders_final",
        note="alter rename",
    ),
    Case(
        "ALTER TABLE mart.daily_sales DROP IF EXISTS PARTITION (day = '2023-01-01')",
        writes="mart.daily_sales",
        note="drop partition",
    ),
    # --- temporary views, cache and scripts
    Case(
        """CACHE TABLE recent AS SELECT * FROM sales.orders WHERE day > date_sub(current_date(), 1);
INSERT INTO mart.recent_orders SELECT * FROM recent;""",
        reads="sales.orders",
        writes="mart.recent_orders",
        note="cache table is temporary",
    ),
    Case(
        """CREATE OR REPLACE TEMPORARY VIEW changed AS SELECT id FROM staging.customers WHERE ts > :since;
MERGE INTO mart.customers t USING (SELECT * FROM staging.customers WHERE id IN (SELECT id FROM changed)) s
ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *;""",
        reads="staging.customers mart.customers",
        writes="mart.customers",
        note="temporary view then merge",
    ),
    Case(
        """SET spark.sql.shuffle.partitions = 200;
USE mart;
ANALYZE TABLE mart.daily_sales COMPUTE STATISTICS;
DESCRIBE TABLE mart.daily_sales;""",
        note="session statements read nothing",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM raw.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="raw.feed",
        writes="mart.stage mart.final",
        note="created table read later",
    ),
    Case(
        """CREATE TABLE IF NOT EXISTS mart.stage (id INT) USING parquet;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="mart.stage",
        writes="mart.stage mart.final",
        note="if not exists table may hold data",
    ),
    Case("CREATE TEMPORARY FUNCTION net AS 'com.acme.udf.Net'", note="create temporary function"),
    Case("-- nothing to run\n", note="comment only"),
    # --- refusals
    Case("SELECT * FROM ${source_table}", refuses=True, note="variable substitution"),
    Case("INSERT INTO ${hiveconf:target} SELECT * FROM sales.orders", refuses=True, note="hiveconf target"),
    Case("SELECT * FROM :tbl", refuses=True, note="parameter marker as table"),
    Case("MSCK REPAIR TABLE raw.events", refuses=True, note="msck repair is opaque"),
    Case("ADD JAR /opt/jars/udfs.jar", refuses=True, note="add jar is opaque"),
    Case(
        "INSERT OVERWRITE DIRECTORY 's3://acme-exports/daily' USING parquet SELECT * FROM mart.daily_sales",
        refuses=True,
        note="directory using form does not parse",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE day = '{{ ds }}' {{ extra }}", refuses=True, note="unrendered jinja"
    ),
    Case("SELECT * FROM sales.orders WHERE id = = 1", refuses=True, note="syntax error"),
    Case(
        "SELECT * FROM sales.orders o, LATERAL acme_expand(o.items)",
        refuses=True,
        note="unknown table function",
    ),
    Case(
        """SELECT o.id, s.amount FROM sales.orders o
JOIN (SELECT order_id, SUM(amount) AS amount FROM sales.payments GROUP BY order_id) s ON s.order_id = o.id
WHERE o.day = current_date()""",
        reads="sales.orders sales.payments",
        note="aggregated derived table",
    ),
    Case(
        """CACHE TABLE ids AS SELECT id FROM staging.a;
CACHE TABLE ids2 AS SELECT id FROM ids WHERE id > 0;
INSERT OVERWRITE TABLE mart.result SELECT * FROM ids2 JOIN mart.lookup USING (id);""",
        reads="staging.a mart.lookup",
        writes="mart.result",
        note="chained cache tables",
    ),
    Case(
        "CREATE TABLE mart.orders_shape LIKE sales.orders",
        reads="sales.orders",
        writes="mart.orders_shape",
        note="create table like reads the source",
    ),
]
