"""`hfformer evaluate RUN --data PATH`: every model of a run on exactly the same test windows.

Per model and horizon: sign accuracy, R2, MSE, pinball loss, 80% interval coverage, and on
synthetic data R2 as a fraction of the oracle's (two estimates, below), each with a
block-bootstrap 95% interval (blocks of window + max horizon rows, since neighbouring windows
overlap).

Definitions (f = median forecast, y = realised scaled target):
- sign_acc: over windows with y != 0, the share with sign(f) == sign(y); f == 0 counts one half;
- r2: 1 - sum (y - f)^2 / sum (y - mean y)^2;  mse: mean (y - f)^2;
- pinball: mean over the model's quantiles (q50 only for point models: not comparable with
  quantile models);  coverage80: share of y in [q10, q90] (quantile models only);
- r2_oracle_frac: r2 / the oracle's r2 (o = the oracle's forecast), on the realised targets;
- oracle_frac: 1 - sum (f - o)^2 / sum (o - mean o)^2, the same fraction without the realised
  noise. o is the exact conditional mean, so y - o is uncorrelated with f - o and
  E (y - f)^2 = E (y - o)^2 + E (o - f)^2: both estimate 1 - E (o - f)^2 / Var o, but
  r2_oracle_frac adds the sample's 2 sum (y - o)(o - f), a noise term that differs by model and
  dominates differences between good models (bootstrap intervals ~10x wider).
- ceiling_frac (the regime market): the same as oracle_frac against the ceiling c, the best
  forecast from what the market showed (E[r_h | the observables], a forward filter over the hidden
  regime). A model sees no more than that, so y - c is uncorrelated with f - c in the same way;
  1 is the most any model can reach, where oracle_frac's 1 needs the hidden state.
Writes RUN/evaluation.{csv,json} and RUN/forecasts/<model>.parquet (read by the backtest), and
records the read of the test split in RUN/test_reads.json (hfformer/protocol.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

from data_loaders.atomic import atomic_output, write_bytes
from hfformer.bootstrap import block_sums, bootstrap_counts
from hfformer.config import PAPER_HORIZONS, read_run_config
from hfformer.data import Data, data_label, data_warnings, describe_market, prepare
from hfformer.predict import Forecaster, frame
from hfformer.protocol import record_test_read

METRICS = ("sign_acc", "r2", "mse", "pinball", "coverage80")
STATS = ("n", "sign_n", "sign_hits", "sse", "sum_y", "sum_y2", "pinball", "covered")
ORACLE_STATS = ("n", "sq_dev", "sum_o", "sum_o2")  # of the median forecast f from the oracle o


def run_models(run_dir: Path) -> list[str]:
    """Trained models of a run (directories holding checkpoint.pt), in name order."""
    return sorted(p.parent.name for p in Path(run_dir).glob("*/checkpoint.pt"))


def median_forecast(fc: np.ndarray, qs: list[float]) -> np.ndarray:
    """(n, H) float64 point forecast: the quantile nearest 0.5 of forecasts fc (n, H, Q)."""
    mid = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))
    return fc[:, :, mid].astype(np.float64)


def sample_stats(y: np.ndarray, fc: np.ndarray, qs: list[float]) -> np.ndarray:
    """(n, S, H) per-window additive statistics (STATS order) of forecasts fc (n, H, Q)."""
    f = median_forecast(fc, qs)
    y = y.astype(np.float64)
    hit = np.where(f == 0, 0.5, np.sign(f) == np.sign(y)) * (y != 0)
    q = np.asarray(qs)
    err = y[:, :, None] - fc
    pin = np.maximum(q * err, (q - 1) * err).mean(axis=2)
    if 0.1 in qs and 0.9 in qs:
        covered = (y >= fc[:, :, qs.index(0.1)]) & (y <= fc[:, :, qs.index(0.9)])
    else:
        covered = np.full(y.shape, np.nan)
    return np.stack([np.ones_like(y), y != 0, hit, (y - f) ** 2, y, y * y, pin, covered], axis=1)


def oracle_stats(fc: np.ndarray, qs: list[float], oracle: np.ndarray) -> np.ndarray:
    """(n, 4, H) per-window additive statistics (ORACLE_STATS order) of forecasts fc (n, H, Q)
    against the oracle's forecast (n, H)."""
    f, o = median_forecast(fc, qs), oracle.astype(np.float64)
    return np.stack([np.ones_like(o), (f - o) ** 2, o, o * o], axis=1)


def oracle_frac_from_sums(s: np.ndarray) -> np.ndarray:
    """oracle_frac from summed ORACLE_STATS s (..., 4, H)."""
    n, sq_dev, so, so2 = (s[..., i, :] for i in range(len(ORACLE_STATS)))
    return 1 - sq_dev / (so2 - so * so / n)


