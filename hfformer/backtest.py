"""Backtest forecast frames with the published HFformer trading rule, vectorised over decisions.

The rule (Barez et al. 2023, "Exploring the Advantages of Transformers for High-Frequency
Trading"; numbers in ARCHITECTURE.md): every 25 ticks read the signals of horizons 22..28;
go long (short) only if all of them are positive (negative) and |sum| >= 0.1*n; size the
trade from a ladder on |sum|; fill 2 ticks later at the weighted mid; close at the next
decision; pay fees per side (the paper: 0.0002% of notional, preset `paper`; the default is a
Binance spot user's 0.1%, preset `spot`). Every number is a field of `BacktestConfig`.

One bar = one decision interval. PnL is in quote currency (USDT) for sizes in BTC.
Sharpe = mean(bar PnL) / std(bar PnL) * sqrt(bars per year), bars per year =
365.25 * 86400 / median seconds between decisions; flat bars count as zero PnL.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl

from data_loaders.atomic import atomic_output, atomic_outputs, checked
from hfformer.bootstrap import percentile_interval, resampled_totals

if TYPE_CHECKING:  # hfformer.data is imported only where forecasts must be computed
    from hfformer.data import Data

SECONDS_PER_YEAR = 365.25 * 86400
PNL_BLOCK_BARS = 20  # bars per bootstrap block of the intervals (volatility clusters across bars)
PRICE_COLUMNS = ("ts", "price", "bid_px_1", "ask_px_1")
BAR_STATUS = pl.Enum(["trade", "flat", "no_forecast", "unfilled"])


def forecast_column(h: int, q: int) -> str:
    """Forecast column of horizon h and quantile q (percent) in a forecast frame."""
    return f"f_h{h}_q{q}"


# Named fee schedules, (maker, taker) bp of notional per side: `--set fees=NAME`. The default is
# what a Binance spot user pays; the paper's 0.0002% is kept as its own preset.
FEE_PRESETS = {"spot": (10.0, 10.0), "usdm": (2.0, 5.0), "paper": (0.02, 0.02)}


@dataclass(frozen=True)
class BacktestConfig:
    every: int = 25  # ticks (rows) between decisions
    delay_ticks: int = 2  # an order fills this many rows after it is sent ...
    latency_ms: float = 0.0  # ... and at least this long after it is sent (by `ts`)
    # "decision": close at the next decision's row (published); "fill": with the entries' delay
    exit_at: str = "decision"
    horizons: tuple[int, ...] = tuple(range(22, 29))
    signal_quantile: int = 50  # which forecast quantile is the signal (50 = median)
    require_agreement: bool = True  # trade only if every horizon's signal has the same sign
    require_interval: bool = (
        False  # trade only if every horizon's [q_lo, q_hi] interval excludes zero
    )
    interval: tuple[int, int] = (10, 90)
    min_signal: float = 0.1  # skip if |sum of signals| < min_signal * n
    size_thresholds: tuple[float, ...] = (0.15, 0.125, 0.1, 0.075, 0.05)  # times n, descending
    sizes: tuple[float, ...] = (0.15, 0.125, 0.1, 0.075, 0.05)  # BTC for each threshold
    base_size: float = 0.025  # BTC below the lowest threshold
    fill: str = "mid"  # "mid": the weighted mid `price`; "touch": buy at the ask, sell at the bid
    maker_fee_bps: float = 10.0  # Binance spot's regular tier: 0.1% of notional per side
    taker_fee_bps: float = 10.0
    entry_liquidity: str = "taker"  # which fee each side pays
    exit_liquidity: str = "taker"

    def __post_init__(self) -> None:
        problems = []
        if self.every < 1 or self.delay_ticks < 0 or self.latency_ms < 0:
            problems.append("every >= 1, delay_ticks >= 0 and latency_ms >= 0 are required")
        if not self.horizons:
            problems.append("horizons is empty")
        if self.exit_at not in ("decision", "fill"):
            problems.append(f"exit_at must be 'decision' or 'fill', not {self.exit_at!r}")
        if self.fill not in ("mid", "touch"):
            problems.append(f"fill must be 'mid' or 'touch', not {self.fill!r}")
        for name in ("entry_liquidity", "exit_liquidity"):
            if getattr(self, name) not in ("maker", "taker"):
                problems.append(f"{name} must be 'maker' or 'taker'")
        if len(self.sizes) != len(self.size_thresholds):
            problems.append("sizes and size_thresholds differ in length")
        if list(self.size_thresholds) != sorted(self.size_thresholds, reverse=True):
            problems.append("size_thresholds must be in descending order")
        if not self.interval[0] < 50 < self.interval[1]:
            problems.append("interval must be (q_lo, q_hi) with q_lo < 50 < q_hi")
        if problems:
            raise ValueError("bad backtest config: " + "; ".join(problems))

    def signal_columns(self) -> list[str]:
        return [forecast_column(h, self.signal_quantile) for h in self.horizons]

    def interval_columns(self) -> tuple[list[str], list[str]]:
        lo, hi = self.interval
        return (
            [forecast_column(h, lo) for h in self.horizons],
            [forecast_column(h, hi) for h in self.horizons],
        )

    def forecast_columns(self) -> list[str]:
        lo, hi = self.interval_columns()
        return self.signal_columns() + (lo + hi if self.require_interval else [])

    def fee_rates(self) -> tuple[float, float]:
        """Fee per side as a fraction of notional: (entry, exit)."""
        bps = {"maker": self.maker_fee_bps, "taker": self.taker_fee_bps}
        return bps[self.entry_liquidity] / 1e4, bps[self.exit_liquidity] / 1e4


def fee_preset(config: BacktestConfig) -> str:
    """The preset whose fees the config charges, or "custom"."""
    fees = (config.maker_fee_bps, config.taker_fee_bps)
    return next((name for name, values in FEE_PRESETS.items() if values == fees), "custom")


def config_from_overrides(
    overrides: list[str], base: BacktestConfig = BacktestConfig()
) -> BacktestConfig:
    """`key=value` strings (TOML values, bare words are strings) -> config, e.g. fill=touch."""
    fields = {f.name: f for f in dataclasses.fields(BacktestConfig)}
    changes: dict = {}
    presets = [item.partition("=")[2].strip().strip("'\"") for item in overrides
               if item.partition("=")[0].strip() == "fees"]
    for name in presets:  # first, so explicit maker_fee_bps / taker_fee_bps win
        if name not in FEE_PRESETS:
            raise ValueError(f"unknown fee preset {name!r}; presets: {', '.join(FEE_PRESETS)}")
        changes["maker_fee_bps"], changes["taker_fee_bps"] = FEE_PRESETS[name]
    for item in (i for i in overrides if i.partition("=")[0].strip() != "fees"):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(
                f"bad override {item!r}: expected key=value with key in {sorted([*fields, 'fees'])}"
            )
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        expected = type(getattr(base, key))
        if expected is tuple:
            value = tuple(value) if isinstance(value, list) else (value,)
        elif expected is float and type(value) is int:
            value = float(value)
        if type(value) is not expected:
            raise ValueError(f"bad override {item!r}: {key} takes a {expected.__name__}")
        changes[key] = value
    return dataclasses.replace(base, **changes)


def epoch_ns(ts: pl.Series) -> np.ndarray:
    """Timestamps (Datetime or Int64 ns) as int64 ns; they must not decrease."""
    values = (ts.dt.epoch("ns") if ts.dtype.is_temporal() else ts.cast(pl.Int64)).to_numpy()
    if ts.null_count() or (values.size > 1 and np.any(np.diff(values) < 0)):
        raise ValueError("forecast frame `ts` has nulls or goes backwards; sort it by time first")
    return values


def fill_rows(
    ts_ns: np.ndarray, sent: np.ndarray, delay_ticks: int, latency_ms: float
) -> np.ndarray:
    """Row where an order sent at row `sent` fills: `delay_ticks` rows and `latency_ms` later."""
    rows = sent + delay_ticks
    if latency_ms > 0:
        after = np.searchsorted(ts_ns, ts_ns[sent] + round(latency_ms * 1e6), side="left")
        rows = np.maximum(rows, after)
    return rows


def positions(
    signals: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None, config: BacktestConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(D, n) horizon signals -> side (+1/-1/0), size in BTC and signal sum per decision.

    `lo`/`hi` are the interval quantiles, needed only when `config.require_interval`."""
    n = signals.shape[1]
    total = signals.sum(axis=1)  # (D,)
    if config.require_agreement:
        side = np.where((signals > 0).all(axis=1), 1, np.where((signals < 0).all(axis=1), -1, 0))
    else:
        side = np.sign(total).astype(np.int64)
    side = np.where(np.abs(total) >= config.min_signal * n, side, 0)
    if config.require_interval:
        excludes_zero = np.where(side > 0, (lo > 0).all(axis=1), (hi < 0).all(axis=1))
        side = np.where(excludes_zero, side, 0)
    ladder = [np.abs(total) >= t * n for t in config.size_thresholds]
    size = np.select(ladder, config.sizes, config.base_size) * (side != 0)
    return side.astype(np.int8), size, total


