"""Seeded synthetic BTC-USDT market with a known, partly predictable component and its exact oracle.

This module holds v1 (`ticks synth --market linear`, below), the writer both markets share
(`generate`) and the pieces v2 reuses; v2, the default of `ticks synth` (`--market regime`: hidden
regimes, self-exciting flow, queue-dependent impact, plus the ceiling of what the files reveal),
lives in data_loaders/synth_regime.py.

Why: forecasters need a market where the best possible forecast is known, so they can be scored
as a fraction of it. The latent model lives on the 100 ms grid (row t = one book snapshot):

    s[t+1] = phi * s[t] + sqrt(1 - phi^2) * u[t]               hidden order-flow signal, Var s = 1
    v[t+1] = rho * v[t] + vol_of_vol * sqrt(1 - rho^2) * w[t]  log-volatility: clustering
    sigma[t] = sigma0 * exp(v[t] - vol_of_vol^2)                so E[sigma^2] = sigma0^2
    x[t+1] = x[t] + beta * s[t] + sigma[t] * eps[t]            eps: unit-variance Student-t(nu)

u, w, eps are independent of each other and of the past, so exactly

    E_t[x[t+h] - x[t]] = beta * s[t] * (1 - phi^h) / (1 - phi)     (the oracle, h = 1..30).

The observed book puts the paper's weighted mid (ask1*askqty1 + bid1*bidqty1) / (askqty1 + bidqty1)
exactly on exp(x[t]) (up to float rounding): with bid1 < exp(x) < ask1 on the 0.01 grid, the
level-1 total size is split so that askqty1 / (askqty1 + bidqty1) = (exp(x) - bid1) / (ask1 - bid1).
The latent is never nudged: when exp(x) sits within `edge_fraction` of a tick, the spread is
widened to 2 ticks and centred instead, so both level-1 sizes stay > 0. Hence the oracle is exact
for the target log(wmid[t+h] / wmid[t]). Prices are ticks / 100 (the correctly rounded double).

What reveals s (partly): the sizes of levels 2..N lean to the bid when s > 0 and to the ask when
s < 0, under persistent per-level noise; trade signs are buyer-initiated with probability
sigmoid(gamma * s); lagged returns carry beta * s. Level-1 sizes carry only the sub-tick price.

Seeds: the latent path depends on `seed` only; the microstructure (book shape, sizes, trades,
latencies) on (seed, symbol, venue). Same seed with another venue is the same market seen on
another venue (cross-venue queries such as NBBO stay meaningful); another seed is another market.
Every random stream is drawn once per chunk in row order, so the data do not depend on chunk_rows.
Sizes are continuous BTC amounts (level 1 must be, for the exact weighted mid); trade sizes are
rounded to the 0.00001 BTC lot.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from data_loaders.atomic import atomic_outputs
from data_loaders.schema import QUOTES_SCHEMA, TRADES_SCHEMA, book_schema

START_NS = 1_723_161_600 * 10**9  # 2024-08-09 00:00 UTC
HORIZONS = tuple(range(1, 31))
TICKS_PER_USDT = 100  # tick 0.01: a price is ticks / 100, the correctly rounded double
LOT = 1e-5  # BTC
FILES = ("trades", "quotes", "book", "oracle")


@dataclass(frozen=True)
class Params:
    """Model constants; written to every file's metadata."""

    price0: float = 60_000.0
    beta: float = 3e-5  # drift per unit of s per step (log units)
    phi: float = 0.8  # persistence of s per step
    sigma0: float = 1e-4  # root-mean-square noise per step (log units): ~1 bp per 100 ms
    vol_rho: float = 0.5 ** (1 / 6000)  # log-vol half-life 10 minutes
    vol_of_vol: float = 0.5  # stationary std of log-vol
    t_dof: float = 5.0  # Student-t degrees of freedom of eps
    flow_kappa: float = 0.45  # log-size lean of levels 2..N per unit of s
    size_noise: float = 0.5  # std of the persistent log-size noise of levels 2..N
    size_rho: float = 0.9  # persistence of that noise per step
    depth_median: float = 0.3  # BTC at level 2, growing as sqrt(level)
    touch_median: float = 1.5  # level-1 total size, BTC (lognormal)
    touch_sigma: float = 1.0
    gap_mean_extra: float = 2.0  # ticks between levels: 1 + floor(exponential with this mean)
    wide_prob: float = 0.03  # chance of a wider spread at average volatility
    wide_mean_extra: float = 1.5  # ticks beyond 2 when wide
    edge_fraction: float = 0.01  # exp(x) this close to a tick -> 2-tick spread
    trades_per_step: float = 2.0  # at average volatility (Poisson)
    trade_gamma: float = 1.0  # P(buyer-initiated) = sigmoid(gamma * s)
    trade_median: float = 0.003  # BTC (lognormal)
    trade_sigma: float = 1.5
    updates_per_step: float = 4.0  # extra book update ids per step (Poisson), besides trades
    latency_median_ns: float = 2e6
    latency_sigma: float = 0.5


