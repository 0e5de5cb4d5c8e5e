"""The lean CPU inference path: the whole HFformer eval forward of one window in one numba kernel.

float32, every buffer allocated once per call, weights pre-transposed (and 1/sqrt(head size)
folded into the query weights). Where it beats PyTorch for this shape: only the causal triangle
s <= t of the attention is computed, its exp a vectorised polynomial, the LIF neuron is a scan
along time instead of a (T, T) matmul, and there is no per-op dispatch. Windows are z-scored in
the kernel when given as rows of the feature matrix (forecast_ends), which is what
`hfformer predict` runs. Agrees with the PyTorch forward to ~1e-6 (tests/test_export.py).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch

from data_loaders.windows import ZSCORE_EPS
from hfformer.kernels import attention_buffers, causal_attention_head, lif_step
from hfformer.model import RESETS, HFformer

_F = np.float32
SPIKING, RELU, GELU = 0, 1, 2  # the feed-forward activations, as the kernel takes them
ACTIVATIONS = {"spiking": SPIKING, "relu": RELU, "gelu": GELU}


@nb.njit(fastmath=True, cache=True, inline="always")
def _linear(x, w, b, out):
    # out (T, N) = x (T, K) @ w (K, N) + b (N,): BLAS sgemm into the preallocated out
    np.dot(x, w, out)
    out += b


@nb.njit(fastmath=True, cache=True, inline="always")
def _add_layernorm(h, a, g, b):
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
            h[t, c] = (h[t, c] - mean) * inv * g[c] + b[c]


@nb.njit(cache=True)
def _attention(qkv, n_heads, kt, vt, scores, y):
    # y (T, C) = causal attention of every head; the query weights hold the 1/sqrt(head size) scale
    no_lse = np.empty(0, np.float32)
    for h in range(n_heads):
        causal_attention_head(qkv, h, n_heads, _F(1.0), kt, vt, scores, y, no_lse)


@nb.njit(fastmath=True, cache=True, inline="always")
def _softplus(x):
    return x if x > 20.0 else np.log1p(np.exp(x))  # torch's threshold: no overflow


@nb.njit(fastmath=True, cache=True, inline="always")
def _activation(f, act, layer, mem):
    # the feed-forward activation in place on f (T, FF); act = (kind, LIF reset, beta per layer,
    # threshold): LIF spikes along time (kernels.lif_step), ReLU, or GELU (exact: with erf)
    kind, reset, betas, threshold = act
    if kind == SPIKING:
        beta = betas[layer]
        mem[:] = 0.0
        for t in range(f.shape[0]):
            for c in range(f.shape[1]):
                mem[c] = lif_step(mem[c], f[t, c], beta, threshold, reset)
                f[t, c] = _F(1.0) if mem[c] > threshold else _F(0.0)
    elif kind == RELU:
        for t in range(f.shape[0]):
            for c in range(f.shape[1]):
                f[t, c] = max(f[t, c], _F(0.0))
    else:
        for t in range(f.shape[0]):
            for c in range(f.shape[1]):
                v = f[t, c]
                f[t, c] = _F(0.5) * v * (_F(1.0) + math.erf(v * _F(0.7071067811865476)))


@nb.njit(fastmath=True, cache=True)
def _postnorm_layer(h, w, layer, n_heads, act, qkv, kt, vt, scores, y, a, f, mem):
    # one post-norm block (the paper's): h = LN1(h + attention(h)); h = LN2(h + feed_forward(h))
    (_we, _be, _pe, wqkv, bqkv, wp, bp, g1, b1, wfc, bfc, wfp, bfp, g2, b2, _wd, _bd, _ww, _bw) = w
    _linear(h, wqkv[layer], bqkv[layer], qkv)
    _attention(qkv, n_heads, kt, vt, scores, y)
    _linear(y, wp[layer], bp[layer], a)
    _add_layernorm(h, a, g1[layer], b1[layer])
    _linear(h, wfc[layer], bfc[layer], f)
    _activation(f, act, layer, mem)
    _linear(f, wfp[layer], bfp[layer], a)
    _add_layernorm(h, a, g2[layer], b2[layer])


@nb.njit(fastmath=True, cache=True)
def _prenorm_layer(h, w, layer, n_heads, act, n, qkv, kt, vt, scores, y, a, f, mem):
    # one pre-norm block (model.norm_first): h += attention(LN1(h)); h += feed_forward(LN2(h)).
    (_we, _be, _pe, wqkv, bqkv, wp, bp, g1, b1, wfc, bfc, wfp, bfp, g2, b2, _wd, _bd, _ww, _bw) = w
    n[:] = 0.0
    _add_layernorm(n, h, g1[layer], b1[layer])  # n = LN(0 + h)
    _linear(n, wqkv[layer], bqkv[layer], qkv)
    _attention(qkv, n_heads, kt, vt, scores, y)
    _linear(y, wp[layer], bp[layer], a)
    h += a
    n[:] = 0.0
    _add_layernorm(n, h, g2[layer], b2[layer])
    _linear(n, wfc[layer], bfc[layer], f)
    _activation(f, act, layer, mem)
    _linear(f, wfp[layer], bfp[layer], a)
    h += a


@nb.njit(fastmath=True, cache=True)
def _forward(xs, ends, zscore, eps, w, n_heads, act, norm_first, mid, out):
    """out (B, H, Q) <- HFformer(window b) for each b: window b is rows ends[b]-T+1 .. ends[b] of
    xs (N, F), its features c with zscore[c] z-scored here (float64 mean and population std,
    / (std + eps), as data_loaders.windows.zscore_windows), the others taken as they are."""
    (we, be, pe, wqkv, _bqkv, _wp, _bp, _g1, _b1, wfc, _bfc, _wfp, _bfp, _g2, _b2, wd, bd, ww, bw) = w
    T, C, L, FF, F = pe.shape[0], pe.shape[1], wqkv.shape[0], wfc.shape[2], we.shape[0]
    H, Q = out.shape[1], out.shape[2]
    x = np.empty((T, F), np.float32)
    h = np.empty((T, C), np.float32)
    a = np.empty((T, C), np.float32)
    y = np.empty((T, C), np.float32)
    qkv = np.empty((T, 3 * C), np.float32)
    f = np.empty((T, FF), np.float32)
    kt, vt, scores = attention_buffers(T, C // n_heads)
    dec = np.empty((T, wd.shape[1]), np.float32)
    raw = np.empty(H * Q, np.float32)
    mean = np.empty(F, np.float64)
    var = np.empty(F, np.float64)
    mem = np.empty(FF, np.float32)
    n = np.empty((T, C), np.float32)  # pre-norm: LayerNorm(h), the sublayer's input
    any_zscore = zscore.any()
    for b in range(out.shape[0]):
        first = ends[b] - T + 1
        if not any_zscore:
            x[:] = xs[first : first + T]
        else:
            mean[:] = 0.0
            var[:] = 0.0
            for t in range(T):
                for c in range(F):
                    mean[c] += xs[first + t, c]
            for c in range(F):
                mean[c] /= T
            for t in range(T):
                for c in range(F):
                    var[c] += (xs[first + t, c] - mean[c]) ** 2
            for c in range(F):
                var[c] = 1.0 / (np.sqrt(var[c] / T) + eps)
            for t in range(T):
                for c in range(F):
                    x[t, c] = (xs[first + t, c] - mean[c]) * var[c] if zscore[c] else xs[first + t, c]
        _linear(x, we, be, h)
        h += pe
        for layer in range(L):
            if norm_first:
                _prenorm_layer(h, w, layer, n_heads, act, n, qkv, kt, vt, scores, y, a, f, mem)
            else:
                _postnorm_layer(h, w, layer, n_heads, act, qkv, kt, vt, scores, y, a, f, mem)
        _linear(h, wd, bd, dec)
        raw[:] = bw
        for t in range(T):
            for k in range(dec.shape[1]):
                v = dec[t, k]
                for j in range(H * Q):
                    raw[j] += v * ww[t * dec.shape[1] + k, j]
        for hz in range(H):  # model.QuantileHead: median +/- cumulative softplus offsets
            o = hz * Q
            out[b, hz, mid] = raw[o + mid]
            for k in range(mid + 1, Q):
                out[b, hz, k] = out[b, hz, k - 1] + _softplus(raw[o + k])
            for k in range(mid - 1, -1, -1):
                out[b, hz, k] = out[b, hz, k + 1] - _softplus(raw[o + k])


class FastHFformer:
    """A trained HFformer (eval mode) without PyTorch, one numba kernel: windows -> (B, H, Q)."""

    def __init__(self, model: HFformer):
        if not isinstance(model, HFformer):
            raise TypeError(f"the lean path runs one HFformer, not {type(model).__name__}")
        self.config = c = model.config
        self.mid = model.head.mid
        C, hs = c.d_model, c.d_model // c.n_heads

        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        def stack(get) -> np.ndarray:  # one array per parameter kind, layers along axis 0
            return np.ascontiguousarray(np.stack([arr(get(k)) for k in model.blocks]))

        scale = torch.ones(3 * C)
        scale[:C] = 1.0 / math.sqrt(hs)  # fold the attention scale into the query projection
        pe = model.pe if c.pos_encoding else torch.zeros(c.window, C)
        dec_weight, dec_bias = model.decode_window_map()
        self.weights = (
            arr(model.embed.weight.T), arr(model.embed.bias), arr(pe),
            stack(lambda k: k.attn.qkv.weight.T * scale), stack(lambda k: k.attn.qkv.bias * scale),
            stack(lambda k: k.attn.proj.weight.T), stack(lambda k: k.attn.proj.bias),
            stack(lambda k: k.ln_1.weight), stack(lambda k: k.ln_1.bias),
            stack(lambda k: k.ff.fc.weight.T), stack(lambda k: k.ff.fc.bias),
            stack(lambda k: k.ff.proj.weight.T), stack(lambda k: k.ff.proj.bias),
            stack(lambda k: k.ln_2.weight), stack(lambda k: k.ln_2.bias),
            arr(model.decode_step.weight.T), arr(model.decode_step.bias),
            arr(dec_weight.T), arr(dec_bias))
        with torch.no_grad():  # a learned decay as its layer uses it (clamped)
            betas = [float(k.ff.act.decay()) if c.activation == "spiking" else 0.0 for k in model.blocks]
        reset = RESETS[c.reset] if c.activation == "spiking" else 0
        self.act = (ACTIVATIONS[c.activation], reset, np.array(betas, np.float32), _F(c.threshold))

    def _run(self, xs: np.ndarray, ends: np.ndarray, zscore: np.ndarray, eps: float) -> np.ndarray:
        c = self.config
        out = np.empty((ends.size, len(c.horizons), len(c.quantiles)), np.float32)
        _forward(xs, ends, zscore, eps, self.weights, c.n_heads, self.act, c.norm_first, self.mid, out)
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Forecasts (B, H, Q) float32 of z-scored windows x (B, T, F)."""
        c = self.config
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (c.window, c.n_features):
            raise ValueError(f"expected windows (B, {c.window}, {c.n_features}), got {x.shape}")
        B, T, F = x.shape
        return self._run(x.reshape(B * T, F), np.arange(T - 1, B * T, T), np.zeros(F, bool), 0.0)

    def forecast_ends(self, features: np.ndarray, ends: np.ndarray, eps: float = ZSCORE_EPS,
                      zscore: np.ndarray | None = None) -> np.ndarray:
        """Forecasts (n, H, Q) float32 of the windows of `features` (N, F) ending at rows `ends`,
        z-scored inside the kernel exactly as data_loaders.windows.Windows.batch does (zscore: bool (F,), the
        features to z-score; None: all)."""
        c = self.config
        ends = np.ascontiguousarray(ends, dtype=np.int64)
        if ends.size and (ends.min() < c.window - 1 or ends.max() >= features.shape[0]):
            raise ValueError(f"window ends must lie in [{c.window - 1}, {features.shape[0] - 1}]")
        mask = np.ones(features.shape[1], bool) if zscore is None else np.asarray(zscore, bool)
        return self._run(np.ascontiguousarray(features, dtype=np.float32), ends, mask, eps)