def backtest_frame(
    frame: pl.DataFrame,
    config: BacktestConfig = BacktestConfig(),
    tradable: np.ndarray | None = None,
) -> pl.DataFrame:
    """One forecast frame -> one row per bar (decision with a known exit): side, size, fills, PnL.

    `tradable` (bool per row) restricts decisions to rows where every compared model has a forecast;
    decisions without a forecast are flat with status `no_forecast`, trades whose fill row has no
    price (or fills after the exit) are flat with status `unfilled`."""
    missing = [c for c in (*PRICE_COLUMNS, *config.forecast_columns()) if c not in frame.columns]
    if missing:
        raise ValueError(f"forecast frame lacks columns {missing}")
    n_rows = frame.height
    ts_ns = epoch_ns(frame["ts"])
    decided = np.arange(0, n_rows, config.every)
    entry_row = fill_rows(ts_ns, decided, config.delay_ticks, config.latency_ms)
    closing = decided if config.exit_at == "decision" else entry_row
    exit_row = closing[1:]
    keep = exit_row < n_rows  # bars whose exit lies inside the frame
    decided, entry_row, exit_row = decided[:-1][keep], entry_row[:-1][keep], exit_row[keep]

    at_decision = frame.select(config.forecast_columns())[decided]
    signals = at_decision.select(config.signal_columns()).to_numpy()  # (D, n), nulls -> nan
    lo = hi = None
    if config.require_interval:
        lo_cols, hi_cols = config.interval_columns()
        lo, hi = at_decision.select(lo_cols).to_numpy(), at_decision.select(hi_cols).to_numpy()
    has_forecast = ~np.isnan(at_decision.to_numpy()).any(axis=1)
    if tradable is not None:
        has_forecast &= tradable[decided]
    side, size, total = positions(np.nan_to_num(signals), lo, hi, config)
    side, total = np.where(has_forecast, side, 0), np.where(has_forecast, total, np.nan)

    entry_at, exit_at = np.minimum(entry_row, n_rows - 1), exit_row
    if config.fill == "mid":
        px = frame["price"].to_numpy()
        entry_px, exit_px = px[entry_at], px[exit_at]
    else:
        bid, ask = frame["bid_px_1"].to_numpy(), frame["ask_px_1"].to_numpy()
        entry_px = np.where(side > 0, ask[entry_at], bid[entry_at])
        exit_px = np.where(side > 0, bid[exit_at], ask[exit_at])
    filled = (entry_row < exit_row) & ~np.isnan(entry_px) & ~np.isnan(exit_px)
    status = np.select(
        [~has_forecast, side == 0, ~filled], ["no_forecast", "flat", "unfilled"], "trade"
    )
    side = np.where(status == "trade", side, 0).astype(np.int8)
    size = np.where(side != 0, size, 0.0)
    entry_px, exit_px = np.where(side != 0, entry_px, np.nan), np.where(side != 0, exit_px, np.nan)

    entry_fee, exit_fee = config.fee_rates()
    gross = np.nan_to_num(side * size * (exit_px - entry_px))
    fee = np.nan_to_num(size * (entry_px * entry_fee + exit_px * exit_fee))
    pnl = gross - fee
    return pl.DataFrame(
        {
            "ts": frame["ts"].gather(decided),
            "exit_ts": frame["ts"].gather(exit_row),
            "status": pl.Series(status, dtype=BAR_STATUS),
            "signal": total,
            "side": side,
            "size": size,
            "entry_px": entry_px,
            "exit_px": exit_px,
            "gross_pnl": gross,
            "fee": fee,
            "pnl": pnl,
            "cum_pnl": np.cumsum(pnl),
        },
        nan_to_null=True,
    )


