"""PostgreSQL conformance cases: unquoted names fold to lower case, quoted names keep theirs."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    # --- reads: selects, joins, subqueries, set operations
    Case(
        "SELECT o.id, o.amount, c.segment FROM sales.orders o JOIN crm.customers c ON c.id = o.customer_id",
        reads="sales.orders crm.customers",
        note="join two schemas",
    ),
    Case(
        """SELECT c.id,
       (SELECT count(*) FROM sales.orders o WHERE o.customer_id = c.id) AS n_orders
FROM crm.customers c""",
        reads="crm.customers sales.orders",
        note="scalar subquery in select list",
    ),
    Case(
        """SELECT region, sum(amount) AS total
FROM sales.orders
GROUP BY region
HAVING sum(amount) > (SELECT avg(amount) * 10 FROM sales.order_stats)""",
        reads="sales.orders sales.order_stats",
        note="scalar subquery in having",
    ),
    Case(
        """SELECT * FROM sales.orders o
WHERE EXISTS (SELECT 1 FROM sales.refunds r WHERE r.order_id = o.id)
  AND o.customer_id NOT IN (SELECT id FROM crm.blocked)""",
        reads="sales.orders sales.refunds crm.blocked",
        note="exists and not in subqueries",
    ),
    Case(
        """SELECT id FROM staging.orders_2023
UNION ALL
SELECT id FROM staging.orders_2024
EXCEPT
SELECT order_id FROM staging.cancelled""",
        reads="staging.orders_2023 staging.orders_2024 staging.cancelled",
        note="union all and except",
    ),
    Case(
        "SELECT * FROM (SELECT * FROM (SELECT id, amount FROM raw.payments) p1 WHERE amount > 0) p2",
        reads="raw.payments",
        note="nested derived tables",
    ),
    Case(
        """SELECT c.id, last_o.created_at
FROM crm.customers c
CROSS JOIN LATERAL (
  SELECT created_at FROM sales.orders o WHERE o.customer_id = c.id ORDER BY created_at DESC LIMIT 1
) AS last_o""",
        reads="crm.customers sales.orders",
        note="lateral subquery",
    ),
    Case(
        """SELECT customer_id, amount,
       sum(amount) OVER (PARTITION BY customer_id ORDER BY created_at) AS running,
       row_number() OVER w AS rn
FROM sales.orders
WINDOW w AS (PARTITION BY customer_id ORDER BY created_at DESC)""",
        reads="sales.orders",
        note="window functions and named window",
    ),
    Case(
        'SELECT * FROM "Warehouse"."Raw"."Purchases" AS p WHERE p."Amount" > 0',
        reads="warehouse.raw.purchases",
        note="quoted mixed case names are lower cased",
    ),
    Case(
        "SELECT d::date AS day FROM generate_series('2024-01-01'::date, '2024-01-31', interval '1 day') d",
        note="generate series reads nothing",
    ),
    Case(
        "SELECT o.id, t.tag FROM sales.orders o, unnest(o.tags) AS t(tag)",
        reads="sales.orders",
        note="unnest of a column",
    ),
    Case(
        "SELECT e.key, e.value FROM raw.events ev, json_each(ev.payload) AS e",
        reads="raw.events",
        note="json each",
    ),
    Case(
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, code) JOIN ref.codes c ON c.code = v.code",
        reads="ref.codes",
        note="values list joined to a table",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE created_at >= %s AND status = %(status)s",
        reads="sales.orders",
        note="psycopg placeholders",
    ),
    Case(
        "SELECT * FROM sales.orders WHERE id = $1 AND customer_id = ANY($2)",
        reads="sales.orders",
        note="dollar placeholders",
    ),
    Case(
        "/*+ SeqScan(o) */ SELECT count(*) FROM sales.orders o -- nightly count\n",
        reads="sales.orders",
        note="hint comment and line comment",
    ),
    # --- CTEs
    Case(
        """WITH recent AS (
  SELECT * FROM sales.orders WHERE created_at > now() - interval '7 days'
), totals AS (
  SELECT customer_id, sum(amount) AS amt FROM recent GROUP BY customer_id
)
SELECT t.*, c.email FROM totals t JOIN crm.customers c ON c.id = t.customer_id""",
        reads="sales.orders crm.customers",
        note="chained ctes",
    ),
    Case(
        """WITH RECURSIVE tree AS (
  SELECT id, parent_id, 1 AS depth FROM ref.categories WHERE parent_id IS NULL
  UNION ALL
  SELECT c.id, c.parent_id, t.depth + 1 FROM ref.categories c JOIN tree t ON c.parent_id = t.id
)
SELECT * FROM tree""",
        reads="ref.categories",
        note="recursive cte",
    ),
    Case(
        """WITH "Purchases" AS (SELECT * FROM raw.purchases_v2)
