"""`hfformer export RUN --format onnx --out model.onnx`, and the fast CPU inference paths.

The graph takes z-scored windows x (B, T, F) float32 and returns forecasts (B, H, Q) float32;
the batch axis is dynamic. The check runs ONNX Runtime (the `[onnx]` extra) on random windows and
requires every output within `tolerance` of the PyTorch forward.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import torch

from hfformer.model import HFformer
from hfformer.predict import Forecaster

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


def export(run_dir: Path, out: Path, model: str = "hfformer", fmt: str = "onnx",
           tolerance: float = 1e-4) -> dict[str, Any]:
    if fmt != "onnx":
        raise ValueError(f"unsupported format {fmt!r}: only onnx")
    started = time.perf_counter()
    f = Forecaster(Path(run_dir), model)
    if f.kind not in ("hfformer", "lstm"):
        raise ValueError(f"{model} is a {f.kind} model: only torch models (hfformer, lstm) export")
    n_features, window = len(f.ckpt["feature_names"]), f.cfg.data.window
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
            "inputs": f"x (batch, {window}, {n_features})",
            "outputs": f"forecast (batch, {len(f.cfg.data.horizons)}, {len(f.quantiles)})",
            "max_abs_diff": err, "seconds": round(time.perf_counter() - started, 3)}


# ---------------------------------------------------------------------------------------------
# A lean CPU path: the HFformer forward in NumPy (BLAS matmuls over all B*T rows at once) with
# numba kernels where PyTorch is slow for this shape: the causal softmax of 6-wide heads (only
# s <= t is computed, exp by a vectorisable polynomial with relative error ~4e-7), the LIF scan
# along time and the residual LayerNorm. Same results as the PyTorch eval forward (tested).

_POW2 = np.array([2.0**-k for k in range(128)], dtype=np.float32)  # 2^-n for exp's exponent
_F = np.float32


@nb.njit(fastmath=True, cache=True)
def _causal_softmax(s, scale):
    # s (N, T, T) attention scores in place -> causal softmax rows (zeros above the diagonal).
    # exp(v) = 2^-n * exp(r), r = v + n ln2 in [-ln2/2, ln2/2]: a degree-6 polynomial times 2^-n
    # built from its float32 bits, in loops LLVM vectorises.
    N, T = s.shape[0], s.shape[1]
    bits = np.empty(T, np.int32)
    pow2 = bits.view(np.float32)
    for i in range(N):
        for t in range(T):
            row = s[i, t]
            m = row[0]
            for j in range(1, t + 1):
                m = max(m, row[j])
            for j in range(t + 1):
                v = max((row[j] - m) * scale, _F(-87.0))
                n = np.floor(v * _F(-1.4426950408889634) + _F(0.5))
                r = v + n * _F(0.6931471805599453)
                row[j] = _F(1.0) + r * (_F(1.0) + r * (_F(0.5) + r * (_F(1 / 6) + r * (
                    _F(1 / 24) + r * (_F(1 / 120) + r * _F(1 / 720))))))
                bits[j] = (127 - np.int32(n)) << 23
            total = _F(0.0)
            for j in range(t + 1):
                row[j] *= pow2[j]
                total += row[j]
            inv = _F(1.0) / total
            for j in range(t + 1):
                row[j] *= inv
            for j in range(t + 1, T):
                row[j] = _F(0.0)


@nb.njit(fastmath=True, cache=True)
def _lif_scan(f, window, beta, threshold):
    # f (B*T, FF) in place -> LIF spikes along each window's time axis, state from zero
    FF = f.shape[1]
    mem = np.empty(FF, np.float32)
    for row in range(f.shape[0]):
        if row % window == 0:
            mem[:] = _F(0.0)
        for c in range(FF):
            mem[c] = beta * mem[c] + f[row, c]
            f[row, c] = _F(1.0) if mem[c] > threshold else _F(0.0)


@nb.njit(fastmath=True, cache=True)
def _add_layernorm(h, a, w, b):
    # h <- LayerNorm(h + a) row by row (eps 1e-5, as torch.nn.LayerNorm)
    C = h.shape[1]
    for t in range(h.shape[0]):
        mean = _F(0.0)
        for c in range(C):
            h[t, c] += a[t, c]
            mean += h[t, c]
        mean /= C
        var = _F(0.0)
        for c in range(C):
            var += (h[t, c] - mean) ** 2
        inv = _F(1.0) / np.sqrt(var / C + _F(1e-5))
        for c in range(C):
            h[t, c] = (h[t, c] - mean) * inv * w[c] + b[c]


class FastHFformer:
    """A trained HFformer (eval mode) without PyTorch: x (B, T, F) float32 -> (B, H, Q)."""

    def __init__(self, model: HFformer):
        if not isinstance(model, HFformer):
            raise TypeError(f"the lean path runs one HFformer, not {type(model).__name__}")
        self.config = c = model.config
        self.mid = model.head.mid

        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        self.embed = (arr(model.embed.weight.T), arr(model.embed.bias))
        self.pe = arr(model.pe) if c.pos_encoding else None
        self.blocks = [tuple(arr(t) for t in (
            k.attn.qkv.weight.T, k.attn.qkv.bias, k.attn.proj.weight.T, k.attn.proj.bias,
            k.ln_1.weight, k.ln_1.bias, k.ff.fc.weight.T, k.ff.fc.bias, k.ff.proj.weight.T,
            k.ff.proj.bias, k.ln_2.weight, k.ln_2.bias)) for k in model.blocks]
        self.decode = (arr(model.decode_step.weight.T), arr(model.decode_step.bias),
                       arr(model.decode_window.weight.T), arr(model.decode_window.bias))

    def __call__(self, x: np.ndarray, chunk: int = 32) -> np.ndarray:
        """Forecasts (B, H, Q); windows go through in chunks so the (chunk*6, T, T) scores stay in cache."""
        if x.shape[0] <= chunk:
            return self.forward(x)
        return np.concatenate([self.forward(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])

    def forward(self, x: np.ndarray) -> np.ndarray:
        c = self.config
        B, T, _ = x.shape
        C, nh = c.d_model, c.n_heads
        hs = C // nh
        h = np.ascontiguousarray(x, dtype=np.float32).reshape(B * T, -1) @ self.embed[0] + self.embed[1]
        if self.pe is not None:
            h = (h.reshape(B, T, C) + self.pe).reshape(B * T, C)
        for wqkv, bqkv, wp, bp, w1, b1, wfc, bfc, wfp, bfp, w2, b2 in self.blocks:
            qkv = (h @ wqkv + bqkv).reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
            q, k, v = (part.reshape(B * nh, T, hs) for part in qkv)
            s = np.matmul(q, k.transpose(0, 2, 1))  # (B*nh, T, T)
            _causal_softmax(s, _F(1.0 / np.sqrt(hs)))
            y = np.matmul(s, v).reshape(B, nh, T, hs).transpose(0, 2, 1, 3).reshape(B * T, C)
            _add_layernorm(h, y @ wp + bp, w1, b1)
            f = h @ wfc + bfc  # (B*T, FF)
            if c.spiking:
                _lif_scan(f, T, _F(c.beta), _F(c.threshold))
            else:
                np.maximum(f, 0, out=f)
            _add_layernorm(h, f @ wfp + bfp, w2, b2)
        wd, bd, ww, bw = self.decode
        raw = (h @ wd + bd).reshape(B, -1) @ ww + bw  # (B, H*Q)
        return quantiles_from_raw(raw.reshape(B, len(c.horizons), len(c.quantiles)), self.mid)


@nb.njit(fastmath=True, cache=True)
def _softplus(x):
    return x if x > 20.0 else np.log1p(np.exp(x))  # torch's threshold: no overflow


@nb.njit(fastmath=True, cache=True)
def quantiles_from_raw(raw, mid):
    """Twin of model.QuantileHead: raw (B, H, Q) -> median +/- cumulative softplus offsets."""
    out = np.empty_like(raw)
    for b in range(raw.shape[0]):
        for h in range(raw.shape[1]):
            out[b, h, mid] = raw[b, h, mid]
            for k in range(mid + 1, raw.shape[2]):
                out[b, h, k] = out[b, h, k - 1] + _softplus(raw[b, h, k])
            for k in range(mid - 1, -1, -1):
                out[b, h, k] = out[b, h, k + 1] - _softplus(raw[b, h, k])
    return out
