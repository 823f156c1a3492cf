-- Every table and view of a database: a scoped query's bare name that is none of them is a CTE
-- (sql/tenant_scope.py).
SELECT name FROM system.tables WHERE database = {database:String}
