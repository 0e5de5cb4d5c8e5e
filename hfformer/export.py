"""`hfformer export RUN --format onnx --out model.onnx`.

The graph takes normalised windows x (B, T, F) float32 (z-scored per window; `preprocessing` says
how for a run) and returns forecasts (B, H, Q) float32; the batch axis is dynamic. The check runs
ONNX Runtime (the `[onnx]` extra) on random windows and requires every output within `tolerance`
of the PyTorch forward.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfformer.checkpoint import TORCH_MODELS, Trained, load_trained

OPSET = 17


def onnx_session(path: Path, threads: int = 1):
    """A single-threaded ONNX Runtime session with all graph optimisations (the fast CPU path)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(model: torch.nn.Module, n_features: int, window: int, out: Path) -> None:
    model.eval()
    x = torch.randn(1, window, n_features)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(out), dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["forecast"],
                          dynamic_axes={"x": {0: "batch"}, "forecast": {0: "batch"}})


def check_onnx(model: torch.nn.Module, path: Path, n_features: int, window: int,
               batch: int = 64, seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| over a batch of random standard-normal windows."""
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, window, n_features),
                                                                     dtype=np.float32))
    with torch.inference_mode():
        expected = model(x).numpy()
    got = onnx_session(path).run(None, {"x": x.numpy()})[0]
    return float(np.abs(got - expected).max())


def preprocessing(f: Trained) -> str:
    """How the graph's input windows are made from the run's features (Prepared.dataset)."""
    if f.scaling is None:
        return "every feature z-scored per window: (x - mean) / (std + 0.01)"
    names = [f.scaling.names[c] for c in f.scaling.columns]
    return (f"{', '.join(names)}: standardised (sizes as logs) with the training statistics in the "
            f"checkpoint's 'scaling'; the other features z-scored per window: (x - mean) / (std + 0.01)")


def export(run_dir: Path, out: Path, model: str = "hfformer", fmt: str = "onnx",
           tolerance: float = 1e-4) -> dict[str, Any]:
    if fmt != "onnx":
        raise ValueError(f"unsupported format {fmt!r}: only onnx")
    started = time.perf_counter()
    f = load_trained(Path(run_dir), model)
    if f.kind not in TORCH_MODELS:
        raise ValueError(f"{model} is a {f.kind} model: only torch models ({', '.join(TORCH_MODELS)}) export")
    n_features, window = len(f.feature_names), f.cfg.data.window
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    export_onnx(f.model, n_features, window, tmp)
    err = check_onnx(f.model, tmp, n_features, window)
    if not err <= tolerance:
        tmp.unlink()
        raise ValueError(f"ONNX Runtime disagrees with PyTorch: max |diff| {err:.3g} > {tolerance:g}")
    tmp.replace(out)
    return {"model": model, "format": fmt, "out": str(out), "bytes": out.stat().st_size,
            "inputs": f"x (batch, {window}, {n_features})", "preprocessing": preprocessing(f),
            "outputs": f"forecast (batch, {len(f.cfg.data.horizons)}, {len(f.quantiles)})",
            "max_abs_diff": err, "seconds": round(time.perf_counter() - started, 3)}
