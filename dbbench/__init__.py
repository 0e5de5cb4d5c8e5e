"""Tick-database benchmark: engines, the query suite, the measuring runner, servers and reports."""
