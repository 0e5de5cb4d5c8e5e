"""The Parquet contracts of ARCHITECTURE.md, written once so every reader and consumer agrees."""

from __future__ import annotations

import polars as pl

TS = pl.Int64  # UTC nanoseconds

TRADES_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS,
    "local_ts": TS,
    "trade_id": pl.Int64,
    "price": pl.Float64,
    "qty": pl.Float64,
    "side": pl.Int8,  # +1 buyer-initiated, -1 seller-initiated
}

QUOTES_SCHEMA: dict[str, pl.DataType] = {
    "ts": TS,
    "local_ts": TS,
    "update_id": pl.Int64,
    "bid_px": pl.Float64,
    "bid_qty": pl.Float64,
    "ask_px": pl.Float64,
    "ask_qty": pl.Float64,
}


def level_columns(levels: int) -> list[str]:
    """Book level columns in contract order: bid_px_1..N, bid_qty_1..N, ask_px_1..N, ask_qty_1..N."""
    return [f"{name}_{i}" for name in ("bid_px", "bid_qty", "ask_px", "ask_qty") for i in range(1, levels + 1)]


def book_schema(levels: int) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"ts": TS, "local_ts": TS, "update_id": pl.Int64, "in_sync": pl.Boolean}
    schema.update({name: pl.Float64 for name in level_columns(levels)})
    return schema


def book_levels(columns: list[str]) -> int:
    """Number of levels in a book frame, read from its bid_px_i columns."""
    return sum(1 for c in columns if c.startswith("bid_px_"))
