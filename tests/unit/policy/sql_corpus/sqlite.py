"""SQLite conformance cases: upserts, json_each, temp tables and driver placeholders."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id",
        reads="orders customers",
        note="join",
    ),
    Case("SELECT * FROM main.orders WHERE id = ?", reads="main.orders", note="qmark placeholder"),
    Case(
        "SELECT * FROM orders WHERE created_at > :since AND status = :status",
        reads="orders",
        note="named placeholders",
    ),
    Case("SELECT * FROM orders WHERE id = @id", reads="orders", note="at placeholder"),
    Case('SELECT * FROM "Orders"', reads="orders", note="quoted name"),
    Case(
        "SELECT e.id, j.value FROM events e, json_each(e.payload, '$.items') j",
        reads="events",
        note="json each",
    ),
    Case(
        """SELECT c.id, (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id) AS n
FROM customers c WHERE c.id IN (SELECT customer_id FROM vip)""",
        reads="customers orders vip",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT status, SUM(total) FROM orders GROUP BY status
HAVING SUM(total) > (SELECT AVG(total) FROM order_stats)""",
        reads="orders order_stats",
        note="having subquery",
    ),
    Case(
        "SELECT id FROM orders_2023 UNION SELECT id FROM orders_2024 EXCEPT SELECT id FROM test_orders",
        reads="orders_2023 orders_2024 test_orders",
        note="set operations",
    ),
    Case(
        """SELECT customer_id, total,
       SUM(total) OVER (PARTITION BY customer_id ORDER BY created_at) AS running
FROM orders""",
        reads="orders",
        note="window function",
    ),
    Case(
        """WITH recent AS (SELECT * FROM orders WHERE created_at > date('now', '-7 days'))
SELECT * FROM RECENT""",
        reads="orders",
        note="cte case insensitive",
    ),
    Case(
        """WITH RECURSIVE days(d) AS (
  SELECT date('2024-01-01') UNION ALL SELECT date(d, '+1 day') FROM days WHERE d < '2024-01-31'
)
SELECT d, (SELECT COUNT(*) FROM orders WHERE date(created_at) = d) FROM days""",
        reads="orders",
        note="recursive cte calendar",
    ),
    Case(
        """WITH orders AS (SELECT * FROM staging_orders)
SELECT * FROM orders o JOIN main.orders m USING (id)""",
        reads="staging_orders main.orders",
        note="qualified table beside cte",
    ),
    Case("SELECT value FROM generate_series(1, 10)", note="generate series"),
    Case(
        "INSERT INTO daily_sales (day, total) SELECT date(created_at), SUM(total) FROM orders GROUP BY 1",
        reads="orders",
        writes="daily_sales",
        note="insert select",
    ),
    Case(
        "INSERT INTO load_log (run_id, loaded_at) VALUES (?, datetime('now'))",
        writes="load_log",
        note="insert values",
    ),
    Case(
        "INSERT INTO fx (day, rate) VALUES (date('now'), (SELECT MAX(rate) FROM fx_rates))",
        reads="fx_rates",
        writes="fx",
        note="scalar subquery in values",
    ),
    Case(
        """INSERT INTO stock (sku, qty) VALUES (:sku, :qty)
ON CONFLICT(sku) DO UPDATE SET qty = qty + excluded.qty""",
        reads="stock",
        writes="stock",
        note="upsert",
    ),
    Case(
        "INSERT OR IGNORE INTO seen (key) SELECT key FROM staging_events",
        reads="staging_events",
        writes="seen",
        note="insert or ignore",
    ),
    Case(
        "UPDATE customers SET segment = s.segment FROM segments s WHERE customers.id = s.customer_id",
        reads="customers segments",
        writes="customers",
        note="update from",
    ),
    Case(
        "UPDATE accounts SET balance = (SELECT SUM(amount) FROM ledger WHERE ledger.account_id = "
        "accounts.id)",
        reads="accounts ledger",
        writes="accounts",
        note="scalar subquery in set",
    ),
    Case(
        "DELETE FROM events WHERE user_id IN (SELECT user_id FROM erasures) RETURNING id",
        reads="events erasures",
        writes="events",
        note="delete returning",
    ),
    Case(
        "CREATE TABLE orders_2024 AS SELECT * FROM orders WHERE created_at >= '2024-01-01'",
        reads="orders",
        writes="orders_2024",
        note="ctas",
    ),
    Case(
        "CREATE VIEW IF NOT EXISTS v_open AS SELECT * FROM orders WHERE status = 'open'",
        reads="orders",
        writes="v_open",
        note="create view if not exists",
    ),
    Case("DELETE FROM staging_orders", reads="staging_orders", writes="staging_orders", note="delete all"),
    Case("ALTER TABLE orders ADD COLUMN loaded_at TEXT", writes="orders", note="alter add column"),
    Case(
        "ALTER TABLE orders_new RENAME TO orders_live",
        reads="orders_new",
        writes="orders_new orders_live",
        note="rename",
    ),
    Case(
        """CREATE TEMP TABLE changed AS SELECT id FROM staging_customers;
DELETE FROM customers WHERE id IN (SELECT id FROM changed);
INSERT INTO customers SELECT * FROM staging_customers WHERE id IN (SELECT id FROM changed);""",
        reads="staging_customers customers",
        writes="customers",
        note="temp table script",
    ),
    Case(
        """CREATE TEMP VIEW recent AS SELECT * FROM orders WHERE created_at > date('now', '-1 day');
INSERT INTO recent_orders SELECT * FROM recent;""",
        reads="orders",
        writes="recent_orders",
        note="temp view",
    ),
    Case(
        """CREATE TABLE stage AS SELECT * FROM raw_feed;
INSERT INTO final SELECT * FROM Stage;
DROP TABLE stage;
SELECT COUNT(*) FROM stage;""",
        reads="raw_feed stage",
        writes="stage final",
        note="created table then dropped",
    ),
    Case(
        """BEGIN TRANSACTION;
DELETE FROM daily_sales WHERE day = date('now');
INSERT INTO daily_sales SELECT date('now'), SUM(total) FROM orders;
COMMIT;""",
        reads="daily_sales orders",
        writes="daily_sales",
        note="transaction",
    ),
    Case("DROP TABLE IF EXISTS old_sales; DROP VIEW IF EXISTS v_old;", note="drops"),
    Case("-- nothing\n/* at all */", note="comment only"),
    Case(
        "CREATE TABLE IF NOT EXISTS targets (region TEXT, target REAL)",
        writes="targets",
        note="create table if not exists",
    ),
    Case(
        """SELECT o.id, p.total FROM orders o
LEFT JOIN (SELECT order_id, SUM(amount) AS total FROM payments GROUP BY order_id) p ON p.order_id = o.id""",
        reads="orders payments",
        note="derived table",
    ),
    Case("EXPLAIN QUERY PLAN SELECT * FROM orders", refuses=True, note="explain query plan"),
    Case("REPLACE INTO stock SELECT * FROM staging_stock", refuses=True, note="replace into is opaque"),
    Case(
        """CREATE TRIGGER orders_audit AFTER INSERT ON orders
BEGIN
  INSERT INTO audit (order_id) VALUES (new.id);
END""",
        refuses=True,
        note="create trigger is opaque",
    ),
    Case("SELECT * FROM pragma_table_info('orders')", refuses=True, note="unknown table function"),
    Case("SELECT * FROM ?", refuses=True, note="placeholder table"),
    Case("SELECT * FROM :table_name", refuses=True, note="named placeholder table"),
    Case("SELECT * FROM orders WHERE day = '{{ ds }}' {{ x }}", refuses=True, note="unrendered jinja"),
    Case("SELECT * FROM orders WHERE id = (", refuses=True, note="syntax error"),
]
