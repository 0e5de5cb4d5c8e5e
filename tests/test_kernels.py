"""The numba kernels (causal attention, LIF neuron) against the PyTorch paths they replace."""

import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from hfformer import kernels
from hfformer.model import LIF, HFformer, HFformerConfig

torch.set_num_threads(1)


def sdpa(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, C3 = qkv.shape
    q, k, v = (t.view(B, T, n_heads, -1).transpose(1, 2) for t in qkv.split(C3 // 3, dim=2))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)


@pytest.mark.parametrize("B,T,C,n_heads", [(3, 100, 36, 6), (2, 17, 8, 2), (1, 1, 6, 1)])
def test_forward_and_gradients_match_sdpa(B, T, C, n_heads):
    torch.manual_seed(0)
    qkv = (torch.randn(B, T, 3 * C) * 3).requires_grad_()  # * 3: peaked softmax rows too
    dy = torch.randn(B, T, C)
    y_ref = sdpa(qkv, n_heads)
    (grad_ref,) = torch.autograd.grad(y_ref, qkv, dy)
    y = kernels.causal_attention(qkv, n_heads)
    (grad,) = torch.autograd.grad(y, qkv, dy)
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_ref, atol=5e-4, rtol=1e-3)


@pytest.mark.parametrize("reset,learn_beta", [("none", False), ("subtract", False), ("zero", True)])
def test_lif_kernel_matches_the_pytorch_surrogate_path(reset, learn_beta):
    torch.manual_seed(0)
    lif = LIF(window=100, beta=0.9, threshold=1.0, reset=reset, learn_beta=learn_beta)
    x = (torch.randn(8, 100, 64) * 0.5).requires_grad_()
    dy = torch.randn(8, 100, 64)
    inputs = [x, *lif.parameters()]  # with learn_beta, the decay too
    spikes = lif(x)
    grads = torch.autograd.grad(spikes, inputs, dy)
    with kernels.plain_torch():
        spikes_ref = lif(x)
        grads_ref = torch.autograd.grad(spikes_ref, inputs, dy)
    assert 0.02 < spikes.mean() < 0.95  # both sides of the threshold are exercised (resets: fewer spikes)
    assert torch.equal(spikes, spikes_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_model_training_step_agrees_with_the_sdpa_path():
    torch.manual_seed(0)
    m = HFformer(HFformerConfig(n_features=5, dropout=0.0)).train()
    x = torch.randn(4, 100, 5)
    assert kernels.usable(x)
    out = m(x)
    (g,) = torch.autograd.grad(out.square().sum(), m.blocks[0].attn.qkv.weight)
    with kernels.plain_torch():  # SDPA attention and the matmul LIF
        assert not kernels.usable(x)
        out_ref = m(x)
        (g_ref,) = torch.autograd.grad(out_ref.square().sum(), m.blocks[0].attn.qkv.weight)
    assert kernels.usable(x)
    torch.testing.assert_close(out, out_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g, g_ref, atol=1e-3, rtol=1e-3)


def test_other_dtypes_and_tracing_take_the_sdpa_path():
    assert not kernels.usable(torch.zeros(1, 4, 6, dtype=torch.float64))
    m = HFformer(HFformerConfig(n_features=3, window=8)).eval()
    traced = torch.jit.trace(m, torch.randn(2, 8, 3), check_trace=False)
    assert "scaled_dot_product_attention" in str(traced.inlined_graph)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to see a thread count change")
def test_first_kernel_call_keeps_torch_on_its_thread_count():
    # numba's OpenMP pool starts on the first call, once per process, and used to set the libgomp it
    # shares with torch to all cores: a one-thread run went on with two, and its first model then
    # differed in the last bits from the same seed trained later in the process.
    code = ("import torch; from hfformer import kernels; torch.set_num_threads(1); "
            "kernels.causal_attention(torch.randn(2, 5, 6), 1); print(torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split() == ["1"]