PARAMS = Params()


def oracle_multipliers(params: Params = PARAMS) -> np.ndarray:
    """(1 - phi^h) / (1 - phi) for h in HORIZONS: the oracle is beta * s * this."""
    h = np.asarray(HORIZONS, dtype=np.float64)
    return (1.0 - params.phi**h) / (1.0 - params.phi)


@numba.njit(cache=True)
def _ar1(start: np.ndarray, innov: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """out[0] = start, out[i] = rho * out[i-1] + innov[i-1] along axis 0; also the next value."""
    n, k = innov.shape
    out = np.empty((n, k))
    cur = start.copy()
    for i in range(n):
        for j in range(k):
            out[i, j] = cur[j]
            cur[j] = rho * cur[j] + innov[i, j]
    return out, cur


@dataclass
class LatentState:
    """Values of the current row for k independent paths: log price x, signal s, log-vol v."""

    x: np.ndarray
    s: np.ndarray
    v: np.ndarray


@dataclass
class LatentStreams:
    u: np.random.Generator
    w: np.random.Generator
    eps: np.random.Generator


def latent_streams(seed_seq: np.random.SeedSequence) -> LatentStreams:
    return LatentStreams(*(np.random.default_rng(child) for child in seed_seq.spawn(3)))


def simulate_latent(
    state: LatentState, streams: LatentStreams, n: int, params: Params = PARAMS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LatentState]:
    """n rows of (x, s, sigma), each (n, k), starting at `state`; returns the state of row n."""
    p = params
    k = state.x.shape[0]
    u = streams.u.standard_normal((n, k)) * np.sqrt(1.0 - p.phi**2)
    w = streams.w.standard_normal((n, k)) * (p.vol_of_vol * np.sqrt(1.0 - p.vol_rho**2))
    eps = streams.eps.standard_t(p.t_dof, (n, k)) * np.sqrt((p.t_dof - 2.0) / p.t_dof)
    s, s_next = _ar1(state.s, u, p.phi)
    v, v_next = _ar1(state.v, w, p.vol_rho)
    sigma = p.sigma0 * np.exp(v - p.vol_of_vol**2)
    x_all = np.cumsum(np.concatenate([state.x[None, :], p.beta * s + sigma * eps]), axis=0)
    return x_all[:-1], s, sigma, LatentState(x_all[-1], s_next, v_next)


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


class Market:
    """The generator's state across chunks: latent path, book noise, ids, clocks, random streams."""

    def __init__(
        self, seed: int, symbol: str, venue: str, levels: int, step_ns: int, params: Params = PARAMS
    ):
        self.p, self.levels, self.step_ns = params, levels, step_ns
        latent_seq = np.random.SeedSequence(seed)
        micro_seq = np.random.SeedSequence([seed, _stable_hash(symbol), _stable_hash(venue)])
        init_latent, streams_seq = latent_seq.spawn(2)
        self.latent = latent_streams(streams_seq)
        s0, v0 = np.random.default_rng(init_latent).standard_normal(2)
        self.state = LatentState(
            np.array([np.log(params.price0)]), np.array([s0]), np.array([v0 * params.vol_of_vol])
        )
        names = (
            "init",
            "spread",
            "touch",
            "gaps",
            "noise",
            "book_lat",
            "updates",
            "counts",
            "trade_u",
            "trade_n",
        )
        self.rng = dict(zip(names, (np.random.default_rng(c) for c in micro_seq.spawn(len(names)))))
        self.noise = self.rng["init"].standard_normal(2 * (levels - 1))  # stationary start
        self.update_id, self.trade_id = 1, 1
        self.book_clock = self.trade_clock = np.iinfo(np.int64).min

    def chunk(self, ts: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Columns of all four files for the book rows at times `ts` (consecutive grid points)."""
        return self.observe(ts, *self.advance(ts.shape[0]))

    def advance(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next n rows of the latent path: log price x, signal s, volatility sigma."""
        x, s, sigma, self.state = simulate_latent(self.state, self.latent, n, self.p)
        return x[:, 0], s[:, 0], sigma[:, 0]

    def trade_counts(self, sigma: np.ndarray) -> np.ndarray:
        """Trades per step: Poisson, more when volatile, from their own random stream (so a fresh Market
        that draws only the latent path and these counts knows how many rows the full one will give)."""
        vol = sigma / self.p.sigma0
        return self.rng["counts"].poisson(self.p.trades_per_step * vol)

    def observe(
        self, ts: np.ndarray, x: np.ndarray, s: np.ndarray, sigma: np.ndarray
    ) -> dict[str, dict[str, np.ndarray]]:
        """What the market shows of the latent rows: book, quotes, trades; and the oracle."""
        p, n, depth = self.p, ts.shape[0], self.levels - 1
        vol = sigma / p.sigma0
        price = np.exp(x)

        # Level 1: spread in ticks, bid on the grid below exp(x), split of the total size.
        r = self.rng["spread"].random((n, 2))
        spread = np.where(
            r[:, 0] < p.wide_prob * vol,
            2.0 + np.floor(-np.log1p(-r[:, 1]) * p.wide_mean_extra),
            1.0,
        )
        ticks = price * TICKS_PER_USDT
        frac = ticks - np.floor(ticks)
        spread[(spread == 1.0) & ((frac < p.edge_fraction) | (frac > 1.0 - p.edge_fraction))] = 2.0
        bid_ticks = np.where(spread == 1.0, np.floor(ticks), np.rint(ticks - spread / 2.0))
        ask_ticks = bid_ticks + spread
        bid1, ask1 = bid_ticks / TICKS_PER_USDT, ask_ticks / TICKS_PER_USDT
        ask_share = (price - bid1) / (ask1 - bid1)
        touch = p.touch_median * np.exp(p.touch_sigma * self.rng["touch"].standard_normal(n))

        # Levels 2..N: gaps of 1+ ticks; sizes lean to the side s points to, under persistent noise.
        gaps = 1.0 + np.floor(
            -np.log1p(-self.rng["gaps"].random((n, 2 * depth))) * p.gap_mean_extra
        )
        innov = self.rng["noise"].standard_normal((n, 2 * depth)) * np.sqrt(1.0 - p.size_rho**2)
        noise, self.noise = _ar1(self.noise, innov, p.size_rho)
        scale, lean = p.depth_median / np.sqrt(vol), p.flow_kappa * s
        bid_ticks_at, ask_ticks_at = [bid_ticks], [ask_ticks]
        bid_qty, ask_qty = [(1.0 - ask_share) * touch], [ask_share * touch]
        for i in range(depth):  # level i + 2, one contiguous column at a time
            size = scale * np.sqrt((i + 2) / 2.0)
            bid_ticks_at.append(bid_ticks_at[-1] - gaps[:, i])
            ask_ticks_at.append(ask_ticks_at[-1] + gaps[:, depth + i])
            bid_qty.append(size * np.exp(lean + p.size_noise * noise[:, i]))
            ask_qty.append(size * np.exp(-lean + p.size_noise * noise[:, depth + i]))
        bid_px = [level / TICKS_PER_USDT for level in bid_ticks_at]
        ask_px = [level / TICKS_PER_USDT for level in ask_ticks_at]

        # Trades: Poisson count per step, more when volatile; sign led by s; at the touch of row t.
        counts = self.trade_counts(sigma)
        row = np.repeat(np.arange(n), counts)
        m = row.shape[0]
        tu = self.rng["trade_u"].random((m, 2))
        tn = self.rng["trade_n"].standard_normal((m, 2))
        trade_ts = np.sort(ts[row] + 1 + (tu[:, 0] * (self.step_ns - 1)).astype(np.int64))
        buy = tu[:, 1] < 1.0 / (1.0 + np.exp(-p.trade_gamma * s[row]))
        qty, trade_local, trade_ids, update_id, book_local = stamp(self, ts, trade_ts, tn, counts, p)

        book = {
            "ts": ts,
            "local_ts": book_local,
            "update_id": update_id,
            "in_sync": np.ones(n, dtype=bool),
        }
        for name, columns in (
            ("bid_px", bid_px),
            ("bid_qty", bid_qty),
            ("ask_px", ask_px),
            ("ask_qty", ask_qty),
        ):
            book.update({f"{name}_{i + 1}": col for i, col in enumerate(columns)})
        quotes = {
            "ts": ts,
            "local_ts": book_local,
            "update_id": update_id,
            "bid_px": book["bid_px_1"],
            "bid_qty": book["bid_qty_1"],
            "ask_px": book["ask_px_1"],
            "ask_qty": book["ask_qty_1"],
        }
        trades = {
            "ts": trade_ts,
            "local_ts": trade_local,
            "trade_id": trade_ids,
            "price": np.where(buy, ask1[row], bid1[row]),
            "qty": qty,
            "side": np.where(buy, 1, -1).astype(np.int8),
        }
        oracle = {"ts": ts}
        oracle.update(
            zip((f"oracle_h{h}" for h in HORIZONS), np.outer(p.beta * oracle_multipliers(p), s))
        )
        return {"trades": trades, "quotes": quotes, "book": book, "oracle": oracle}


def stamp(market: Any, ts: np.ndarray, trade_ts: np.ndarray, tn: np.ndarray, counts: np.ndarray,
          p: Any) -> tuple[np.ndarray, ...]:
    """A chunk's trade sizes, receive times and ids, and its book rows' update ids and receive times
    (each step's trades plus other updates), advancing the market's clocks and ids: the same in
    every market. tn: (m, 2) standard normals per trade (size, latency); counts: trades per row."""
    n, m = ts.shape[0], trade_ts.shape[0]
    qty = np.maximum(np.round(p.trade_median * np.exp(p.trade_sigma * tn[:, 0]), 5), LOT)
    trade_local, market.trade_clock = _receive_times(trade_ts, tn[:, 1], market.trade_clock, p)
    trade_ids = market.trade_id + np.arange(m, dtype=np.int64)
    market.trade_id += m
    extra = market.rng["updates"].poisson(p.updates_per_step, n)
    update_id = market.update_id + np.cumsum(1 + counts + extra) - 1
    market.update_id = int(update_id[-1]) + 1
    book_local, market.book_clock = _receive_times(ts, market.rng["book_lat"].standard_normal(n), market.book_clock, p)
    return qty, trade_local, trade_ids, update_id, book_local


def _receive_times(ts: np.ndarray, z: np.ndarray, clock: int, p: Params) -> tuple[np.ndarray, int]:
    """ts + lognormal latency (>= 1 ns), made non-decreasing as one in-order feed delivers it."""
    latency = 1 + (p.latency_median_ns * np.exp(p.latency_sigma * z)).astype(np.int64)
    local = np.maximum.accumulate(np.concatenate([[clock], ts + latency]))[1:]
    return local, int(local[-1]) if local.shape[0] else clock


def _arrow_schemas(
    levels: int, metadata: dict[str, str], forecasts: tuple[str, ...]
) -> dict[str, pa.Schema]:
    oracle = {"ts": pl.Int64, **{f"{f}_h{h}": pl.Float64 for f in forecasts for h in HORIZONS}}
    contracts = {
        "trades": TRADES_SCHEMA,
        "quotes": QUOTES_SCHEMA,
        "book": book_schema(levels),
        "oracle": oracle,
    }
    return {
        name: pl.DataFrame(schema=c).to_arrow().schema.with_metadata(metadata)
        for name, c in contracts.items()
    }


def _linear_oracle_meta(p: Params) -> dict:
    return {
        "price": "wmid_paper",
        "target": "log(wmid[t+h] / wmid[t])",
        "units": "log return",
        "formula": "beta * s[t] * (1 - phi^h) / (1 - phi)",
        "horizons": list(HORIZONS),
        "beta": p.beta,
        "phi": p.phi,
        "sigma0": p.sigma0,
        "vol_rho": p.vol_rho,
        "vol_of_vol": p.vol_of_vol,
        "t_dof": p.t_dof,
    }


MARKETS = ("regime", "linear")  # the first is the default of `ticks synth`


def generate(
    out_dir: Path,
    minutes: float,
    seed: int,
    *,
    market: str = "linear",
    symbol: str = "BTCUSDT",
    venue: str = "synthetic",
    start_ns: int = START_NS,
    levels: int = 10,
    step_ms: int = 100,
    chunk_rows: int = 1_000_000,
) -> dict:
    """Write out_dir/{trades,quotes,book,oracle}.parquet: `minutes` of market, a book row per step.

    `market`: "regime" (v2, data_loaders/synth_regime.py: the oracle file also holds the
    ceiling_h{h} columns; the default of `ticks synth`) or "linear" (v1, above; the default here,
    so callers written for v1 keep getting v1). Streamed: at most `chunk_rows` book rows (and
    their trades) are in memory at once; each chunk is one Parquet row group. The model's
    constants are per step, so another step_ms keeps the dynamics per row and the oracle per
    row-horizon. Returns the summary fields (rows per file, seconds, rates).
    """
    rows = round(minutes * 60_000 / step_ms)
    if rows < 1 or levels < 1 or step_ms < 1 or chunk_rows < 1:
        raise ValueError(
            f"need minutes*60000/step_ms >= 1, levels >= 1, step_ms >= 1, chunk_rows >= 1; got "
            f"minutes={minutes} step_ms={step_ms} levels={levels} chunk_rows={chunk_rows}"
        )
    if market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; use one of {', '.join(MARKETS)}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step_ns = step_ms * 1_000_000
    if market == "linear":
        p: Params = PARAMS
        gen = Market(seed, symbol, venue, levels, step_ns, p)
        forecasts, oracle_meta = ("oracle",), _linear_oracle_meta(p)
    else:
        from data_loaders import synth_regime  # imports this module's shared pieces

        p = synth_regime.REGIME_PARAMS
        gen = synth_regime.RegimeMarket(seed, symbol, venue, levels, step_ns, p)
        forecasts, oracle_meta = ("oracle", "ceiling"), synth_regime.oracle_metadata(p)
    info = {
        "seed": seed,
        "start_ns": start_ns,
        "step_ms": step_ms,
        "levels": levels,
        "params": asdict(p),
        "market": market,
    }
    metadata = {
        "symbol": symbol,
        "venue": venue,
        "generator": "data_loaders.synth",
        "synth": json.dumps(info),
    }
    schemas = _arrow_schemas(levels, metadata, forecasts)
    schemas["oracle"] = schemas["oracle"].with_metadata(
        {**metadata, "oracle": json.dumps(oracle_meta)}
    )
    counts = dict.fromkeys(FILES, 0)
    # No dictionary encoding: prices and sizes are nearly all distinct; trying costs 4x the time.
    # All four files appear together when the market is complete (a killed run leaves the previous ones).
    with atomic_outputs([out_dir / f"{name}.parquet" for name in FILES], checksum=True) as partials:
        writers = {
            name: pq.ParquetWriter(partial, schemas[name], use_dictionary=False)
            for name, partial in zip(FILES, partials)
        }
        try:
            for first in range(0, rows, chunk_rows):
                ts = start_ns + np.arange(first, min(first + chunk_rows, rows), dtype=np.int64) * step_ns
                for name, columns in gen.chunk(ts).items():
                    table = pa.Table.from_pydict(columns, schema=schemas[name])
                    writers[name].write_table(table)
                    counts[name] += table.num_rows
        finally:
            for writer in writers.values():
                writer.close()
    seconds = time.perf_counter() - started
    return {
        "out": str(out_dir),
        "market": market,
        "symbol": symbol,
        "venue": venue,
        "seed": seed,
        "minutes": minutes,
        "rows": counts,
        "bytes": sum((out_dir / f"{name}.parquet").stat().st_size for name in FILES),
        "seconds": seconds,
        "book_rows_per_s": rows / seconds,
        "rows_per_s": sum(counts.values()) / seconds,
    }
