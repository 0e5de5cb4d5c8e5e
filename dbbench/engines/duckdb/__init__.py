"""DuckDB, embedded: adapter.py, create.sql, queries.sql."""
