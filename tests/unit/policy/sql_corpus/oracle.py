"""Oracle conformance cases: unquoted names fold to upper case, PL/SQL blocks refuse."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    Case(
        "SELECT o.id, c.name FROM sales.orders o JOIN crm.customers c ON c.id = o.cust_id",
        reads="sales.orders crm.customers",
        note="join",
    ),
    Case('SELECT * FROM "SALES"."Orders"', reads="sales.orders", note="quoted mixed case"),
    Case(
        "SELECT /*+ PARALLEL(o, 4) FULL(o) */ COUNT(*) FROM sales.orders o WHERE o.created_at > :since",
        reads="sales.orders",
        note="optimizer hint and bind",
    ),
    Case(
        """SELECT employee_id, manager_id, LEVEL AS lvl
FROM hr.employees
START WITH manager_id IS NULL
CONNECT BY PRIOR employee_id = manager_id""",
        reads="hr.employees",
        note="connect by hierarchy",
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
        "SELECT id FROM sales.orders_a UNION ALL SELECT id FROM sales.orders_b MINUS SELECT id FROM "
        "sales.test",
        reads="sales.orders_a sales.orders_b sales.test",
        note="union and minus",
    ),
    Case(
        """SELECT cust_id, amount,
       RANK() OVER (PARTITION BY cust_id ORDER BY amount DESC) AS rk
FROM sales.orders
FETCH FIRST 100 ROWS ONLY""",
        reads="sales.orders",
        note="window and fetch first",
    ),
    Case(
        "SELECT * FROM sales.orders AS OF TIMESTAMP SYSTIMESTAMP - INTERVAL '1' HOUR",
        reads="sales.orders",
        note="flashback query",
    ),
    Case(
        "SELECT * FROM sales.orders PARTITION (p2024)",
        reads="sales.orders",
        note="partition extension",
    ),
    Case(
        """WITH recent AS (SELECT * FROM sales.orders WHERE created_at > SYSDATE - 7)
SELECT * FROM recent""",
        reads="sales.orders",
        note="cte",
    ),
    Case(
        """WITH "RECENT" AS (SELECT * FROM sales.orders)
SELECT * FROM recent""",
        reads="sales.orders",
        note="quoted upper case cte matches unquoted",
    ),
    Case(
        """WITH "recent" AS (SELECT * FROM sales.orders)
SELECT * FROM recent""",
        reads="sales.orders recent",
        note="quoted lower case cte does not match",
    ),
    Case(
        """WITH org (id, manager_id, lvl) AS (
  SELECT id, manager_id, 1 FROM hr.employees WHERE manager_id IS NULL
  UNION ALL
  SELECT e.id, e.manager_id, o.lvl + 1 FROM hr.employees e JOIN org o ON e.manager_id = o.id
)
SELECT * FROM org""",
        reads="hr.employees",
        note="recursive subquery factoring",
    ),
    Case(
        "INSERT INTO mart.daily SELECT TRUNC(created_at), SUM(amount) FROM sales.orders GROUP BY "
        "TRUNC(created_at)",
        reads="sales.orders",
        writes="mart.daily",
        note="insert select",
    ),
    Case(
        "INSERT /*+ APPEND */ INTO mart.orders_hist SELECT * FROM sales.orders WHERE created_at < :cutoff",
        reads="sales.orders",
        writes="mart.orders_hist",
        note="direct path insert hint",
    ),
    Case(
        "INSERT INTO mart.fx (d, rate) VALUES (SYSDATE, (SELECT MAX(rate) FROM ref.fx_rates))",
        reads="ref.fx_rates",
        writes="mart.fx",
        note="scalar subquery in values",
    ),
    Case(
        """INSERT ALL
  INTO mart.big_orders (id, amount) VALUES (id, amount)
  INTO mart.order_log (id) VALUES (id)
SELECT id, amount FROM sales.orders""",
        reads="sales.orders",
        writes="mart.big_orders mart.order_log",
        note="insert all",
    ),
    Case(
        """MERGE INTO mart.customers t
USING (SELECT * FROM staging.customers) s
ON (t.id = s.id)
WHEN MATCHED THEN UPDATE SET t.email = s.email
WHEN NOT MATCHED THEN INSERT (id, email) VALUES (s.id, s.email)""",
        reads="mart.customers staging.customers",
        writes="mart.customers",
        note="merge",
    ),
    Case(
        """UPDATE mart.accounts a
