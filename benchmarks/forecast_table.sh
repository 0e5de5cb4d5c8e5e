#!/usr/bin/env bash
# The forecasting comparison on the regime market (v2) over several market seeds: for each seed,
# a 120-minute market with its oracle and ceiling; the zero forecast, the ridge on lagged returns
# (naive), the per-level linear model, LightGBM, the LSTM and HFformer, trained on the same windows
# with the settings chosen on validation (TABLE_CONFIG, default hfformer/tuned.toml) and the same
# budget for both neural models, which are trained once per training seed (TABLE_TRAIN_SEEDS; the
# baselines are deterministic: one run each); each run evaluated once on its test split. Then one
# table over the seeds (benchmarks/forecast_table.py) and the paired comparisons, each side's
# training seeds averaged per window (`hfformer compare A1,A2,A3 B1,B2,B3`).
# Runs: OUT_DIR/seed<market seed>/<model>/t<training seed>/ (baselines: t0 only).
# Usage: bash benchmarks/forecast_table.sh [OUT_DIR] [SEEDS]   (default runs/forecast_table "0 1 2")
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/forecast_table}
seeds=${2:-0 1 2}
minutes=${TABLE_MINUTES:-120}
config=${TABLE_CONFIG:-$root/hfformer/tuned.toml}
epochs=${TABLE_EPOCHS:-3}
windows=${TABLE_WINDOWS:-30000}  # training windows per epoch (0: all), the same for the LSTM and HFformer
models=${TABLE_MODELS:-naive linear lightgbm lstm hfformer}
train_seeds=${TABLE_TRAIN_SEEDS:-0}
threads=${TABLE_THREADS:-0}  # torch threads per training run (0: torch's default)
sets=()  # TABLE_SETS: more settings for every model, e.g. "data.horizons=[1,2,3,4,5]"
for s in ${TABLE_SETS:-}; do sets+=(--set "$s"); done

for seed in $seeds; do
  data="$out/seed$seed/data"
  [ -f "$data/book.parquet" ] || ticks synth --market regime --minutes "$minutes" --seed "$seed" --out "$data"
  for model in $models; do
    case $model in lstm|hfformer) runs=$train_seeds ;; *) runs=0 ;; esac
    for t in $runs; do
      run="$out/seed$seed/$model/t$t"
      [ -f "$run/$model/checkpoint.pt" ] || hfformer train --data "$data" --out "$run" --model "$model" \
        --config "$config" --set train.max_epochs="$epochs" --set train.max_train_windows="$windows" \
        --set train.seed="$t" --set train.threads="$threads" --set train.progress=false "${sets[@]}"
      [ -f "$run/evaluation.json" ] || hfformer evaluate "$run" --data "$data" --json > /dev/null
    done
  done
done
python "$root/benchmarks/forecast_table.py" "$out"
