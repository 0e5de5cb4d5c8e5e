"""ClickHouse (chDB or a server): adapter.py, create.sql, queries.sql."""
