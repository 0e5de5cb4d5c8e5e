"""kdb+ over IPC: adapter.py, create.q, queries.q."""
