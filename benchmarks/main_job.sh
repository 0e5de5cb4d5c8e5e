#!/usr/bin/env bash
# The main job on embedded defaults, end to end:
#   data (synthetic market + the real Binance recordings when present) -> train HFformer, LSTM and
#   the ridge baseline briefly -> evaluate -> backtest -> report -> load the same ticks into every
#   reachable database -> timed, checked query suite -> database report.
# Usage: bash benchmarks/main_job.sh [OUT_DIR]   (default runs/main; about 5 minutes on 2 quiet cores)
set -euo pipefail

out=${1:-runs/main}
shared=${HFT_SHARED_DATA:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
binance=$shared/binance
minutes=${MAIN_JOB_MINUTES:-120}
epochs=${MAIN_JOB_EPOCHS:-3}
windows=${MAIN_JOB_WINDOWS:-30000}  # training windows per epoch (a brief run, not a converged one)
export PYKX_UNLICENSED=true
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

step "data: synthetic market ($minutes minutes, with its oracle)"
ticks synth --minutes "$minutes" --seed 7 --out "$out/synth"

train_all() {  # $1 data, $2 run dir
  for model in naive lstm hfformer; do
    hfformer train --data "$1" --out "$2" --model "$model" \
      --set train.max_epochs="$epochs" --set train.max_train_windows="$windows" --set train.progress=false
  done
  hfformer evaluate "$2" --data "$1"
  hfformer backtest "$2" --data "$1"
  hfformer report "$2"
}

step "forecasting on the synthetic market"
train_all "$out/synth" "$out/synth_run"

if [ -f "$binance/spot_btcusdt_20240808.gz" ] && [ -f "$binance/spot_btcusdt_20240809.gz" ]; then
  step "data: real Binance spot book, 10 levels every 100 ms"
  ticks book "$binance/spot_btcusdt_20240808.gz" "$binance/spot_btcusdt_20240809.gz" \
    --levels 10 --every 100ms --out "$out/binance/book.parquet"
  step "forecasting on the real Binance book"
  train_all "$out/binance/book.parquet" "$out/binance_run"
  step "database benchmark data: the real Binance recordings (spot and USD-M venues)"
  dbbench dataset --source binance --out "$out/db_data"
else
  step "database benchmark data: synthetic (real recordings not found under $binance)"
  dbbench dataset --source synth --rows 200000 --out "$out/db_data"
fi

step "database benchmark (engines without a reachable server or license are skipped, with the reason)"
dbbench run --data "$out/db_data" --out "$out/db/results.json"
dbbench report "$out/db/results.json" --out "$out/db/report"

step "done"
echo "forecasting report: $out/synth_run/report/report.html"
[ -d "$out/binance_run" ] && echo "forecasting report (real Binance): $out/binance_run/report/report.html"
echo "database report:    $out/db/report/report.html"
