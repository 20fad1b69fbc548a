"""Amazon Redshift conformance cases: COPY from S3, UNLOAD, temp tables and stored procedures."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.segment FROM sales.orders o JOIN crm.customers c ON c.id = o.cust_id",
        reads="sales.orders crm.customers",
        note="join",
    ),
    Case(
        "SELECT * FROM spectrum.events WHERE dt = %s AND kind = %(kind)s",
        reads="spectrum.events",
        note="spectrum table with placeholders",
    ),
    Case(
        """SELECT cust_id, LISTAGG(sku, ',') WITHIN GROUP (ORDER BY sku) AS skus
FROM sales.order_items GROUP BY cust_id""",
        reads="sales.order_items",
        note="listagg",
    ),
    Case(
        """SELECT c.id, (SELECT COUNT(*) FROM sales.orders o WHERE o.cust_id = c.id) AS n
FROM crm.customers c WHERE c.region IN (SELECT region FROM ref.regions)""",
        reads="crm.customers sales.orders ref.regions",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT region, SUM(amount) FROM sales.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM mart.region_totals)""",
        reads="sales.orders mart.region_totals",
        note="having subquery",
    ),
    Case(
        "SELECT id FROM sales.orders_a UNION ALL SELECT id FROM sales.orders_b EXCEPT SELECT id FROM "
        "sales.test",
        reads="sales.orders_a sales.orders_b sales.test",
        note="set operations",
    ),
    Case(
        """SELECT cust_id, amount,
       SUM(amount) OVER (PARTITION BY cust_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS running
FROM sales.orders""",
        reads="sales.orders",
        note="window frame",
    ),
    Case(
        """WITH recent AS (SELECT * FROM sales.orders WHERE ts > DATEADD(day, -7, GETDATE()))
SELECT * FROM recent r JOIN crm.customers c ON c.id = r.cust_id""",
        reads="sales.orders crm.customers",
        note="cte",
    ),
    Case(
        """WITH RECURSIVE org (id, manager_id, lvl) AS (
  SELECT id, manager_id, 1 FROM hr.employees WHERE manager_id IS NULL
  UNION ALL
  SELECT e.id, e.manager_id, o.lvl + 1 FROM hr.employees e JOIN org o ON e.manager_id = o.id
)
SELECT * FROM org""",
        reads="hr.employees",
        note="recursive cte",
    ),
    Case(
        """WITH "Orders" AS (SELECT * FROM staging.orders)
SELECT * FROM orders""",
        reads="staging.orders",
        note="cte names case insensitive",
    ),
    Case(
        "INSERT INTO mart.daily SELECT TRUNC(ts), SUM(amount) FROM sales.orders GROUP BY 1",
        reads="sales.orders",
        writes="mart.daily",
        note="insert select",
    ),
    Case(
        "INSERT INTO mart.fx VALUES (GETDATE(), (SELECT MAX(rate) FROM ref.fx_rates))",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        "UPDATE mart.customers SET segment = s.segment FROM staging.segments s WHERE "
        "mart.customers.id = s.id",
        reads="mart.customers staging.segments",
        writes="mart.customers",
        note="update from",
    ),
    Case(
        "DELETE FROM mart.events USING privacy.erasures e WHERE mart.events.user_id = e.user_id",
        reads="mart.events privacy.erasures",
        writes="mart.events",
        note="delete using",
    ),
    Case(
        """MERGE INTO mart.customers
USING staging.customers s ON mart.customers.id = s.id
WHEN MATCHED THEN UPDATE SET email = s.email
WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.email)""",
        reads="mart.customers staging.customers",
        writes="mart.customers",
        note="merge",
    ),
    Case(
        "CREATE TABLE mart.orders_clean DISTKEY(cust_id) SORTKEY(ts) AS SELECT * FROM sales.orders",
        reads="sales.orders",
        writes="mart.orders_clean",
        note="ctas with dist and sort keys",
    ),
    Case(
        "CREATE OR REPLACE VIEW mart.v_active AS SELECT * FROM crm.customers WHERE active WITH NO "
        "SCHEMA BINDING",
        reads="crm.customers",
        writes="mart.v_active",
        note="late binding view",
    ),
    Case(
        "CREATE MATERIALIZED VIEW mart.mv_daily AUTO REFRESH YES AS SELECT TRUNC(ts) AS d, SUM(amount) "
        "FROM sales.orders GROUP BY 1",
        reads="sales.orders",
        writes="mart.mv_daily",
        note="materialized view",
    ),
    Case("REFRESH MATERIALIZED VIEW mart.mv_daily", writes="mart.mv_daily", note="refresh materialized view"),
    Case("TRUNCATE staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE mart.orders_clean ADD COLUMN loaded_at TIMESTAMP DEFAULT GETDATE()",
        writes="mart.orders_clean",
        note="alter add column",
    ),
    Case(
        "ALTER TABLE orders_staging RENAME TO orders_live",
        reads="orders_staging",
        writes="orders_staging orders_live",
        note="rename",
    ),
    Case(
        """CREATE TEMP TABLE changed AS SELECT id FROM staging.customers WHERE updated_at > %s;
DELETE FROM mart.customers USING changed WHERE mart.customers.id = changed.id;
INSERT INTO mart.customers SELECT s.* FROM staging.customers s JOIN changed c ON c.id = s.id;""",
        reads="staging.customers mart.customers",
        writes="mart.customers",
        note="temp table delete insert",
    ),
    Case(
        """SELECT * INTO TEMP TABLE recent FROM sales.orders WHERE ts > GETDATE() - 1;
INSERT INTO mart.recent SELECT * FROM recent;""",
        reads="sales.orders",
        writes="mart.recent",
        note="select into temp table",
    ),
    Case(
        """SELECT * INTO #stage FROM sales.orders;
INSERT INTO mart.orders SELECT * FROM #stage;""",
        reads="sales.orders",
        writes="mart.orders",
        note="hash temp table",
    ),
    Case(
        """BEGIN;
DELETE FROM mart.daily WHERE d = CURRENT_DATE;
INSERT INTO mart.daily SELECT CURRENT_DATE, SUM(amount) FROM sales.orders;
END;""",
        reads="mart.daily sales.orders",
        writes="mart.daily",
        note="transaction with end",
    ),
    Case(
        """SET search_path TO mart;
ANALYZE mart.daily;
GRANT SELECT ON mart.daily TO GROUP analysts;""",
        note="admin statements",
    ),
    Case(
        """COPY staging.orders
FROM 's3://acme-landing/orders/2024-01-01/'
IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-load'
FORMAT AS PARQUET""",
        writes="staging.orders",
        read_locations="s3://acme-landing/orders/2024-01-01/",
        note="copy from s3 parquet",
    ),
    Case(
        """COPY staging.events (id, kind, ts)
FROM 's3://acme-landing/events/manifest.json'
IAM_ROLE default
CSV IGNOREHEADER 1 MANIFEST""",
        writes="staging.events",
        read_locations="s3://acme-landing/events/manifest.json",
        note="copy csv with manifest",
    ),
    Case(
        """UNLOAD ('SELECT * FROM mart.daily WHERE d >= \\'2024-01-01\\'')
TO 's3://acme-exports/daily/'
IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-unload'
PARQUET""",
        reads="mart.daily",
        written_locations="s3://acme-exports/daily/",
        note="unload analyzes the quoted query",
    ),
    Case(
        """UNLOAD ('SELECT o.* FROM sales.orders o JOIN crm.customers c ON c.id = o.cust_id')
TO 's3://acme-exports/orders_'
IAM_ROLE default
CSV HEADER""",
        reads="sales.orders crm.customers",
        written_locations="s3://acme-exports/orders_",
        note="unload join",
    ),
    Case(
        """CREATE OR REPLACE PROCEDURE mart.reload()
AS $$
BEGIN
  INSERT INTO mart.x SELECT * FROM staging.x;
END;
$$ LANGUAGE plpgsql""",
        note="create procedure",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM staging.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="staging.feed",
        writes="mart.stage mart.final",
        note="created table read later",
    ),
    Case("/* daily job */ -- nothing to run\n", note="comment only"),
    Case("CALL mart.reload()", refuses=True, note="call"),
    Case(
        "UNLOAD ('SELECT * FROM mart.daily') TO 'exports/daily/' IAM_ROLE default",
        refuses=True,
        note="unload to relative path",
    ),
    Case(
        "COPY staging.orders FROM 'orders/2024/' IAM_ROLE default",
        refuses=True,
        note="copy from relative path",
    ),
    Case("VACUUM DELETE ONLY mart.daily", note="vacuum moves no data"),
    Case("ALTER TABLE mart.daily APPEND FROM staging.daily", refuses=True, note="alter append is opaque"),
    Case("EXPLAIN SELECT * FROM sales.orders", refuses=True, note="explain"),
    Case("SELECT * FROM %(table)s", refuses=True, note="placeholder table"),
    Case(
        "SELECT * FROM sales.orders WHERE d = '{{ ds }}' {{ extra }}", refuses=True, note="unrendered jinja"
    ),
    Case("SELECT * FROM sales.orders WHERE id = ANY(", refuses=True, note="syntax error"),
    Case(
        "SELECT * FROM dblink('conn', 'SELECT 1') AS t(x int)",
        refuses=True,
        note="unknown table function",
    ),
]
