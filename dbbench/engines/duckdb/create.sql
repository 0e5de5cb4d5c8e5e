-- DuckDB tables, read by adapter.py: the Arrow schema's types as they are. TIMESTAMP_NS keeps the
-- recordings' nanoseconds (DuckDB's TIMESTAMPTZ has microseconds); DuckDB dictionary-compresses the
-- VARCHAR symbol and venue itself.

-- name: trades
CREATE OR REPLACE TABLE trades (
    ts TIMESTAMP_NS NOT NULL,
    symbol VARCHAR NOT NULL,
    venue VARCHAR NOT NULL,
    trade_id BIGINT NOT NULL,
    price DOUBLE NOT NULL,
    qty DOUBLE NOT NULL,
    side TINYINT NOT NULL
)

-- name: quotes
CREATE OR REPLACE TABLE quotes (
    ts TIMESTAMP_NS NOT NULL,
    symbol VARCHAR NOT NULL,
    venue VARCHAR NOT NULL,
    bid_px DOUBLE NOT NULL,
    bid_qty DOUBLE NOT NULL,
    ask_px DOUBLE NOT NULL,
    ask_qty DOUBLE NOT NULL
)

-- name: dbbench_loaded
-- One row per table whose load was verified; a partial table has none.
CREATE TABLE IF NOT EXISTS dbbench_loaded (tbl VARCHAR PRIMARY KEY, rows BIGINT NOT NULL)
