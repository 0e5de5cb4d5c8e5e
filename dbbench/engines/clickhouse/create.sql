-- ClickHouse tables (chDB and server), read by adapter.py: MergeTree ordered by (symbol, ts),
-- DateTime64(9, 'UTC') times, delta-coded times and ids, Gorilla-coded prices, ZSTD everywhere and
-- LowCardinality symbol and venue.

-- name: trades
CREATE TABLE trades (
    ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    symbol LowCardinality(String),
    venue LowCardinality(String),
    trade_id Int64 CODEC(Delta, ZSTD(1)),
    price Float64 CODEC(Gorilla, ZSTD(1)),
    qty Float64 CODEC(ZSTD(1)),
    side Int8 CODEC(ZSTD(1))
) ENGINE = MergeTree ORDER BY (symbol, ts)

-- name: quotes
CREATE TABLE quotes (
    ts DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    symbol LowCardinality(String),
    venue LowCardinality(String),
    bid_px Float64 CODEC(Gorilla, ZSTD(1)),
    bid_qty Float64 CODEC(ZSTD(1)),
    ask_px Float64 CODEC(Gorilla, ZSTD(1)),
    ask_qty Float64 CODEC(ZSTD(1))
) ENGINE = MergeTree ORDER BY (symbol, ts)

-- name: dbbench_loads
-- Load events, appended and never deleted (a DELETE is a mutation: it stalled loads for up to a second):
-- a table counts as loaded when its latest event is a verified row count; a load starts with an unverified one.
CREATE TABLE IF NOT EXISTS dbbench_loads (
    tbl String,
    verified Bool,
    rows UInt64,
    at DateTime64(9) DEFAULT now64(9)
) ENGINE = MergeTree ORDER BY (tbl, at)
