-- Set last: after it the session can change no setting again, the tenant filter included
-- (sql/tenant_scope.py).
SET readonly = 1