SET balance = (SELECT SUM(amount) FROM ledger.entries e WHERE e.acc_id = a.id)""",
        reads="mart.accounts ledger.entries",
        writes="mart.accounts",
        note="correlated update",
    ),
    Case(
        "DELETE FROM mart.events WHERE user_id IN (SELECT user_id FROM privacy.erasures)",
        reads="mart.events privacy.erasures",
        writes="mart.events",
        note="delete with subquery",
    ),
    Case(
        "CREATE TABLE mart.orders_2024 NOLOGGING AS SELECT * FROM sales.orders WHERE created_at >= "
        "DATE '2024-01-01'",
        reads="sales.orders",
        writes="mart.orders_2024",
        note="ctas",
    ),
    Case(
        "CREATE OR REPLACE VIEW mart.v_active AS SELECT * FROM crm.customers WHERE active = 1",
        reads="crm.customers",
        writes="mart.v_active",
        note="create view",
    ),
    Case(
        "CREATE MATERIALIZED VIEW mart.mv_daily AS SELECT TRUNC(created_at) d, SUM(amount) s FROM "
        "sales.orders "
        "GROUP BY TRUNC(created_at)",
        reads="sales.orders",
        writes="mart.mv_daily",
        note="materialized view",
    ),
    Case("TRUNCATE TABLE staging.orders", writes="staging.orders", note="truncate"),
    Case(
        "ALTER TABLE mart.orders_2024 ADD (loaded_at DATE)",
        writes="mart.orders_2024",
        note="alter add",
    ),
    Case(
        "ALTER TABLE orders_new RENAME TO orders_final",
        reads="orders_new",
        writes="orders_new orders_final",
        note="rename",
    ),
    Case(
        """CREATE PRIVATE TEMPORARY TABLE ora$ptt_ids AS SELECT id FROM staging.customers;
INSERT INTO mart.changed SELECT c.* FROM crm.customers c JOIN ora$ptt_ids t ON t.id = c.id;""",
        reads="staging.customers crm.customers",
        writes="mart.changed",
        note="private temporary table",
    ),
    Case(
        """CREATE TABLE mart.stage AS SELECT * FROM staging.feed;
INSERT INTO mart.final SELECT * FROM mart.stage;""",
        reads="staging.feed",
        writes="mart.stage mart.final",
        note="created table read later",
    ),
    Case(
        """CREATE TABLE mart.Stage AS SELECT * FROM staging.feed;
INSERT INTO mart.final SELECT * FROM MART.STAGE;""",
        reads="staging.feed",
        writes="mart.stage mart.final",
        note="unquoted names fold alike",
    ),
    Case(
        """COMMENT ON TABLE mart.daily IS 'daily totals';
GRANT SELECT ON mart.daily TO reporting;
DROP TABLE mart.old_daily PURGE;""",
        note="admin statements",
    ),
    Case(
        """CREATE OR REPLACE PROCEDURE mart.reload AS
BEGIN
  INSERT INTO mart.x SELECT * FROM staging.x;
END;""",
        note="create procedure",
    ),
    Case("-- nothing today\n", note="comment only"),
    Case(
        """BEGIN
  INSERT INTO mart.x SELECT * FROM staging.x;
  COMMIT;
END;""",
        refuses=True,
        note="anonymous plsql block",
    ),
    Case(
        """DECLARE
  n NUMBER;
BEGIN
  SELECT COUNT(*) INTO n FROM staging.x;
END;""",
        refuses=True,
        note="declare block",
    ),
    Case("EXECUTE IMMEDIATE 'TRUNCATE TABLE staging.x'", refuses=True, note="execute immediate"),
    Case("CALL mart.pkg_load.run(:run_date)", refuses=True, note="call"),
    Case("EXPLAIN PLAN FOR SELECT * FROM sales.orders", refuses=True, note="explain plan"),
    Case(
        "SELECT * FROM TABLE(mart.pkg_rows.for_customer(:cust_id))",
        refuses=True,
        note="pipelined table function",
    ),
    Case("SELECT * FROM :tab", refuses=True, note="bind in table position"),
    Case("SELECT * FROM sales.orders WHERE d = '{{ ds }}' {{ x }}", refuses=True, note="unrendered jinja"),
    Case("SELECT * FROM sales.orders WHERE id IN (1, 2", refuses=True, note="syntax error"),
    Case(
        """SELECT o.id, p.total FROM sales.orders o
JOIN (SELECT order_id, SUM(amount) total FROM sales.payments GROUP BY order_id) p ON p.order_id = o.id""",
        reads="sales.orders sales.payments",
        note="derived table",
    ),
    Case(
        "SELECT * FROM sales.orders o WHERE NOT EXISTS (SELECT 1 FROM sales.refunds r WHERE "
        "r.order_id = o.id)",
        reads="sales.orders sales.refunds",
        note="not exists",
    ),
]
