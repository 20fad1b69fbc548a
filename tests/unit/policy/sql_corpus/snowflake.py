"""Snowflake conformance cases: unquoted names fold to upper case, so ``orders`` is ``"ORDERS"``."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    # --- reads
    Case(
        "SELECT o.id, c.segment FROM analytics.sales.orders o JOIN analytics.crm.customers c ON c.id "
        "= o.cust_id",
        reads="analytics.sales.orders analytics.crm.customers",
        note="three part names join",
    ),
    Case(
        'SELECT * FROM "Analytics"."Raw"."Purchases"',
        reads="analytics.raw.purchases",
        note="quoted mixed case lower cased",
    ),
    Case(
        """SELECT cust_id,
       amount,
       (SELECT MAX(rate) FROM ref.fx WHERE ccy = o.ccy) AS rate
FROM sales.orders o
QUALIFY ROW_NUMBER() OVER (PARTITION BY cust_id ORDER BY created_at DESC) = 1""",
        reads="sales.orders ref.fx",
        note="qualify and scalar subquery",
    ),
    Case(
        """SELECT e.id, f.value:sku::string AS sku
FROM raw.events e,
     LATERAL FLATTEN(input => e.payload:items) f""",
        reads="raw.events",
        note="lateral flatten",
    ),
    Case(
        "SELECT f.value FROM TABLE(FLATTEN(input => PARSE_JSON('[1, 2, 3]'))) f",
        note="table flatten of a literal",
    ),
    Case(
        """SELECT region, SUM(amount) FROM sales.orders GROUP BY region
HAVING SUM(amount) > (SELECT AVG(total) FROM mart.region_totals)""",
        reads="sales.orders mart.region_totals",
        note="having subquery",
    ),
    Case(
        """SELECT id FROM raw.orders_eu
UNION
SELECT id FROM raw.orders_us
MINUS
SELECT id FROM raw.orders_test""",
        reads="raw.orders_eu raw.orders_us raw.orders_test",
        note="union and minus",
    ),
    Case(
        "SELECT * FROM sales.orders AT(OFFSET => -3600) WHERE status = %(status)s",
        reads="sales.orders",
        note="time travel with pyformat placeholder",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE created_at > %s AND region = %s",
        reads="sales.orders",
        note="format placeholders",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE id = ? OR id = :2", reads="sales.orders", note="qmark and numeric"
    ),
    Case(
        "SELECT * FROM IDENTIFIER('analytics.raw.purchases') WHERE amount > 0",
        reads="analytics.raw.purchases",
        note="identifier literal",
    ),
    Case(
        "SELECT /*+ nothing special */ COUNT(*) FROM raw.clicks -- trailing comment",
        reads="raw.clicks",
        note="comments are harmless",
    ),
    Case(
        """SELECT id,
       ARRAY_AGG(tag) WITHIN GROUP (ORDER BY tag) AS tags,
       LAG(amount) OVER (PARTITION BY id ORDER BY day) AS prev
FROM mart.tagged
GROUP BY id, amount, day""",
        reads="mart.tagged",
        note="array agg and lag",
    ),
    Case(
        "SELECT * FROM raw.orders PIVOT (SUM(amount) FOR region IN ('EU', 'US')) AS p",
        reads="raw.orders",
        note="pivot",
    ),
    # --- CTEs and name folding
    Case(
        """WITH recent AS (SELECT * FROM raw.orders WHERE day > DATEADD(day, -7, CURRENT_DATE()))
SELECT * FROM recent r JOIN raw.customers c ON c.id = r.cust_id""",
        reads="raw.orders raw.customers",
        note="simple cte",
    ),
    Case(
        """WITH "PURCHASES" AS (SELECT * FROM raw.purchases_v2)
SELECT * FROM purchases""",
        reads="raw.purchases_v2",
        note="unquoted name folds onto upper case cte",
    ),
    Case(
        """WITH "purchases" AS (SELECT * FROM raw.purchases_v2)
SELECT * FROM purchases""",
        reads="raw.purchases_v2 purchases",
        note="quoted lower case cte does not hide the table",
    ),
    Case(
        """WITH Purchases AS (SELECT * FROM raw.purchases_v2)
SELECT * FROM PURCHASES JOIN "Purchases" USING (id)""",
        reads="raw.purchases_v2 purchases",
        note="quoted mixed case is a different name",
    ),
    Case(
        """WITH RECURSIVE org (id, manager_id, lvl) AS (
  SELECT id, manager_id, 1 FROM hr.employees WHERE manager_id IS NULL
  UNION ALL
  SELECT e.id, e.manager_id, org.lvl + 1 FROM hr.employees e JOIN org ON e.manager_id = org.id
)
SELECT * FROM org""",
        reads="hr.employees",
        note="recursive cte",
    ),
    Case(
        """WITH a AS (SELECT * FROM raw.a), b AS (SELECT * FROM a JOIN raw.b USING (id))
