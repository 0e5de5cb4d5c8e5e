"""
HFformer: a causal Transformer encoder with spiking feed-forward blocks that forecasts
quantiles of the scaled log return at every horizon from one window of order-book features.

References:
1) Barez, Bilokon, Gervais, Lisitsyn, "Exploring the Advantages of Transformers for
   High-Frequency Trading" (2023), arXiv:2302.13850 - the HFformer design and hyper-parameters.
2) nanoGPT (github.com/karpathy/nanoGPT, model.py) - the layout of this file.
3) snnTorch (github.com/jeshraghian/snntorch) - leaky integrate-and-fire neuron and the
   fast-sigmoid surrogate gradient (Zenke & Ganguli 2018).

Deliberate differences from the published reference code (see ARCHITECTURE.md):
- the LIF neuron runs along each window's own time axis with membrane state starting at zero,
  so a window's forecast never depends on the other windows of the batch and eval is
  deterministic (the reference ran the neuron across the batch from a random state);
- by default the membrane has no reset (reset = "none"; snnTorch's Leaky defaults to "subtract"),
  which makes it a causal linear filter of the input: mem[t] = sum_{s<=t} beta^(t-s) x[s],
  computed as one (T, T) matmul instead of a Python loop over time steps. The reset ("none",
  "subtract", "zero"), beta, a learned beta (learn_beta) and the threshold are settings, and
  activation = "relu" or "gelu" replaces the neurons (see LIF; tests check every reset equals
  snnTorch's Leaky stepped over time);
- the causal mask is passed as is_causal=True, so torch.compile and ONNX export work;
- on CPU in eager mode, attention and the LIF neuron run as numba kernels (hfformer/kernels.py):
  PyTorch's CPU attention is slow for 6-wide heads and took most of a training step;
- one model forecasts every horizon and quantile; quantiles are built as median +/- cumulative
  softplus offsets, so they never cross;
- the defaults are the paper's; hfformer/tuned.toml holds the measured departures that forecast
  better on the synthetic market (pre-norm blocks, dropout 0.2, a per-step decoder width of 8,
  window 20, sizes standardised with training statistics, lr 2e-3, returns in bp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from snntorch import surrogate
from torch import nn
from torch.nn import functional as F

from hfformer import kernels
from hfformer.config import DataConfig, ModelConfig


@dataclass(kw_only=True)
class HFformerConfig(ModelConfig):
    """The [model] settings (hyper-parameters: each declared with its default and meaning in
    hfformer/default.toml) and the shapes the data fixes; window and horizons default to [data]'s."""

    n_features: int  # F: features per time step (set from the data)
    window: int = DataConfig.window  # T: time steps per window
    horizons: list[int] = field(default_factory=lambda: DataConfig().horizons)  # H outputs


class QuantileHead(nn.Module):
    """Raw outputs -> non-crossing quantiles: median +/- cumulative softplus offsets."""

    def __init__(self, quantiles: list[float]):
        super().__init__()
        qs = list(quantiles)
        if qs != sorted(qs) or len(set(qs)) != len(qs) or not all(0 < q < 1 for q in qs):
            raise ValueError(f"quantiles must be distinct, increasing and in (0, 1): {qs}")
        self.quantiles = qs
        self.mid = min(range(len(qs)), key=lambda i: abs(qs[i] - 0.5))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        # raw: (B, H, Q) -> (B, H, Q), increasing along Q
        m = self.mid
        median = raw[..., m : m + 1]  # (B, H, 1)
        up = median + torch.cumsum(F.softplus(raw[..., m + 1 :]), dim=-1)  # (B, H, Q-m-1)
        down = median - torch.cumsum(F.softplus(raw[..., :m]).flip(-1), dim=-1).flip(-1)
        return torch.cat([down, median, up], dim=-1)