def metrics_from_sums(s: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics from summed statistics s (..., S, H)."""
    n, sign_n, hits, sse, sy, sy2, pin, cov = (s[..., i, :] for i in range(len(STATS)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"sign_acc": hits / sign_n, "r2": 1 - sse / (sy2 - sy * sy / n), "mse": sse / n,
                "pinball": pin / n, "coverage80": cov / n}


def evaluate(run_dir: Path, data: Data, n_boot: int = 200, seed: int = 0,
             write_forecasts: bool = True, again: bool = False) -> dict[str, Any]:
    """Evaluate every model of RUN (plus zero, and the oracle and ceiling on synthetic data) on the test
    split, a read recorded in RUN/test_reads.json (hfformer/protocol.py; `again`: a second read, knowingly)."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    prep = prepare(data, cfg.data)
    ends = prep.ends["test"]
    if ends.size == 0:
        raise ValueError(f"{data_label(data)}: the test split has no windows")
    references = {name: known[ends] for name in ("oracle", "ceiling") if (known := getattr(prep, name)) is not None}
    trained = run_models(run_dir)
    warnings = record_test_read(run_dir, prep, data, "hfformer evaluate", trained, again)
    models = trained + ["zero"] + list(references)
    horizons = cfg.data.horizons
    y = prep.y[ends]
    block = cfg.data.window + max(horizons)
    counts = bootstrap_counts(-(-ends.size // block), n_boot, seed)
    point: dict[str, dict[str, np.ndarray]] = {}
    boot: dict[str, dict[str, np.ndarray]] = {}
    if write_forecasts:
        (run_dir / "forecasts").mkdir(exist_ok=True)
    for name in models:
        f = Forecaster(run_dir, name)
        fc = f.forecast(prep, ends)
        if write_forecasts:
            with atomic_output(run_dir / "forecasts" / f"{name}.parquet", checksum=True) as partial:
                frame(prep, ends, fc, f.quantiles).write_parquet(partial)
        sums = block_sums(sample_stats(y, fc, f.quantiles), block)  # (nb, S, H)
        point[name] = metrics_from_sums(sums.sum(axis=0))
        boot[name] = metrics_from_sums(np.einsum("bk,ksh->bsh", counts, sums))
        for reference, known in references.items():  # oracle_frac, ceiling_frac
            dev = block_sums(oracle_stats(fc, f.quantiles, known), block)
            point[name][f"{reference}_frac"] = oracle_frac_from_sums(dev.sum(axis=0))
            boot[name][f"{reference}_frac"] = oracle_frac_from_sums(np.einsum("bk,ksh->bsh", counts, dev))
    metrics = list(METRICS) + [f"{reference}_frac" for reference in references if reference != "oracle"]
    if "oracle" in references:
        metrics += ["r2_oracle_frac", "oracle_frac"]
        for name in models:  # the oracle is scored last, so its R2 is known only now
            for scores in (point, boot):
                scores[name]["r2_oracle_frac"] = scores[name]["r2"] / scores["oracle"]["r2"]
    records = []
    for name in models:
        for j, h in enumerate(horizons):
            rec: dict[str, Any] = {"model": name, "horizon": h, "windows": int(ends.size)}
            for m in metrics:
                samples = boot[name][m][:, j]
                lo, hi = np.nanpercentile(samples, [2.5, 97.5]) if np.isfinite(samples).any() else (np.nan, np.nan)
                rec.update({m: float(point[name][m][j]), f"{m}_lo": float(lo), f"{m}_hi": float(hi)})
            records.append(rec)
    table = pl.DataFrame(records)
    write_bytes(run_dir / "evaluation.csv", table.write_csv().encode())
    summary = {"run": str(run_dir), "data": data_label(data), "market": describe_market(prep), "split": "test",
               "windows": int(ends.size),
               "span_hours": {part: prep.span_hours(part) for part in ("train", "val", "test")},
               "too_little_data": data_warnings(prep), "models": models,
               "bootstrap": {"resamples": n_boot, "block_windows": block, "seed": seed}}
    write_bytes(run_dir / "evaluation.json",
                orjson.dumps({**summary, "metrics": records}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return {**summary, **({"second_read": warnings} if warnings else {}),
            "seconds": round(time.perf_counter() - started, 3), "table": table}


def print_table(table: pl.DataFrame, console: Console | None = None) -> None:
    """The paper's layout: one row per horizon, sign accuracy / R2 per model; on synthetic data also
    oracle_frac (r2_oracle_frac is R2 over the oracle column's R2)."""
    console = console or Console()
    horizons = [h for h in PAPER_HORIZONS if h in set(table["horizon"])] or sorted(set(table["horizon"]))
    models = list(dict.fromkeys(table["model"]))
    oracle = "oracle_frac" in table.columns
    ceiling = "ceiling_frac" in table.columns
    t = Table(title="test split: sign accuracy / R2"
              + (" / fraction of the oracle's R2 (oracle_frac)" if oracle else "")
              + (" / of the ceiling's (ceiling_frac)" if ceiling else ""))
    t.add_column("h", justify="right")
    for m in models:
        t.add_column(m, justify="right")
    for h in horizons:
        cells = []
        for m in models:
            r = table.filter((pl.col("model") == m) & (pl.col("horizon") == h)).row(0, named=True)
            cell = f"{r['sign_acc']:.3f} / {r['r2']:.3f}"
            cell += f" / {r['oracle_frac']:.3f}" if oracle else ""
            cells.append(cell + (f" / {r['ceiling_frac']:.3f}" if ceiling else ""))
        t.add_row(str(h), *cells)
    console.print(t)