SELECT * FROM b WHERE id IN (SELECT id FROM raw.c)""",
        reads="raw.a raw.b raw.c",
        note="cte referencing earlier cte",
    ),
    # --- writes
    Case(
        """INSERT INTO mart.daily (day, total)
SELECT DATE_TRUNC('day', created_at), SUM(amount) FROM raw.orders GROUP BY 1""",
        reads="raw.orders",
        writes="mart.daily",
        note="insert select",
    ),
    Case(
        "INSERT OVERWRITE INTO mart.latest SELECT * FROM raw.snapshot",
        reads="raw.snapshot",
        writes="mart.latest",
        note="insert overwrite",
    ),
    Case(
        """INSERT ALL
  INTO mart.orders_big (id, amount) VALUES (id, amount)
  INTO mart.orders_log (id) VALUES (id)
SELECT id, amount FROM raw.orders""",
        reads="raw.orders",
        writes="mart.orders_big mart.orders_log",
        note="insert all into two tables",
    ),
    Case(
        """INSERT FIRST
  WHEN amount > 1000 THEN INTO mart.large VALUES (id, amount)
  WHEN amount > 100 THEN INTO mart.medium VALUES (id, amount)
  ELSE INTO mart.small VALUES (id, amount)
SELECT id, amount FROM raw.orders WHERE day = CURRENT_DATE()""",
        reads="raw.orders",
        writes="mart.large mart.medium mart.small",
        note="insert first conditional",
    ),
    Case(
        """MERGE INTO mart.customers t
USING (SELECT * FROM raw.customer_updates QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC) = 1) s
ON t.id = s.id
WHEN MATCHED AND s.deleted THEN DELETE
WHEN MATCHED THEN UPDATE SET t.email = s.email
WHEN NOT MATCHED THEN INSERT (id, email) VALUES (s.id, s.email)""",
        reads="mart.customers raw.customer_updates",
        writes="mart.customers",
        note="merge with dedup subquery",
    ),
    Case(
        """UPDATE mart.customers c
SET segment = s.segment
FROM raw.segments s
WHERE c.id = s.id""",
        reads="mart.customers raw.segments",
        writes="mart.customers",
        note="update from",
    ),
    Case(
        "DELETE FROM mart.events USING raw.gdpr_requests r WHERE mart.events.user_id = r.user_id",
        reads="mart.events raw.gdpr_requests",
        writes="mart.events",
        note="delete using",
    ),
    Case(
        "CREATE OR REPLACE TABLE mart.orders_clean AS SELECT * FROM raw.orders WHERE amount IS NOT NULL",
        reads="raw.orders",
        writes="mart.orders_clean",
        note="create or replace ctas",
    ),
    Case(
        "CREATE OR REPLACE TABLE mart.orders_backup CLONE mart.orders",
        reads="mart.orders",
        writes="mart.orders_backup",
        note="zero copy clone reads the source",
    ),
    Case(
        """CREATE OR REPLACE VIEW mart.v_orders AS
SELECT * FROM raw.orders WHERE region IN (SELECT region FROM ref.active_regions)""",
        reads="raw.orders ref.active_regions",
        writes="mart.v_orders",
        note="create view",
    ),
    Case(
        "CREATE OR REPLACE TRANSIENT TABLE staging.orders_t AS SELECT * FROM raw.orders",
        reads="raw.orders",
        writes="staging.orders_t",
        note="transient table is permanent",
    ),
    Case(
        "ALTER TABLE mart.orders_new SWAP WITH mart.orders",
        reads="mart.orders_new mart.orders",
        writes="mart.orders_new mart.orders",
        note="swap with",
    ),
    Case("TRUNCATE TABLE IF EXISTS staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE mart.orders ADD COLUMN loaded_at TIMESTAMP_NTZ",
        writes="mart.orders",
        note="alter add column",
    ),
    Case(
        "ALTER TABLE mart.orders_tmp RENAME TO mart.orders_final",
        reads="mart.orders_tmp",
        writes="mart.orders_tmp mart.orders_final",
        note="alter rename",
    ),
    Case(
        "INSERT INTO IDENTIFIER('mart.audit') SELECT * FROM IDENTIFIER('raw.audit')",
        reads="raw.audit",
        writes="mart.audit",
        note="identifier literal as target and source",
    ),
    # --- temp tables, variables and scripts
    Case(
        """CREATE TEMPORARY TABLE tmp_ids AS SELECT id FROM raw.changes WHERE ts > %(since)s;
DELETE FROM mart.facts WHERE id IN (SELECT id FROM tmp_ids);
INSERT INTO mart.facts SELECT * FROM raw.facts WHERE id IN (SELECT id FROM tmp_ids);""",
        reads="raw.changes mart.facts raw.facts",
        writes="mart.facts",
        note="temp table script",
    ),
    Case(
        """CREATE TEMP TABLE "Stage" AS SELECT * FROM raw.orders;
