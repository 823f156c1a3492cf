-- Every applied migration and the checksum of its text when applied (sql/migrate.py).
SELECT name, checksum FROM ${database}.schema_migrations
