"""HFformer and LSTM: shapes, causality, non-crossing quantiles, the LIF neuron, determinism."""

import contextlib

import pytest
import snntorch as snn
import torch
from snntorch import surrogate

from hfformer import kernels
from hfformer.baselines import LSTMForecaster, LSTMForecasterConfig
from hfformer.checkpoint import PerHorizon
from hfformer.model import LIF, HFformer, HFformerConfig, QuantileHead

torch.set_num_threads(1)
B, T, F = 4, 100, 42


@pytest.mark.parametrize("activation,pos", [("spiking", False), ("relu", False), ("gelu", False), ("spiking", True)])
def test_hfformer_shapes(activation, pos):
    m = HFformer(HFformerConfig(n_features=F, activation=activation, pos_encoding=pos))
    out = m(torch.randn(B, T, F))
    assert out.shape == (B, 30, 3)
    assert m.encode(torch.randn(B, T, F)).shape == (B, T, 36)


def test_factorised_decoder_is_one_linear_map_of_lower_rank():
    torch.manual_seed(0)
    full = HFformer(HFformerConfig(n_features=F))
    low = HFformer(HFformerConfig(n_features=F, dec_rank=4)).eval()
    weight, bias = low.decode_window_map()
    assert weight.shape == full.decode_window.weight.shape and torch.linalg.matrix_rank(weight) == 4
    n_params = [sum(p.numel() for p in m.decode_window.parameters()) for m in (full, low)]
    assert n_params == [100 * 90 + 90, 100 * 4 + 4 * 90 + 90]
    x = torch.randn(B, T, F)
    with torch.no_grad():
        steps = low.decode_step(low.encode(x)).reshape(B, -1)
        assert torch.allclose(low.decode_window(steps), steps @ weight.T + bias, atol=1e-5)
    with pytest.raises(ValueError, match="dec_rank"):
        HFformer(HFformerConfig(n_features=F, dec_rank=-1))
    one_horizon = HFformer(HFformerConfig(n_features=F, horizons=[5], dec_rank=16))  # 3 outputs: no constraint
    assert isinstance(one_horizon.decode_window, torch.nn.Linear)


def test_lstm_and_per_horizon_shapes():
    lstm = LSTMForecaster(LSTMForecasterConfig(n_features=F, horizons=[1, 5, 10], quantiles=[0.1, 0.5, 0.9]))
    assert lstm(torch.randn(B, T, F)).shape == (B, 3, 3)
    per = PerHorizon([HFformer(HFformerConfig(n_features=F, horizons=[h], quantiles=[0.5])) for h in (1, 2)])
    assert per(torch.randn(B, T, F)).shape == (B, 2, 1)


@pytest.mark.parametrize("act", [{}, {"activation": "relu"}, {"activation": "gelu"}, {"reset": "subtract"},
                                 {"reset": "zero", "learn_beta": True}])
def test_causality_later_steps_never_change_earlier_outputs(act):
    torch.manual_seed(0)
    m = HFformer(HFformerConfig(n_features=F, **act)).eval()
    x = torch.randn(2, T, F) * 3
    x2 = x.clone()
    x2[:, 60:] = torch.randn(2, T - 60, F) * 3
    with torch.no_grad():
        h, h2 = m.encode(x), m.encode(x2)
    assert torch.equal(h[:, :60], h2[:, :60])
    assert not torch.allclose(h[:, 60:], h2[:, 60:])


def test_quantiles_never_cross():
    head = QuantileHead([0.05, 0.1, 0.5, 0.9, 0.95])
    raw = torch.randn(1000, 30, 5) * 50
    out = head(raw)
    assert (out.diff(dim=-1) >= 0).all()
    assert torch.equal(out[..., 2], raw[..., 2])  # the median is the raw output itself
    m = HFformer(HFformerConfig(n_features=F)).eval()
    with torch.no_grad():
        q = m(torch.randn(64, T, F) * 10)
    assert (q.diff(dim=-1) >= 0).all()


def test_quantile_head_rejects_unsorted():
    with pytest.raises(ValueError):
        QuantileHead([0.5, 0.1])


def snntorch_leaky(x: torch.Tensor, reset: str, learn_beta: bool) -> tuple[torch.Tensor, snn.Leaky]:
    """snnTorch's Leaky stepped along the time axis of x (B, T, C) from a zero membrane."""
    leaky = snn.Leaky(beta=0.9, threshold=1.0, spike_grad=surrogate.fast_sigmoid(), reset_mechanism=reset,
                      learn_beta=learn_beta)
    mem, spikes = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        spk, mem = leaky(x[:, t], mem)
        spikes.append(spk)
    return torch.stack(spikes, dim=1), leaky


