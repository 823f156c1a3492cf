-- A rollup's columns and types, so the bootstrap reads only the columns the table has
-- (alerts/bootstrap.py).
SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {table:String}
