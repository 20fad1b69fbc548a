"""BigQuery conformance cases: backquoted project.dataset.table names, scripting and UNNEST."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    # --- reads
    Case(
        "SELECT o.id, c.segment FROM `acme-prod.sales.orders` o JOIN `acme-prod`.crm.customers c ON "
        "c.id = o.cust_id",
        reads="acme-prod.sales.orders acme-prod.crm.customers",
        note="backquoted project names",
    ),
    Case(
        "SELECT * FROM sales.Orders WHERE created_at >= @start_ts AND region = @region",
        reads="sales.orders",
        note="named parameters",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE id = ? AND day > ?", reads="sales.orders", note="positional params"
    ),
    Case(
        """SELECT event_name, COUNT(*) AS n
FROM `acme-prod.analytics.events_*`
WHERE _TABLE_SUFFIX BETWEEN '20240101' AND '20240131'
GROUP BY event_name""",
        refuses=True,
        note="wildcard table reads tables named only at run time",
    ),
    Case(
        """SELECT o.id, item.sku, item.qty
FROM sales.orders o, UNNEST(o.items) AS item
WHERE item.qty > 0""",
        reads="sales.orders",
        note="unnest of a repeated field",
    ),
    Case(
        "SELECT day FROM UNNEST(GENERATE_DATE_ARRAY('2024-01-01', '2024-01-31')) AS day",
        note="unnest generated array",
    ),
    Case(
        """SELECT c.id,
       ARRAY(SELECT AS STRUCT o.id, o.amount FROM sales.orders o WHERE o.cust_id = c.id) AS orders
FROM crm.customers c""",
        reads="crm.customers sales.orders",
        note="array subquery",
    ),
    Case(
        """SELECT region, SUM(amount) AS total FROM sales.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM mart.region_totals)""",
        reads="sales.orders mart.region_totals",
        note="having subquery",
    ),
    Case(
        """SELECT * FROM sales.orders
WHERE cust_id IN UNNEST(@cust_ids)
  AND NOT EXISTS (SELECT 1 FROM sales.refunds r WHERE r.order_id = orders.id)""",
        reads="sales.orders sales.refunds",
        note="in unnest parameter and not exists",
    ),
    Case(
        """SELECT id FROM staging.orders_eu
UNION DISTINCT
SELECT id FROM staging.orders_us
EXCEPT DISTINCT
SELECT id FROM staging.orders_test""",
        reads="staging.orders_eu staging.orders_us staging.orders_test",
        note="union and except distinct",
    ),
    Case(
        """SELECT *, ROW_NUMBER() OVER (PARTITION BY cust_id ORDER BY ts DESC) AS rn
FROM sales.orders
QUALIFY rn = 1""",
        reads="sales.orders",
        note="qualify window",
    ),
    Case(
        "SELECT * FROM sales.orders FOR SYSTEM_TIME AS OF TIMESTAMP_SUB(CURRENT_TIMESTAMP(), "
        "INTERVAL 1 HOUR)",
        reads="sales.orders",
        note="time travel",
    ),
    Case(
        "SELECT table_name FROM `acme-prod.sales.INFORMATION_SCHEMA.TABLES`",
        reads="acme-prod.sales.information_schema.tables",
        note="information schema",
    ),
    Case(
        "SELECT * FROM sales.orders PIVOT (SUM(amount) FOR region IN ('EU', 'US'))",
        reads="sales.orders",
        note="pivot",
    ),
    # --- CTEs
    Case(
        """WITH Recent AS (SELECT * FROM sales.orders WHERE day > DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY))
SELECT * FROM recent""",
        reads="sales.orders",
        note="cte names are case insensitive",
    ),
    Case(
        """WITH orders AS (SELECT * FROM staging.orders)
SELECT * FROM sales.orders JOIN orders USING (id)""",
        reads="staging.orders sales.orders",
        note="qualified name is not the cte",
    ),
    Case(
        """WITH RECURSIVE tree AS (
  SELECT id, parent_id FROM ref.categories WHERE parent_id IS NULL
  UNION ALL
  SELECT c.id, c.parent_id FROM ref.categories c JOIN tree t ON c.parent_id = t.id
)
SELECT * FROM tree""",
        reads="ref.categories",
        note="recursive cte",
    ),
    Case(
        """WITH a AS (SELECT * FROM raw.a),
     b AS (SELECT * FROM a JOIN raw.b USING (id)),
     c AS (SELECT * FROM b WHERE id > (SELECT MIN(id) FROM raw.c))
