-- Restrict the session's reads of every scoped table to one tenant. ${filters} is the map
-- literal sql/tenant_scope.py filter_setting builds, every string in it quoted: a setting's
-- value cannot be a query parameter.
SET additional_table_filters = ${filters}