def summarize(bars: pl.DataFrame) -> dict[str, float | int | str | None]:
    """Headline numbers of one model's bars (see the module docstring for Sharpe), with 95%
    block-bootstrap intervals of the total PnL, the Sharpe ratio and the hit rate."""
    trades = bars.filter(pl.col("status") == "trade")
    pnl = bars["pnl"].to_numpy()
    cum = np.concatenate([[0.0], np.cumsum(pnl)])
    ts = epoch_ns(bars["ts"])
    seconds = np.diff(ts) / 1e9
    bar_seconds = float(np.median(seconds)) if seconds.size else float("nan")
    per_year = np.sqrt(SECONDS_PER_YEAR / bar_seconds) if bar_seconds > 0 else float("nan")

    def sharpe_of(n, total, squares):  # from sums over bars: mean / sample std, annualised
        with np.errstate(divide="ignore", invalid="ignore"):
            std = np.sqrt((squares - total * total / n) / (n - 1))
            return np.where(std > 0, total / n / std * per_year, np.nan)

    traded = (bars["status"] == "trade").to_numpy()
    per_bar = np.column_stack([np.ones_like(pnl), pnl, pnl * pnl, traded, traded & (pnl > 0)])
    n, total, squares, n_trades, wins = resampled_totals(per_bar, PNL_BLOCK_BARS).T if pnl.size else [np.empty(0)] * 5
    with np.errstate(divide="ignore", invalid="ignore"):
        hit_rates = wins / n_trades
    span_hours = float((ts[-1] - ts[0]) / 3.6e12) if ts.size else 0.0
    counts = bars["status"].value_counts()
    count = dict(zip(counts["status"].to_list(), counts["count"].to_list()))
    summary: dict[str, float | int | str | None] = {
        "bars": bars.height,
        "trades": trades.height,
        "longs": int((trades["side"] > 0).sum()),
        "shorts": int((trades["side"] < 0).sum()),
        "flat": count.get("flat", 0),
        "no_forecast": count.get("no_forecast", 0),
        "unfilled": count.get("unfilled", 0),
        "pnl": float(pnl.sum()),
        "gross_pnl": float(bars["gross_pnl"].sum()),
        "fees": float(bars["fee"].sum()),
        "hit_rate": float((trades["pnl"] > 0).mean()) if trades.height else float("nan"),
        "turnover": float((trades["size"] * (trades["entry_px"] + trades["exit_px"])).sum()),
        "volume_btc": float(2 * trades["size"].sum()),
        "sharpe": float(sharpe_of(pnl.size, pnl.sum(), (pnl * pnl).sum())) if pnl.size > 1 else float("nan"),
        "max_drawdown": float((np.maximum.accumulate(cum) - cum).max()),
        "bar_seconds": bar_seconds,
        "span_hours": span_hours,
        # an annualised Sharpe extrapolates the test span to a year: from under a day it says little
        "sharpe_warning": (f"test span {span_hours:.2f} h < 1 day: the annualised Sharpe extrapolates it "
                           "to a year" if span_hours < 24 else None),
    }
    for key, values in (("pnl", total), ("sharpe", sharpe_of(n, total, squares)), ("hit_rate", hit_rates)):
        summary[f"{key}_lo"], summary[f"{key}_hi"] = percentile_interval(np.asarray(values, dtype=np.float64))
    return summary


