#!/usr/bin/env bash
# The main job on embedded defaults, end to end:
#   data (synthetic regime market + the real Binance recordings when present) -> train the ridge,
#   linear and LightGBM baselines, the LSTM and HFformer with the settings chosen on the regime market's
#   validation split (hfformer/tuned_v2.toml, at the brief budget below), and HFformer
#   with the paper's settings as an ablation -> evaluate -> backtest -> reports -> start every
#   database server this machine can run -> load the same ticks into each, beside embedded chDB ->
#   timed, checked query suite -> database report -> one summary screen.
# Usage: bash benchmarks/main_job.sh [OUT_DIR]   (default runs/main; 5-10 minutes on 2 cores)
# The servers it starts live in OUT_DIR/servers and are stopped on exit, on failure and on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-runs/main}
binance=${HFT_SHARED_DATA:-$root/../shared/data}/binance
minutes=${MAIN_JOB_MINUTES:-120}
epochs=${MAIN_JOB_EPOCHS:-3}
windows=${MAIN_JOB_WINDOWS:-30000}  # training windows per epoch (a brief run, not a converged one)
export PYKX_UNLICENSED=true
mkdir -p "$out"
export DBBENCH_SERVERS_DIR=$(cd "$out" && pwd)/servers

stop_servers() { dbbench servers down >/dev/null 2>&1 || true; }
trap stop_servers EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

train() {  # $1 data, $2 run dir, $3 config, then the models
  local data=$1 run=$2 config=$3
  shift 3
  for model in "$@"; do
    hfformer train --data "$data" --out "$run" --model "$model" --config "$config" \
      --set train.max_epochs="$epochs" --set train.max_train_windows="$windows" --set train.progress=false
  done
  hfformer evaluate "$run" --data "$data"
  hfformer backtest "$run" --data "$data"
}

step "data: synthetic market ($minutes minutes, with its oracle)"
ticks synth --minutes "$minutes" --seed 7 --out "$out/synth"

step "forecasting on the synthetic market: settings chosen on its validation split (hfformer/tuned_v2.toml)"
train "$out/synth" "$out/synth_run" "$root/hfformer/tuned_v2.toml" naive linear lightgbm lstm hfformer
hfformer report "$out/synth_run"

step "ablation: HFformer with the paper's settings (hfformer/default.toml), same budget"
train "$out/synth" "$out/synth_paper" "$root/hfformer/default.toml" hfformer

if [ -f "$binance/spot_btcusdt_20240808.gz" ] && [ -f "$binance/spot_btcusdt_20240809.gz" ]; then
  step "data: real Binance spot book, 10 levels every 100 ms (11 minutes: too short to rank models)"
  ticks book "$binance/spot_btcusdt_20240808.gz" "$binance/spot_btcusdt_20240809.gz" \
    --levels 10 --every 100ms --out "$out/binance/book.parquet"
  step "forecasting on the real Binance book (hfformer/tuned_v2.toml: nothing is chosen on 11 minutes)"
  train "$out/binance/book.parquet" "$out/binance_run" "$root/hfformer/tuned_v2.toml" naive linear lightgbm lstm hfformer
  hfformer report "$out/binance_run"
  step "database benchmark data: the real Binance recordings (spot and USD-M venues)"
  dbbench dataset --source binance --out "$out/db_data"
else
  step "database benchmark data: synthetic (real recordings not found under $binance)"
  dbbench dataset --source synth --rows 200000 --out "$out/db_data"
fi

step "database servers: every engine this machine can run (skipped ones say why and how to install)"
dbbench servers up --json > "$out/servers.json"
eval "$(dbbench servers up --export 2>/dev/null)"  # the servers just started: their DSNs

step "database benchmark: chDB embedded, the servers above, each answer checked, hot and cold"
dbbench run --data "$out/db_data" --cold --out "$out/db/results.json"
dbbench report "$out/db/results.json" --out "$out/db/report"
stop_servers

step "summary"
python "$root/benchmarks/main_summary.py" "$out"
echo "reports: $out/synth_run/report/report.html"
[ -d "$out/binance_run" ] && echo "         $out/binance_run/report/report.html"
echo "         $out/db/report/report.html"