INSERT INTO mart.orders SELECT * FROM stage;""",
        reads="raw.orders stage",
        writes="mart.orders",
        note="quoted mixed case temp is not the unquoted name",
    ),
    Case(
        """CREATE TEMP TABLE stage AS SELECT * FROM raw.orders;
INSERT INTO mart.orders SELECT * FROM "STAGE";""",
        reads="raw.orders",
        writes="mart.orders",
        note="quoted upper case reads the temp table",
    ),
    Case(
        """SET max_day = (SELECT MAX(day) FROM mart.daily);
INSERT INTO mart.daily SELECT day, SUM(amount) FROM raw.orders WHERE day > $max_day GROUP BY day;""",
        reads="mart.daily raw.orders",
        writes="mart.daily",
        note="set variable from subquery",
    ),
    Case(
        """USE WAREHOUSE etl_wh;
USE SCHEMA analytics.mart;
ALTER SESSION SET TIMEZONE = 'UTC';
SHOW TABLES;""",
        note="session statements read nothing",
    ),
    Case(
        """BEGIN TRANSACTION;
DELETE FROM mart.daily WHERE day = CURRENT_DATE();
INSERT INTO mart.daily SELECT CURRENT_DATE(), SUM(amount) FROM raw.orders;
COMMIT;""",
        reads="mart.daily raw.orders",
        writes="mart.daily",
        note="transaction delete insert",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM raw.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;
DROP TABLE mart.stage;""",
        reads="raw.feed",
        writes="mart.stage mart.final",
        note="script created table read later",
    ),
    Case(
        """CREATE OR REPLACE FUNCTION mart.net(amount NUMBER, tax NUMBER)
RETURNS NUMBER AS 'amount - tax'""",
        note="create function",
    ),
    Case(
        """CREATE OR REPLACE PROCEDURE mart.reload()
RETURNS VARCHAR
LANGUAGE SQL
AS
$$
BEGIN
  INSERT INTO mart.x SELECT * FROM raw.x;
  RETURN 'ok';
END
$$""",
        note="create procedure body not read",
    ),
    Case("GRANT SELECT ON TABLE mart.daily TO ROLE analyst", note="grant"),
    Case("COMMENT ON TABLE mart.daily IS 'one row per day'", note="comment on"),
    # --- COPY
    Case(
        """COPY INTO raw.orders
FROM 's3://acme-landing/orders/2024/'
STORAGE_INTEGRATION = s3_int
FILE_FORMAT = (TYPE = PARQUET)""",
        writes="raw.orders",
        read_locations="s3://acme-landing/orders/2024/",
        note="copy into table from s3",
    ),
    Case(
        """COPY INTO 's3://acme-exports/daily/'
FROM mart.daily
STORAGE_INTEGRATION = s3_int
FILE_FORMAT = (TYPE = PARQUET)""",
        reads="mart.daily",
        written_locations="s3://acme-exports/daily/",
        note="copy into location from table",
    ),
    Case(
        """COPY INTO 'gcs://acme-exports/big/'
FROM (SELECT * FROM mart.orders WHERE amount > 1000)
FILE_FORMAT = (TYPE = CSV)""",
        reads="mart.orders",
        written_locations="gcs://acme-exports/big/",
        note="copy into location from query",
    ),
    # --- refusals
    Case(
        "COPY INTO raw.orders FROM @landing/orders/ FILE_FORMAT = (TYPE = CSV)",
        refuses=True,
        note="copy from named stage",
    ),
    Case("COPY INTO @exports/daily/ FROM mart.daily", refuses=True, note="copy into stage"),
    Case("SELECT $1, $2 FROM @landing/orders.csv", refuses=True, note="select from stage"),
    Case("SELECT * FROM IDENTIFIER($src_table)", refuses=True, note="identifier session variable"),
    Case("SELECT * FROM IDENTIFIER(:src)", refuses=True, note="identifier bind"),
    Case("INSERT INTO IDENTIFIER(?) SELECT * FROM raw.orders", refuses=True, note="identifier qmark target"),
    Case("CALL mart.reload_orders('2024-01-01')", refuses=True, note="call"),
    Case(
        "EXECUTE IMMEDIATE $$ BEGIN INSERT INTO mart.x SELECT * FROM raw.x; END; $$",
        refuses=True,
        note="execute immediate",
    ),
    Case(
        """BEGIN
  INSERT INTO mart.x SELECT * FROM raw.x;
END;""",
        refuses=True,
        note="anonymous scripting block",
    ),
    Case("SELECT * FROM TABLE(RESULT_SCAN(LAST_QUERY_ID()))", refuses=True, note="result scan"),
    Case(
        "CREATE OR REPLACE STREAM raw.orders_stream ON TABLE raw.orders", refuses=True, note="opaque command"
    ),
    Case("EXECUTE TASK mart.nightly", refuses=True, note="execute task"),
    Case("SELECT * FROM {{ params.source_table }}", refuses=True, note="unrendered jinja"),
    Case("SELECT * FROM raw.orders WHERE", refuses=True, note="syntax error"),
]
