-- Tables and views of a database with a tenant_id column: the ones a tenant scope filters
-- (sql/tenant_scope.py).
SELECT DISTINCT table FROM system.columns
WHERE database = {database:String} AND name = 'tenant_id'
ORDER BY table