class Dropout(nn.Module):
    """nn.Dropout (zero with probability p, scale the rest by 1/(1-p)) with a cheaper mask: one
    uniform draw compared with p in place costs less than half of bernoulli_ on CPU (forward and
    backward), and dropout was a fifth of a training step."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * torch.rand_like(x).ge_(self.p).div_(1.0 - self.p)  # mask in {0, 1/(1-p)}


RESETS = {"none": kernels.RESET_NONE, "subtract": kernels.RESET_SUBTRACT, "zero": kernels.RESET_ZERO}


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons run along each window's time axis from mem[-1] = 0: snnTorch's
    Leaky (with its default reset_delay) stepped over the window's steps.

    r[t] = 1 if mem[t-1] > threshold (a spike at t-1; no gradient flows through the reset), then
        reset "none":     mem[t] = beta * mem[t-1] + x[t]
        reset "subtract": mem[t] = beta * mem[t-1] + x[t] - threshold * r[t]   (snnTorch's default)
        reset "zero":     mem[t] = beta * (1 - r[t]) * mem[t-1] + x[t]
    spike[t] = 1 if mem[t] > threshold; training uses snnTorch's fast-sigmoid surrogate gradient
    (slope 25) for the step. learn_beta: beta is a trained parameter, used clamped to [0, 1] (as
    snnTorch's learn_beta). Without a reset the membrane is a causal linear filter of the input,
    mem[t] = sum_{s<=t} beta^(t-s) x[s], one (T, T) matmul; with one, a loop over the steps. On
    CPU in eager mode both run as numba scans instead (kernels.lif).
    """

    def __init__(self, window: int, beta: float, threshold: float, reset: str = "none",
                 learn_beta: bool = False):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"LIF reset must be one of {', '.join(RESETS)}, got {reset!r}")
        t = torch.arange(window)
        lag = (t[:, None] - t[None, :]).float().clamp(min=0)  # (T, T): t - s, where s <= t
        self.register_buffer("lag", lag, persistent=False)
        self.register_buffer("filter", (beta ** lag).tril(), persistent=False)  # (T, T) beta^(t-s), s <= t
        self.beta = nn.Parameter(torch.tensor(float(beta))) if learn_beta else beta
        self.threshold, self.reset, self.slope = threshold, reset, 25.0
        self.spike_grad = surrogate.fast_sigmoid(slope=self.slope)

    def decay(self) -> torch.Tensor | float:
        """beta as the neurons use it: a learned one clamped to [0, 1]."""
        return self.beta.clamp(0.0, 1.0) if isinstance(self.beta, nn.Parameter) else self.beta

    def membrane(self, x: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
        # x: (B, T, C) -> mem (B, T, C)
        if self.reset == "none":  # (T, T) lower triangular beta^(t-s) @ (B, T, C); a learned beta's, made here
            return ((beta ** self.lag).tril() if isinstance(self.beta, nn.Parameter) else self.filter) @ x
        mem, steps = torch.zeros_like(x[:, 0]), []  # (B, C)
        for t in range(x.shape[1]):
            fired = (mem > self.threshold).to(x.dtype)  # r[t]
            if self.reset == "subtract":
                mem = beta * mem + x[:, t] - self.threshold * fired
            else:
                mem = beta * (1 - fired) * mem + x[:, t]
            steps.append(mem)
        return torch.stack(steps, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, C) -> spikes (B, T, C) in {0, 1}
        beta = self.decay()
        if kernels.usable(x):
            return kernels.lif(x, beta, self.threshold, self.slope, RESETS[self.reset])  # numba scans: CPU
        mem = self.membrane(x, beta)
        if torch.is_grad_enabled():
            return self.spike_grad(mem - self.threshold)
        return (mem > self.threshold).to(x.dtype)


def activation(config: HFformerConfig) -> nn.Module:
    """The feed-forward block's activation, config.activation: LIF spikes, ReLU or GELU."""
    if config.activation == "spiking":
        return LIF(config.window, config.beta, config.threshold, config.reset, config.learn_beta)
    if config.activation == "relu":
        return nn.ReLU()
    if config.activation == "gelu":
        return nn.GELU()
    raise ValueError(f"activation must be spiking, relu or gelu, got {config.activation!r}")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: HFformerConfig):
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.n_heads = config.n_heads
        self.attn_dropout = config.attn_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x)  # (B, T, 3C)
        if kernels.usable(x) and not (self.training and self.attn_dropout > 0):
            return self.proj(kernels.causal_attention(qkv, self.n_heads))  # numba kernels: CPU
        q, k, v = qkv.split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.proj(y)


class FeedForward(nn.Module):
    def __init__(self, config: HFformerConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.act = activation(config)
        self.drop = Dropout(config.dropout)
        self.proj = nn.Linear(config.d_ff, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.act(self.fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Post-norm encoder layer, as torch.nn.TransformerEncoderLayer (and the paper) uses; pre-norm
    (its norm_first=True) when config.norm_first, which leaves the inputs a linear path to the decoder."""

    def __init__(self, config: HFformerConfig):
        super().__init__()
        self.norm_first = config.norm_first
        self.attn = CausalSelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.drop(self.attn(self.ln_1(x)))  # (B, T, C)
            return x + self.drop(self.ff(self.ln_2(x)))  # (B, T, C)
        x = self.ln_1(x + self.drop(self.attn(x)))  # (B, T, C)
        x = self.ln_2(x + self.drop(self.ff(x)))  # (B, T, C)
        return x


def sinusoidal_encoding(window: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(window).float()[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    pe = torch.zeros(window, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe  # (T, C)


class HFformer(nn.Module):
    def __init__(self, config: HFformerConfig):
        super().__init__()
        self.config = config
        H, Q = len(config.horizons), len(config.quantiles)
        self.embed = nn.Linear(config.n_features, config.d_model)
        if config.pos_encoding:
            self.register_buffer(
                "pe", sinusoidal_encoding(config.window, config.d_model), persistent=False
            )
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.decode_step = nn.Linear(config.d_model, config.d_dec)
        n_in, r = config.window * config.d_dec, config.dec_rank
        if r < 0:
            raise ValueError(f"dec_rank must be >= 0 (0 = full rank), got {r}")
        self.factorised = 0 < r < min(n_in, H * Q)
        self.decode_window = nn.Sequential(
            nn.Linear(n_in, r, bias=False), nn.Linear(r, H * Q)) if self.factorised else nn.Linear(n_in, H * Q)
        self.head = QuantileHead(config.quantiles)

    def decode_window_map(self) -> tuple[torch.Tensor, torch.Tensor]:
        """decode_window as one weight (H*Q, T*d_dec) and bias (H*Q,): a factorised map multiplied out."""
        if not self.factorised:
            return self.decode_window.weight, self.decode_window.bias
        down, up = self.decode_window
        return up.weight @ down.weight, up.bias

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, F) -> (B, T, C); step t only sees steps <= t
        h = self.embed(x)  # (B, T, C)
        if self.config.pos_encoding:
            h = h + self.pe
        for block in self.blocks:
            h = block(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, F) -> quantile forecasts (B, H, Q)
        B = x.shape[0]
        h = self.decode_step(self.encode(x))  # (B, T, d_dec)
        raw = self.decode_window(h.reshape(B, -1))  # (B, H*Q)
        return self.head(raw.view(B, len(self.config.horizons), len(self.config.quantiles)))
