"""The HFformer quality target on the default synthetic market, with the shipped defaults.

    python benchmarks/bench_oracle.py [--minutes 240] [--seed 0] [--epochs N] [--threads 2]
                                      [--set key=value ...] [--keep DIR] [--json OUT.json]

Generates the market (`ticks synth --minutes M --seed S`), trains hfformer, lstm and naive (ridge)
with default.toml (or --config FILE over it, plus any --set), evaluates every model and the zero forecast on the test split
and prints, per horizon, each model's R2 as a fraction of the oracle's R2 with its block-bootstrap
95% interval. Target (issue 3): at h = 5 HFformer reaches >= 80% of the oracle's R2 and beats the
zero and LSTM baselines (higher R2). The synthetic oracle is the exact conditional mean, so the
fraction is how much of the predictable part a model captured.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import polars as pl

from data_loaders.synth import generate
from hfformer.config import load_config
from hfformer.evaluate import evaluate
from hfformer.train import train

MODELS = ("hfformer", "lstm", "naive")
SHOWN = ("hfformer", "lstm", "naive", "zero")
HORIZONS = (1, 3, 5, 10, 20, 30)
TARGET_H, TARGET_FRACTION = 5, 0.8


def run(minutes: float, seed: int, overrides: list[str], workdir: Path, config: Path | None = None) -> dict:
    data, out = workdir / "synth", workdir / "run"
    tic = time.perf_counter()
    generate(data, minutes=minutes, seed=seed)
    cfg = load_config(config, overrides=["train.progress=false", *overrides])
    fitted = {}
    for kind in MODELS:
        fitted[kind] = train(data, out, kind, cfg)
        print(f"trained {kind}: {({k: fitted[kind].get(k) for k in ('epochs', 'best_val_loss', 'stopped', 'seconds')})}",
              flush=True)
    table = evaluate(out, data, n_boot=200)["table"]
    rows = {(r["model"], r["horizon"]): r for r in table.iter_rows(named=True)}
    fractions = {m: {h: {k: round(rows[m, h][k], 3) for k in ("r2_oracle_frac", "r2_oracle_frac_lo",
                                                                "r2_oracle_frac_hi", "r2", "sign_acc")}
                     for h in HORIZONS} for m in SHOWN + ("oracle",)}
    hf, lstm, zero = (rows[m, TARGET_H]["r2"] for m in ("hfformer", "lstm", "zero"))
    frac = rows["hfformer", TARGET_H]["r2_oracle_frac"]
    return {
        "minutes": minutes, "seed": seed, "config": None if config is None else str(config),
        "overrides": overrides,
        "test_windows": rows["hfformer", TARGET_H]["windows"],
        "training": {k: {f: v.get(f) for f in ("epochs", "steps", "best_val_loss", "stopped",
                                                "last_windows_per_s", "seconds")} for k, v in fitted.items()},
        "by_horizon": fractions,
        "target": {"h": TARGET_H, "hfformer_oracle_fraction": round(frac, 3),
                   "reaches_80pct": bool(frac >= TARGET_FRACTION), "beats_zero": bool(hf > zero),
                   "beats_lstm": bool(hf > lstm),
                   "met": bool(frac >= TARGET_FRACTION and hf > zero and hf > lstm)},
        "seconds": round(time.perf_counter() - tic, 1),
    }


def print_fractions(result: dict) -> None:
    by = result["by_horizon"]
    table = pl.DataFrame({"h": list(HORIZONS), **{
        m: [f"{by[m][h]['r2_oracle_frac']:.2f} [{by[m][h]['r2_oracle_frac_lo']:.2f}, "
            f"{by[m][h]['r2_oracle_frac_hi']:.2f}]" for h in HORIZONS] for m in SHOWN},
        "oracle R2": [by["oracle"][h]["r2"] for h in HORIZONS]})
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print("test split: R2 as a fraction of the oracle's R2 [95% block-bootstrap interval]")
        print(table)
    t = result["target"]
    print(f"target h={t['h']}: hfformer {t['hfformer_oracle_fraction']:.3f} of oracle (>= 0.8: "
          f"{t['reaches_80pct']}), beats zero: {t['beats_zero']}, beats lstm: {t['beats_lstm']} -> "
          f"{'MET' if t['met'] else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="train.max_epochs (default: default.toml)")
    parser.add_argument("--threads", type=int, default=2, help="train.threads")
    parser.add_argument("--config", type=Path, default=None, help="TOML over default.toml, e.g. hfformer/tuned.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value")
    parser.add_argument("--keep", type=Path, default=None, help="keep data and run here (else a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args()
    overrides = [f"train.threads={args.threads}", *args.overrides]
    if args.epochs is not None:
        overrides.append(f"train.max_epochs={args.epochs}")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.minutes, args.seed, overrides, args.keep, args.config)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(args.minutes, args.seed, overrides, Path(tmp), args.config)
    print_fractions(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
