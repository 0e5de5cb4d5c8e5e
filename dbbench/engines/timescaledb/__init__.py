"""TimescaleDB, or plain PostgreSQL when the extension is absent: adapter.py, create.sql, queries.sql."""