SELECT * FROM c""",
        reads="raw.a raw.b raw.c",
        note="chained ctes with scalar subquery",
    ),
    # --- writes
    Case(
        """INSERT INTO mart.daily_sales (day, total)
SELECT DATE(created_at), SUM(amount) FROM sales.orders GROUP BY 1""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="insert select",
    ),
    Case(
        "INSERT mart.load_log (run_id, loaded_at) VALUES (@run_id, CURRENT_TIMESTAMP())",
        writes="mart.load_log",
        note="insert without into",
    ),
    Case(
        """INSERT INTO mart.fx (day, rate)
VALUES (CURRENT_DATE(), (SELECT MAX(rate) FROM ref.fx_rates WHERE ccy = 'EUR'))""",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        """MERGE mart.customers t
USING (SELECT * FROM staging.customers WHERE _load_date = @load_date) s
ON t.id = s.id
WHEN MATCHED THEN UPDATE SET email = s.email
WHEN NOT MATCHED THEN INSERT (id, email) VALUES (s.id, s.email)
WHEN NOT MATCHED BY SOURCE THEN DELETE""",
        reads="mart.customers staging.customers",
        writes="mart.customers",
        note="merge with not matched by source",
    ),
    Case(
        """UPDATE mart.customers c
SET segment = s.segment
FROM staging.segments s
WHERE c.id = s.id""",
        reads="mart.customers staging.segments",
        writes="mart.customers",
        note="update from",
    ),
    Case(
        "UPDATE mart.accounts SET balance = (SELECT SUM(amount) FROM ledger.entries) WHERE TRUE",
        reads="mart.accounts ledger.entries",
        writes="mart.accounts",
        note="scalar subquery in set",
    ),
    Case(
        "DELETE mart.events WHERE user_id IN (SELECT user_id FROM privacy.erasure_requests)",
        reads="mart.events privacy.erasure_requests",
        writes="mart.events",
        note="delete without from",
    ),
    Case(
        """CREATE OR REPLACE TABLE mart.orders_clean
PARTITION BY DATE(created_at)
CLUSTER BY cust_id
AS SELECT * FROM sales.orders WHERE amount IS NOT NULL""",
        reads="sales.orders",
        writes="mart.orders_clean",
        note="partitioned ctas",
    ),
    Case(
        "CREATE TABLE IF NOT EXISTS mart.targets (region STRING, target NUMERIC)",
        writes="mart.targets",
        note="create table if not exists",
    ),
    Case(
        "CREATE OR REPLACE VIEW mart.v_active AS SELECT * FROM crm.customers WHERE active",
        reads="crm.customers",
        writes="mart.v_active",
        note="create view",
    ),
    Case(
        """CREATE MATERIALIZED VIEW mart.mv_daily AS
SELECT DATE(created_at) AS day, SUM(amount) AS total FROM sales.orders GROUP BY day""",
        reads="sales.orders",
        writes="mart.mv_daily",
        note="materialized view",
    ),
    Case(
        "CREATE TABLE mart.orders_backup CLONE sales.orders",
        reads="sales.orders",
        writes="mart.orders_backup",
        note="table clone reads source",
    ),
    Case("TRUNCATE TABLE staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE mart.targets ADD COLUMN IF NOT EXISTS owner STRING",
        writes="mart.targets",
        note="alter add column",
    ),
    # --- scripting
    Case(
        """DECLARE max_day DATE DEFAULT (SELECT MAX(day) FROM mart.daily_sales);
INSERT INTO mart.daily_sales
SELECT DATE(created_at), SUM(amount) FROM sales.orders WHERE DATE(created_at) > max_day GROUP BY 1;""",
        reads="mart.daily_sales sales.orders",
        writes="mart.daily_sales",
        note="declare default subquery",
    ),
    Case(
        """DECLARE n INT64;
SET n = (SELECT COUNT(*) FROM staging.orders);
SELECT n;""",
        reads="staging.orders",
        note="set from subquery",
    ),
    Case(
        """CREATE TEMP TABLE changed AS SELECT id FROM staging.customers WHERE updated_at > @since;
DELETE FROM mart.customers WHERE id IN (SELECT id FROM changed);
INSERT INTO mart.customers SELECT * FROM staging.customers WHERE id IN (SELECT id FROM changed);""",
        reads="staging.customers mart.customers",
        writes="mart.customers",
        note="temp table script",
    ),
    Case(
        """BEGIN TRANSACTION;
DELETE FROM mart.daily_sales WHERE day = CURRENT_DATE();
INSERT INTO mart.daily_sales SELECT CURRENT_DATE(), SUM(amount) FROM sales.orders;
COMMIT TRANSACTION;""",
        reads="mart.daily_sales sales.orders",
        writes="mart.daily_sales",
        note="transaction",
    ),
    Case(
        """CREATE TEMP FUNCTION net(amount NUMERIC, tax NUMERIC) AS (amount - tax);
SELECT net(amount, tax) FROM sales.orders;""",
        reads="sales.orders",
        note="temp function then use",
    ),
    Case(
        "CREATE OR REPLACE FUNCTION mart.cents(x NUMERIC) AS (CAST(x * 100 AS INT64))",
        note="persistent sql function",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM raw.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="raw.feed",
        writes="mart.stage mart.final",
        note="created table read later",
    ),
    Case(
        """CREATE TABLE mart.scratch AS SELECT * FROM raw.feed;
DROP TABLE mart.scratch;
INSERT INTO mart.final SELECT * FROM mart.scratch;""",
        reads="raw.feed mart.scratch",
        writes="mart.scratch mart.final",
        note="drop ends ownership",
    ),
    Case("# scheduled query, nothing today\n-- see ticket 123\n", note="comment only"),
    Case(
        "GRANT `roles/bigquery.dataViewer` ON TABLE mart.daily_sales TO 'group:analysts@acme.com'",
        note="grant",
    ),
    Case(
        """EXPORT DATA OPTIONS (uri = 'gs://acme-exports/daily/*.parquet', format = 'PARQUET',
overwrite = true)
AS SELECT * FROM mart.daily_sales""",
        reads="mart.daily_sales",
        written_locations="gs://acme-exports/daily/*.parquet",
        note="export data writes the uri",
    ),
    # --- refusals
    Case(
        """IF (SELECT COUNT(*) FROM staging.orders) > 0 THEN
  INSERT INTO mart.orders SELECT * FROM staging.orders;
END IF;""",
        refuses=True,
        note="if block does not parse",
    ),
    Case(
        """BEGIN
  INSERT INTO mart.orders SELECT * FROM staging.orders;
END;""",
        refuses=True,
        note="begin end block",
    ),
    Case(
        """FOR r IN (SELECT table_name FROM staging.INFORMATION_SCHEMA.TABLES) DO
  EXECUTE IMMEDIATE FORMAT('TRUNCATE TABLE staging.%s', r.table_name);
END FOR;""",
        refuses=True,
        note="for loop with dynamic sql",
    ),
    Case(
        """WHILE n < 10 DO
  SET n = n + 1;
END WHILE;""",
        refuses=True,
        note="while loop",
    ),
    Case("CALL mart.reload_orders(DATE '2024-01-01')", refuses=True, note="call procedure"),
    Case(
        "EXECUTE IMMEDIATE 'INSERT INTO mart.x SELECT * FROM raw.x'",
        refuses=True,
        note="execute immediate",
    ),
    Case(
        "SELECT * FROM ML.PREDICT(MODEL mart.churn_model, TABLE mart.features)",
        refuses=True,
        note="ml predict table function",
    ),
    Case(
        "SELECT * FROM EXTERNAL_QUERY('acme-prod.us.pg', 'SELECT * FROM orders')",
        refuses=True,
        note="external query runs sql text",
    ),
    Case("SELECT * FROM @source_table", refuses=True, note="parameter in table position"),
    Case("SELECT * FROM `{{ params.project }}.sales.orders`", refuses=True, note="unrendered jinja"),
    Case("SELECT * FROM sales.orders WHERE (", refuses=True, note="syntax error"),
    Case(
        """CREATE TEMP TABLE ids AS SELECT id FROM staging.a;
CREATE TEMP TABLE ids2 AS SELECT id FROM ids WHERE id > 0;
INSERT INTO mart.result SELECT * FROM ids2 JOIN mart.lookup USING (id);""",
        reads="staging.a mart.lookup",
        writes="mart.result",
        note="chained temp tables",
    ),
    Case(
        """SELECT o.id, (SELECT name FROM crm.customers c WHERE c.id = o.cust_id) AS name
FROM sales.orders o
WHERE o.amount > (SELECT AVG(amount) FROM sales.orders)""",
        reads="sales.orders crm.customers",
        note="correlated and uncorrelated scalar subqueries",
    ),
    Case(
        "SELECT * FROM sales.orders TABLESAMPLE SYSTEM (10 PERCENT)",
        reads="sales.orders",
        note="tablesample",
    ),
    Case(
        "DROP TABLE IF EXISTS staging.orders_old; DROP VIEW IF EXISTS mart.v_old;",
        note="drops read nothing",
    ),
]
