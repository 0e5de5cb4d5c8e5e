"""ArcticDB on LMDB: adapter.py (no query language: its queries are QueryBuilder plans in Python)."""
