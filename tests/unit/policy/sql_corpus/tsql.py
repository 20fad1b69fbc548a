"""T-SQL (SQL Server, Azure SQL) conformance cases: names are case-insensitive, ``#t`` is temporary."""

from __future__ import annotations

from tests.unit.policy.sql_corpus import Case

CASES: list[Case] = [
    # --- reads
    Case(
        "SELECT TOP 100 o.OrderID, c.Name FROM [Sales].[dbo].[Orders] o JOIN dbo.Customers c ON c.ID "
        "= o.CustID",
        reads="sales.dbo.orders dbo.customers",
        note="bracketed names and top",
    ),
    Case(
        "SELECT * FROM LinkedSrv.Warehouse.dbo.Facts WHERE LoadDate = @load_date",
        reads="linkedsrv.warehouse.dbo.facts",
        note="four part name with parameter",
    ),
    Case(
        "SELECT o.* FROM dbo.Orders o WITH (NOLOCK) WHERE o.Status = ?",
        reads="dbo.orders",
        note="table hint nolock",
    ),
    Case(
        """SELECT c.ID,
       (SELECT COUNT(*) FROM dbo.Orders o WHERE o.CustID = c.ID) AS NOrders
FROM dbo.Customers c
WHERE c.Region IN (SELECT Region FROM ref.ActiveRegions)""",
        reads="dbo.customers dbo.orders ref.activeregions",
        note="scalar and in subqueries",
    ),
    Case(
        """SELECT c.ID, x.LastOrder
FROM dbo.Customers c
CROSS APPLY (SELECT MAX(OrderDate) AS LastOrder FROM dbo.Orders o WHERE o.CustID = c.ID) x""",
        reads="dbo.customers dbo.orders",
        note="cross apply subquery",
    ),
    Case(
        """SELECT c.ID, x.Amount
FROM dbo.Customers c
OUTER APPLY (SELECT TOP 1 Amount FROM dbo.Payments p WHERE p.CustID = c.ID ORDER BY PaidAt DESC) x""",
        reads="dbo.customers dbo.payments",
        note="outer apply",
    ),
    Case(
        """SELECT Region, SUM(Amount) AS Total FROM dbo.Orders GROUP BY Region
HAVING SUM(Amount) > (SELECT AVG(Total) FROM rpt.RegionTotals)""",
        reads="dbo.orders rpt.regiontotals",
        note="having subquery",
    ),
    Case(
        """SELECT ID FROM stg.Orders2023
UNION ALL
SELECT ID FROM stg.Orders2024
INTERSECT
SELECT OrderID FROM stg.Shipped""",
        reads="stg.orders2023 stg.orders2024 stg.shipped",
        note="union and intersect",
    ),
    Case(
        """SELECT CustID, Amount,
       ROW_NUMBER() OVER (PARTITION BY CustID ORDER BY OrderDate DESC) AS rn,
       SUM(Amount) OVER (PARTITION BY CustID) AS total
FROM dbo.Orders""",
        reads="dbo.orders",
        note="window functions",
    ),
    Case(
        "SELECT * FROM dbo.Orders WHERE OrderDate >= %s AND Status = %(status)s",
        reads="dbo.orders",
        note="pymssql placeholders",
    ),
    Case(
        "SELECT * FROM (VALUES (1, 'EU'), (2, 'US')) AS v(ID, Region) JOIN ref.Regions r ON r.Code = "
        "v.Region",
        reads="ref.regions",
        note="values table constructor",
    ),
    # --- CTEs (case-insensitive)
    Case(
        """WITH Recent AS (SELECT * FROM dbo.Orders WHERE OrderDate > DATEADD(day, -7, GETDATE()))
SELECT * FROM RECENT r JOIN dbo.Customers c ON c.ID = r.CustID""",
        reads="dbo.orders dbo.customers",
        note="cte name is case insensitive",
    ),
    Case(
        """WITH [Orders] AS (SELECT * FROM stg.Orders)
SELECT * FROM orders""",
        reads="stg.orders",
        note="bracketed cte matches unquoted reference",
    ),
    Case(
        """WITH Org AS (
  SELECT ID, ManagerID, 0 AS Lvl FROM hr.Employees WHERE ManagerID IS NULL
  UNION ALL
  SELECT e.ID, e.ManagerID, o.Lvl + 1 FROM hr.Employees e JOIN Org o ON e.ManagerID = o.ID
)
SELECT * FROM Org OPTION (MAXRECURSION 100)""",
        reads="hr.employees",
        note="recursive cte without keyword",
    ),
    Case(
        """WITH Dups AS (
  SELECT ID, ROW_NUMBER() OVER (PARTITION BY Email ORDER BY ID) AS rn FROM dbo.Contacts
)
DELETE FROM Dups WHERE rn > 1""",
        reads="dbo.contacts",
        writes="dbo.contacts",
        note="delete through updatable cte writes its table",
    ),
    # --- writes
    Case(
        """INSERT INTO rpt.DailySales (Day, Total)
SELECT CAST(OrderDate AS date), SUM(Amount) FROM dbo.Orders GROUP BY CAST(OrderDate AS date)""",
        reads="dbo.orders",
        writes="rpt.dailysales",
        note="insert select",
    ),
    Case(
        "INSERT INTO audit.LoadLog (RunID, LoadedAt) VALUES (@run_id, SYSUTCDATETIME())",
        writes="audit.loadlog",
        note="insert values with parameter",
    ),
    Case(
        "INSERT INTO rpt.Fx (Day, Rate) VALUES (GETDATE(), (SELECT MAX(Rate) FROM ref.FxRates))",
        reads="ref.fxrates",
        writes="rpt.fx",
        note="scalar subquery in values",
    ),
    Case(
        """UPDATE a
SET a.Segment = b.Segment
FROM dbo.Customers a
JOIN stg.Segments b ON b.CustID = a.ID""",
        reads="dbo.customers stg.segments",
        writes="dbo.customers",
        note="update through alias",
    ),
    Case(
        """UPDATE t SET t.Status = 'late'
FROM dbo.Orders AS t
WHERE t.DueDate < (SELECT MIN(Day) FROM ref.OpenPeriods)""",
        reads="dbo.orders ref.openperiods",
        writes="dbo.orders",
        note="update alias with subquery",
    ),
    Case(
        "UPDATE dbo.Accounts SET Balance = (SELECT SUM(Amount) FROM ledger.Entries e WHERE e.AccID = "
        "Accounts.ID)",
        reads="dbo.accounts ledger.entries",
        writes="dbo.accounts",
        note="scalar subquery in set",
    ),
    Case(
        "DELETE a FROM dbo.Events AS a JOIN ref.Bots AS b ON a.Agent = b.Agent",
        reads="dbo.events ref.bots",
        writes="dbo.events",
        note="delete through alias",
    ),
    Case(
        "DELETE FROM stg.Orders WHERE ID IN (SELECT OrderID FROM stg.Cancelled)",
        reads="stg.orders stg.cancelled",
        writes="stg.orders",
        note="delete with subquery",
    ),
    Case(
        """MERGE dbo.Inventory AS tgt
USING (SELECT Sku, SUM(Qty) AS Qty FROM stg.Movements GROUP BY Sku) AS src
ON tgt.Sku = src.Sku
WHEN MATCHED THEN UPDATE SET tgt.Qty = tgt.Qty + src.Qty
WHEN NOT MATCHED BY TARGET THEN INSERT (Sku, Qty) VALUES (src.Sku, src.Qty)
WHEN NOT MATCHED BY SOURCE THEN DELETE;""",
        reads="dbo.inventory stg.movements",
        writes="dbo.inventory",
        note="merge with by source",
    ),
    Case(
        "SELECT ID, Amount INTO rpt.OrdersSnapshot FROM dbo.Orders WHERE Amount > 0",
        reads="dbo.orders",
        writes="rpt.orderssnapshot",
        note="select into permanent table",
    ),
    Case(
        "CREATE TABLE rpt.Targets (Region NVARCHAR(10), Target DECIMAL(18, 2))",
        writes="rpt.targets",
        note="create table",
    ),
    Case(
        """CREATE VIEW rpt.vActive AS
SELECT c.* FROM dbo.Customers c WHERE EXISTS (SELECT 1 FROM dbo.Orders o WHERE o.CustID = c.ID)""",
        reads="dbo.customers dbo.orders",
        writes="rpt.vactive",
        note="create view",
    ),
    Case("TRUNCATE TABLE stg.Orders", writes="stg.orders", note="truncate"),
    Case("ALTER TABLE rpt.Targets ADD Owner NVARCHAR(50) NULL", writes="rpt.targets", note="alter add"),
    # --- temp tables and scripts
    Case(
        """SELECT ID INTO #changed FROM stg.Customers WHERE UpdatedAt > @since;
DELETE FROM dbo.Customers WHERE ID IN (SELECT ID FROM #changed);
INSERT INTO dbo.Customers SELECT * FROM stg.Customers WHERE ID IN (SELECT ID FROM #changed);
DROP TABLE #changed;""",
        reads="stg.customers dbo.customers",
        writes="dbo.customers",
        note="temp table via select into",
    ),
    Case(
        """CREATE TABLE #stage (ID INT, Amount MONEY);
INSERT INTO #stage SELECT ID, Amount FROM stg.Payments;
UPDATE #stage SET Amount = 0 WHERE Amount < 0;
INSERT INTO dbo.Payments SELECT * FROM #stage;""",
        reads="stg.payments",
        writes="dbo.payments",
        note="create hash temp table",
    ),
    Case(
        """BEGIN TRANSACTION;
DELETE FROM rpt.DailySales WHERE Day = CAST(GETDATE() AS date);
INSERT INTO rpt.DailySales SELECT CAST(GETDATE() AS date), SUM(Amount) FROM dbo.Orders;
COMMIT TRANSACTION;""",
        reads="rpt.dailysales dbo.orders",
        writes="rpt.dailysales",
        note="transaction",
    ),
    Case(
        """SET NOCOUNT ON;
USE SalesDW;
SELECT COUNT(*) FROM dbo.Orders;""",
        reads="dbo.orders",
        note="set nocount and use",
    ),
    Case(
        """DECLARE @maxday DATE = (SELECT MAX(Day) FROM rpt.DailySales);
INSERT INTO rpt.DailySales SELECT OrderDate, SUM(Amount) FROM dbo.Orders WHERE OrderDate > @maxday
GROUP BY OrderDate;""",
        reads="rpt.dailysales dbo.orders",
        writes="rpt.dailysales",
        note="declare with subquery default",
    ),
    Case(
        """DECLARE @n INT;
SET @n = (SELECT COUNT(*) FROM stg.Orders);
SELECT @n AS n;""",
        reads="stg.orders",
        note="set variable from subquery",
    ),
    Case(
        """IF EXISTS (SELECT 1 FROM stg.Orders WHERE Amount < 0)
BEGIN
  INSERT INTO audit.Rejects SELECT * FROM stg.Orders WHERE Amount < 0
END""",
        reads="stg.orders",
        writes="audit.rejects",
        note="if block parsed into statements",
    ),
    Case(
        """CREATE PROCEDURE dbo.ReloadOrders AS
BEGIN
  SET NOCOUNT ON;
  INSERT INTO dbo.Orders SELECT * FROM stg.Orders;
END""",
        note="create procedure",
    ),
    Case("-- scheduled by airflow\n/* nothing left to run */", note="comment only"),
    Case(
        "SELECT * FROM dbo.Orders o INNER HASH JOIN dbo.Customers c ON c.ID = o.CustID OPTION (RECOMPILE)",
        reads="dbo.orders dbo.customers",
        note="join hint and option",
    ),
    Case(
        "GRANT SELECT ON rpt.DailySales TO reporting; DROP TABLE IF EXISTS rpt.Old;",
        note="grant and drop",
    ),
    Case(
        """CREATE TABLE rpt.Stage (ID INT);
INSERT INTO rpt.Stage SELECT ID FROM dbo.Orders;
SELECT * FROM RPT.STAGE;""",
        reads="dbo.orders",
        writes="rpt.stage",
        note="created table read later in other case",
    ),
    Case(
        "SELECT * FROM OPENROWSET(BULK 'https://acme.blob.core.windows.net/landing/orders.parquet', "
        "FORMAT = 'PARQUET') AS rows",
        refuses=True,
        note="openrowset bulk (sqlglot cannot parse it)",
    ),
    # --- refusals
    Case("EXEC dbo.ReloadOrders @day = '2024-01-01'", refuses=True, note="exec procedure"),
    Case("EXECUTE sp_executesql N'SELECT * FROM dbo.Orders'", refuses=True, note="sp executesql"),
    Case(
        "SELECT * FROM OPENQUERY(LegacySrv, 'SELECT * FROM orders')",
        refuses=True,
        note="openquery",
    ),
    Case("SELECT * FROM @orders_tvp", refuses=True, note="table variable in table position"),
    Case("SELECT * FROM ?", refuses=True, note="placeholder in table position"),
    Case(
        """BEGIN TRY
  INSERT INTO dbo.Orders SELECT * FROM stg.Orders
END TRY
BEGIN CATCH
  THROW;
END CATCH""",
        refuses=True,
        note="try catch is opaque",
    ),
    Case(
        """WHILE EXISTS (SELECT 1 FROM stg.Queue)
BEGIN
  DELETE FROM stg.Queue WHERE ID = (SELECT MIN(ID) FROM stg.Queue)
END""",
        refuses=True,
        note="while block does not parse",
    ),
    Case("INSERT INTO dbo.Orders EXEC stg.GetOrders", refuses=True, note="insert exec"),
    Case(
        "BULK INSERT stg.Orders FROM '/data/orders.csv' WITH (FIELDTERMINATOR = ',')",
        refuses=True,
        note="bulk insert does not parse",
    ),
    Case(
        "SELECT * FROM dbo.Orders WHERE Day = '{{ ds }}' AND {{ params.filter }}",
        refuses=True,
        note="unrendered jinja",
    ),
    Case("SELECT * FORM dbo.Orders", refuses=True, note="syntax error"),
    Case(
        "SELECT * FROM dbo.Orders o CROSS APPLY dbo.fnSplitTags(o.Tags) t",
        refuses=True,
        note="unknown table valued function",
    ),
    Case(
        "SELECT Name FROM sys.tables WHERE Name LIKE 'stg%'",
        reads="sys.tables",
        note="catalog view read",
    ),
    Case(
        """SELECT ID INTO #a FROM stg.A;
SELECT ID INTO #b FROM #a WHERE ID > 10;
INSERT INTO dbo.Result SELECT b.ID FROM #b b JOIN dbo.Lookup l ON l.ID = b.ID;""",
        reads="stg.a dbo.lookup",
        writes="dbo.result",
        note="chained temp tables",
    ),
    Case(
        """UPDATE o SET o.CustName = c.Name
FROM dbo.Orders o
JOIN dbo.Customers c ON c.ID = o.CustID
WHERE o.ID IN (SELECT OrderID FROM stg.Changed)""",
        reads="dbo.orders dbo.customers stg.changed",
        writes="dbo.orders",
        note="update alias join and subquery",
    ),
    Case(
        "DELETE o FROM dbo.Orders o WHERE NOT EXISTS (SELECT 1 FROM dbo.Customers c WHERE c.ID = o.CustID)",
        reads="dbo.orders dbo.customers",
        writes="dbo.orders",
        note="delete alias with not exists",
    ),
    Case(
        "ALTER TABLE rpt.Targets DROP COLUMN Owner; ALTER TABLE rpt.Targets ALTER COLUMN Region "
        "NVARCHAR(20);",
        writes="rpt.targets",
        note="alter drop and alter column",
    ),
    Case(
        "SELECT * INTO rpt.Copy FROM OPENROWSET('SQLNCLI', 'Server=x;', 'SELECT * FROM t') AS r",
        refuses=True,
        note="openrowset with a query",
    ),
]
