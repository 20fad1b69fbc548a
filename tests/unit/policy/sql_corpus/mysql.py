"""MySQL conformance cases: case-sensitive names, executable comments, multi-table UPDATE/DELETE."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.name FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id",
        reads="shop.orders shop.customers",
        note="join",
    ),
    Case(
        "SELECT * FROM `shop`.`Order_Items` WHERE qty > 0", reads="shop.order_items", note="backquoted name"
    ),
    Case(
        "SELECT * FROM shop.orders WHERE created_at >= %s AND status = %s",
        reads="shop.orders",
        note="format placeholders",
    ),
    Case(
        "SELECT * FROM shop.orders FORCE INDEX (ix_created) WHERE id = %(id)s",
        reads="shop.orders",
        note="index hint and pyformat placeholder",
    ),
    Case(
        "SELECT /*+ MAX_EXECUTION_TIME(5000) */ COUNT(*) FROM shop.orders",
        reads="shop.orders",
        note="optimizer hint",
    ),
    Case(
        """SELECT c.id,
       (SELECT COUNT(*) FROM shop.orders o WHERE o.customer_id = c.id) AS n
FROM shop.customers c
WHERE c.id IN (SELECT customer_id FROM shop.vip)""",
        reads="shop.customers shop.orders shop.vip",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT status, SUM(total) FROM shop.orders GROUP BY status
HAVING SUM(total) > (SELECT AVG(total) FROM shop.order_stats)""",
        reads="shop.orders shop.order_stats",
        note="having subquery",
    ),
    Case(
        "SELECT id FROM shop.orders_2023 UNION SELECT id FROM shop.orders_2024",
        reads="shop.orders_2023 shop.orders_2024",
        note="union",
    ),
    Case(
        """SELECT customer_id, total,
       ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY created_at DESC) AS rn
FROM shop.orders""",
        reads="shop.orders",
        note="window function",
    ),
    Case(
        """WITH recent AS (SELECT * FROM shop.orders WHERE created_at > NOW() - INTERVAL 7 DAY)
SELECT * FROM recent""",
        reads="shop.orders",
        note="cte",
    ),
    Case(
        """WITH Recent AS (SELECT * FROM shop.orders)
SELECT * FROM recent""",
        reads="shop.orders recent",
        note="cte names are case sensitive",
    ),
    Case(
        """WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 30)
SELECT n, (SELECT COUNT(*) FROM shop.orders WHERE DAY(created_at) = n) AS c FROM seq""",
        reads="shop.orders",
        note="recursive cte with scalar subquery",
    ),
    Case(
        "INSERT INTO shop.daily_sales (day, total) SELECT DATE(created_at), SUM(total) FROM "
        "shop.orders GROUP BY 1",
        reads="shop.orders",
        writes="shop.daily_sales",
        note="insert select",
    ),
    Case(
        """INSERT INTO shop.stock (sku, qty) VALUES (%s, %s)
ON DUPLICATE KEY UPDATE qty = qty + VALUES(qty)""",
        reads="shop.stock",
        writes="shop.stock",
        note="on duplicate key upsert",
    ),
    Case(
        """INSERT INTO shop.customer_dim (id, email)
SELECT id, email FROM staging.customers AS new
ON DUPLICATE KEY UPDATE email = new.email""",
        reads="staging.customers shop.customer_dim",
        writes="shop.customer_dim",
        note="upsert from select",
    ),
    Case(
        "INSERT IGNORE INTO shop.seen SELECT id FROM staging.events",
        reads="staging.events",
        writes="shop.seen",
        note="insert ignore",
    ),
    Case(
        "INSERT INTO shop.fx (day, rate) VALUES (CURDATE(), (SELECT MAX(rate) FROM ref.fx_rates))",
        reads="ref.fx_rates",
        writes="shop.fx",
        note="scalar subquery in values",
    ),
    Case(
        "UPDATE shop.orders o JOIN staging.status s ON s.order_id = o.id SET o.status = s.status",
        reads="shop.orders staging.status",
        writes="shop.orders",
        note="multi table update",
    ),
    Case(
        "UPDATE shop.accounts SET balance = (SELECT SUM(amount) FROM shop.ledger) WHERE id = 1",
        reads="shop.accounts shop.ledger",
        writes="shop.accounts",
        note="scalar subquery in set",
    ),
    Case(
        "DELETE o FROM shop.orders o JOIN staging.cancelled c ON c.id = o.id",
        reads="shop.orders staging.cancelled",
        writes="shop.orders",
        note="multi table delete through alias",
    ),
    Case(
        "DELETE o, i FROM shop.orders o JOIN shop.order_items i ON i.order_id = o.id WHERE o.test = 1",
        reads="shop.orders shop.order_items",
        writes="shop.orders shop.order_items",
        note="delete from two tables",
    ),
    Case(
        "CREATE TABLE shop.orders_2024 AS SELECT * FROM shop.orders WHERE YEAR(created_at) = 2024",
        reads="shop.orders",
        writes="shop.orders_2024",
        note="ctas",
    ),
    Case(
        "CREATE OR REPLACE VIEW shop.v_open AS SELECT * FROM shop.orders WHERE status = 'open'",
        reads="shop.orders",
        writes="shop.v_open",
        note="create view",
    ),
    Case(
        "CREATE TABLE shop.orders_shadow LIKE shop.orders",
        reads="shop.orders",
        writes="shop.orders_shadow",
        note="create table like reads the source",
    ),
    Case("TRUNCATE TABLE staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE shop.orders ADD INDEX ix_status (status)", writes="shop.orders", note="alter add index"
    ),
    Case(
        "ALTER TABLE shop.orders_new RENAME TO shop.orders_final",
        reads="shop.orders_new",
        writes="shop.orders_new shop.orders_final",
        note="alter rename",
    ),
    Case(
        """CREATE TEMPORARY TABLE tmp_ids SELECT id FROM staging.customers WHERE updated_at > %s;
DELETE FROM shop.customers WHERE id IN (SELECT id FROM tmp_ids);
INSERT INTO shop.customers SELECT * FROM staging.customers WHERE id IN (SELECT id FROM tmp_ids);""",
        reads="staging.customers shop.customers",
        writes="shop.customers",
        note="temporary table script",
    ),
    Case(
        """SET @since = (SELECT MAX(loaded_at) FROM shop.load_log);
INSERT INTO shop.events SELECT * FROM staging.events WHERE ts > @since;""",
        reads="shop.load_log staging.events",
        writes="shop.events",
        note="user variable from subquery",
    ),
    Case(
        """START TRANSACTION;
DELETE FROM shop.daily_sales WHERE day = CURDATE();
INSERT INTO shop.daily_sales SELECT CURDATE(), SUM(total) FROM shop.orders;
COMMIT;""",
        reads="shop.daily_sales shop.orders",
        writes="shop.daily_sales",
        note="transaction",
    ),
    Case(
        """USE shop;
SET NAMES utf8mb4;
SHOW TABLES;
DROP TABLE IF EXISTS shop.tmp_old;""",
        note="session statements",
    ),
    Case(
        "CREATE FUNCTION shop.cents(x DECIMAL(10, 2)) RETURNS INT DETERMINISTIC RETURN x * 100",
        note="create function",
    ),
    Case(
        """/*!40101 SET @OLD_CHARACTER_SET_CLIENT = @@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;
SELECT COUNT(*) FROM shop.orders;""",
        reads="shop.orders",
        note="dump header executable comments",
    ),
    Case(
        "SELECT o.* FROM shop.orders o /*!50000 JOIN shop.hidden_flags f ON f.order_id = o.id */",
        reads="shop.orders shop.hidden_flags",
        note="versioned executable comment adds a join",
    ),
    Case(
        "/*! INSERT INTO shop.audit SELECT * FROM shop.orders */",
        reads="shop.orders",
        writes="shop.audit",
        note="executable comment is a statement",
    ),
    Case("/*!50000 CALL shop.reload() */", refuses=True, note="executable comment calls a procedure"),
    Case("-- nothing\n# hash comment too\n", note="comment only"),
    Case("CALL shop.reload_orders(%s)", refuses=True, note="call"),
    Case(
        "PREPARE stmt FROM @sql; EXECUTE stmt; DEALLOCATE PREPARE stmt;",
        refuses=True,
        note="prepared dynamic sql",
    ),
    Case("REPLACE INTO shop.stock SELECT * FROM staging.stock", refuses=True, note="replace into is opaque"),
    Case("RENAME TABLE shop.orders_new TO shop.orders", refuses=True, note="rename table is opaque"),
    Case(
        "LOAD DATA INFILE '/var/lib/mysql-files/orders.csv' INTO TABLE staging.orders FIELDS "
        "TERMINATED BY ','",
        refuses=True,
        note="load data does not parse",
    ),
    Case("EXPLAIN SELECT * FROM shop.orders", refuses=True, note="explain"),
    Case("SELECT * FROM %s", refuses=True, note="placeholder table"),
    Case(
        "SELECT * FROM shop.orders WHERE day = '{{ ds }}' {{ params.limit }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case("SELECT * FROM shop.orders WHERE id IN (", refuses=True, note="syntax error"),
    Case(
        """CREATE TABLE shop.stage AS SELECT * FROM staging.feed;
INSERT INTO shop.final SELECT * FROM shop.stage;""",
        reads="staging.feed",
        writes="shop.stage shop.final",
        note="created table read later",
    ),
    Case(
        """CREATE TABLE shop.Stage AS SELECT * FROM staging.feed;
INSERT INTO shop.final SELECT * FROM shop.stage;""",
        reads="staging.feed shop.stage",
        writes="shop.stage shop.final",
        note="created name differs in case",
    ),
]
