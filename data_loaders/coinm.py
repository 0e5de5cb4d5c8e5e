"""Binance COIN-M (coin-margined, inverse) futures: quantities are contracts of a fixed USD value.

A COIN-M trade's, bookTicker's or book level's quantity counts contracts (Binance's contract
specifications: 100 USD each for BTCUSD, 10 USD for every other pair), not the base asset the
other markets count. The readers convert them, `base = contracts * contract_usd / price`, so a
size means the same in every venue of a dataset. COIN-M symbols name a USD pair and a delivery:
`btcusd_perp`, `ethusd_240927`.
"""

from __future__ import annotations

import re

import polars as pl

SYMBOL = re.compile(r"(?P<pair>[a-z0-9]+usd)_(perp|\d{6})", re.IGNORECASE)
CONTRACT_USD = {"btcusd": 100.0}
DEFAULT_CONTRACT_USD = 10.0


def is_coinm(symbol: str) -> bool:
    return SYMBOL.fullmatch(symbol) is not None


def contract_usd(symbol: str) -> float:
    """The USD value of one contract of `symbol` (a COIN-M symbol)."""
    found = SYMBOL.fullmatch(symbol)
    if found is None:
        raise ValueError(f"{symbol!r} is not a COIN-M symbol (e.g. BTCUSD_PERP, ETHUSD_240927)")
    return CONTRACT_USD.get(found["pair"].lower(), DEFAULT_CONTRACT_USD)


def to_base(frame: pl.DataFrame, symbol: str, pairs: list[tuple[str, str]]) -> pl.DataFrame:
    """`frame` with each (quantity, price) column pair's quantity turned from contracts into base units."""
    usd = contract_usd(symbol)
    return frame.with_columns([(pl.col(qty) * usd / pl.col(px)).alias(qty) for qty, px in pairs])
