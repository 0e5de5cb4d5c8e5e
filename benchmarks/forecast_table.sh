#!/usr/bin/env bash
# The forecasting comparison on the regime market (v2) over several market seeds: for each seed,
# a 120-minute market with its oracle and ceiling; the zero forecast, the ridge on lagged returns
# (naive), the per-level linear model, LightGBM, the LSTM and HFformer, trained on the same windows
# with the settings chosen on validation (hfformer/tuned.toml) and the same brief budget for both
# neural models; each evaluated once on its test split. Then one table over the seeds
# (benchmarks/forecast_table.py) and the paired comparison of HFformer with each other model.
# Usage: bash benchmarks/forecast_table.sh [OUT_DIR] [SEEDS]   (default runs/forecast_table "0 1 2")
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/forecast_table}
seeds=${2:-0 1 2}
minutes=${TABLE_MINUTES:-120}
epochs=${TABLE_EPOCHS:-3}
windows=${TABLE_WINDOWS:-30000}  # training windows per epoch, the same for the LSTM and HFformer
models=${TABLE_MODELS:-naive linear lightgbm lstm hfformer}

for seed in $seeds; do
  data="$out/seed$seed/data"
  [ -f "$data/book.parquet" ] || ticks synth --market regime --minutes "$minutes" --seed "$seed" --out "$data"
  for model in $models; do
    [ -f "$out/seed$seed/$model/$model/checkpoint.pt" ] && continue
    hfformer train --data "$data" --out "$out/seed$seed/$model" --model "$model" \
      --config "$root/hfformer/tuned.toml" --set train.max_epochs="$epochs" \
      --set train.max_train_windows="$windows" --set train.progress=false
  done
  for model in $models; do
    [ -f "$out/seed$seed/$model/evaluation.json" ] || hfformer evaluate "$out/seed$seed/$model" --data "$data" --json
  done
done
python "$root/benchmarks/forecast_table.py" "$out"
