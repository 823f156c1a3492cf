-- Whether the database has a migration record yet (sql/migrate.py).
EXISTS TABLE ${database}.schema_migrations
