-- PostgreSQL / TimescaleDB tables, read by adapter.py. Times are bigint UTC nanoseconds: timestamptz
-- keeps only microseconds, and TimescaleDB partitions and buckets integer time natively. Text sorts by
-- its bytes (COLLATE "C"), as the reference does: the database's locale (en_US in the TimescaleDB image)
-- would put 'eth' before 'PEPE' in every ORDER BY symbol.

-- name: trades
CREATE TABLE trades (
    ts bigint NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    venue text COLLATE "C" NOT NULL,
    trade_id bigint NOT NULL,
    price double precision NOT NULL,
    qty double precision NOT NULL,
    side smallint NOT NULL
)

-- name: quotes
CREATE TABLE quotes (
    ts bigint NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    venue text COLLATE "C" NOT NULL,
    bid_px double precision NOT NULL,
    bid_qty double precision NOT NULL,
    ask_px double precision NOT NULL,
    ask_qty double precision NOT NULL
)

-- name: hypertable
-- TimescaleDB: one-day chunks of integer time, compressed by (symbol, venue) segments ordered by ts.
SELECT create_hypertable('{table}', 'ts', chunk_time_interval => 86400000000000);
ALTER TABLE {table} SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol, venue',
                         timescaledb.compress_orderby = 'ts')

-- name: bucket_function
-- Plain PostgreSQL: TimescaleDB's time_bucket for bigint time, inlined by the planner.
CREATE OR REPLACE FUNCTION dbbench_bucket(width bigint, ts bigint) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT ts - ts % width'

-- name: indexes
-- Plain PostgreSQL: built after the data is in.
CREATE INDEX IF NOT EXISTS {table}_symbol_ts ON {table} (symbol, venue, ts);
CREATE INDEX IF NOT EXISTS {table}_ts_brin ON {table} USING brin (ts)

-- name: dbbench_loaded
-- One row per table whose load was verified; a partial table has none.
CREATE TABLE IF NOT EXISTS dbbench_loaded (tbl text PRIMARY KEY, rows bigint NOT NULL)