@dataclass
class BacktestResult:
    config: BacktestConfig
    bars: dict[str, pl.DataFrame]  # model -> bars
    summary: dict[str, dict[str, float | int]]  # model -> summarize(bars)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why it was not backtested


def backtest_models(
    frames: dict[str, pl.DataFrame], config: BacktestConfig = BacktestConfig()
) -> BacktestResult:
    """Backtest every model on the same prices and the same decisions.

    All frames must hold the same rows (ts and prices); a decision trades only where every
    backtested model has a forecast. A model lacking the needed forecast columns is skipped
    with the reason (e.g. a point model when the rule needs quantiles)."""
    skipped = {
        m: f"no columns {[c for c in config.forecast_columns() if c not in f.columns]}"
        for m, f in frames.items()
        if not set(config.forecast_columns()) <= set(f.columns)
    }
    usable = {m: f for m, f in frames.items() if m not in skipped}
    if not usable:
        raise ValueError(f"no model has the forecasts this rule needs: {skipped}")
    reference_model, reference = next(iter(usable.items()))
    for model, frame in usable.items():
        if frame.height != reference.height or not frame.select(PRICE_COLUMNS).equals(
            reference.select(PRICE_COLUMNS)
        ):
            raise ValueError(
                f"forecasts of {model!r} and {reference_model!r} cover different rows or prices; "
                "every model must be backtested on the same test split"
            )
    tradable = np.ones(reference.height, dtype=bool)
    for frame in usable.values():
        tradable &= ~np.isnan(frame.select(config.forecast_columns()).to_numpy()).any(axis=1)
    bars = {m: backtest_frame(f, config, tradable) for m, f in usable.items()}
    return BacktestResult(config, bars, {m: summarize(b) for m, b in bars.items()}, skipped)


