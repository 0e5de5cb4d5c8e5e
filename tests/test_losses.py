"""Pinball and MSE losses on hand-made cases."""

import pytest
import torch

from hfformer.losses import loss_fn, mse_loss, pinball_loss


def test_pinball_hand_cases():
    qs = [0.1, 0.5, 0.9]
    y = torch.tensor([[1.0]])  # (B=1, H=1)
    f = torch.zeros(1, 1, 3)  # forecast 0 below the outcome: q * (y - f)
    assert pinball_loss(f, y, qs).item() == pytest.approx((0.1 + 0.5 + 0.9) / 3)
    assert pinball_loss(f, -y, qs).item() == pytest.approx((0.9 + 0.5 + 0.1) / 3)  # above: (1 - q)
    exact = torch.ones(1, 1, 3)
    assert pinball_loss(exact, y, qs).item() == 0.0


def test_pinball_averages_over_batch_horizons_quantiles():
    y = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # (B=2, H=2)
    f = torch.zeros(2, 2, 1)
    # only one of four (window, horizon) cells errs: 0.5 * 2 / 4
    assert pinball_loss(f, y, [0.5]).item() == pytest.approx(0.25)


def test_pinball_is_minimised_by_the_empirical_quantile():
    y = torch.arange(1.0, 101.0)[:, None]  # 1..100
    losses = {c: pinball_loss(torch.full((100, 1, 1), c), y, [0.9]).item() for c in (80.0, 90.0, 95.0)}
    assert min(losses, key=losses.get) == 90.0


def test_mse_uses_the_median_output():
    f = torch.tensor([[[-5.0, 1.0, 5.0]]])
    assert mse_loss(f, torch.tensor([[3.0]])).item() == pytest.approx(4.0)
    assert loss_fn("mse", f, torch.tensor([[3.0]]), [0.1, 0.5, 0.9]).item() == pytest.approx(4.0)
    with pytest.raises(ValueError):
        loss_fn("huber", f, torch.tensor([[3.0]]), [0.5])