SELECT * FROM purchases""",
        reads="raw.purchases_v2 purchases",
        note="cte quoted name does not hide unquoted table",
    ),
    Case(
        """WITH purchases AS (SELECT * FROM raw.purchases_v2)
SELECT * FROM "PURCHASES" UNION ALL SELECT * FROM purchases""",
        reads="raw.purchases_v2 purchases",
        note="quoted upper case name is a table not the cte",
    ),
    Case(
        """WITH "orders" AS (SELECT * FROM staging.orders)
SELECT * FROM orders""",
        reads="staging.orders",
        note="quoted lower case cte matches unquoted name",
    ),
    Case(
        """WITH orders AS (SELECT * FROM staging.orders)
SELECT * FROM sales.orders WHERE id IN (SELECT id FROM orders)""",
        reads="staging.orders sales.orders",
        note="qualified name is never a cte",
    ),
    Case(
        """SELECT * FROM (
  WITH x AS (SELECT id FROM raw.a) SELECT * FROM x
) inner_q
JOIN x ON x.id = inner_q.id""",
        reads="raw.a x",
        note="cte scoped to its subquery",
    ),
    Case(
        """WITH moved AS (
  DELETE FROM staging.inbox WHERE processed RETURNING *
)
INSERT INTO archive.inbox SELECT * FROM moved""",
        reads="staging.inbox",
        writes="staging.inbox archive.inbox",
        note="data modifying cte",
    ),
    # --- writes
    Case(
        """INSERT INTO mart.daily_sales (day, total)
SELECT created_at::date, sum(amount) FROM sales.orders GROUP BY 1""",
        reads="sales.orders",
        writes="mart.daily_sales",
        note="insert select",
    ),
    Case(
        "INSERT INTO audit.load_log (run_id, loaded_at, n) VALUES (%(run_id)s, now(), %(n)s)",
        writes="audit.load_log",
        note="insert values with placeholders",
    ),
    Case(
        """INSERT INTO mart.fx (day, rate)
VALUES (current_date, (SELECT rate FROM ref.fx_rates WHERE ccy = 'EUR' ORDER BY day DESC LIMIT 1))""",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        """INSERT INTO mart.customer_dim (id, email, updated_at)
SELECT id, email, updated_at FROM staging.customers
ON CONFLICT (id) DO UPDATE SET email = EXCLUDED.email, updated_at = EXCLUDED.updated_at""",
        reads="staging.customers mart.customer_dim",
        writes="mart.customer_dim",
        note="upsert on conflict do update",
    ),
    Case(
        "INSERT INTO ref.seen (key) VALUES ($1) ON CONFLICT DO NOTHING",
        reads="ref.seen",
        writes="ref.seen",
        note="upsert on conflict do nothing",
    ),
    Case(
        """UPDATE mart.customer_dim d
SET segment = s.segment
FROM staging.segments s
WHERE s.customer_id = d.id""",
        reads="mart.customer_dim staging.segments",
        writes="mart.customer_dim",
        note="update from",
    ),
    Case(
        "UPDATE sales.orders SET status = 'stale' WHERE created_at < (SELECT min(day) FROM ref.open_periods)",
        reads="sales.orders ref.open_periods",
        writes="sales.orders",
        note="update with subquery in where",
    ),
    Case(
        """UPDATE mart.accounts a