def load_forecasts(run_dir: Path, data: Data | None = None, again: bool = False) -> dict[str, pl.DataFrame]:
    """RUN/forecasts/<model>.parquet for every model in RUN (and the oracle when present).

    A trained model (RUN/<model>/metrics.csv) without forecasts gets them from
    `hfformer.predict.forecast_frame` on `data`, written to RUN/forecasts/<model>.parquet: a read of
    the test split, recorded (hfformer/protocol.py; `again`: a second read, knowingly)."""
    run_dir = Path(run_dir)
    forecast_dir = run_dir / "forecasts"
    trained = sorted(
        p.parent.name for p in run_dir.glob("*/metrics.csv") if p.parent.name != "forecasts"
    )
    lacking = [m for m in trained if not (forecast_dir / f"{m}.parquet").exists()]
    if lacking:
        if data is None:
            raise ValueError(
                f"{run_dir} has no forecasts for {lacking}; pass --data to compute them"
            )
        from hfformer.config import read_run_config
        from hfformer.data import prepare
        from hfformer.predict import forecast_frame
        from hfformer.protocol import record_test_read

        prep = prepare(data, read_run_config(run_dir).data)
        record_test_read(run_dir, prep, data, "hfformer backtest", lacking, again)
        forecast_dir.mkdir(exist_ok=True)
        for model in lacking:
            with atomic_output(forecast_dir / f"{model}.parquet", checksum=True) as partial:
                forecast_frame(run_dir, model, data, split="test", prep=prep).write_parquet(partial)
    frames = {p.stem: pl.read_parquet(checked(p)) for p in sorted(forecast_dir.glob("*.parquet"))}
    if not frames:
        raise ValueError(f"{run_dir} has no trained models and no forecasts/*.parquet")
    return frames


def write_backtest(run_dir: Path, result: BacktestResult) -> list[Path]:
    """RUN/backtest.json (config, summaries, skipped) and RUN/backtest.parquet (bars + `model`)."""
    run_dir = Path(run_dir)
    summary_path, bars_path = run_dir / "backtest.json", run_dir / "backtest.parquet"
    payload = {
        "config": {**dataclasses.asdict(result.config), "fees": fee_preset(result.config)},
        "models": result.summary,
        "skipped": result.skipped,
    }
    bars = pl.concat(
        [
            b.with_columns(model=pl.lit(m)).select("model", *b.columns)
            for m, b in result.bars.items()
        ]
    )
    with atomic_outputs([summary_path, bars_path], checksum=True) as (summary_partial, bars_partial):
        summary_partial.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
        bars.write_parquet(bars_partial)
    return [summary_path, bars_path]


def read_backtest(run_dir: Path) -> tuple[dict, pl.DataFrame]:
    """What `write_backtest` wrote: the JSON payload and the bars of every model."""
    run_dir = Path(run_dir)
    return orjson.loads(checked(run_dir / "backtest.json").read_bytes()), pl.read_parquet(
        checked(run_dir / "backtest.parquet")
    )
