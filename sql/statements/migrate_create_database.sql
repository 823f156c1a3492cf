-- The database the migrations fill (sql/migrate.py).
CREATE DATABASE IF NOT EXISTS ${database}