SET balance = (SELECT sum(amount) FROM ledger.entries e WHERE e.account_id = a.id)""",
        reads="mart.accounts ledger.entries",
        writes="mart.accounts",
        note="scalar subquery in set",
    ),
    Case(
        "DELETE FROM staging.events e USING ref.bots b WHERE e.user_agent = b.user_agent",
        reads="staging.events ref.bots",
        writes="staging.events",
        note="delete using",
    ),
    Case(
        """MERGE INTO mart.inventory t
USING (SELECT sku, sum(qty) AS qty FROM staging.movements GROUP BY sku) s
ON t.sku = s.sku
WHEN MATCHED THEN UPDATE SET qty = t.qty + s.qty
WHEN NOT MATCHED THEN INSERT (sku, qty) VALUES (s.sku, s.qty)""",
        reads="mart.inventory staging.movements",
        writes="mart.inventory",
        note="merge from aggregated subquery",
    ),
    Case(
        "CREATE TABLE mart.big_orders AS SELECT * FROM sales.orders WHERE amount > 1000",
        reads="sales.orders",
        writes="mart.big_orders",
        note="ctas",
    ),
    Case(
        """CREATE OR REPLACE VIEW mart.v_active AS
SELECT c.* FROM crm.customers c WHERE c.id IN (SELECT customer_id FROM sales.orders)""",
        reads="crm.customers sales.orders",
        writes="mart.v_active",
        note="create view with subquery",
    ),
    Case(
        "CREATE MATERIALIZED VIEW mart.mv_revenue AS SELECT day, sum(amount) FROM mart.daily_sales "
        "GROUP BY day",
        reads="mart.daily_sales",
        writes="mart.mv_revenue",
        note="create materialized view",
    ),
    Case(
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mart.mv_revenue",
        writes="mart.mv_revenue",
        note="refresh materialized view",
    ),
    Case(
        "SELECT id, amount INTO mart.orders_snapshot FROM sales.orders",
        reads="sales.orders",
        writes="mart.orders_snapshot",
        note="select into table",
    ),
    Case(
        "TRUNCATE staging.orders, staging.customers RESTART IDENTITY",
        writes="staging.orders staging.customers",
        note="truncate two tables",
    ),
    Case(
        "ALTER TABLE mart.customer_dim ADD COLUMN churn_score numeric DEFAULT 0",
        writes="mart.customer_dim",
        note="alter add column",
    ),
    Case(
        "ALTER TABLE orders_new RENAME TO orders",
        reads="orders_new",
        writes="orders_new orders",
        note="alter rename",
    ),
    # --- temporary tables and scripts
    Case(
        """CREATE TEMP TABLE tmp_ids AS SELECT id FROM staging.customers WHERE updated_at > %s;
DELETE FROM mart.customer_dim WHERE id IN (SELECT id FROM tmp_ids);
INSERT INTO mart.customer_dim SELECT * FROM staging.customers WHERE id IN (SELECT id FROM tmp_ids);""",
        reads="staging.customers mart.customer_dim",
        writes="mart.customer_dim",
        note="temp table delete insert script",
    ),
    Case(
        """SELECT * INTO TEMP tmp_orders FROM sales.orders WHERE status = 'new';
UPDATE tmp_orders SET status = 'queued';
INSERT INTO ops.queue SELECT id, status FROM tmp_orders;""",
        reads="sales.orders",
        writes="ops.queue",
        note="select into temp then update it",
    ),
    Case(
        """BEGIN;