@pytest.mark.parametrize("learn_beta", [False, True])
@pytest.mark.parametrize("reset", ["none", "subtract", "zero"])
@pytest.mark.parametrize("numba", [True, False])
def test_lif_equals_snntorch_leaky_stepped_along_time(reset, learn_beta, numba):
    """Spikes, input gradients and (learn_beta) the decay's gradient, on the numba kernels and on
    the PyTorch path (matmul without a reset, a loop over time steps with one)."""
    torch.manual_seed(1)
    x = torch.randn(3, 50, 8)
    lif = LIF(window=50, beta=0.9, threshold=1.0, reset=reset, learn_beta=learn_beta)
    dy = torch.randn(3, 50, 8)
    x_ref = x.clone().requires_grad_()
    expected, leaky = snntorch_leaky(x_ref, reset, learn_beta)
    expected_grads = torch.autograd.grad(expected, [x_ref, *([leaky.beta] if learn_beta else [])], dy)
    if reset != "none":  # the reset changes which neurons fire
        assert not torch.equal(expected, snntorch_leaky(x, "none", False)[0])
    with contextlib.nullcontext() if numba else kernels.plain_torch():
        assert kernels.usable(x) == numba
        with torch.no_grad():
            assert torch.equal(lif(x), expected.detach())
        x.requires_grad_()
        got = lif(x)  # surrogate path: same forward values, the same gradients
        grads = torch.autograd.grad(got, [x, *([lif.beta] if learn_beta else [])], dy)
    assert torch.equal(got.detach(), expected.detach())
    for g, g_ref in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)
    assert grads[0].abs().sum() > 0 and (not learn_beta or grads[1] != 0)


def test_learned_decay_is_a_parameter_used_within_0_and_1():
    lif = LIF(window=10, beta=0.9, threshold=1.0, learn_beta=True)
    assert [name for name, _ in lif.named_parameters()] == ["beta"]
    with torch.no_grad():
        lif.beta.fill_(1.7)
    assert float(lif.decay().detach()) == 1.0
    assert not list(LIF(window=10, beta=0.9, threshold=1.0).parameters())  # fixed beta: no parameter


def test_forecast_of_a_window_does_not_depend_on_the_batch():
    torch.manual_seed(2)
    m = HFformer(HFformerConfig(n_features=F)).eval()
    x = torch.randn(8, T, F)
    with torch.no_grad():
        alone = m(x[3:4])
        batch = m(x)
        again = m(x)
    assert torch.allclose(alone[0], batch[3], atol=1e-5)
    assert torch.equal(batch, again)


def test_defaults_keep_the_published_architecture_and_come_from_default_toml():
    """The defaults are the paper's; the model's config takes every hyper-parameter's default from
    default.toml's [model] (and window, horizons from [data]), declared nowhere else."""
    from hfformer.config import DEFAULT_TOML, read_toml

    c = HFformerConfig(n_features=F)
    assert (c.d_model, c.n_heads, c.n_layers, c.d_ff, c.window) == (36, 6, 2, 64, 100)
    assert (c.dropout, c.d_dec, c.dec_rank) == (0.3, 1, 0)
    assert (c.activation, c.reset, c.beta, c.threshold, c.learn_beta) == ("spiking", "none", 0.9, 1.0, False)
    assert not c.pos_encoding and not c.norm_first and c.quantiles == [0.1, 0.5, 0.9]
    table = read_toml(DEFAULT_TOML)
    assert {k: getattr(c, k) for k in table["model"]} == table["model"]
    assert (c.window, c.horizons) == (table["data"]["window"], table["data"]["horizons"])
    lstm = LSTMForecasterConfig(n_features=F, horizons=[1], quantiles=[0.5])
    assert {k: getattr(lstm, k) for k in table["lstm"]} == table["lstm"]


def test_tuned_config_keeps_the_model_size():
    from pathlib import Path

    from hfformer.config import load_config

    tuned = load_config(Path(__file__).resolve().parents[1] / "hfformer" / "tuned.toml")
    m = tuned.model
    assert (m.d_model, m.n_heads, m.n_layers, m.d_ff, m.activation, m.pos_encoding) == (36, 6, 2, 64, "spiking", False)
    assert (m.dropout, m.d_dec, m.dec_rank, m.norm_first) == (0.2, 8, 16, True)
    assert (tuned.train.lr, tuned.data.return_bp) == (2e-3, True)
