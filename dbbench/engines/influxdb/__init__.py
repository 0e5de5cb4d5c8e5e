"""InfluxDB: adapter.py, create.influxql, queries.influxql (1.x/2.x/3.x v1 API), queries.flux (2.x)."""