CREATE TABLE mart.orders_v2 (LIKE sales.orders INCLUDING ALL);
INSERT INTO mart.orders_v2 SELECT * FROM sales.orders;
ANALYZE mart.orders_v2;
COMMIT;""",
        reads="sales.orders",
        writes="mart.orders_v2",
        note="transaction with like and analyze",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM raw.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="raw.feed",
        writes="mart.stage mart.final",
        note="table created earlier is not an external read",
    ),
    Case(
        """CREATE TABLE IF NOT EXISTS mart.stage (id int, v text);
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="mart.stage",
        writes="mart.stage mart.final",
        note="if not exists table may hold old data",
    ),
    Case(
        """CREATE TABLE mart.scratch AS SELECT * FROM raw.feed;
DROP TABLE mart.scratch;
SELECT * FROM mart.scratch;""",
        reads="raw.feed mart.scratch",
        writes="mart.scratch",
        note="drop ends script ownership",
    ),
    Case(
        """-- load job
SET statement_timeout = 0;
GRANT SELECT ON mart.daily_sales TO analyst;
COMMENT ON TABLE mart.daily_sales IS 'daily totals';
DROP TABLE IF EXISTS mart.old_sales;""",
        note="admin statements read nothing",
    ),
    Case("-- nothing to do today\n/* the upstream check skipped this run */\n", note="comment only sql"),
    Case(
        "CREATE FUNCTION mart.order_count(cid int) RETURNS bigint LANGUAGE sql AS $$ "
        "SELECT count(*) FROM sales.orders WHERE customer_id = cid $$",
        note="create sql function reads nothing",
    ),
    Case(
        """CREATE OR REPLACE FUNCTION audit.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit.changes VALUES (TG_TABLE_NAME, now());
  RETURN NEW;
END
$$""",
        note="create plpgsql function body is not read",
    ),
    Case(
        "CREATE PROCEDURE ops.reload() LANGUAGE sql AS $$ INSERT INTO mart.x SELECT * FROM raw.x $$",
        note="create procedure reads nothing",
    ),
    # --- COPY and files
    Case(
        "COPY staging.orders (id, amount, created_at) FROM '/data/exports/orders.csv' WITH (FORMAT "
        "csv, HEADER)",
        writes="staging.orders",
        read_locations="file:///data/exports/orders.csv",
        note="copy from absolute path",
    ),
    Case(
        "COPY staging.orders FROM STDIN WITH (FORMAT csv)",
        writes="staging.orders",
        note="copy from stdin",
    ),
    Case(
        "COPY (SELECT * FROM mart.daily_sales WHERE day = current_date - 1) TO STDOUT WITH CSV HEADER",
        reads="mart.daily_sales",
        note="copy query to stdout",
    ),
    Case(
        "COPY mart.daily_sales TO '/exports/daily_sales.csv' WITH (FORMAT csv)",
        reads="mart.daily_sales",
        written_locations="file:///exports/daily_sales.csv",
        note="copy table to absolute path",
    ),
    Case(
        "COPY staging.orders FROM 'orders.csv' WITH (FORMAT csv)",
        refuses=True,
        note="copy from relative path refuses",
    ),
    Case(
        "COPY mart.daily_sales TO PROGRAM 'gzip > /exports/daily.csv.gz'",
        refuses=True,
        note="copy to program refuses",
    ),
    # --- refusals
    Case("SELECT * FROM %s WHERE id = %s", refuses=True, note="placeholder in table position"),
    Case(
        "SELECT * FROM sales.orders WHERE day = '{{ ds }}' AND x = {{ params.x }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case("SELEC * FROM sales.orders", refuses=True, note="syntax error"),
    Case("CALL ops.reload_customers(42)", refuses=True, note="call procedure"),
    Case(
        "DO $$ BEGIN INSERT INTO mart.x SELECT * FROM raw.x; END $$",
        refuses=True,
        note="do block",
    ),
    Case("EXPLAIN ANALYZE SELECT * FROM sales.orders", refuses=True, note="explain analyze"),
    Case(
        "SELECT * FROM dblink('dbname=legacy', 'SELECT id FROM orders') AS t(id int)",
        refuses=True,
        note="dblink runs sql text",
    ),
    Case("SELECT pg_read_file('/etc/app/secrets.json')", refuses=True, note="pg read file"),
    Case(
        "SELECT query_to_xml('SELECT * FROM sales.orders', true, false, '')",
        refuses=True,
        note="query to xml runs sql text",
    ),
    Case("SELECT lo_import('/data/blob.bin')", refuses=True, note="lo import reads a file"),
    Case(
        "SELECT * FROM sales.orders o, LATERAL mart.expand_order(o.id) x",
        refuses=True,
        note="unknown table function",
    ),
    Case(
        "PREPARE q AS SELECT * FROM sales.orders WHERE id = $1; EXECUTE q(1);",
        refuses=True,
        note="prepare and execute",
    ),
]
