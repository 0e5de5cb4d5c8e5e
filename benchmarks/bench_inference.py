"""HFformer inference speed on one CPU core: batch-1 latency and batched throughput, per path.

Paths: eager PyTorch (the plain forward, the reference point: SDPA attention and matmul LIF, with
hfformer/kernels.py switched off), ONNX Runtime (single thread), the
lean numba kernel (lean.FastHFformer) on z-scored windows, and the same kernel z-scoring windows
of a feature matrix itself (forecast_ends: what `hfformer predict` runs). Default model size,
random weights (speed does not depend on training). Run one core:

    taskset -c 0 python benchmarks/bench_inference.py            # prints JSON figures
    taskset -c 0 python -m pytest benchmarks/bench_inference.py --benchmark-only
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # NumPy's BLAS on one thread, before import
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hfformer import kernels
from hfformer.export import export_onnx, onnx_session
from hfformer.lean import FastHFformer
from hfformer.model import HFformer, HFformerConfig

torch.set_num_threads(1)
T, F, BATCH = 100, 42, 256


def make_paths(workdir: Path) -> dict:
    """name -> callable(x: np.ndarray (B, T, F)) -> forecasts; all the same model."""
    torch.manual_seed(0)
    model = HFformer(HFformerConfig(n_features=F)).eval()
    export_onnx(model, F, T, workdir / "hfformer.onnx")
    session = onnx_session(workdir / "hfformer.onnx")
    fast = FastHFformer(model)
    features = np.random.default_rng(1).standard_normal((BATCH * T, F), dtype=np.float32)

    def eager(x):
        with torch.no_grad(), kernels.plain_torch():
            return model(torch.from_numpy(x))

    def inference_mode(x):
        with torch.inference_mode(), kernels.plain_torch():
            return model(torch.from_numpy(x))

    return {"eager": eager, "inference_mode": inference_mode,
            "onnxruntime": lambda x: session.run(None, {"x": x})[0], "numba": fast,
            # the windows ending at rows T-1, 2T-1, ... of a feature matrix: as many as x holds
            "numba_from_features": lambda x: fast.forecast_ends(features, np.arange(x.shape[0]) * T + T - 1)}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_paths(tmp_path_factory.mktemp("onnx"))


@pytest.mark.parametrize("path", ["eager", "inference_mode", "onnxruntime", "numba", "numba_from_features"])
def test_batch1_latency(benchmark, paths, path):
    x = np.random.default_rng(0).standard_normal((1, T, F), dtype=np.float32)
    benchmark(paths[path], x)


@pytest.mark.parametrize("path", ["eager", "inference_mode", "onnxruntime", "numba", "numba_from_features"])
def test_batched_throughput(benchmark, paths, path):
    x = np.random.default_rng(0).standard_normal((BATCH, T, F), dtype=np.float32)
    benchmark.extra_info["windows"] = BATCH
    benchmark(paths[path], x)


def measure(fn, x: np.ndarray, seconds: float) -> list[float]:
    for _ in range(5):
        fn(x)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return times


def main(seconds: float = 3.0) -> dict:
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, T, F), dtype=np.float32)
    xb = rng.standard_normal((BATCH, T, F), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_paths(Path(tmp))
        result = {"cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                  "batch1_median_us": {}, "batch1_best_us": {}, "batch1_p90_us": {},
                  "batched_windows_per_s_median": {}, "batched_windows_per_s_best": {}}
        for name, fn in paths.items():
            times = measure(fn, x1, seconds)
            result["batch1_median_us"][name] = round(statistics.median(times) * 1e6, 1)
            result["batch1_best_us"][name] = round(min(times) * 1e6, 1)
            result["batch1_p90_us"][name] = round(float(np.percentile(times, 90)) * 1e6, 1)
            times = measure(fn, xb, seconds)
            result["batched_windows_per_s_median"][name] = round(BATCH / statistics.median(times))
            result["batched_windows_per_s_best"][name] = round(BATCH / min(times))
    for key in ("batch1_median_us", "batched_windows_per_s_median"):
        base, per = result[key]["eager"], result[key]
        result[key.replace("_us", "").replace("_median", "") + "_speedup_vs_eager"] = {
            k: round(base / v if key.endswith("_us") else v / base, 2) for k, v in per.items()}
    return result


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0), indent=1))
