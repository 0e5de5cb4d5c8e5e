"""HFformer's two costly layers on CPU as numba kernels, forward and backward: causal
self-attention for narrow heads and the LIF neuron.

Why: with 6-wide heads, PyTorch's CPU flash-attention kernel (the fastest of its SDPA backends
here) took about 70% of a training step; the attention kernels, one (window, head) pair per task,
run its forward and backward about 2.5x faster. They follow FlashAttention's algebra: the
forward keeps only each row's log-sum-exp, the backward recomputes the probabilities from it.
causal_attention_head is the one attention kernel of the package: the training forward runs it
per (window, head) task, the lean inference path (hfformer/lean.py) per head of its window.
Layout: qkv (B, T, 3C) is the qkv projection's output as it is (q | k | v, each C = n_heads *
head_size wide), y (B, T, C) is what the output projection reads: no transposes or copies.
The LIF neuron, in PyTorch a (T, T) matmul (or, with a reset, a loop over time steps) plus
snnTorch's surrogate (about eight elementwise passes), becomes one scan along time each way.
Results agree with the PyTorch paths to float32 rounding (tests/test_kernels.py); tracing (ONNX
export), torch.compile and other devices or dtypes take the PyTorch paths.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numba as nb
import numpy as np
import torch

_F = np.float32


@nb.njit(fastmath=True, error_model="numpy", cache=True, inline="always")
def exp_nonpositive(v):
    # exp(v) for v <= 0; below -24 (a weight < 4e-11 of the largest) it returns exp(-24).
    # (degree-7 Taylor of exp(v/64))^64: vectorisable, relative error ~1e-6
    r = max(v, _F(-24.0)) * _F(1 / 64)
    e = _F(1.0) + r * (_F(1.0) + r * (_F(1 / 2) + r * (_F(1 / 6) + r * (_F(1 / 24) + r * (
        _F(1 / 120) + r * (_F(1 / 720) + r * _F(1 / 5040)))))))
    e *= e
    e *= e
    e *= e
    e *= e
    e *= e
    e *= e
    return e


@nb.njit(cache=True, inline="always")
def _dims(qkv, n_heads):
    # windows B, steps T, model width C, head size hs, score scale 1/sqrt(hs)
    B, T, C3 = qkv.shape
    hs = C3 // 3 // n_heads
    return B, T, C3 // 3, hs, np.float32(1.0 / math.sqrt(hs))


@nb.njit(fastmath=True, cache=True, inline="always")
def _keys_values(qkv, b, k0, v0, hs):
    # one head's keys and values of window b, by head dimension (hs, T): rows vectorise
    T = qkv.shape[1]
    kT = np.empty((hs, T), np.float32)
    vT = np.empty((hs, T), np.float32)
    for t in range(T):
        for d in range(hs):
            kT[d, t] = qkv[b, t, k0 + d]
            vT[d, t] = qkv[b, t, v0 + d]
    return kT, vT


@nb.njit(cache=True)
def attention_buffers(T, hs):
    # kt, vt (hsp, Tp): one head's keys and values along time, zero-padded to hsp (the head size
    # rounded up to 6: six dims per score pass, three per weights @ values pass) and Tp (T rounded
    # up to 16); scores (T * Tp,): the rows of the causal triangle, packed
    hsp, Tp = (hs + 5) // 6 * 6, (T + 15) // 16 * 16
    return np.zeros((hsp, Tp), np.float32), np.zeros((hsp, Tp), np.float32), np.empty(T * Tp, np.float32)


@nb.njit(fastmath=True, error_model="numpy", cache=True)
def causal_attention_head(qkv, h, n_heads, scale, kt, vt, scores, y, lse):
    # The one attention kernel (training forward and the lean inference path): for head h of one
    # window, y[:, head h] = causal softmax(scale * q k^T) v, with qkv (T, 3C) as the projection
    # writes it (q | k | v) and y (T, C); lse (T,), when not empty, gets each row's log-sum-exp of
    # the scaled scores (what the backward recomputes the probabilities from). Buffers: see
    # attention_buffers. Row t scores keys s < n(t) = t+1 rounded up to 16 (the causal triangle, in
    # whole vectors); the rows lie packed in `scores`, so the exp, the costly part, runs as one long
    # vectorised loop over the whole triangle instead of T short ones (short loops here are latency
    # bound). Scores of s > t are zeroed after the exp.
    T, C = y.shape
    hs, hsp, Tp = C // n_heads, kt.shape[0], kt.shape[1]
    o = h * hs
    for d in range(hs):
        for s in range(T):
            kt[d, s] = qkv[s, C + o + d]
            vt[d, s] = qkv[s, 2 * C + o + d]
    start = 0
    for t in range(T):  # scores minus the row's causal maximum
        n = min((t + 16) // 16 * 16, Tp)
        row = scores[start : start + n]
        for d in range(0, hsp, 6):
            q0 = qkv[t, o + d] * scale
            q1 = qkv[t, o + d + 1] * scale if d + 1 < hs else _F(0.0)
            q2 = qkv[t, o + d + 2] * scale if d + 2 < hs else _F(0.0)
            q3 = qkv[t, o + d + 3] * scale if d + 3 < hs else _F(0.0)
            q4 = qkv[t, o + d + 4] * scale if d + 4 < hs else _F(0.0)
            q5 = qkv[t, o + d + 5] * scale if d + 5 < hs else _F(0.0)
            k0, k1, k2, k3, k4, k5 = kt[d], kt[d + 1], kt[d + 2], kt[d + 3], kt[d + 4], kt[d + 5]
            if d == 0:
                for s in range(n):
                    row[s] = (q0 * k0[s] + q1 * k1[s] + q2 * k2[s]
                              + q3 * k3[s] + q4 * k4[s] + q5 * k5[s])
            else:
                for s in range(n):
                    row[s] += (q0 * k0[s] + q1 * k1[s] + q2 * k2[s]
                               + q3 * k3[s] + q4 * k4[s] + q5 * k5[s])
        m = row[0]
        for s in range(t + 1):
            m = max(m, row[s])
        for s in range(n):
            row[s] -= m
        if lse.size:
            lse[t] = m  # the log of the row's total is added below
        start += n
    for i in range(start):
        scores[i] = exp_nonpositive(scores[i])
    start = 0
    for t in range(T):  # weights @ values
        n = min((t + 16) // 16 * 16, Tp)
        row = scores[start : start + n]
        for s in range(t + 1, n):
            row[s] = _F(0.0)
        total = _F(0.0)
        for s in range(n):
            total += row[s]
        if lse.size:
            lse[t] += np.log(total)
        inv = _F(1.0) / total
        for d in range(0, hsp, 3):
            v0, v1, v2 = vt[d], vt[d + 1], vt[d + 2]
            a0 = a1 = a2 = _F(0.0)
            for s in range(n):
                a0 += row[s] * v0[s]
                a1 += row[s] * v1[s]
                a2 += row[s] * v2[s]
            y[t, o + d] = a0 * inv
            if d + 1 < hs:
                y[t, o + d + 1] = a1 * inv
            if d + 2 < hs:
                y[t, o + d + 2] = a2 * inv
        start += n


@nb.njit(parallel=True, cache=True)
def _forward(qkv, n_heads, y, lse):
    # qkv (B, T, 3C) float32 -> y (B, T, C), lse (B, nh, T): one (window, head) pair per task
    B, T, _, hs, scale = _dims(qkv, n_heads)
    for task in nb.prange(B * n_heads):
        b, h = task // n_heads, task % n_heads
        kt, vt, scores = attention_buffers(T, hs)
        causal_attention_head(qkv[b], h, n_heads, scale, kt, vt, scores, y[b], lse[b, h])


@nb.njit(parallel=True, fastmath=True, error_model="numpy", cache=True)
def _backward(qkv, y, lse, dy, n_heads, dqkv):
    # gradients of sum(dy * y) with respect to qkv, written to dqkv (B, T, 3C)
    B, T, C, hs, scale = _dims(qkv, n_heads)
    for task in nb.prange(B * n_heads):
        b, h = task // n_heads, task % n_heads
        q0, k0, v0 = h * hs, C + h * hs, 2 * C + h * hs
        kT, vT = _keys_values(qkv, b, k0, v0, hs)
        dkT = np.zeros((hs, T), np.float32)
        dvT = np.zeros((hs, T), np.float32)
        p = np.empty(T, np.float32)  # probabilities of row i
        ds = np.empty(T, np.float32)  # gradient of row i's scores
        for i in range(T):
            n = i + 1
            p[:n] = 0.0
            ds[:n] = 0.0
            delta = np.float32(0.0)  # sum_j p_ij * dp_ij = dy_i . y_i
            for d in range(hs):
                qd = qkv[b, i, q0 + d] * scale
                dyd = dy[b, i, q0 + d]
                delta += dyd * y[b, i, q0 + d]
                for j in range(n):
                    p[j] += qd * kT[d, j]
                    ds[j] += dyd * vT[d, j]
            li = lse[b, h, i]
            for j in range(n):
                p[j] = exp_nonpositive(p[j] - li)
                ds[j] = p[j] * (ds[j] - delta) * scale
            for d in range(hs):
                qd = qkv[b, i, q0 + d]
                dyd = dy[b, i, q0 + d]
                acc = np.float32(0.0)
                for j in range(n):
                    acc += ds[j] * kT[d, j]
                    dkT[d, j] += ds[j] * qd
                    dvT[d, j] += p[j] * dyd
                dqkv[b, i, q0 + d] = acc
        for t in range(T):
            for d in range(hs):
                dqkv[b, t, k0 + d] = dkT[d, t]
                dqkv[b, t, v0 + d] = dvT[d, t]


# LIF reset modes, as the kernels take them (model.LIF maps the names)
RESET_NONE, RESET_SUBTRACT, RESET_ZERO = 0, 1, 2


@nb.njit(fastmath=True, cache=True, inline="always")
def lif_step(m, x, beta, threshold, reset):
    # One LIF membrane update, the recurrence of every LIF path here and in lean.py: mem[t] from
    # m = mem[t-1] and the input x = x[t]; a spike at t-1 (m > threshold) resets at t (snnTorch's
    # Leaky with reset_delay): subtract takes the threshold off, zero clears the membrane.
    if m > threshold:
        if reset == RESET_SUBTRACT:
            return beta * m + x - threshold
        if reset == RESET_ZERO:
            return x
    return beta * m + x


@nb.njit(parallel=True, fastmath=True, cache=True)
def _lif_forward(x, beta, threshold, reset, spikes, mem):
    # mem (B, T, C): the membrane along time from 0 (kept for the backward); spikes = mem > threshold
    B, T, C = x.shape
    for b in nb.prange(B):
        m = np.zeros(C, np.float32)
        for t in range(T):
            for c in range(C):
                m[c] = lif_step(m[c], x[b, t, c], beta, threshold, reset)
                mem[b, t, c] = m[c]
                spikes[b, t, c] = np.float32(1.0) if m[c] - threshold > 0 else np.float32(0.0)


@nb.njit(parallel=True, fastmath=True, cache=True)
def _lif_backward(dy, mem, spikes, beta, threshold, slope, reset, dx, dbeta):
    # g[t] = dL/dmem[t] = dy[t] s[t] + a[t+1] g[t+1], with s[t] = 1 / (slope |mem[t] - threshold| + 1)^2
    # (snnTorch's fast-sigmoid surrogate) and a[t] = d mem[t] / d mem[t-1] = beta, or beta (1 - spike[t-1])
    # with reset "zero" (the reset itself carries no gradient, as in snnTorch). dx = g; when dbeta
    # (B,) is not empty, dbeta[b] = sum over t, c of g[t] (a[t] / beta) mem[t-1].
    B, T, C = dy.shape
    for b in nb.prange(B):
        g = np.zeros(C, np.float32)
        carry = np.zeros(C, np.float32)  # a[t+1]
        total = 0.0
        for t in range(T - 1, -1, -1):
            for c in range(C):
                a = slope * abs(mem[b, t, c] - threshold) + np.float32(1.0)
                g[c] = carry[c] * g[c] + dy[b, t, c] * (np.float32(1.0) / (a * a))
                dx[b, t, c] = g[c]
                keep = np.float32(1.0)
                if reset == RESET_ZERO and t > 0:
                    keep -= spikes[b, t - 1, c]
                if dbeta.size and t > 0:
                    total += g[c] * keep * mem[b, t - 1, c]
                carry[c] = beta * keep
        if dbeta.size:
            dbeta[b] = total


def _threads() -> None:
    """Use as many numba threads as torch does (one per process under torchrun).

    The first call starts numba's OpenMP pool, which sets the thread count of the libgomp that
    torch shares to all cores: torch's own count is put back, or a run set to one thread would
    go on with more (and, its sums split differently, give other last bits than the same run
    started later in the process)."""
    torch_threads = torch.get_num_threads()
    nb.set_num_threads(max(1, min(torch_threads, nb.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


class _CausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
        qkv = qkv.detach().contiguous()
        B, T, C3 = qkv.shape
        y = qkv.new_empty(B, T, C3 // 3)
        lse = qkv.new_empty(B, n_heads, T)
        _threads()
        _forward(qkv.numpy(), n_heads, y.numpy(), lse.numpy())
        ctx.save_for_backward(qkv, y, lse)
        ctx.n_heads = n_heads
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, None]:
        qkv, y, lse = ctx.saved_tensors
        dqkv = torch.empty_like(qkv)
        _threads()
        _backward(qkv.numpy(), y.numpy(), lse.numpy(), dy.detach().contiguous().numpy(),
                  ctx.n_heads, dqkv.numpy())
        return dqkv, None


class _LIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float | torch.Tensor, threshold: float, slope: float,
                reset: int) -> torch.Tensor:
        x, beta = x.detach().contiguous(), float(beta)
        spikes, mem = torch.empty_like(x), torch.empty_like(x)
        _threads()
        _lif_forward(x.numpy(), np.float32(beta), np.float32(threshold), reset, spikes.numpy(), mem.numpy())
        ctx.save_for_backward(mem, spikes)
        ctx.args = (beta, threshold, slope, reset)
        return spikes

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, None, None, None]:
        mem, spikes = ctx.saved_tensors
        beta, threshold, slope, reset = ctx.args
        dx = torch.empty_like(mem)
        dbeta = mem.new_empty(mem.shape[0] if ctx.needs_input_grad[1] else 0, dtype=torch.float64)
        _threads()
        _lif_backward(dy.detach().contiguous().numpy(), mem.numpy(), spikes.numpy(), np.float32(beta),
                      np.float32(threshold), np.float32(slope), reset, dx.numpy(), dbeta.numpy())
        return dx, dbeta.sum().to(mem.dtype) if ctx.needs_input_grad[1] else None, None, None, None


def lif(x: torch.Tensor, beta: float | torch.Tensor, threshold: float, slope: float,
        reset: int = RESET_NONE) -> torch.Tensor:
    """Spikes (B, T, C) in {0, 1} of LIF neurons driven by x (B, T, C) along time (lif_step; reset:
    RESET_NONE, RESET_SUBTRACT or RESET_ZERO), with the fast-sigmoid surrogate gradient of the given
    slope; beta may be a 0-d tensor that gets a gradient (a learned decay)."""
    return _LIF.apply(x, beta, threshold, slope, reset)


def causal_attention(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Causal softmax attention of the q | k | v projection qkv (B, T, 3C) -> (B, T, C)."""
    return _CausalAttention.apply(qkv, n_heads)


_enabled = True


def usable(x: torch.Tensor) -> bool:
    """The kernels take float32 CPU tensors in eager mode; tracing (ONNX export) and
    torch.compile see the PyTorch paths instead."""
    return (_enabled and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


@contextmanager
def plain_torch() -> Iterator[None]:
    """The PyTorch paths (SDPA attention, matmul LIF) inside the block: what benchmarks compare with."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before
